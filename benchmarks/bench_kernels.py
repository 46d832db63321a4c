"""Time swt's fold and unfold kernels (numba and NumPy paths) against torch, MegEngine and the memory floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_kernels.py --repeat 11             # both cores
    .venv/bin/python benchmarks/bench_kernels.py --repeat 11 --threads 1 # one core
    .venv/bin/python benchmarks/bench_kernels.py --first-call            # plus a fresh process per shape
    .venv/bin/python benchmarks/bench_kernels.py --threads 1 --clock cpu # CPU time: A/B on a busy machine
    .venv/bin/python benchmarks/bench_kernels.py --shapes long           # long window rows (patches)

It prints, for five float32 shapes ``(N, C, O, k, s, p, d)`` (O the square image size), the median time of
``swt_cli.sliding_window_transpose`` on windows in MegEngine's layout ``(N, C, IH, IW, KH, KW)`` on each of
swt's paths for NumPy arrays (``SWT_KERNEL=numba``, the compiled kernels, and ``SWT_KERNEL=numpy``, the
kernels every process starts on), of the first path writing into one reused array (``out=``), of
``torch.nn.functional.fold`` on its own best layout ``(N, C*k*k, L)`` (already contiguous, not timed), and
of the memory floor (read the input once and write the output once: ``x.sum()`` + ``out.fill(1)``, on one
thread, into a reused buffer), their ratios and the largest difference from torch (and MegEngine), then
geometric means. "new fl" is the floor writing a new array each time: a function that returns one (swt
without ``out=``, torch) also pays the operating system's zeroing of fresh pages, which the plain floor
does not; so ``out=/floor`` compares like with like, and so does ``numba/new fl``. The same for unfold against
``torch.nn.functional.unfold``. Every function is timed in turn, round after round, and the median taken,
so load from other processes hits all alike. torch, numba and MegEngine are optional: their columns are
skipped without them.

``--first-call`` also times, in a fresh Python process per shape, swt's first call with the environment as
a user has it (``SWT_KERNEL`` unset: the default choice of :func:`swt_cli.kernels.kernel_name`), import
of swt excluded: that is where loading numba or compiling shows.

MegEngine 1.13 runs only on CPython <= 3.10 with numpy < 2, so it is timed in a process of its own:
``--megengine PYTHON`` names a Python that has it (see ``megengine_peer.py``), which is given each input
as a .npy file after swt, torch and the floor have been timed on it, with the same number of runs.

``--threads N`` gives both swt (``swt_cli.kernels.set_threads``) and torch ``N`` threads; the default is
every core. The floor is single-threaded NumPy either way.
"""

from __future__ import annotations

import argparse
import importlib.util
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
#: ``--shapes long``: long window rows, copied as runs (tiles of 16, 7 and 8, as images are cut into
#: patches; a 7-wide kernel at stride 1), not part of the issue's five.
LONG_ROW_SHAPES = [
    (32, 3, 256, 16, 16, 0, 1),
    (32, 3, 224, 7, 7, 0, 1),
    (32, 3, 256, 8, 8, 0, 1),
    (16, 3, 128, 7, 1, 3, 1),
]
SHAPE_SETS = {"issue": SHAPES, "long": LONG_ROW_SHAPES}


#: The clock of ``--clock``: wall time, or CPU time of the process (every thread's, so ``--threads 1``
#: with ``--clock cpu`` compares versions on a machine shared with other work).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def median_times(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """Median seconds of each function, timed round-robin so that load from other processes hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
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
    """Read ``n_in`` float32 once and write ``n_out`` float32 once (into one buffer, reused)."""
    a = np.ones(n_in, np.float32)
    b = np.empty(n_out, np.float32)

    def run():
        a.sum()
        b.fill(1)

    return run


def new_floor_fn(n_in: int, n_out: int):
    """The floor of a function that returns a new array: as :func:`floor_fn`, writing a new array each
    time, so the operating system's zeroing of fresh pages (and their faults) counts, as it does for swt
    and torch. Above about 32 MB glibc gives every new array fresh pages."""
    a = np.ones(n_in, np.float32)

    def run():
        a.sum()
        np.empty(n_out, np.float32).fill(1)

    return run


def _out_fn(call, path, want):
    """``call(out=...)`` on ``path`` into one ``out`` reused each time (swt's ``out=``), checked to the bit."""
    out = np.empty_like(want)
    run = _on_path(path, lambda: call(out=out))
    run()
    if not np.array_equal(out.view(np.uint8), want.view(np.uint8)):
        raise SystemExit(f"swt's {path} path with out= differs from its result without")
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


PATHS = ("numba", "numpy")


