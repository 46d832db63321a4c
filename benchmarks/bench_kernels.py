"""Time swt's fold and unfold kernels against torch, MegEngine and the memory floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_kernels.py --repeat 9

It prints, for five float32 shapes ``(N, C, O, k, s, p, d)`` (O the square image size), the median time of
``swt_cli.sliding_window_transpose`` on windows in MegEngine's layout ``(N, C, IH, IW, KH, KW)``, of
``torch.nn.functional.fold`` on its own best layout ``(N, C*k*k, L)`` (already contiguous, not timed), and of
the memory floor (read the input once and write the output once: ``x.sum()`` + ``out.fill(1)``), their
ratios and the largest error against torch (and MegEngine); then geometric means. The same for unfold
against ``torch.nn.functional.unfold``. torch and MegEngine are optional: their columns are skipped
without them.

MegEngine 1.13 runs only on CPython <= 3.10 with numpy < 2, so it is timed in a process of its own:
``--megengine PYTHON`` names a Python that has it (see ``megengine_peer.py``), which is given each input
as a .npy file after swt, torch and the floor have been timed on it, with the same number of runs.

``--threads N`` gives both swt (``swt_cli.kernels.set_threads``) and torch ``N`` threads; the default is
every core. The figures in BENCHMARKS.md were taken on a 2-core machine where the environment happened to
set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE; no BLAS is involved in these operations, so they do not matter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from swt_cli import kernels, sliding_window, sliding_window_transpose  # noqa: E402
from swt_cli.geometry import grid_size  # noqa: E402

SHAPES = [  # (N, C, O, k, s, p, d)
    (32, 3, 256, 3, 2, 1, 1),
    (8, 16, 128, 3, 1, 1, 1),
    (64, 1, 256, 8, 4, 0, 1),
    (16, 3, 128, 5, 2, 2, 2),
    (4, 8, 96, 2, 2, 0, 1),
]


def median_times(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """Median seconds of each function, timed round-robin so that load from other processes hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _optional(name):
    try:
        return __import__(name)
    except Exception:
        return None


def _geomean(values):
    values = [v for v in values if v is not None]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _ms(t):
    return "-" if t is None else f"{t * 1e3:8.2f}"


def _ratio(a, b):
    return None if a is None or b is None else a / b


def _fmt_ratio(r):
    return "-" if r is None else f"{r:5.2f}"


def _fmt_err(e):
    return "-" if e is None else f"{e:.1e}"


def floor_fn(n_in: int, n_out: int):
    """Read ``n_in`` float32 once and write ``n_out`` float32 once."""
    a = np.ones(n_in, np.float32)
    b = np.empty(n_out, np.float32)

    def run():
        a.sum()
        b.fill(1)

    return run


PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "megengine_peer.py")


