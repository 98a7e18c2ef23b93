#!/bin/sh
# make demo: the benchmark pipeline at small scale. `pno bench` with
# bench/configs/quick.json generates a Darcy dataset (32x32), trains FNO,
# PNO-D and MC dropout on it (two seeds each, two cells at a time),
# evaluates each on the test split (rel. L2, NLL, CRPS, coverage, ...),
# prints the Markdown table and writes results.{json,csv,md,tex} and the
# figures (fields, reliability, coverage) under demo-out/bench. Under 10
# minutes on 2 cores. Rerunning reuses every finished cell; set
# PNO_DEMO_FORCE=1 to start over.
set -eu
PNO=${1:-build/pno}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${PNO_DEMO_DIR:-demo-out}
JOBS=${PNO_DEMO_JOBS:-2}
FORCE=
[ "${PNO_DEMO_FORCE:-0}" = 1 ] && FORCE=--force
mkdir -p "$OUT"

echo "== pno bench --config bench/configs/quick.json --out $OUT/bench --jobs $JOBS"
start=$(date +%s)
"$PNO" bench --config "$ROOT/bench/configs/quick.json" --out "$OUT/bench" \
	--jobs "$JOBS" $FORCE
echo
echo "== done in $(( $(date +%s) - start )) s: reports in $OUT/bench" \
	"(results.md, results.json, results.csv, results.tex), figures in" \
	"$OUT/bench/plots, each cell's log in $OUT/bench/cells"
ls "$OUT/bench/plots" 2>/dev/null | sed 's/^/   /'
