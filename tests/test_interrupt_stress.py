"""SIGINT and SIGTERM at random moments of many short runs of the installed swt, into .npy, HDF5 and Zarr
outputs: never a temporary file left, and either no output or the complete, correct one (and swt says
which). Slow: about a minute on two cores (RELIABILITY.md, "Interrupts").
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from clitools import SWT
from reference import fold_loops

from swt_cli.formats import TEMP_MARK, open_reader

pytestmark = pytest.mark.slow

FORMATS = ("npy", "h5", "zarr")
RUNS_PER_FORMAT = 70  # 210 runs in all
PARALLEL = 4


def _one_run(folder: str, src: str, fmt: str, delay: float, sig: int) -> dict:
    out = os.path.join(folder, f"out.{fmt}")
    proc = subprocess.Popen([SWT, "fold", src, out, "-k", "3", "-q", "--batch-size", "2"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_started(proc)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"folder": folder, "fmt": fmt, "code": "hung", "stderr": err.decode(errors="replace")}
    return {"folder": folder, "fmt": fmt, "code": proc.returncode, "stderr": err.decode(errors="replace"),
            "sig": signal.Signals(sig).name, "delay": delay, "out": out}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_started(proc: subprocess.Popen) -> None:
    """Until swt runs: it catches SIGTERM from then on (bit 15 of SigCgt in /proc/PID/status), where Python
    itself does not. Signals before that moment would test Python's imports, not swt."""
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)


def _calibrate(tmp_path, src: str, fmt: str) -> float:
    """Seconds a run takes here now once swt runs (the signals are spread over 1.2 times that)."""
    folder = tmp_path / f"calibrate-{fmt}"
    folder.mkdir()
    proc = subprocess.Popen([SWT, "fold", src, str(folder / f"out.{fmt}"), "-k", "3", "-q", "--batch-size", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_started(proc)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return time.monotonic() - start


def test_random_interrupts_leave_no_temp_and_no_partial_output(tmp_path):
    rng = np.random.default_rng()
    windows = rng.standard_normal((16, 2, 6, 6, 3, 3)).astype(np.float32)
    src = str(tmp_path / "windows.npy")
    np.save(src, windows)
    expected = fold_loops(windows, (8, 8), (3, 3), (1, 1), (0, 0), (1, 1))
    seconds = {fmt: _calibrate(tmp_path, src, fmt) for fmt in FORMATS}
    pick = random.Random(int(rng.integers(1 << 30)))
    jobs = []
    for fmt in FORMATS:
        for i in range(RUNS_PER_FORMAT):
            folder = tmp_path / f"{fmt}-{i}"
            folder.mkdir()
            jobs.append((str(folder), src, fmt, pick.uniform(0.0, 1.2 * seconds[fmt]),
                         pick.choice([signal.SIGINT, signal.SIGTERM])))
    pick.shuffle(jobs)
    cpu_before = _children_cpu()
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda job: _one_run(*job), jobs))
    # bounded in work, not in wall time (which other load on a shared machine stretches): under 4 minutes
    # on two cores
    cpu = _children_cpu() - cpu_before

    outcomes = {"finished": 0, "stopped, nothing left": 0, "stopped after the commit": 0, "ended while exiting": 0,
                "stopped before the command": 0}
    for r in results:
        where = f"{r['fmt']} run in {r['folder']} ({r.get('sig')} after {r.get('delay', 0):.3f}s): {r['stderr']!r}"
        assert r["code"] != "hung", where
        leftovers = [n for n in os.listdir(r["folder"]) if TEMP_MARK in n]
        assert leftovers == [], where
        exists = os.path.lexists(r["out"])
        if r["code"] == 0:
            outcomes["finished"] += 1
            assert exists and r["stderr"] == "", where
        elif r["code"] in (130, 143):
            lines = r["stderr"].strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in r["stderr"], where
            word = "interrupted" if r["code"] == 130 else "terminated (SIGTERM)"
            if exists:
                outcomes["stopped after the commit"] += 1
                assert lines[0] == f"Error: {word}: {r['out']} was complete and in place before the interrupt", where
            elif lines == ["Error: interrupted"] and r["code"] == 130:
                # the signal landed in Click's parsing of the arguments, before the command ran (Click
                # makes any KeyboardInterrupt there an Abort): nothing was created
                outcomes["stopped before the command"] += 1
            else:
                outcomes["stopped, nothing left"] += 1
                assert lines[0] == f"Error: {word}: no output was left behind", where
        elif r["code"] in (-signal.SIGINT, -signal.SIGTERM):
            # swt's handlers go back to Python's as its command returns: a signal while the process then
            # exits ends it the default way, with the run done
            outcomes["ended while exiting"] += 1
            assert exists, where
        else:
            pytest.fail(f"exit status {r['code']}: {where}")
        if exists:
            with open_reader(r["out"]) as reader:
                np.testing.assert_allclose(reader.read(()), expected, rtol=1e-5, atol=1e-4, err_msg=where)
    print(outcomes, f"{cpu:.0f} CPU seconds")
    assert cpu < 2 * 200, f"the stress test outgrew its time: {cpu:.0f} CPU seconds"
    assert len(results) >= 200
    assert outcomes["stopped, nothing left"] >= 20, outcomes  # the signals did land mid-run
