"""Helpers for walkthrough.sh: add noise to an image, denoise tiles one by one, compare results.

    python denoise.py noise IMAGE.npy NOISY.npy [--sigma 0.15] [--seed 0]
    python denoise.py tiles TILES.h5 OUT.h5        # or - - : a .npy stream from stdin to stdout
    python denoise.py whole IMAGE.npy OUT.npy      # the same filter on the whole image, for comparison
    python denoise.py compare REFERENCE.npy A.npy [B.npy ...]

The denoiser is deliberately simple and local: a Gaussian blur (sigma 0.8 pixels) of each tile on its
own, with zeros beyond the tile's edges as a convolutional network's padding would have. Near its edges
a tile's result is darker, so overlapping tiles disagree there: the plain mean shows that as seams, and
a Hann-weighted mean, which trusts the middle of each tile most, hides them.
Needs only NumPy (and h5py for .h5 tiles).
"""

import argparse
import sys

import numpy as np


def gaussian_blur(x, sigma=0.8):
    """Blur the last two axes of ``x`` with a separable Gaussian, zeros beyond the edges."""
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (-2, -1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad)
        n = x.shape[axis]
        x = sum(t * np.take(padded, range(i, i + n), axis=axis) for i, t in enumerate(taps))
    return x.astype(np.float32)


def cmd_noise(args):
    image = np.load(args.image)
    rng = np.random.default_rng(args.seed)
    np.save(args.out, (image + rng.normal(0, args.sigma, image.shape)).astype(np.float32))


def cmd_tiles(args):
    if args.tiles == "-":  # a pipe: .npy in, .npy out; each tile (the last two axes) blurred on its own
        stream = sys.stdin.buffer
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
        tiles = np.frombuffer(stream.read(), dtype).reshape(shape, order="F" if fortran else "C")
        np.lib.format.write_array(sys.stdout.buffer, gaussian_blur(tiles))
        return
    import h5py

    with h5py.File(args.tiles) as src, h5py.File(args.out, "w") as dst:
        windows = src["data"]
        out = dst.create_dataset("data", shape=windows.shape, dtype=np.float32)
        for key, value in windows.attrs.items():  # keep swt's record of the geometry: fold needs no flags
            out.attrs[key] = value
        for i in range(windows.shape[0]):  # one image's tiles at a time
            out[i] = gaussian_blur(windows[i])


def cmd_whole(args):
    np.save(args.out, gaussian_blur(np.load(args.image)))


def cmd_compare(args):
    reference = np.load(args.reference).astype(np.float64)
    for path in args.others:
        x = np.load(path).astype(np.float64)
        mse = np.mean((x - reference) ** 2)
        print(f"{path:>14}: PSNR {10 * np.log10(1.0 / mse):5.2f} dB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("noise")
    p.add_argument("image")
    p.add_argument("out")
    p.add_argument("--sigma", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_noise)
    p = sub.add_parser("tiles")
    p.add_argument("tiles")
    p.add_argument("out")
    p.set_defaults(run=cmd_tiles)
    p = sub.add_parser("whole")
    p.add_argument("image")
    p.add_argument("out")
    p.set_defaults(run=cmd_whole)
    p = sub.add_parser("compare")
    p.add_argument("reference")
    p.add_argument("others", nargs="+")
    p.set_defaults(run=cmd_compare)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
