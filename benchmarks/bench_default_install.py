"""Time fold and unfold as a default install runs them: repeated calls in a fresh process, numba loading.

Run from the repository root::

    .venv/bin/python benchmarks/bench_default_install.py --repeat 11

For each of the five float32 shapes of ``bench_kernels.py``, a fresh Python process (``SWT_KERNEL``
unset: whatever ``pip install swt-cli`` gives, numba loading on its background thread when the calls
have repaid it, see ``swt_cli.kernels``) calls ``sliding_window_transpose`` (and ``sliding_window``)
again and again, and reports: the first call's time; the call at which the numba load started and the
call from which numba ran (read from ``swt_cli.kernels``' state before each call, not guessed from
times) with the seconds since the first call began; the median of the ``--repeat`` calls from the
switch on ("steady", the default install with its first calls excluded); and the median of calls 2 to
11 (what a short script gets). Beside them, timed in this process with ``bench_kernels.py``'s own
functions: ``torch.nn.functional.fold/unfold``, the memory floor and swt's two paths forced
(``SWT_KERNEL=numba|numpy``); then ratios and geometric means. A process stops calling once it has its
steady calls, or after ``--max-seconds`` (then "steady" is of its last calls and the switch is "-"). "peak MB": the process's peak RSS (Linux).
``--worth MiB`` overrides the work after which a process loads numba (to compare thresholds).
Import of swt is excluded; numba's cache should be warm (run once first: an empty cache compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_kernels import (  # noqa: E402
    SHAPES,
    _fmt_ratio,
    _geomean,
    _ms,
    _optional,
    _paths,
    _ratio,
    bench_fold,
    bench_unfold,
)

from swt_cli import kernels  # noqa: E402

_CHILD = """
import json, sys, time
import numpy as np
from swt_cli import kernels, sliding_window, sliding_window_transpose
from swt_cli.geometry import grid_size
op, (n, c, o, k, s, p, d), threads, worth, steady, max_s = sys.argv[1], *map(json.loads, sys.argv[2:])
kernels.set_threads(threads)
if worth is not None:
    kernels._JIT_WORTH_BYTES = worth
g = grid_size(o, k, s, p, d)
args = dict(padding=p, stride=s, dilation=d)
if op == "fold":
    x = np.random.default_rng(0).standard_normal((n, c, g, g, k, k), dtype=np.float32)
    call = lambda: sliding_window_transpose(x, o, k, **args)
else:
    x = np.random.default_rng(1).standard_normal((n, c, o, o), dtype=np.float32)
    call = lambda: sliding_window(x, k, **args)
def peak_mb():  # this process's peak RSS (ru_maxrss would count the parent's, from before exec)
    try:
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return None
times, start, switch = [], None, None
t00 = time.perf_counter()
while True:
    if switch is None and kernels._ready:  # this call takes the compiled kernels
        switch = (len(times) + 1, time.perf_counter() - t00)
    t0 = time.perf_counter()
    call()
    times.append(time.perf_counter() - t0)
    if start is None and (kernels._asked or kernels._asked_native):
        start = (len(times), t0 - t00)
    done = switch is not None and len(times) >= switch[0] - 1 + steady
    if done or (time.perf_counter() - t00 > max_s and len(times) >= 11 + steady):
        break
print(json.dumps({"times": times, "start": start, "switch": switch, "numba": "numba" in sys.modules,
                  "rss_mb": peak_mb()}))
"""


def default_calls(op, shape, threads, worth, steady, max_seconds):
    """One fresh process with ``SWT_KERNEL`` unset: its calls' times and when numba started and took over."""
    env = {k: v for k, v in os.environ.items() if k != "SWT_KERNEL"}
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    env["PYTHONPATH"] = os.pathsep.join([root] + [v for v in [env.get("PYTHONPATH")] if v])
    argv = [op] + [json.dumps(v) for v in (shape, threads, worth, steady, max_seconds)]
    done = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=True, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    times = report["times"]
    first_steady = report["switch"][0] - 1 if report["switch"] else len(times) - steady
    report["first"] = times[0]
    report["steady"] = statistics.median(times[first_steady:first_steady + steady])
    report["short"] = statistics.median(times[1:11])
    return report


