"""Remake the example data from examples/grace_hopper.png.

- examples/image.npy: the photo as one RGB image, shape (1, 3, 112, 96), float32 in [0, 1];
- examples/tiles.h5: overlapping 16x16 tiles of it (stride 8, padding 4), shape (1, 3, 14, 12, 16, 16),
  made by `swt unfold`, which records the geometry so `swt fold examples/tiles.h5 out.h5` needs no flags.

The photo is Grace Hopper's US Navy portrait (public domain), as shipped in matplotlib's sample data,
scaled to 96x112. Run from anywhere: python examples/make_examples.py (needs Pillow: pip install "swt-cli[preview]").
"""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent


def main():
    rgb = np.asarray(Image.open(HERE / "grace_hopper.png").convert("RGB"), dtype=np.float32) / 255.0
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])  # (H, W, 3) -> (1, 3, H, W)
    np.save(HERE / "image.npy", image)
    subprocess.run(
        [sys.executable, "-m", "swt_cli", "unfold", "image.npy", "tiles.h5",
         "--kernel", "16", "--stride", "8", "--padding", "4", "--compression", "gzip", "--overwrite", "--quiet"],
        check=True,
        cwd=HERE,  # relative names, so the recorded command line holds no machine's paths
    )
    print(f"wrote {HERE / 'image.npy'} {image.shape} and {HERE / 'tiles.h5'}")


if __name__ == "__main__":
    main()
