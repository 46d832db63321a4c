"""One thread against two, by size of work: where swt's kernels should start using a second thread.

Run from the repository root::

    .venv/bin/python benchmarks/bench_threads.py --repeat 31

For each kernel family (numba and NumPy paths; sums: fold with overlap, dilated or not; copies: unfold
and the fold of tiles) and a range of sizes (input plus output, float32, into ``out=``), the same call
is timed on one thread and on two, in turn in one process (a second thread forced whatever swt's
threshold says), medians; ``2t/1t`` below 1 means the second thread paid. "swt" is the number of
threads swt's own thresholds (``swt_cli.kernels``) give that work. Waking a pool thread after an idle
millisecond is timed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from swt_cli import kernels, sliding_window, sliding_window_transpose  # noqa: E402
from swt_cli.geometry import grid_size  # noqa: E402

#: (name, op, kernel, stride, padding, dilation)
FAMILIES = [
    ("sum 3x3 s2", "fold", 3, 2, 1, 1),
    ("sum 5x5 s2 d2", "fold", 5, 2, 2, 2),
    ("copy tiles 2x2", "fold", 2, 2, 0, 1),
    ("copy rows 3x3 s2", "unfold", 3, 2, 1, 1),
    ("copy tiles 2x2", "unfold", 2, 2, 0, 1),
    ("copy 5x5 s2 d2", "unfold", 5, 2, 2, 2),
]
#: (N, C, O): about 0.5 to 150 MiB of work.
SIZES = [(1, 4, 96), (2, 8, 96), (4, 8, 96), (16, 8, 96), (32, 3, 256), (64, 3, 256)]
#: The thresholds a forced second thread sets aside.
_SPLITS = ("_PARALLEL_BYTES", "_COPY_SPLIT", "_NUMPY_COPY_SPLIT", "_NUMPY_SUM_SPLIT")


def _call(op, k, s, p, d, n, c, o):
    g = grid_size(o, k, s, p, d)
    x = np.random.default_rng(0).standard_normal((n, c, g, g, k, k), dtype=np.float32)
    img = np.random.default_rng(1).standard_normal((n, c, o, o), dtype=np.float32)
    if op == "fold":
        out = np.empty((n, c, o, o), np.float32)
        return (lambda: sliding_window_transpose(x, o, k, stride=s, padding=p, dilation=d, out=out)), x.nbytes + out.nbytes
    out = np.empty_like(x)
    return (lambda: sliding_window(img, k, stride=s, padding=p, dilation=d, out=out)), img.nbytes + out.nbytes


def _threads_used(fn):
    """How many threads swt's thresholds give ``fn``'s work (read from :func:`kernels._parallel`)."""
    used = []
    real = kernels._parallel

    def spy(work, count, nbytes):
        used.append(min(kernels.get_threads(), count, max(1, nbytes // kernels._PARALLEL_BYTES)))
        return real(work, count, nbytes)

    kernels._parallel = spy
    try:
        fn()
    finally:
        kernels._parallel = real
    return max(used, default=1)


def _time(fn, threads, repeat):
    saved = {name: getattr(kernels, name) for name in _SPLITS if hasattr(kernels, name)}
    times = {1: [], 2: []}
    for _ in range(repeat):
        for t in (1, 2):
            kernels._threads = t
            if t == 2:  # a second thread whatever the size
                for name in saved:
                    setattr(kernels, name, 1)
            t0 = time.perf_counter()
            fn()
            times[t].append(time.perf_counter() - t0)
            for name, value in saved.items():
                setattr(kernels, name, value)
    kernels._threads = threads
    return {t: statistics.median(v) for t, v in times.items()}


def wake_up(repeat: int) -> float:
    """Median seconds of a no-op on two threads after an idle millisecond."""
    times = []
    for _ in range(repeat):
        time.sleep(0.001)
        t0 = time.perf_counter()
        kernels._parallel(lambda lo, hi: None, 8, 1 << 30)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=31, help="timed runs per measurement (median taken; default 31)")
    args = parser.parse_args(argv)
    kernels.set_threads(2)
    print(f"numpy {np.__version__}; median wall time of {args.repeat} runs, float32, into out=; load average {os.getloadavg()[0]:.1f}")
    print(f"waking the second thread after an idle millisecond: {wake_up(args.repeat) * 1e6:.0f} us")
    print(f"{'path':<7}{'op':<8}{'family':<18}{'work MiB':>9}{'1t ms':>9}{'2t ms':>9}{'2t/1t':>8}{'swt':>5}")
    for path in ("numba", "numpy"):
        os.environ["SWT_KERNEL"] = path
        for name, op, k, s, p, d in FAMILIES:
            for n, c, o in SIZES:
                fn, nbytes = _call(op, k, s, p, d, n, c, o)
                fn()
                t = _time(fn, 2, args.repeat)
                print(f"{path:<7}{op:<8}{name:<18}{nbytes / 2**20:>9.1f}{t[1] * 1e3:>9.3f}{t[2] * 1e3:>9.3f}"
                      f"{t[2] / t[1]:>8.2f}{_threads_used(fn):>5}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
