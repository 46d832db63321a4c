#!/usr/bin/env bash
# Cut a photo into overlapping tiles, process every tile on its own, stitch the tiles back with a
# Hann-weighted mean, and look at the result.
#
#   bash examples/walkthrough.sh [WORKDIR]      # default: a new temporary folder
#
# Uses `swt` and `python` from PATH (override with SWT=... PYTHON=...); needs Pillow for the previews
# (pip install "swt-cli[preview]") and h5py (a dependency of swt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SWT=${SWT:-swt}
PYTHON=${PYTHON:-python}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/swt-walkthrough.XXXXXX")}
mkdir -p "$WORK"
cd "$WORK"
echo "== working in $WORK"

# The photo: one RGB image, shape (1, 3, 112, 96), float32 in [0, 1]. Add noise to have something to fix.
"$PYTHON" "$HERE/denoise.py" noise "$HERE/image.npy" noisy.npy --sigma 0.15 --seed 0

echo "== 1. plan: tiles of 32x32 every 16 pixels, 8 pixels of padding"
"$SWT" plan --output-size 112,96 --kernel 32 --stride 16 --padding 8

echo "== 2. unfold: (1, 3, 112, 96) -> tiles (1, 3, 7, 6, 32, 32); the file records the geometry"
"$SWT" unfold noisy.npy tiles.h5 --kernel 32 --stride 16 --padding 8 --quiet
"$SWT" info tiles.h5

echo "== 3. process every tile on its own (a small Gaussian blur in NumPy, zeros past the tile: see denoise.py)"
"$PYTHON" "$HERE/denoise.py" tiles tiles.h5 denoised.h5

echo "== 4. fold the tiles back: MegEngine's sum, the plain mean, the Hann-weighted mean"
"$SWT" fold denoised.h5 summed.npy --quiet
"$SWT" fold denoised.h5 mean.npy --reduce mean --quiet
"$SWT" fold denoised.h5 blended.npy --reduce mean --weight hann --quiet

echo "== 5. how close each is to the clean photo (higher is better); whole.npy blurs the whole image at once"
"$PYTHON" "$HERE/denoise.py" whole noisy.npy whole.npy
"$PYTHON" "$HERE/denoise.py" compare "$HERE/image.npy" noisy.npy whole.npy mean.npy blended.npy

echo "== 6. previews: before and after, and how many tiles cover each pixel"
"$SWT" preview "$HERE/image.npy" original.png
"$SWT" preview noisy.npy before.png
"$SWT" preview summed.npy summed.png      # the sum is brighter where more tiles overlap
"$SWT" preview mean.npy mean.png         # seams: the tiles' dark edges average in
"$SWT" preview blended.npy after.png      # no seams
"$SWT" preview tiles.h5 coverage.png --coverage

echo "== 7. the same as one shell pipeline (a pipe records no geometry: give it to fold)"
"$SWT" unfold noisy.npy - -k 32 -s 16 -p 8 --quiet \
  | "$PYTHON" "$HERE/denoise.py" tiles - - \
  | "$SWT" fold - piped.npy -k 32 -s 16 -p 8 -o 112,96 --reduce mean --weight hann --quiet
"$PYTHON" - <<'PY'
import numpy as np
assert np.allclose(np.load("piped.npy"), np.load("blended.npy"), atol=1e-6), "the pipe and the files differ"
print("piped.npy equals blended.npy")
PY

echo "== done: the PNGs are in $WORK"
ls "$WORK"/*.png
