"""Time shell commands in turn, repeatedly, and print each one's median wall and CPU time.

For comparing two versions of swt (or swt against a floor) on a noisy machine: the commands run one
after another, round after round, each after an ``os.sync()``, so that load and disk write-back hit
them alike; medians are taken over the rounds. CPU time is user plus system time of the command and
its children. An older version runs from a ``git archive`` of its package put first on PYTHONPATH::

    git archive 36836e4 swt_cli | tar -x -C /tmp/old
    python benchmarks/ab.py --repeat 11 \\
        "new=swt fold in.h5 out.h5 -k 3 -s 2 -o 127 --overwrite -q" \\
        "old=PYTHONPATH=/tmp/old python -m swt_cli fold in.h5 out.h5 -k 3 -s 2 -o 127 --overwrite -q" \\
        "floor=python benchmarks/bench_pipeline.py --floor in.h5 floor.h5"
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import time


def time_in_turn(commands: dict, repeat: int) -> dict:
    """``{name: (wall seconds, cpu seconds)}`` lists over ``repeat`` rounds of every command in turn."""
    times = {name: ([], []) for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            os.sync()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times[name][0].append(wall)
            times[name][1].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    args = parser.parse_args(argv)
    commands = dict(c.split("=", 1) for c in args.commands)
    times = time_in_turn(commands, args.repeat)
    width = max(len(n) for n in commands)
    print(f"medians of {args.repeat} rounds")
    print(f"{'command':<{width}}  {'wall s':>7}  {'min s':>6}  {'cpu s':>6}")
    for name, (wall, cpu) in times.items():
        print(f"{name:<{width}}  {statistics.median(wall):7.2f}  {min(wall):6.2f}  {statistics.median(cpu):6.2f}")


if __name__ == "__main__":
    main()
