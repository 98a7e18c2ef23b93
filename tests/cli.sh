#!/bin/sh
# Command-line behaviour: exit status 2 for usage errors, 1 for runtime
# errors, a message naming what is wrong, and nothing written half.
# usage: cli.sh PNO_BINARY WORKDIR
set -u
PNO=$1
DIR=$2
rm -rf "$DIR"
mkdir -p "$DIR"
fails=0
passes=0

# expect STATUS PATTERN -- command...: exit status and a stderr pattern
expect() {
	want=$1
	pat=$2
	shift 2
	"$@" >"$DIR/out" 2>"$DIR/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL: '$*' exited $got, expected $want"
		sed 's/^/  stderr: /' "$DIR/err"
		fails=$((fails + 1))
	elif [ -n "$pat" ] && ! grep -q -- "$pat" "$DIR/err" "$DIR/out"; then
		echo "FAIL: '$*' output lacks '$pat'"
		sed 's/^/  stderr: /' "$DIR/err"
		fails=$((fails + 1))
	else
		passes=$((passes + 1))
	fi
}

D="$DIR/heat.h5"
M="$DIR/model.safetensors"

expect 2 "usage" "$PNO"
expect 2 "unknown command" "$PNO" frobnicate
expect 0 "commands" "$PNO" --help
expect 0 "--width" "$PNO" train --help
expect 0 "--samples" "$PNO" generate --help

# generate
expect 2 "unknown PDE" "$PNO" generate plasma --out "$D"
expect 2 "--samples" "$PNO" generate heat --samples 0 --out "$D"
expect 2 "--res" "$PNO" generate heat --res -3 --out "$D"
expect 2 "--kappa" "$PNO" generate heat --kappa 0 --out "$D"
expect 2 "not writable" "$PNO" generate heat --samples 4 --out /nonexistent/dir/x.h5
expect 2 "required" "$PNO" generate heat --samples 4
expect 0 "" "$PNO" generate heat --samples 60 --res 32 --seed 1 --out "$D" --quiet
[ -f "$D" ] || { echo "FAIL: $D not written"; fails=$((fails + 1)); }
ls "$DIR" | grep -q tmp && { echo "FAIL: temporary file left"; fails=$((fails + 1)); }
expect 2 "exists" "$PNO" generate heat --samples 4 --res 32 --out "$D"
expect 0 "defaults" "$PNO" generate --help
expect 0 "--fine-res" "$PNO" generate darcy --help
expect 2 "name the PDE" "$PNO" generate
expect 2 "--dim" "$PNO" generate heat --dim 4 --out "$DIR/h4.h5"
expect 2 "--dt-out" "$PNO" generate wave --t-final 1 --dt-out 0.3 --out "$DIR/w.h5"
expect 0 "" "$PNO" generate wave --samples 3 --res 16 --t-final 0.5 --dt-out 0.25 --out "$DIR/w.h5" --quiet
expect 0 "" "$PNO" generate heat --dim 3 --samples 2 --res 8 --out "$DIR/h3.h5" --quiet
[ -f "$DIR/w.h5" ] && [ -f "$DIR/h3.h5" ] || { echo "FAIL: wave/heat3d not written"; fails=$((fails + 1)); }

# per-PDE validation: exit 2, the flag named, nothing written
expect 2 "does not divide" "$PNO" generate navier-stokes --res 60 --out "$DIR/ns.h5"
expect 2 "--nu" "$PNO" generate navier-stokes --nu 0 --out "$DIR/ns.h5"
expect 2 "--nu" "$PNO" generate ns --nu -1e-3 --out "$DIR/ns.h5"
expect 0 "" "$PNO" generate ns --samples 2 --res 16 --fine-res 32 --t-final 0.5 --dt-out 0.25 --out "$DIR/ns.h5" --quiet
[ -f "$DIR/ns.h5" ] || { echo "FAIL: ns not written"; fails=$((fails + 1)); }

