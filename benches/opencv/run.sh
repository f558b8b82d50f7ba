#!/usr/bin/env bash
# OpenCV's classical pipeline against spheroseg's builtin on the same synthetic images, each on one
# thread with decoding included. Not part of CI: a person runs it and reads the table.
#
#   benches/opencv/run.sh [DIR]
#
# Makes (once) a venv with pinned opencv-python-headless and numpy, writes the images with
# `cargo bench --bench opencv -- --write DIR` (DIR: a new temporary directory unless given),
# times spheroseg on them (`--time DIR`, release build), then OpenCV, and prints both.
# SPHEROSEG_BENCH_REPEATS sets the runs per image (default 5).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SPHEROSEG_OPENCV_VENV:-$HOME/.cache/spheroseg-opencv-venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Pinned: numpy 2.4 is the newest that still installs on Python 3.11.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "numpy==2.4.6" "opencv-python-headless==5.0.0.93"

dir="${1:-$(mktemp -d -t spheroseg-opencv.XXXXXX)}"
cd "$root"
cargo bench --bench opencv -- --write "$dir"
cargo bench --bench opencv -- --time "$dir" > "$dir/spheroseg.csv"
OMP_NUM_THREADS=1 OPENCV_LOG_LEVEL=ERROR "$venv/bin/python" "$here/compare.py" "$dir" "$dir/spheroseg.csv"
echo "images and spheroseg.csv in $dir"
