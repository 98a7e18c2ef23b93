#!/bin/sh
# Load benchmark of pno serve with wrk (not a test): a 64x64 Darcy PNO
# (pno-r, width 32, 12 modes, 4 layers, trained briefly; throughput does
# not depend on how well it is trained), 32 samples per request, on
# loopback, with dynamic batching off and on. Prints requests/s and the
# p50 / p99 latency for each setting.
#
# usage: bench/bench_serve.sh [PNO_BIN] [WORKDIR]
#   env: DURATION (s, 15), CONNECTIONS (16), WRK_THREADS (2),
#        COMPUTE_THREADS (1), HTTP_THREADS (2)
set -eu
PNO=${1:-build/pno}
WORK=${2:-/tmp/pno_bench_serve}
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-16}
WRK_THREADS=${WRK_THREADS:-2}
COMPUTE_THREADS=${COMPUTE_THREADS:-1}
HTTP_THREADS=${HTTP_THREADS:-2}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }
mkdir -p "$WORK/repo/darcy/1"
MODEL="$WORK/repo/darcy/1/model.safetensors"
if [ ! -f "$MODEL" ]; then
	"$PNO" generate darcy --res 64 --fine-res 127 --samples 40 --seed 1 \
		--out "$WORK/darcy64.h5" --force --quiet
	"$PNO" train --data "$WORK/darcy64.h5" --out "$MODEL" --model pno-r \
		--width 32 --modes 12 --layers 4 --epochs 2 --batch 10 \
		--ntrain 30 --nval 5 --ntest 5 --force --quiet
fi

# one request body: a 64x64 input, 32 samples, mean/std/5%/95%
awk 'BEGIN {
	srand(7); printf "{\"parameters\":{\"num_samples\":32,\"seed\":1},";
	printf "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",";
	printf "\"shape\":[1,1,64,64],\"data\":[";
	for (i = 0; i < 4096; i++) printf "%s%.6f", i ? "," : "", (rand() < 0.5 ? 3 : 12);
	printf "]}]}";
}' > "$WORK/body.json"
cat > "$WORK/post.lua" <<LUA
local f = io.open("$WORK/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

run() {	# name max_batch delay_us
	pf="$WORK/port"
	rm -f "$pf"
	"$PNO" serve --repository "$WORK/repo" --auth false --port 0 --port-file "$pf" \
		--max-batch "$2" --max-queue-delay-us "$3" --max-samples 32 \
		--default-samples 32 --threads "$HTTP_THREADS" \
		--compute-threads "$COMPUTE_THREADS" --max-queue-size 256 \
		--log-level warning 2>"$WORK/serve_$1.log" &
	pid=$!
	i=0
	while [ ! -s "$pf" ]; do
		i=$((i + 1))
		[ $i -gt 300 ] && { echo "server did not start" >&2; kill $pid; exit 1; }
		sleep 0.1
	done
	port=$(cat "$pf")
	wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
		-s "$WORK/post.lua" "http://127.0.0.1:$port/v2/models/darcy/infer" \
		> "$WORK/wrk_$1.txt"
	batch=$(curl -s "http://127.0.0.1:$port/metrics" | awk '
		/^pno_batch_size_sum/ {s += $2} /^pno_batch_size_count/ {n += $2}
		END {if (n) printf "%.2f", s / n; else print "-"}')
	errors=$(curl -s "http://127.0.0.1:$port/metrics" | awk '
		/^pno_requests_total/ && !/code="200"/ {e += $2} END {print e + 0}')
	kill -TERM $pid
	wait $pid || true
	awk -v name="$1" -v batch="$batch" -v errors="$errors" '
		/Requests\/sec/ {rps = $2}
		$1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
		END {printf "%-13s %10s req/s  p50 %8s  p99 %8s  mean batch %s  non-200 %s\n",
			name, rps, p50, p99, batch, errors}' "$WORK/wrk_$1.txt"
}

echo "pno serve, darcy 64x64 pno-r, 32 samples/request, $CONNECTIONS connections, ${DURATION}s, $COMPUTE_THREADS compute thread(s)"
run batching_off 1 0
run batching_on 16 2000