expect 2 "does not divide" "$PNO" generate darcy --res 50 --out "$DIR/d.h5"
expect 2 "--fine-res" "$PNO" generate darcy --fine-res 2000 --out "$DIR/d.h5"
expect 2 "does not divide" "$PNO" generate burgers --res 1000 --out "$DIR/b.h5"
expect 2 "--nu" "$PNO" generate burgers --nu 0 --out "$DIR/b.h5"
expect 2 "--t-final" "$PNO" generate burgers --t-final 1 --dt-out 0.3 --out "$DIR/b.h5"
expect 2 "--dt" "$PNO" generate ks --dt 0.3 --out "$DIR/k.h5"
expect 2 "--res" "$PNO" generate ks --res -4 --out "$DIR/k.h5"
expect 2 "--res" "$PNO" generate ks --res 7 --out "$DIR/k.h5"
expect 2 "unknown option" "$PNO" generate darcy --nu 0.1 --out "$DIR/d.h5"
for f in d b k; do
	[ -f "$DIR/$f.h5" ] && { echo "FAIL: $f.h5 written by a refused run"; fails=$((fails + 1)); }
done
expect 0 "" "$PNO" generate darcy --samples 3 --res 9 --fine-res 33 --out "$DIR/d.h5" --quiet
expect 0 "" "$PNO" generate burgers --samples 2 --res 32 --fine-res 128 --t-final 0.1 --out "$DIR/b.h5" --quiet
expect 0 "" "$PNO" generate kuramoto-sivashinsky --samples 2 --res 64 --t-final 4 --out "$DIR/k.h5" --quiet
expect 0 "darcy" "$PNO" train --data "$DIR/d.h5" --out "$DIR/dm.safetensors" --width 4 --modes 3 --layers 1 --epochs 1 --batch 1 --ntrain 1 --nval 1 --ntest 1 --threads 1

# an interrupted run leaves nothing (exit 130), neither file nor temporary
"$PNO" generate heat --dim 2 --samples 5000000 --res 32 --threads 1 --out "$DIR/int.h5" 2>"$DIR/err" &
pid=$!
sleep 1
kill -INT $pid
wait $pid
st=$?
if [ "$st" -ne 130 ] || ! grep -q "interrupted" "$DIR/err"; then
	echo "FAIL: interrupted generate exited $st"; sed 's/^/  stderr: /' "$DIR/err"; fails=$((fails + 1))
else
	passes=$((passes + 1))
fi
ls "$DIR" | grep -q "int.h5" && { echo "FAIL: interrupted run left a file"; fails=$((fails + 1)); }

# ... also in the middle of a long sample (the solver polls the flag)
"$PNO" generate ns --samples 1 --res 64 --fine-res 64 --t-final 100000 --dt-out 100 --threads 1 --out "$DIR/int2.h5" 2>"$DIR/err" &
pid=$!
sleep 1
t0=$(date +%s)
kill -INT $pid
wait $pid
st=$?
t1=$(date +%s)
if [ "$st" -ne 130 ] || [ $((t1 - t0)) -gt 10 ]; then
	echo "FAIL: interrupted long sample exited $st after $((t1 - t0)) s"; sed 's/^/  stderr: /' "$DIR/err"; fails=$((fails + 1))
else
	passes=$((passes + 1))
fi
ls "$DIR" | grep -q "int2.h5" && { echo "FAIL: interrupted run left a file"; fails=$((fails + 1)); }

# train: usage errors
expect 2 "--width" "$PNO" train --data "$D" --out "$M" --width 0
expect 2 "--lr" "$PNO" train --data "$D" --out "$M" --lr abc
expect 2 "unknown option" "$PNO" train --data "$D" --out "$M" --bogus 3
expect 2 "needs a value" "$PNO" train --data "$D" --out "$M" --epochs
expect 2 "no such file" "$PNO" train --data "$DIR/missing.h5" --out "$M"
expect 2 "too large" "$PNO" train --data "$D" --out "$M" --modes 40
expect 2 "unknown --model" "$PNO" train --data "$D" --out "$M" --model gpt
expect 2 "does not fit" "$PNO" train --data "$D" --out "$M" --ntrain 100
[ -f "$M" ] && { echo "FAIL: model written by a failed run"; fails=$((fails + 1)); }

# train and inspect
expect 0 "test relative L2" "$PNO" train --data "$D" --out "$M" --width 8 --modes 6 --layers 2 --epochs 2 --batch 10 --threads 1
expect 0 "width" "$PNO" info "$M"
expect 0 "training input statistics for drift monitoring" "$PNO" info "$M"
expect 2 "exists" "$PNO" train --data "$D" --out "$M" --epochs 1

