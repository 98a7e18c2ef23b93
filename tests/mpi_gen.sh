#!/bin/sh
# pno generate under mpirun: the file written by 1, 2 and 3 ranks holds
# exactly the datasets and root attributes of the plain single-process
# file (h5diff without a tolerance: every value equal), for Darcy (two
# outputs), Navier-Stokes and Burgers (time series); ranks with no
# sample; a failure seen by one rank only (rank 0's output directory is
# missing; rank 1 alone is interrupted) ends every rank with the same
# message and status, leaving no file and no temporary.
#
# usage: mpi_gen.sh MPIEXEC PNO DIR      (exit 77: h5diff missing, skipped)
set -u
MPIEXEC=$1
case $2 in /*) PNO=$2 ;; *) PNO=$PWD/$2 ;; esac
DIR=$3
fails=0

command -v h5diff >/dev/null 2>&1 && command -v h5dump >/dev/null 2>&1 ||
	{ echo "SKIP: h5diff/h5dump (hdf5-tools) not installed"; exit 77; }
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
# np N args...: under mpirun, stdout+stderr tagged with [job,rank]
np() {
	n=$1
	shift
	timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe --tag-output \
		-np "$n" "$PNO" "$@"
}
# same A B: the same datasets and the same root attributes
same() {
	h5diff "$1" "$2" >h5diff.out 2>&1 || { fail "$1 and $2 differ:"; cat h5diff.out; }
	h5dump -A "$1" | tail -n +2 >a.attrs
	h5dump -A "$2" | tail -n +2 >b.attrs
	cmp -s a.attrs b.attrs || { fail "$1 and $2: attributes differ"; diff a.attrs b.attrs; }
}

# check_pde NAME "RANK COUNTS" generate-args...
check_pde() {
	name=$1
	counts=$2
	shift 2
	"$PNO" generate "$@" --out "$name.1.h5" --quiet || fail "$name: single process"
	for n in $counts; do
		np $n generate "$@" --out "$name.np$n.h5" >out.log 2>&1 ||
			{ fail "$name: $n ranks (exit $?)"; cat out.log; continue; }
		same "$name.1.h5" "$name.np$n.h5"
		# the summary is rank 0's alone
		[ "$(grep -c 'wrote ' out.log)" = 1 ] || { fail "$name: $n ranks: summary count"; cat out.log; }
	done
}

# 13 samples over 2 and 3 ranks: uneven ranges and several rounds each
# (each mpirun costs about 2 s of start-up: the cases are few)
check_pde darcy "1 2 3" darcy --samples 13 --res 16 --fine-res 31 --seed 5
check_pde ns "2" ns --samples 13 --res 16 --fine-res 32 --t-final 1 --seed 6
check_pde burgers "3" burgers --samples 13 --res 64 --fine-res 256 --t-final 0.2 --seed 7
# fewer samples than ranks: rank 2 computes nothing
check_pde few "3" burgers --samples 2 --res 64 --fine-res 256 --t-final 0.2

# every rank prints the agreed message itself (tagged lines [1,0] and [1,1])
both_say() {
	for r in 0 1; do
		grep -q ",$r]<stderr>:pno generate: .*$1" err.log ||
			{ fail "rank $r does not say '$1'"; cat err.log; }
	done
}

# rank 0 alone can see its output directory is missing
np 2 generate darcy --samples 4 --res 16 --fine-res 31 --out "$DIR/missing/x.h5" >err.log 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "missing directory: exit $rc (124: hang)"
both_say "rank 0: cannot write $DIR/missing/x.h5: directory $DIR/missing is missing"

# rank 0 alone checks that the output exists
np 2 generate darcy --samples 4 --res 16 --fine-res 31 --out darcy.1.h5 >err.log 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "existing output: exit $rc"
both_say "rank 0: darcy.1.h5 exists"

# a solver failure (every sample) ends every rank; nothing is written
np 2 generate darcy --samples 4 --res 16 --fine-res 31 --tol 1e-30 --out tol.h5 >err.log 2>&1
rc=$?
[ $rc -eq 1 ] || fail "solver failure: exit $rc, expected 1"
both_say "conjugate gradients did not converge"
ls tol.h5* >/dev/null 2>&1 && fail "solver failure left $(ls tol.h5*)"

# rank 1 alone is interrupted (SIGTERM to that process only, once rank 0
# has opened its temporary file): every rank stops with status 130
np 2 generate darcy --samples 400 --res 64 --fine-res 253 --out sig.h5 >err.log 2>&1 &
job=$!
i=0
while [ $i -lt 300 ] && ! ls sig.h5.tmp.* >/dev/null 2>&1; do
	sleep 0.1
	i=$((i + 1))
done
sent=0
for pid in $(pgrep -f "generate darcy --samples 400 --res 64 --fine-res 253 --out sig.h5"); do
	if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
		kill -TERM "$pid" && sent=1
	fi
done
wait $job
rc=$?
[ $sent = 1 ] || fail "interrupt: rank 1 not found"
[ $rc -eq 130 ] || { fail "interrupt: exit $rc, expected 130"; cat err.log; }
both_say "interrupted: rank 1: darcy: cancelled after"
ls sig.h5* >/dev/null 2>&1 && fail "interrupt left $(ls sig.h5*)"

[ $fails -eq 0 ] && echo "mpi_gen: all checks passed"
exit $((fails > 0))
