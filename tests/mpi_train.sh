#!/bin/sh
# Data-parallel tests under mpirun with 2 ranks (ctest label "mpi").
# usage: mpi_train.sh MPIEXEC MPI_TRAIN PNO TMPDIR
# Every run is under `timeout` (60 s; each takes a few seconds): a rank
# that hangs fails the test.
set -u
MPIEXEC=$1 T=$2 PNO=$3 TMP=$4
mkdir -p "$TMP"
# root in containers/CI needs --allow-run-as-root; two ranks on fewer cores
MPIRUN="$MPIEXEC -np 2 --oversubscribe --allow-run-as-root"
export OMP_NUM_THREADS=1
# Under the sanitizers: Open MPI keeps state until exit by design; its
# leaks are suppressed (tests/mpi_lsan.supp), which needs its plugins kept
# loaded and full (DWARF) stacks to name the libraries.
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$HERE/mpi_lsan.supp"
fail=0

run() {	# name, command...
	name=$1
	shift
	if timeout 60 "$@" >"$TMP/$name.out" 2>&1; then
		echo "ok   $name"
	else
		echo "FAIL $name (status $?):"
		sed 's/^/    /' "$TMP/$name.out"
		fail=1
	fi
}

expect_fail() {	# name, what both ranks must say, command...
	name=$1 want=$2
	shift 2
	timeout 60 "$@" >"$TMP/$name.out" 2>&1
	st=$?
	n=$(grep -c -F -- "$want" "$TMP/$name.out")
	if [ $st -ne 0 ] && [ $st -ne 124 ] && [ "$n" -eq 2 ]; then
		echo "ok   $name (status $st, both ranks: $want)"
	else
		echo "FAIL $name (status $st, $n ranks said '$want'):"
		sed 's/^/    /' "$TMP/$name.out"
		fail=1
	fi
}

run collectives $MPIRUN "$T" collectives
# the same training on one process and on two
rm -f "$TMP/ref.bin" "$TMP/ck.st"
run train_ref "$T" ref "$TMP/ref.bin"
run train_check $MPIRUN "$T" check "$TMP/ref.bin" memory
run train_check_file $MPIRUN "$T" check "$TMP/ref.bin" file
# a checkpoint written by two ranks, resumed by one
run ckpt_2 $MPIRUN "$T" ckpt "$TMP/ref.bin" "$TMP/ck.st"
run resume_1 "$T" resume "$TMP/ref.bin" "$TMP/ck.st"
# an error on one rank stops both with its message
echo "not a checkpoint" >"$TMP/bad.st"
run fail_one $MPIRUN "$T" fail_one "$TMP/bad.st" "$TMP/ck.st"
# a NaN in a sample that one rank reads, in the normalization and in a step
run fail_data $MPIRUN "$T" fail_data "$TMP/ref.bin.nan.h5" "$TMP/ck.st"

# the command line: rank 1 alone gets a file that is not HDF5
"$PNO" generate darcy --samples 24 --res 16 --fine-res 31 --quiet --force \
	--threads 1 --out "$TMP/d.h5" >/dev/null || fail=1
echo "not HDF5" >"$TMP/bad.h5"
rm -f "$TMP/m.st"
cat >"$TMP/pick.sh" <<EOS
#!/bin/sh
d="$TMP/d.h5"
[ "\$OMPI_COMM_WORLD_RANK" = 1 ] && d="$TMP/bad.h5"
exec "$PNO" train --data "\$d" --out "$TMP/m.st" --force --epochs 1 \
	--width 4 --modes 4 --layers 1 --proj-hidden 8 --batch 4 --threads 1
EOS
expect_fail cli_bad_file "pno train: rank 1: $TMP/bad.h5" $MPIRUN sh "$TMP/pick.sh"
[ -e "$TMP/m.st" ] && { echo "FAIL cli_bad_file wrote a model"; fail=1; }
# and both ranks train and rank 0 writes the model
rm -f "$TMP/m.st"
run cli_train $MPIRUN "$PNO" train --data "$TMP/d.h5" --out "$TMP/m.st" \
	--epochs 2 --width 4 --modes 4 --layers 1 --proj-hidden 8 --batch 4 \
	--threads 1
[ -s "$TMP/m.st" ] || { echo "FAIL cli_train wrote no model"; fail=1; }
grep -c "^epoch" "$TMP/cli_train.out" | grep -qx 2 ||
	{ echo "FAIL cli_train: not 2 epoch lines (one rank prints)"; fail=1; }
exit $fail
