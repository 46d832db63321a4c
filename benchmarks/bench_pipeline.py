"""Pipeline benchmark: `swt fold` file to file against the bare I/O floor, with peak memory.

For each format (HDF5, Zarr, .npy) the input is float32 windows (N, 3, 63, 63, 3, 3) of stride 2,
folded to (N, 3, 127, 127); N=2048 makes the input about 0.88 GB. The floor is a process of its own,
like `swt`, that reads the same input and writes an output of the same size, chunking and compression
in the same blocks, computing nothing (it imports numpy, h5py and zarr, as swt does). It comes in two
forms: the floor reads into one reused buffer, as swt does (the stricter); the plain floor reads each
block into a new array, as a plain `dataset[i:j]` loop does. All three are timed as whole commands,
medians of --repeat runs taken in turn, each after an `os.sync()` so that no run pays for writing back
the one before (the input stays in the page cache); peak RSS is that of the `swt` process, at the
default budget and at --max-memory 128MiB.

    python benchmarks/bench_pipeline.py                 # full size, all formats
    python benchmarks/bench_pipeline.py --n 256 --repeat 3 --formats h5
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

SWT = os.path.join(os.path.dirname(sys.executable), "swt")
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, done.returncode)\n"
)


def make_input(path: str, n: int, fmt: str) -> None:
    """Random windows written in blocks, so making them needs little memory."""
    from swt_cli.blocks import CHUNK_BYTES
    from swt_cli.formats import create_writer
    from swt_cli.formats.base import chunk_shape

    shape = (n, 3, 63, 63, 3, 3)
    writer = create_writer(path, shape, np.float32, chunks=chunk_shape(shape, 4, CHUNK_BYTES), overwrite=True)
    rng = np.random.default_rng(0)
    for start in range(0, n, 64):
        stop = min(start + 64, n)
        writer.write((slice(start, stop),), rng.standard_normal((stop - start,) + shape[1:], dtype=np.float32))
    writer.commit()


def run_floor(src: str, dst: str, plain: bool = False) -> float:
    """Wall time of the floor as a command of its own."""
    os.sync()  # no write-back of an earlier run's output lands on this one
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--plain-floor" if plain else "--floor", src, dst], check=True)
    return time.perf_counter() - start


def floor(src: str, dst: str, plain: bool = False) -> float:
    """Read the input and write an output of the fold's size in the blocks and chunks swt uses; no compute.

    Blocks are read into one reused buffer where the format can (as swt reads into two), so the floor
    pays no page faults that swt does not; the plain floor reads each block into a new array, as a
    plain ``dataset[i:j]`` loop does (the floor the issue describes). What it writes is the first elements of the block it read
    (random floats, as compressible as the fold's results), not a constant that a Zarr codec would
    squeeze to nothing.
    """
    from swt_cli.blocks import plan_blocks
    from swt_cli.formats import block_shape, create_writer, open_reader
    from swt_cli.geometry import Geometry, plan_fold
    from swt_cli.pipeline import DEFAULT_MAX_MEMORY, Transform, parse_size

    start = time.perf_counter()
    with open_reader(src) as reader:
        plan = plan_fold(reader.shape, Geometry.from_args(3, stride=2), 127, itemsize=4)
        transform = Transform("fold", plan, reader.dtype, np.dtype(np.float32))
        blocks = plan_blocks(plan.batch, plan.output_shape, 4, transform.bytes_per_item(), parse_size(DEFAULT_MAX_MEMORY))
        writer = create_writer(dst, plan.output_shape, np.float32, chunks=blocks.chunks, overwrite=True)
        buffer = np.empty(max(math.prod(block_shape(reader.shape, i)) for i in blocks.indexes), reader.dtype)
        for index in blocks.indexes:
            shape = block_shape(reader.shape, index)
            block = reader.read(index, None if plain else buffer[: math.prod(shape)].reshape(shape))
            out_shape = (block.shape[0],) + plan.output_shape[1:]
            writer.write(index, block.reshape(-1)[: math.prod(out_shape)].reshape(out_shape))
        writer.commit()
    return time.perf_counter() - start


def run_swt(src: str, dst: str, *extra: str) -> tuple[float, int]:
    os.sync()
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, SWT, "fold", src, dst, "-k", "3", "-s", "2", "-o", "127", "--overwrite", "-q", *extra],
        capture_output=True, text=True, check=True,
    )
    elapsed = time.perf_counter() - start
    rss, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"swt failed: {out.stderr}")
    return elapsed, int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="batch size N (2048: 0.88 GB input)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="h5,zarr,npy")
    parser.add_argument("--workdir", default="/tmp/swt-bench-pipeline")
    parser.add_argument("--floor", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    parser.add_argument("--plain-floor", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor or args.plain_floor:
        floor(*(args.floor or args.plain_floor), plain=bool(args.plain_floor))
        return
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for ext in args.formats.split(","):
        src = os.path.join(args.workdir, f"in-{args.n}.{ext}")
        if not os.path.exists(src):
            print(f"making {src} ...", file=sys.stderr)
            make_input(src, args.n, {"h5": "hdf5"}.get(ext, ext))
        dst = os.path.join(args.workdir, f"out.{ext}")
        floor_dst = os.path.join(args.workdir, f"floor.{ext}")
        run_floor(src, floor_dst)  # warm the page cache
        floors, plains, swts, rss_default, rss_small = [], [], [], [], []
        for _ in range(args.repeat):
            floors.append(run_floor(src, floor_dst))
            plains.append(run_floor(src, floor_dst, plain=True))
            elapsed, rss = run_swt(src, dst)
            swts.append(elapsed)
            rss_default.append(rss)
        rss_small.append(run_swt(src, dst, "--max-memory", "128MiB")[1])
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs) if os.path.isdir(src) else os.path.getsize(src)
        rows.append((ext, size / 1e9, statistics.median(floors), statistics.median(plains), statistics.median(swts),
                     max(rss_default), max(rss_small)))
        for path in (dst, floor_dst):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)

    print(f"swt fold (N={args.n}, 3x63x63 windows of 3x3, stride 2 -> 127x127), medians of {args.repeat} runs")
    print("floor: reads into a reused buffer; plain floor: a new array per block (a plain dataset[i:j] loop)")
    print(f"{'format':<7} {'input GB':>9} {'floor s':>8} {'plain s':>8} {'swt s':>7} {'swt/floor':>10} {'swt/plain':>10}"
          f" {'peak RSS MB':>12} {'RSS @128MiB':>12}")
    for ext, gb, fl, pl, sw, rd, rs in rows:
        print(f"{ext:<7} {gb:>9.2f} {fl:>8.2f} {pl:>8.2f} {sw:>7.2f} {sw / fl:>10.2f} {sw / pl:>10.2f}"
              f" {rd / 1e6:>12.0f} {rs / 1e6:>12.0f}")


if __name__ == "__main__":
    main()