def _on_path(path, fn):
    """``fn`` with ``SWT_KERNEL=path`` (read at each call, so it can change between calls)."""
    def run():
        os.environ["SWT_KERNEL"] = path
        return fn()

    return run


def _paths():
    return [p for p in PATHS if p != "numba" or importlib.util.find_spec("numba") is not None]


def _swt_times(call, paths, extra: dict, repeat):
    """Each path's result (which must agree to the bit) and everyone's median times."""
    results = {path: _on_path(path, call)() for path in paths}
    first = results[paths[0]]
    for path in paths[1:]:
        if not np.array_equal(first.view(np.uint8), results[path].view(np.uint8)):
            raise SystemExit(f"swt's {path} path differs from its {paths[0]} path")
    fns = {path: _on_path(path, call) for path in paths}
    fns["out"] = _out_fn(call, paths[0], first)
    fns.update(extra)
    return first, median_times(fns, repeat)


def bench_fold(shape, repeat, torch, mge, paths):
    n, c, o, k, s, p, d = shape
    g = grid_size(o, k, s, p, d)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, g, g, k, k), dtype=np.float32)
    args = dict(padding=p, stride=s, dilation=d)
    extra = {"floor": floor_fn(x.size, n * c * o * o), "new floor": new_floor_fn(x.size, n * c * o * o)}
    if torch is not None:
        cols = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * k * k, g * g))
        f = torch.nn.functional.fold
        extra["torch"] = lambda: f(cols, (o, o), k, dilation=d, padding=p, stride=s)
    out, t = _swt_times(lambda **kw: sliding_window_transpose(x, o, k, **args, **kw), paths, extra, repeat)
    err = float(np.abs(out - extra["torch"]().numpy()).max()) if torch is not None else None
    if mge is not None:
        t["mge"], mge_err = megengine_time(mge, "fold", x, dict(o=o, k=k, s=s, p=p, d=d), repeat, out)
        err = _max(err, mge_err)
    return t, err


def bench_unfold(shape, repeat, torch, mge, paths):
    n, c, o, k, s, p, d = shape
    g = grid_size(o, k, s, p, d)
    rng = np.random.default_rng(1)
    img = rng.standard_normal((n, c, o, o), dtype=np.float32)
    args = dict(padding=p, stride=s, dilation=d)
    nout = n * c * g * g * k * k
    extra = {"floor": floor_fn(img.size, nout), "new floor": new_floor_fn(img.size, nout)}
    if torch is not None:
        timg = torch.from_numpy(img)
        f = torch.nn.functional.unfold
        extra["torch"] = lambda: f(timg, k, dilation=d, padding=p, stride=s)
    out, t = _swt_times(lambda **kw: sliding_window(img, k, **args, **kw), paths, extra, repeat)
    err = None
    if torch is not None:
        ref = extra["torch"]().numpy().reshape(n, c, k, k, g, g).transpose(0, 1, 4, 5, 2, 3)
        err = float(np.abs(out - ref).max())
    if mge is not None:
        t["mge"], mge_err = megengine_time(mge, "unfold", img, dict(k=k, s=s, p=p, d=d), repeat, out)
        err = _max(err, mge_err)
    return t, err


def table(title, rows, paths, mge):
    """Print one table; returns the geometric means of the ratio columns."""
    cols = [(f"{p} ms", p) for p in paths] + [("out= ms", "out"), ("torch ms", "torch"), ("floor ms", "floor"),
                                                ("new fl ms", "new floor")]
    ratios = ([(f"{p}/floor", p, "floor") for p in paths] + [(f"{p}/torch", p, "torch") for p in paths]
              + [("out=/floor", "out", "floor"), (f"{paths[0]}/new fl", paths[0], "new floor")])
    if mge is not None:
        cols.append(("mge ms", "mge"))
        ratios += [(f"{p}/mge", p, "mge") for p in paths]
    head = f"{'shape (N,C,O,k,s,p,d)':<26}" + "".join(f"{h:>10}" for h, _ in cols)
    head += "".join(f"{h:>13}" for h, _, _ in ratios) + f"{'max err':>9}"
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    for shape, (t, err) in rows:
        line = f"{str(shape):<26}" + "".join(f"{_ms(t.get(key)):>10}" for _, key in cols)
        line += "".join(f"{_fmt_ratio(_ratio(t.get(a), t.get(b))):>13}" for _, a, b in ratios)
        print(line + f"{_fmt_err(err):>9}")
    means = {h: _geomean([_ratio(t.get(a), t.get(b)) for _, (t, _e) in rows]) for h, a, b in ratios}
    print(f"{'geometric mean':<26}" + " " * (10 * len(cols)) + "".join(f"{_fmt_ratio(means[h]):>13}" for h, _, _ in ratios))
    return means


