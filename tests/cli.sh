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
expect 2 "exists" "$PNO" train --data "$D" --out "$M" --epochs 1

# runtime errors: corrupt inputs
head -c 100 "$M" >"$DIR/trunc.safetensors"
expect 1 "trunc.safetensors" "$PNO" info "$DIR/trunc.safetensors"
expect 1 "" "$PNO" train --data "$M" --out "$DIR/m2.safetensors"
printf 'not an hdf5 file' >"$DIR/bad.h5"
expect 1 "bad.h5" "$PNO" train --data "$DIR/bad.h5" --out "$DIR/m2.safetensors"
[ -f "$DIR/m2.safetensors" ] && { echo "FAIL: model written by a failed run"; fails=$((fails + 1)); }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