def megengine_time(python, op, x, params, repeat, out):
    """MegEngine's median seconds on ``x`` (in its own process) and its largest difference from ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")
        np.save(src, x)
        done = subprocess.run([python, PEER, op, src, dst, json.dumps(params), str(repeat)],
                              capture_output=True, text=True, check=True)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        return report["seconds"], float(np.abs(np.load(dst) - out).max())


def _max(*errors):
    errors = [e for e in errors if e is not None]
    return max(errors) if errors else None


def bench_fold(shape, repeat, torch, mge):
    n, c, o, k, s, p, d = shape
    g = grid_size(o, k, s, p, d)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, g, g, k, k), dtype=np.float32)
    args = dict(padding=p, stride=s, dilation=d)
    out = sliding_window_transpose(x, o, k, **args)
    fns = {"swt": lambda: sliding_window_transpose(x, o, k, **args), "floor": floor_fn(x.size, out.size)}
    err = None
    if torch is not None:
        cols = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * k * k, g * g))
        f = torch.nn.functional.fold
        ref = f(cols, (o, o), k, dilation=d, padding=p, stride=s).numpy()
        err = float(np.abs(out - ref).max())
        fns["torch"] = lambda: f(cols, (o, o), k, dilation=d, padding=p, stride=s)
    t = median_times(fns, repeat)
    t_mge = None
    if mge is not None:
        t_mge, mge_err = megengine_time(mge, "fold", x, dict(o=o, k=k, s=s, p=p, d=d), repeat, out)
        err = _max(err, mge_err)
    return t["swt"], t.get("torch"), t["floor"], err, t_mge


def bench_unfold(shape, repeat, torch, mge):
    n, c, o, k, s, p, d = shape
    g = grid_size(o, k, s, p, d)
    rng = np.random.default_rng(1)
    img = rng.standard_normal((n, c, o, o), dtype=np.float32)
    args = dict(padding=p, stride=s, dilation=d)
    out = sliding_window(img, k, **args)
    fns = {"swt": lambda: sliding_window(img, k, **args), "floor": floor_fn(img.size, out.size)}
    err = None
    if torch is not None:
        timg = torch.from_numpy(img)
        f = torch.nn.functional.unfold
        ref = f(timg, k, dilation=d, padding=p, stride=s).numpy().reshape(n, c, k, k, g, g).transpose(0, 1, 4, 5, 2, 3)
        err = float(np.abs(out - ref).max())
        fns["torch"] = lambda: f(timg, k, dilation=d, padding=p, stride=s)
    t = median_times(fns, repeat)
    t_mge = None
    if mge is not None:
        t_mge, mge_err = megengine_time(mge, "unfold", img, dict(k=k, s=s, p=p, d=d), repeat, out)
        err = _max(err, mge_err)
    return t["swt"], t.get("torch"), t["floor"], err, t_mge


def table(title, rows, mge):
    head = f"{'shape (N,C,O,k,s,p,d)':<28}{'swt ms':>9}{'torch ms':>10}{'floor ms':>10}{'swt/torch':>11}{'swt/floor':>11}{'max err':>10}"
    if mge is not None:
        head += f"{'mge ms':>9}{'swt/mge':>9}"
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    for shape, (t_swt, t_torch, t_floor, err, t_mge) in rows:
        line = (
            f"{str(shape):<28}{_ms(t_swt):>9}{_ms(t_torch):>10}{_ms(t_floor):>10}"
            f"{_fmt_ratio(_ratio(t_swt, t_torch)):>11}{_fmt_ratio(_ratio(t_swt, t_floor)):>11}{_fmt_err(err):>10}"
        )
        if mge is not None:
            line += f"{_ms(t_mge):>9}{_fmt_ratio(_ratio(t_swt, t_mge)):>9}"
        print(line)
    gt = _geomean([_ratio(r[0], r[1]) for _, r in rows])
    gf = _geomean([_ratio(r[0], r[2]) for _, r in rows])
    line = f"{'geometric mean':<28}{'':>9}{'':>10}{'':>10}{_fmt_ratio(gt):>11}{_fmt_ratio(gf):>11}"
    if mge is not None:
        line += f"{'':>10}{'':>9}{_fmt_ratio(_geomean([_ratio(r[0], r[4]) for _, r in rows])):>9}"
    print(line)
    return gt, gf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per measurement (median taken; default 9)")
    parser.add_argument("--threads", type=int, default=None, help="threads for swt and torch (default: all cores)")
    parser.add_argument("--no-unfold", action="store_true", help="time fold only")
    parser.add_argument("--kernel", choices=["numba", "numpy", "auto"], default="numba",
                        help="swt's path for NumPy arrays (default numba, which large jobs take; 'auto' lets "
                             "swt choose from the size of each call, see kernels.kernel_name)")
    parser.add_argument("--megengine", metavar="PYTHON", help="a Python with MegEngine 1.13 installed, to time it too")
    args = parser.parse_args(argv)
    if args.kernel != "auto":
        os.environ["SWT_KERNEL"] = args.kernel

    set_threads = getattr(kernels, "set_threads", None)
    if set_threads is not None:
        set_threads(args.threads)
    threads = kernels.get_threads() if hasattr(kernels, "get_threads") else args.threads
    torch = _optional("torch")
    mge = args.megengine
    if mge is not None:
        probe = [mge, "-c", "import megengine; print(megengine.__version__)"]
        mge_version = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()[-1]
    if torch is not None:
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    print(f"swt kernel: {getattr(kernels, 'kernel_name', lambda: 'numpy')()}, threads {threads}; "
          f"numpy {np.__version__}; torch {torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else 'not installed (its columns are skipped)'}"
          f"{'; megengine ' + mge_version + ' (own process, default device)' if mge else ''}; "
          f"median of {args.repeat} runs, float32")

    rows = [(shape, bench_fold(shape, args.repeat, torch, mge)) for shape in SHAPES]
    table("fold (sliding_window_transpose): windows (N, C, IH, IW, KH, KW) -> images (N, C, O, O)", rows, mge)
    if not args.no_unfold:
        rows = [(shape, bench_unfold(shape, args.repeat, torch, mge)) for shape in SHAPES]
        table("unfold (sliding_window): images (N, C, O, O) -> windows (N, C, IH, IW, KH, KW)", rows, mge)


if __name__ == "__main__":
    main()