# probabilistic methods: train, inspect, predict
for mdl in pno-d pno-r mc-dropout vfno deeponet ensemble; do
	extra=""
	[ $mdl = ensemble ] && extra="--members 2"
	expect 0 "test relative L2" "$PNO" train --data "$D" --out "$DIR/$mdl.safetensors" --model $mdl $extra --width 8 --modes 6 --layers 2 --epochs 1 --batch 10 --threads 1
	expect 0 "$mdl" "$PNO" info "$DIR/$mdl.safetensors"
	expect 0 "($mdl)" "$PNO" predict --model "$DIR/$mdl.safetensors" --data "$D" --index 1 --samples 8 --out "$DIR/pred_$mdl.h5"
done
expect 0 "relative L2 of the mean" "$PNO" predict --model "$DIR/pno-d.safetensors" --data "$D" --index 3 --samples 20 --out "$DIR/pred.h5"
expect 0 "" "$PNO" predict --model "$DIR/pno-r.safetensors" --data "$D" --index 3 --samples 20 --keep-samples --out "$DIR/pred_r.h5" --quiet
expect 2 "--samples" "$PNO" predict --model "$DIR/pno-d.safetensors" --data "$D" --samples 0 --out "$DIR/p2.h5"
expect 2 "--quantiles" "$PNO" predict --model "$DIR/pno-d.safetensors" --data "$D" --quantiles 0.5,1.5 --out "$DIR/p2.h5"
expect 2 "--index" "$PNO" predict --model "$DIR/pno-d.safetensors" --data "$D" --index 100000 --out "$DIR/p2.h5"
expect 2 "exists" "$PNO" predict --model "$DIR/pno-d.safetensors" --data "$D" --out "$DIR/pred.h5"
expect 2 "--dropout" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model pno-d --dropout 1
expect 2 "--dropout" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model mc-dropout --dropout -0.1
expect 2 "applies to --model pno-r only" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model fno --loss crps
expect 2 "energy or crps" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model pno-r --loss brier
expect 0 "" "$PNO" train --data "$D" --out "$DIR/e1.safetensors" --model ensemble --members 2 --width 8 --modes 6 --layers 2 --epochs 1 --batch 10 --threads 1 --checkpoint "$DIR/eck" --quiet
expect 0 "resumed" "$PNO" train --data "$D" --out "$DIR/e2.safetensors" --model ensemble --members 2 --width 8 --modes 6 --layers 2 --epochs 2 --batch 10 --threads 1 --resume "$DIR/eck"
expect 2 "member0" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model ensemble --members 2 --width 8 --modes 6 --layers 2 --epochs 2 --batch 10 --threads 1 --resume "$DIR/nock"
expect 0 "" "$PNO" train --data "$D" --out "$DIR/v1.safetensors" --model vfno --width 8 --modes 6 --layers 2 --epochs 1 --batch 10 --threads 1 --checkpoint "$DIR/vck" --quiet
expect 0 "resumed" "$PNO" train --data "$D" --out "$DIR/v2.safetensors" --model vfno --width 8 --modes 6 --layers 2 --epochs 2 --batch 10 --threads 1 --resume "$DIR/vck"
expect 2 "unknown --model" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model gaussian-process
expect 2 "applies to" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model fno --dropout 0.2
expect 2 "all be equal" "$PNO" train --data "$D" --out "$DIR/x.safetensors" --model pno-d --dropout 0 --fourier-dropout 0
expect 1 "pred.h5" "$PNO" predict --model "$DIR/pred.h5" --data "$D" --out "$DIR/p3.h5"
[ -f "$DIR/p2.h5" ] || [ -f "$DIR/x.safetensors" ] && { echo "FAIL: refused run wrote a file"; fails=$((fails + 1)); }

# eval and calibrate
for mdl in pno-d pno-r deeponet ensemble vfno; do
	expect 0 "relative L2" "$PNO" eval --model "$DIR/$mdl.safetensors" --data "$D" --samples 10 --json "$DIR/eval_$mdl.json"
	grep -q '"schema": "pno-eval/1"' "$DIR/eval_$mdl.json" || { echo "FAIL: eval_$mdl.json"; fails=$((fails + 1)); }
