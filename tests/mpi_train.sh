#!/bin/sh
# Data-parallel tests under mpirun with 2 ranks (ctest label "mpi").
# usage: mpi_train.sh MPIEXEC MPI_TRAIN PNO TMPDIR
# Every run is under `timeout`: a rank that hangs fails the test.
set -u
MPIEXEC=$1 T=$2 PNO=$3 TMP=$4
mkdir -p "$TMP"
# root in containers/CI needs --allow-run-as-root; two ranks on fewer cores
MPIRUN="$MPIEXEC -np 2 --oversubscribe --allow-run-as-root"
export OMP_NUM_THREADS=1
fail=0

run() {	# name, command...
	name=$1
	shift
	if timeout 120 "$@" >"$TMP/$name.out" 2>&1; then
		echo "ok   $name"
	else
		echo "FAIL $name (status $?):"
		sed 's/^/    /' "$TMP/$name.out"
		fail=1
	fi
}

run collectives $MPIRUN "$T" collectives
exit $fail