_FIRST_CALL = """
import json, os, sys, time
import numpy as np
from swt_cli import kernels, sliding_window, sliding_window_transpose
from swt_cli.geometry import grid_size
op, (n, c, o, k, s, p, d), threads = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
kernels.set_threads(threads)
g = grid_size(o, k, s, p, d)
args = dict(padding=p, stride=s, dilation=d)
if op == "fold":
    x = np.random.default_rng(0).standard_normal((n, c, g, g, k, k), dtype=np.float32)
    call = lambda: sliding_window_transpose(x, o, k, **args)
    nbytes = x.nbytes + n * c * o * o * 4
else:
    x = np.random.default_rng(1).standard_normal((n, c, o, o), dtype=np.float32)
    call = lambda: sliding_window(x, k, **args)
    nbytes = x.nbytes + n * c * g * g * k * k * 4
times = []
for _ in range(3):
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
print(json.dumps({"path": kernels.kernel_name(nbytes), "times": times}))
"""


def first_calls(op, threads, shapes=SHAPES):
    """Per shape, in a fresh process with ``SWT_KERNEL`` unset: the path taken, first and later call times."""
    env = {k: v for k, v in os.environ.items() if k != "SWT_KERNEL"}
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env["PYTHONPATH"] = os.pathsep.join([root] + [v for v in [env.get("PYTHONPATH")] if v])
    print(f"\n{op}: first call in a fresh process (SWT_KERNEL unset, import excluded)")
    print(f"{'shape (N,C,O,k,s,p,d)':<26}{'path':>7}{'1st ms':>10}{'2nd ms':>10}{'3rd ms':>10}")
    for shape in shapes:
        done = subprocess.run([sys.executable, "-c", _FIRST_CALL, op, json.dumps(shape), json.dumps(threads)],
                              capture_output=True, text=True, check=True, env=env)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{str(shape):<26}{report['path']:>7}" + "".join(f"{_ms(t):>10}" for t in report["times"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per measurement (median taken; default 9)")
    parser.add_argument("--threads", type=int, default=None, help="threads for swt and torch (default: all cores)")
    parser.add_argument("--no-unfold", action="store_true", help="time fold only")
    parser.add_argument("--kernel", choices=["both", "numba", "numpy"], default="both",
                        help="swt's paths for NumPy arrays to time (default both)")
    parser.add_argument("--first-call", action="store_true",
                        help="also time the first calls in a fresh process per shape, with swt's default choice")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time (default) or CPU time of this process (MegEngine: always wall)")
    parser.add_argument("--megengine", metavar="PYTHON", help="a Python with MegEngine 1.13 installed, to time it too")
    parser.add_argument("--shapes", choices=sorted(SHAPE_SETS), default="issue",
                        help="the issue's five shapes (default), or long window rows (tiles of 16, 7, 8; kernel 7 at stride 1)")
    args = parser.parse_args(argv)
    shapes = SHAPE_SETS[args.shapes]
    global clock
    clock = CLOCKS[args.clock]
    paths = [p for p in _paths() if args.kernel in ("both", p)]
    if not paths:
        raise SystemExit("numba is not installed: pip install 'swt-cli[fast]', or --kernel numpy")

    kernels.set_threads(args.threads)
    torch = _optional("torch")
    mge = args.megengine
    if mge is not None:
        probe = [mge, "-c", "import megengine; print(megengine.__version__)"]
        mge_version = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()[-1]
    if torch is not None:
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    print(f"swt paths: {', '.join(paths)}, threads {kernels.get_threads()}; numpy {np.__version__}; "
          f"torch {torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else 'not installed (its columns are skipped)'}"
          f"{'; megengine ' + mge_version + ' (own process, default device)' if mge else ''}; "
          f"median {args.clock} time of {args.repeat} runs, float32; floor on one thread; load average {os.getloadavg()[0]:.1f}")

    rows = [(shape, bench_fold(shape, args.repeat, torch, mge, paths)) for shape in shapes]
    table("fold (sliding_window_transpose): windows (N, C, IH, IW, KH, KW) -> images (N, C, O, O)", rows, paths, mge)
    if not args.no_unfold:
        rows = [(shape, bench_unfold(shape, args.repeat, torch, mge, paths)) for shape in shapes]
        table("unfold (sliding_window): images (N, C, O, O) -> windows (N, C, IH, IW, KH, KW)", rows, paths, mge)
    if args.first_call:
        for op in ["fold"] + ([] if args.no_unfold else ["unfold"]):
            first_calls(op, args.threads, shapes)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