done
mkdir -p "$DIR/plots"
expect 0 "" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$D" --samples 10 --plots "$DIR/plots" --quiet
for f in fields reliability coverage spectrum; do
	[ -s "$DIR/plots/$f.png" ] || { echo "FAIL: $f.png not written"; fails=$((fails + 1)); }
done
expect 2 "not a writable directory" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$D" --plots "$DIR/no/such/dir"
expect 0 "closed form" "$PNO" eval --model "$DIR/pno-r.safetensors" --data "$D" --samples 10
expect 0 "test split, 6 inputs" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$D" --samples 4
expect 2 "--split" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$D" --split weird
expect 2 "trained on heat1d data; .* holds wave2d" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$DIR/w.h5"
expect 0 "" "$PNO" generate heat --samples 12 --res 32 --seed 7 --out "$DIR/heat_other.h5" --quiet
expect 0 "all split, 12 inputs" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$DIR/heat_other.h5" --samples 4
expect 2 "use --split all" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$DIR/heat_other.h5" --split test
expect 2 "exists" "$PNO" eval --model "$DIR/pno-d.safetensors" --data "$D" --json "$DIR/eval_pno-d.json"
expect 0 "" "$PNO" train --data "$D" --out "$DIR/noval.safetensors" --model pno-r --nval 0 --width 8 --modes 6 --layers 2 --epochs 1 --batch 10 --threads 1 --quiet
expect 2 "split of .* is empty" "$PNO" calibrate --model "$DIR/noval.safetensors" --data "$D"
expect 2 "deterministic" "$PNO" calibrate --model "$DIR/deeponet.safetensors" --data "$D"
expect 2 "--alpha" "$PNO" calibrate --model "$DIR/pno-d.safetensors" --data "$D" --alpha 1.5
expect 2 "too few" "$PNO" calibrate --model "$DIR/pno-d.safetensors" --data "$D" --alpha 0.01
cp "$DIR/pno-r.safetensors" "$DIR/cal.safetensors"
expect 0 "conformal scale" "$PNO" calibrate --model "$DIR/cal.safetensors" --data "$D" --alpha 0.2 --samples 10
expect 0 "calibrated (marginal, alpha 0.2)" "$PNO" eval --model "$DIR/cal.safetensors" --data "$D" --samples 10 --json "$DIR/eval_cal.json"
grep -q '"metrics_calibrated": {' "$DIR/eval_cal.json" || { echo "FAIL: eval_cal.json lacks calibrated metrics"; fails=$((fails + 1)); }
expect 0 "function-wise" "$PNO" calibrate --model "$DIR/cal.safetensors" --data "$DIR/heat_other.h5" --alpha 0.2 --delta 0.2 --samples 10
expect 0 "removed" "$PNO" calibrate --model "$DIR/cal.safetensors" --remove
expect 0 "" "$PNO" eval --model "$DIR/cal.safetensors" --data "$D" --samples 10 --json "$DIR/eval_cal2.json" --quiet
grep -q '"metrics_calibrated": null' "$DIR/eval_cal2.json" || { echo "FAIL: calibration not removed"; fails=$((fails + 1)); }

# quality gates over a recorded evaluation
printf '{"max_rel_l2": 100, "coverage90": [0, 1]}' >"$DIR/gates_ok.json"
printf '{"max_rel_l2": 0.0001}' >"$DIR/gates_strict.json"
printf '{"max_crps_regression": 0.0}' >"$DIR/gates_reg.json"
printf '{"max_rel_l2": 0.1, "bogus": 1}' >"$DIR/gates_bad.json"
cp "$DIR/pno-r.safetensors" "$DIR/g.safetensors"
expect 1 "no evaluation recorded" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_ok.json"
expect 0 "recorded the evaluation" "$PNO" eval --model "$DIR/g.safetensors" --data "$D" --samples 10 --record
expect 0 "PASS  rel_l2" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_ok.json"
expect 1 "FAIL  rel_l2" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_strict.json"
expect 0 "PASS  crps_regression" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_reg.json" --baseline "$DIR/g.safetensors"
expect 1 "no recorded evaluation" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_reg.json" --baseline "$DIR/pno-r.safetensors"
expect 2 "unknown key \"bogus\"" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/gates_bad.json"
expect 2 "no such file" "$PNO" gate --model "$DIR/g.safetensors" --config "$DIR/nogates.json"
expect 0 "training input statistics" "$PNO" info "$DIR/g.safetensors"
grep -q "evaluation" "$DIR/out" || { echo "FAIL: info lacks the evaluation"; fails=$((fails + 1)); }

