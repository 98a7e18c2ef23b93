#!/bin/sh
# make demo: generate the built-in learnable problem (the periodic heat
# operator u0 -> u(T) on Gaussian random fields, exact in Fourier space),
# train an FNO on it in 1D and in 2D, print the loss falling and the test
# relative L2 error, save the models. Under a minute on 2 cores.
set -eu
PNO=${1:-build/pno}
OUT=${PNO_DEMO_DIR:-demo-out}
mkdir -p "$OUT"

echo "== 1D: generating the heat-operator dataset (1000 samples, 128 points)"
"$PNO" generate heat --dim 1 --samples 1000 --res 128 --seed 1 \
	--out "$OUT/heat1d.h5" --force
echo "== 1D: training an FNO (width 32, 16 modes, 4 layers, 40 epochs)"
"$PNO" train --data "$OUT/heat1d.h5" --out "$OUT/heat1d_fno.safetensors" \
	--width 32 --modes 16 --layers 4 --epochs 40 --batch 20 --lr 3e-3 \
	--step-size 10 --gamma 0.5 --seed 1 --force
echo
echo "== 2D: generating the heat-operator dataset (600 samples, 32x32)"
"$PNO" generate heat --dim 2 --samples 600 --res 32 --seed 2 \
	--out "$OUT/heat2d.h5" --force
echo "== 2D: training an FNO (width 24, 8x8 modes, 4 layers, 25 epochs)"
"$PNO" train --data "$OUT/heat2d.h5" --out "$OUT/heat2d_fno.safetensors" \
	--width 24 --modes 8 --layers 4 --epochs 25 --batch 20 --lr 3e-3 \
	--step-size 8 --gamma 0.5 --seed 1 --force
echo
"$PNO" info "$OUT/heat2d_fno.safetensors"
