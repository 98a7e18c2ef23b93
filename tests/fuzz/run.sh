#!/bin/sh
# Run every libFuzzer harness for a fixed time over a copy of its kept
# corpus (tests/fuzz/corpus/<name>/), as `make test-fuzz` does:
#   sh tests/fuzz/run.sh BUILD_DIR [SECONDS [NAME...]]
# BUILD_DIR holds the fuzz_<name> programs (cmake -DPNO_FUZZ=ON with clang,
# target fuzz). Fails on the first harness that crashes, leaks, trips a
# sanitizer or a property check; the input that did it is left as
# BUILD_DIR/fuzz-work/<name>/crash-* (or leak-*, timeout-*, oom-*), and
# the log next to it. New corpus entries stay in the work copy: copy the
# interesting ones into tests/fuzz/corpus/<name>/ by hand.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$1
secs=${2:-20}
shift $(($# > 1 ? 2 : 1))
names=${*:-"infer config safetensors gate keys traceparent audit"}

fail=0
for n in $names; do
	bin="$build/fuzz_$n"
	work="$build/fuzz-work/$n"
	if [ ! -x "$bin" ]; then
		echo "fuzz: $bin not built" >&2
		exit 1
	fi
	rm -rf "$work"
	mkdir -p "$work/corpus"
	if [ -d "$here/corpus/$n" ]; then
		cp "$here/corpus/$n"/* "$work/corpus/"
	fi
	# one core each (the machine runs the rest of the suite too); time,
	# memory and per-input limits well above what any valid input needs
	set +e
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -max_total_time="$secs" -seed="${FUZZ_SEED:-1}" -timeout=30 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1 &
	pid=$!
	wait $pid
	rc=$?
	set -e
	# libomp's registration file outlives a harness that exits by _Exit
	# (the time limit) or abort (a finding)
	rm -f /dev/shm/__KMP_REGISTERED_LIB_"$pid"_*
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
	if [ $rc -ne 0 ]; then
		echo "fuzz_$n: FAILED (exit $rc) after ${runs:-?} runs; log and input in $work" >&2
		tail -40 "$work/log" >&2
		fail=1
	else
		echo "fuzz_$n: ${secs} s, ${runs:-?} runs, $cov, no crash"
	fi
done
exit $fail