# rollout: a one-step model trained on every pair (t, t + 1)
R="$DIR/heat_series.h5"
RM="$DIR/r1.safetensors"
expect 0 "" "$PNO" generate heat --samples 12 --res 32 --t-final 0.2 --dt-out 0.02 --seed 3 --out "$R" --quiet
expect 2 "exclude each other" "$PNO" train --data "$R" --out "$DIR/x.safetensors" --pairs-step 1 --t-out 3
expect 2 "pairs step 11 needs more" "$PNO" train --data "$R" --out "$DIR/x.safetensors" --pairs-step 11
expect 2 "--pairs-step" "$PNO" train --data "$R" --out "$DIR/x.safetensors" --pairs-step 0
expect 2 "needs a time series" "$PNO" train --data "$DIR/d.h5" --out "$DIR/x.safetensors" --pairs-step 1
expect 2 "does not fit the 12 trajectories" "$PNO" train --data "$R" --out "$DIR/x.safetensors" --pairs-step 1 --ntrain 12
expect 0 "split in trajectories 10 / 1 / 1" "$PNO" train --data "$R" --out "$RM" --model pno-r --pairs-step 1 --width 8 --modes 6 --layers 2 --epochs 1 --batch 10 --threads 1
expect 0 "test split, 10 inputs" "$PNO" eval --model "$RM" --data "$R" --samples 4
expect 0 "conformal scale" "$PNO" calibrate --model "$RM" --data "$R" --alpha 0.5 --samples 4
expect 0 "calibrated" "$PNO" eval --model "$RM" --data "$R" --samples 4
expect 0 "removed" "$PNO" calibrate --model "$RM" --remove
expect 0 "rel_unc" "$PNO" rollout --model "$RM" --data "$R" --steps 5 --samples 8 --first 10 --json "$DIR/roll.json" --threads 1
grep -q '"per_step"' "$DIR/roll.json" && grep -q '"err_q99"' "$DIR/roll.json" || { echo "FAIL: rollout JSON lacks the per-step metrics"; fails=$((fails + 1)); }
expect 0 "" "$PNO" rollout --model "$RM" --data "$R" --steps 2 --samples 2 --trajectories 1 --quiet
expect 2 "required" "$PNO" rollout --model "$RM" --data "$R"
expect 2 "exists" "$PNO" rollout --model "$RM" --data "$R" --steps 2 --json "$DIR/roll.json"
expect 2 "goes past the last step 10" "$PNO" rollout --model "$RM" --data "$R" --steps 4 --start 7
expect 2 "--steps" "$PNO" rollout --model "$RM" --data "$R" --steps 0
expect 2 "--samples" "$PNO" rollout --model "$RM" --data "$R" --steps 2 --samples 0
expect 2 "--threshold" "$PNO" rollout --model "$RM" --data "$R" --steps 2 --threshold -1
expect 2 "trajectory 12 does not exist" "$PNO" rollout --model "$RM" --data "$R" --steps 2 --first 12
expect 2 "not a time series" "$PNO" rollout --model "$RM" --data "$DIR/d.h5" --steps 1
expect 2 "is 2D" "$PNO" rollout --model "$DIR/dm.safetensors" --data "$R" --steps 1
expect 2 "no such file" "$PNO" rollout --model "$DIR/none.safetensors" --data "$R" --steps 1
expect 0 "--threshold" "$PNO" rollout --help

# runtime errors: corrupt inputs
head -c 100 "$M" >"$DIR/trunc.safetensors"
expect 1 "trunc.safetensors" "$PNO" info "$DIR/trunc.safetensors"
expect 1 "" "$PNO" train --data "$M" --out "$DIR/m2.safetensors"
printf 'not an hdf5 file' >"$DIR/bad.h5"
expect 1 "bad.h5" "$PNO" train --data "$DIR/bad.h5" --out "$DIR/m2.safetensors"
[ -f "$DIR/m2.safetensors" ] && { echo "FAIL: model written by a failed run"; fails=$((fails + 1)); }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
