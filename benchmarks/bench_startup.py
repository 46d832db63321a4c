"""Time how long swt takes to start: ``swt --version``, ``swt --help`` and a ``swt plan`` without a file.

Run from the repository root, with ``swt`` installed (or on PATH), by the Python that swt is installed for
(its ``python -c ...`` rows use the same interpreter), and with ``PYTHONDONTWRITEBYTECODE`` unset::

    python benchmarks/bench_startup.py --repeat 10

Each command runs ``--repeat`` times as a fresh process (after one untimed run, so that every command
finds its files in the page cache), the commands taking turns so that a change in the machine's load
falls on all of them alike. It prints the median and the fastest wall-clock time of each, beside
``python -c pass`` (the interpreter's own start), ``python -c "import click"`` (which ``--version`` and
``--help`` no longer pay, swt_cli._entry) and ``python -c "import numpy"``, with the ratio of
the median to ``python -c pass`` and the target of issue 13 (``--version`` and ``--help`` in at most
0.1 s, ``plan`` in at most 0.2 s on a quiet 2-core machine), and names the machine: platform, Python,
CPU count and load average before and after. Load from other processes slows every row: compare the
ratios, and take figures for BENCHMARKS.md on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time


def commands(swt: list[str]) -> list[tuple[str, list[str], float | None]]:
    """(label, argv, target seconds or None)."""
    python = sys.executable
    return [
        ("python -c pass", [python, "-c", "pass"], None),
        ('python -c "import click"', [python, "-c", "import click"], None),
        ('python -c "import numpy"', [python, "-c", "import numpy"], None),
        ("swt --version", [*swt, "--version"], 0.1),
        ("swt --help", [*swt, "--help"], 0.1),
        ("swt plan --output-size 64 --kernel 3 --stride 2", [*swt, "plan", "--output-size", "64", "--kernel", "3",
                                                               "--stride", "2"], 0.2),
    ]


def run_once(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def machine(load_before, load_after) -> str:
    before, after = (" ".join(f"{v:.2f}" for v in load) for load in (load_before, load_after))
    return (f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs; load average "
            f"(1, 5, 15 min) {before} before, {after} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of each command (default 10)")
    parser.add_argument("--swt", default=None,
                        help="the swt command (default: swt on PATH, else python -m swt_cli)")
    args = parser.parse_args()
    found = args.swt or shutil.which("swt")
    swt = [found] if found else [sys.executable, "-m", "swt_cli"]
    rows = commands(swt)

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for label, argv, _ in rows:  # untimed: files into the page cache, .pyc files written
        run_once(argv)
    for _ in range(args.repeat):
        for label, argv, _ in rows:
            times[label].append(run_once(argv))
    load_after = os.getloadavg()

    base = statistics.median(times["python -c pass"])
    print(f"swt startup, median of {args.repeat} runs each: {' '.join(swt)}")
    print(machine(load_before, load_after))
    width = max(len(label) for label, _, _ in rows)
    print(f"{'command':<{width}}  {'median s':>8}  {'fastest s':>9}  {'x pass':>6}  target")
    for label, _, target in rows:
        median = statistics.median(times[label])
        verdict = "" if target is None else f"<= {target:g} s: {'met' if median <= target else 'not met'}"
        print(f"{label:<{width}}  {median:8.3f}  {min(times[label]):9.3f}  {median / base:6.1f}  {verdict}")


if __name__ == "__main__":
    main()
