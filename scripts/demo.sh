#!/bin/sh
# make demo: generate the built-in learnable problem (the periodic heat
# operator u0 -> u(T) on Gaussian random fields, 1D), train an FNO on it,
# print the loss falling and the test relative L2 error, save the model.
set -eu
PNO=${1:-build/pno}
OUT=${PNO_DEMO_DIR:-demo-out}
mkdir -p "$OUT"

echo "== generating the 1D heat-operator dataset"
"$PNO" generate heat --dim 1 --samples 1000 --res 128 --seed 1 \
	--out "$OUT/heat1d.h5" --force
echo
echo "== training an FNO (width 32, 16 modes, 4 layers)"
"$PNO" train --data "$OUT/heat1d.h5" --out "$OUT/heat1d_fno.safetensors" \
	--width 32 --modes 16 --layers 4 --epochs 40 --batch 20 --lr 3e-3 \
	--step-size 10 --gamma 0.5 --seed 1 --force
echo
"$PNO" info "$OUT/heat1d_fno.safetensors"
