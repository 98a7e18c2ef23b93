#!/bin/sh
# Step time of data-parallel training on 1 and 2 ranks (1 thread each)
# and on 1 rank with 2 threads, the scaling efficiency t1 / (2 t2), and the
# work efficiency: CPU seconds per step of 1 rank over those of 2 ranks
# summed (what the split and the allreduce cost, whatever else runs on the
# machine; wall times are only meaningful on otherwise idle cores).
# usage: bench/bench_mpi.sh [BUILD_DIR] [STEPS]
set -eu
B=${1:-build}
STEPS=${2:-30}
MPIRUN="mpirun --oversubscribe --allow-run-as-root --bind-to none"
export OMP_NUM_THREADS=1
r1=$("$B/bench_mpi" "$STEPS" 1)
r2=$($MPIRUN -np 2 "$B/bench_mpi" "$STEPS" 1)
r1t2=$(OMP_NUM_THREADS=2 "$B/bench_mpi" "$STEPS" 2)
echo "$r1"
echo "$r2"
echo "$r1t2"
t1=$(echo "$r1" | sed 's/.*step \([0-9.]*\) s.*/\1/')
t2=$(echo "$r2" | sed 's/.*step \([0-9.]*\) s.*/\1/')
t12=$(echo "$r1t2" | sed 's/.*step \([0-9.]*\) s.*/\1/')
c1=$(echo "$r1" | sed 's/.*cpu.step \([0-9.]*\) s.*/\1/')
c2=$(echo "$r2" | sed 's/.*cpu.step \([0-9.]*\) s.*/\1/')
awk -v a="$t1" -v b="$t2" -v c="$t12" -v p="$c1" -v q="$c2" 'BEGIN {
	printf "2 ranks: speed-up %.2f, scaling efficiency %.0f%%; ", a / b, 100 * a / (2 * b)
	printf "1 rank x 2 threads: speed-up %.2f\n", a / c
	printf "work efficiency (CPU time, 1 rank / 2 ranks summed): %.0f%%\n", 100 * p / q }'
