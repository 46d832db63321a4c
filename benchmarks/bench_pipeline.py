"""Pipeline benchmark: `swt fold` file to file against the bare I/O floor, with peak memory.

For each format (HDF5, Zarr, .npy) the input is float32 windows (N, 3, 63, 63, 3, 3) of stride 2,
folded to (N, 3, 127, 127); N=2048 makes the input about 0.88 GB. The floor is a process of its own,
like `swt`, that reads the same input and writes an output of the same size, chunking and compression
in the same blocks, computing nothing (it imports numpy, h5py and zarr, as swt does). It comes in two
forms: the floor reads into one reused buffer, as swt does (the stricter); the plain floor reads each
block into a new array, as a plain `dataset[i:j]` loop does. All three are timed as whole commands,
medians of --repeat runs taken in turn, each after an `os.sync()` so that no run pays for writing back
the one before (the input stays in the page cache); peak RSS is that of the `swt` process, at the
default budget and at --max-memory 128MiB. Each row also gives the slowest of swt's runs against the
floor's median (the worst run), and swt's CPU time (user plus system, median) beside the floor's.

Given several sizes (--n 2048,8192: 0.88 and 3.5 GB), it ends with the growth from the smallest to each
larger one: swt's median wall and CPU time and peak RSS there over those at the smallest size. (Both
sizes take the NumPy kernels: a file job loads numba only from 8 GiB of work.)

    python benchmarks/bench_pipeline.py                 # 0.88 GB, all formats
    python benchmarks/bench_pipeline.py --n 2048,8192 --repeat 9 --formats h5,npy
    python benchmarks/bench_pipeline.py --n 256 --repeat 3 --formats h5
"""

from __future__ import annotations

import argparse
import math
import os
import resource
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


def _timed(command: list) -> tuple[float, float, str]:
    """Wall and CPU seconds (user plus system, of the command and its children) of a command, after an
    ``os.sync()`` so that no write-back of an earlier run's output lands on this one; and its stdout."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{command[2:4]} failed: {done.stderr}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.stdout


def run_floor(src: str, dst: str, plain: bool = False) -> tuple[float, float]:
    """Wall and CPU time of the floor as a command of its own."""
    return _timed([sys.executable, __file__, "--plain-floor" if plain else "--floor", src, dst])[:2]


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


def run_swt(src: str, dst: str, *extra: str) -> tuple[float, float, int]:
    """Wall time, CPU time and peak RSS of `swt fold` as a command."""
    command = [sys.executable, "-c", PEAK_RSS, SWT, "fold", src, dst, "-k", "3", "-s", "2", "-o", "127", "--overwrite", "-q", *extra]
    wall, cpu, out = _timed(command)
    rss, code = out.split()
    if code != "0":
        raise SystemExit("swt failed")
    return wall, cpu, int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="2048", help="batch size N, or several, comma-separated (2048: 0.88 GB input, 8192: 3.5 GB)")
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
    sizes = [int(n) for n in args.n.split(",")]
    rows = {}
    for n in sizes:
        for ext in args.formats.split(","):
            rows[n, ext] = measure(args.workdir, n, ext, args.repeat)
            print(f"{n} {ext}: done", file=sys.stderr)
    median = statistics.median
    print(f"swt fold (3x63x63 windows of 3x3, stride 2 -> 127x127), medians of {args.repeat} runs in turn")
    print("floor: reads into a reused buffer (the stricter); plain floor: a new array per block (a plain dataset[i:j] loop)")
    print(f"{'N':>5} {'format':<6} {'in GB':>6} {'floor s':>8} {'plain s':>8} {'swt s':>7} {'swt/floor':>10} {'worst/floor':>12}"
          f" {'swt/plain':>10} {'cpu s':>6} {'floor cpu':>10} {'RSS MB':>7} {'RSS @128MiB':>12}")
    for (n, ext), r in rows.items():
        fl, pl, sw = median(r["floor"]), median(r["plain"]), median(r["swt"])
        print(f"{n:>5} {ext:<6} {r['gb']:>6.2f} {fl:>8.2f} {pl:>8.2f} {sw:>7.2f} {sw / fl:>10.2f} {max(r['swt']) / fl:>12.2f}"
              f" {sw / pl:>10.2f} {median(r['swt_cpu']):>6.2f} {median(r['floor_cpu']):>10.2f}"
              f" {max(r['rss']) / 1e6:>7.0f} {r['rss_small'] / 1e6:>12.0f}")
    if len(sizes) > 1:
        print(f"growth from N={sizes[0]}: swt's median wall and CPU time and peak RSS (default budget) at N over those at N={sizes[0]}")
        for (n, ext), r in rows.items():
            if n == sizes[0]:
                continue
            base = rows[sizes[0], ext]
            print(f"{n:>5} {ext:<6} size x{r['gb'] / base['gb']:.2f}  time x{median(r['swt']) / median(base['swt']):.2f}"
                  f"  cpu x{median(r['swt_cpu']) / median(base['swt_cpu']):.2f}"
                  f"  RSS x{max(r['rss']) / max(base['rss']):.2f} ({max(base['rss']) / 1e6:.0f} -> {max(r['rss']) / 1e6:.0f} MB)")


def measure(workdir: str, n: int, ext: str, repeat: int) -> dict:
    """Floor, plain floor and swt, ``repeat`` rounds in turn, on an input of N items in format ``ext``."""
    src = os.path.join(workdir, f"in-{n}.{ext}")
    if not os.path.exists(src):
        print(f"making {src} ...", file=sys.stderr)
        make_input(src, n, {"h5": "hdf5"}.get(ext, ext))
    dst = os.path.join(workdir, f"out.{ext}")
    floor_dst = os.path.join(workdir, f"floor.{ext}")
    run_floor(src, floor_dst)  # warm the page cache
    r: dict = {k: [] for k in ("floor", "floor_cpu", "plain", "swt", "swt_cpu", "rss")}
    for _ in range(repeat):
        wall, cpu = run_floor(src, floor_dst)
        r["floor"].append(wall)
        r["floor_cpu"].append(cpu)
        r["plain"].append(run_floor(src, floor_dst, plain=True)[0])
        wall, cpu, rss = run_swt(src, dst)
        r["swt"].append(wall)
        r["swt_cpu"].append(cpu)
        r["rss"].append(rss)
    r["rss_small"] = run_swt(src, dst, "--max-memory", "128MiB")[2]
    r["gb"] = (sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs)
               if os.path.isdir(src) else os.path.getsize(src)) / 1e9
    for path in (dst, floor_dst):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return r

if __name__ == "__main__":
    main()
