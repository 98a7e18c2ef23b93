#!/bin/sh
# Install the Debian packages pno needs to build and test. Idempotent: does
# nothing when everything is present. Needs root (or sudo) only to install.
set -eu

PKGS="build-essential cmake pkg-config libfftw3-dev libopenblas-openmp-dev
libhdf5-dev hdf5-tools libjansson-dev libcmocka-dev libsodium-dev
libmicrohttpd-dev libcurl4-openssl-dev libplplot-dev plplot-driver-cairo
libpng-dev libopenmpi-dev openmpi-bin clang libclang-rt-14-dev libomp-dev"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "deps: missing packages:$missing; run as root or install sudo" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
