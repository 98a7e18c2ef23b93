#!/bin/sh
# pno bench under mpirun: a tiny benchmark (2 PDEs x 2 methods x 2 seeds)
# run by 2 ranks gives the same metrics, cell by cell, as the plain single
# process (results.csv's metric columns, printed to 9 digits, compared
# as text: the steps are the same deterministic processes at the same
# thread count, so any difference is a bug), the same datasets (h5diff:
# PDE 1's was made by rank 1), cells run by both ranks, a rerun reuses
# every cell and reruns exactly a removed one, and a failure seen by rank
# 0 alone (--out is a file) ends both ranks with status 2.
#
# usage: mpi_bench.sh MPIEXEC PNO DIR      (exit 77: h5diff missing, skipped)
set -u
MPIEXEC=$1
case $2 in /*) PNO=$2 ;; *) PNO=$PWD/$2 ;; esac
DIR=$3
fails=0

command -v h5diff >/dev/null 2>&1 ||
	{ echo "SKIP: h5diff (hdf5-tools) not installed"; exit 77; }
rm -rf "$DIR" && mkdir -p "$DIR" && cd "$DIR" || exit 1
# under ASan: Open MPI's own allocations live until exit (not pno's);
# full stacks let the suppressions see its libraries
if [ -n "${PNO_SANITIZED:-}" ]; then
	printf 'leak:%s\n' libmpi.so libopen-pal.so libopen-rte.so libpmix.so \
		libevent libhwloc.so >lsan.supp
	LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$PWD/lsan.supp"
	export LSAN_OPTIONS="$LSAN_OPTIONS:fast_unwind_on_malloc=0"
fi

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
np2() {
	timeout 240 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 \
		"$PNO" "$@"
}
# the identifying and metric columns: pde .. energy (not the timings)
metrics() { cut -d, -f1-14 "$1"; }

cat >tiny.json <<'EOF'
{"name": "tiny", "seeds": [1, 2], "eval": {"samples": 8},
 "pdes": [{"name": "heat", "generate": {"samples": 40, "res": 32, "seed": 3},
           "split": {"ntrain": 30, "nval": 5, "ntest": 5}},
          {"name": "darcy", "generate": {"samples": 40, "res": 16, "fine-res": 31, "seed": 3},
           "split": {"ntrain": 30, "nval": 5, "ntest": 5}}],
 "methods": [
  {"label": "fno", "model": "fno", "train": {"width": 8, "modes": 4, "layers": 2, "epochs": 2, "batch": 10}},
  {"label": "pno-d", "model": "pno-d", "train": {"width": 8, "modes": 4, "layers": 2, "epochs": 2, "batch": 10, "ens-samples": 2}}]}
EOF

"$PNO" bench --config tiny.json --out one --no-plots >one.log 2>&1 ||
	{ fail "single process (exit $?)"; cat one.log; }
np2 bench --config tiny.json --out two --no-plots >two.log 2>&1 ||
	{ fail "2 ranks (exit $?)"; cat two.log; }

[ "$(metrics one/results.csv | wc -l)" = 9 ] || fail "one/results.csv: not 8 cells"
metrics one/results.csv >a.csv
metrics two/results.csv >b.csv
cmp -s a.csv b.csv || { fail "metrics differ between 1 and 2 ranks"; diff a.csv b.csv; }
for p in heat darcy; do
	h5diff "one/data/$p.h5" "two/data/$p.h5" >/dev/null || fail "data $p differs"
done
# the cells were shared: 4 each (round-robin over 8 pending cells)
for r in 0 1; do
	n=$(grep -c "pno bench: rank $r: \[[0-9]/4\] .*: done in" two.log)
	[ "$n" = 4 ] || { fail "rank $r finished $n cells, expected 4"; cat two.log; }
done
[ "$(grep -c '^# Benchmark' two.log)" = 1 ] || fail "the table is not printed once"

# resumable: everything reused; a removed result is rerun (by rank 0:
# the only pending cell) and its metrics are those of the first run
np2 bench --config tiny.json --out two --no-plots >re.log 2>&1 || fail "rerun (exit $?)"
grep -q "8 cells .* 8 reused" re.log || { fail "rerun did not reuse all"; cat re.log; }
rm two/cells/darcy/pno-d/seed2/result.json
np2 bench --config tiny.json --out two --no-plots >re.log 2>&1 || fail "rerun 2 (exit $?)"
grep -q "8 cells .* 7 reused" re.log || { fail "rerun 2 did not reuse 7"; cat re.log; }
grep -q "rank 0: \[1/1\] darcy/pno-d/seed2: done" re.log || { fail "rerun 2: cell not rerun"; cat re.log; }
[ "$(grep '^darcy,pno-d,pno-d,2,' a.csv)" = "$(metrics two/results.csv | grep '^darcy,pno-d,pno-d,2,')" ] ||
	fail "the rerun cell's metrics changed"

# rank 0 alone sees that --out is a file: both ranks end, status 2
touch afile
np2 bench --config tiny.json --out afile >err.log 2>&1
rc=$?
[ $rc -eq 2 ] || { fail "--out a file: exit $rc, expected 2"; cat err.log; }
grep -q "pno bench: --out afile: not a directory" err.log || fail "--out a file: no message"
grep -q "pno bench: rank 0: preparing --out failed" err.log || fail "--out a file: rank 1 silent"

[ $fails -eq 0 ] && echo "mpi_bench: all checks passed"
exit $((fails > 0))