def _at(event):
    return ("-", "-") if event is None else (str(event[0]), f"{event[1]:.2f}")


def table(op, rows, paths):
    """Print one op's table; returns the geometric means of its ratio columns."""
    ratios = [("steady/torch", "steady", "torch"), ("steady/floor", "steady", "floor"),
              ("2-11/torch", "short", "torch"), ("2-11/floor", "short", "floor")]
    head = (f"{'shape (N,C,O,k,s,p,d)':<26}{'1st ms':>9}{'load@':>7}{'numba@':>7}{'at s':>6}{'steady ms':>10}"
            f"{'2-11 ms':>9}{'torch ms':>9}{'floor ms':>9}" + "".join(f"{p + ' ms':>9}" for p in paths)
            + "".join(f"{h:>13}" for h, _, _ in ratios) + f"{'peak MB':>8}")
    print(f"\n{op}: default install, a fresh process per shape (SWT_KERNEL unset, import excluded)\n{head}\n{'-' * len(head)}")
    for shape, (t, r) in rows:
        t = dict(t, first=r["first"], steady=r["steady"], short=r["short"])
        load_call, _ = _at(r["start"])
        switch_call, switch_s = _at(r["switch"])
        line = (f"{str(shape):<26}{_ms(t['first']):>9}{load_call:>7}{switch_call:>7}{switch_s:>6}{_ms(t['steady']):>10}"
                f"{_ms(t['short']):>9}{_ms(t.get('torch')):>9}{_ms(t['floor']):>9}"
                + "".join(f"{_ms(t.get(p)):>9}" for p in paths))
        line += "".join(f"{_fmt_ratio(_ratio(t.get(a), t.get(b))):>13}" for _, a, b in ratios)
        print(line + ("       -" if r["rss_mb"] is None else f"{r['rss_mb']:8.0f}"))
    means = {h: _geomean([_ratio(dict(t, steady=r["steady"], short=r["short"]).get(a), t.get(b)) for _, (t, r) in rows])
             for h, a, b in ratios}
    width = 26 + 9 + 7 + 7 + 6 + 10 + 9 + 9 + 9 + 9 * len(paths)
    print(f"{'geometric mean':<{width}}" + "".join(f"{_fmt_ratio(means[h]):>13}" for h, _, _ in ratios))
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11, help="steady calls after the switch, and timed runs "
                        "of torch, the floor and the forced paths (median taken; default 11)")
    parser.add_argument("--threads", type=int, default=None, help="threads for swt and torch (default: all cores)")
    parser.add_argument("--no-unfold", action="store_true", help="time fold only")
    parser.add_argument("--worth", type=float, default=None, metavar="MiB",
                        help="load numba after this much work on arrays (default: the package's choice)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="stop a process that has not switched to numba after this long (default 20)")
    args = parser.parse_args(argv)
    worth = None if args.worth is None else int(args.worth * (1 << 20))
    kernels.set_threads(args.threads)
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    paths = _paths()
    print(f"numba loads after {(worth if worth is not None else kernels._JIT_WORTH_BYTES) / (1 << 20):.0f} MiB of "
          f"work on arrays; threads {kernels.get_threads()}; torch "
          f"{torch.__version__ + ' threads ' + str(torch.get_num_threads()) if torch else 'not installed'}; "
          f"median wall time of {args.repeat} runs, float32; floor on one thread; load average {os.getloadavg()[0]:.1f}")
    ops = [("fold", bench_fold)] + ([] if args.no_unfold else [("unfold", bench_unfold)])
    for op, bench in ops:
        rows = []
        for shape in SHAPES:
            report = default_calls(op, shape, args.threads, worth, args.repeat, args.max_seconds)
            t, _err = bench(shape, args.repeat, torch, None, paths)
            rows.append((shape, (t, report)))
        table(op, rows, paths)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
