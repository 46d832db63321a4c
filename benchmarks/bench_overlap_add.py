"""Time 1-d overlap-add (the fold of an inverse STFT, say) and large 2-d kernels far apart.

Run from the repository root::

    .venv/bin/python benchmarks/bench_overlap_add.py --repeat 7

For each shape, float32 windows ``(N, 1, L, K)`` (1-d: ``L`` frames of ``K`` samples, ``hop`` apart)
or ``(N, C, G, G, k, k)`` (2-d) are folded by ``swt_cli.sliding_window_transpose`` on each of swt's
paths (``SWT_KERNEL=numba`` and ``numpy``), writing into one reused array (``out=``, so that no path
pays for fresh pages), beside ``torch.nn.functional.fold`` (1-d as a kernel of height 1) and the memory
floor of ``bench_kernels.py`` (read the input once, write the output once, one thread), all timed in
turn, medians; then ratios. The two paths must agree to the bit (checked). ``--threads`` as in
``bench_kernels.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_kernels import _fmt_ratio, _geomean, _ms, _on_path, _optional, _paths, _ratio, floor_fn, median_times  # noqa: E402

from swt_cli import kernels, sliding_window_transpose  # noqa: E402
from swt_cli.geometry import grid_size  # noqa: E402

#: (N, C, output size, kernel, stride): 1-d shapes are one-element tuples.
SHAPES = [
    (64, 1, (1 << 18,), (512,), (256,)),  # STFT of 512 samples, hop 256
    (64, 1, (1 << 18,), (512,), (128,)),  # hop 128
    (64, 1, (1 << 18,), (1024,), (256,)),
    (64, 1, (1 << 18,), (400,), (160,)),  # 25 ms frames, 10 ms hop at 16 kHz
    (24, 1, (256, 256), (32, 32), (8, 8)),
    (96, 1, (256, 256), (16, 16), (8, 8)),
]


def bench(shape, repeat, torch, paths):
    n, c, o, k, s = shape
    g = tuple(grid_size(oi, ki, si, 0, 1) for oi, ki, si in zip(o, k, s))
    x = np.random.default_rng(0).standard_normal((n, c) + g + k, dtype=np.float32)
    out = np.empty((n, c) + o, np.float32)
    fns = {path: _on_path(path, lambda: sliding_window_transpose(x, o, k, stride=s, out=out)) for path in paths}
    results = {}
    for path, fn in fns.items():
        fn()
        results[path] = out.copy()
    for path in paths[1:]:
        if not np.array_equal(results[path].view(np.uint8), results[paths[0]].view(np.uint8)):
            raise SystemExit(f"swt's {path} path differs from its {paths[0]} path on {shape}")
    fns["floor"] = floor_fn(x.size, out.size)
    err = None
    if torch is not None:
        nd = len(k)
        k2, s2, o2 = ((1,) + k, (1,) + s, (1,) + o) if nd == 1 else (k, s, o)
        order = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
        cols = torch.from_numpy(np.ascontiguousarray(x.transpose(order)).reshape(n, c * int(np.prod(k)), int(np.prod(g))))
        f = torch.nn.functional.fold
        fns["torch"] = lambda: f(cols, o2, k2, stride=s2)
        err = float(np.abs(fns["torch"]().numpy().reshape(out.shape) - results[paths[0]]).max())
    return median_times(fns, repeat), err


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median taken; default 7)")
    parser.add_argument("--threads", type=int, default=None, help="threads for swt and torch (default: all cores)")
    args = parser.parse_args(argv)
    paths = _paths()
    kernels.set_threads(args.threads)
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    print(f"swt paths: {', '.join(paths)} (out=), threads {kernels.get_threads()}; numpy {np.__version__}; "
          f"torch {torch.__version__ if torch else 'not installed'}; median wall time of {args.repeat} runs, float32; "
          f"load average {os.getloadavg()[0]:.1f}")
    cols = paths + (["torch"] if torch else []) + ["floor"]
    ratios = [(f"{p}/floor", p, "floor") for p in paths] + ([(f"{p}/torch", p, "torch") for p in paths] if torch else [])
    head = f"{'shape (N, C, O, k, s)':<40}" + "".join(f"{c + ' ms':>11}" for c in cols) + "".join(f"{h:>14}" for h, _, _ in ratios)
    print(f"{head}{'max err':>9}\n{'-' * (len(head) + 9)}")
    rows = []
    for shape in SHAPES:
        t, err = bench(shape, args.repeat, torch, paths)
        rows.append(t)
        line = f"{str(shape):<40}" + "".join(f"{_ms(t.get(c)):>11}" for c in cols)
        line += "".join(f"{_fmt_ratio(_ratio(t.get(a), t.get(b))):>14}" for _, a, b in ratios)
        print(line + (f"{err:>9.1e}" if err is not None else f"{'-':>9}"))
    means = "".join(f"{_fmt_ratio(_geomean([_ratio(t.get(a), t.get(b)) for t in rows])):>14}" for _, a, b in ratios)
    print(f"{'geometric mean':<40}" + " " * (11 * len(cols)) + means)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
