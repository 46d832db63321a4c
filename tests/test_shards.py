"""Array-job shards writing one Zarr output: --shard I/N|auto, the race-free create-or-join, the per-block
markers, swt info on an incomplete output, --resume after a shard is killed."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zarr
from clitools import SWT, invoke

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.blocks import fmt_items, missing
from swt_cli.formats import Location, open_reader
from swt_cli.records import MARKERS, read_markers
from swt_cli.shards import SharedOutput, parse_shard

#: swt with every block slowed down (a launcher in the tests, not a hook in the package).
SLOW_SWT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_swt.py")

GEOMETRY = ["-k", "3", "-s", "2", "-o", "16"]


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """30 rows of random windows (never all zeros) and their fold, computed in memory."""
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(5)
    images = rng.standard_normal((30, 2, 16, 16)).astype(np.float32)
    win = sliding_window(images, 3, stride=2)
    path = folder / "win.npy"
    np.save(path, win)
    return path, sliding_window_transpose(win, 16, 3, stride=2)


def _done(store):
    """What each block's marker records (writer pid, time, ...), by marker name."""
    folder = os.path.join(store, MARKERS)
    return {name: json.load(open(os.path.join(folder, name))) for name in os.listdir(folder) if not name.startswith(".")}


# ---- pure logic ----

def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 2/3 ") == (2, 3)
    for bad in ("3/3", "-1/3", "1/0", "x/3", "1", "1/2/3"):
        with pytest.raises(SwtError):
            parse_shard(bad)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert parse_shard("auto", env) == (7, 8)
    assert parse_shard("auto", {**env, "SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1"}) == (7, 8)
    assert parse_shard("AUTO", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
                                "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3)
    with pytest.raises(SwtError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("auto", {})
    with pytest.raises(SwtError, match="not one of"):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3"})


def test_ranges():
    assert missing([], 5) == [(0, 5)]
    assert missing([(0, 5)], 5) == []
    assert missing([(3, 5), (0, 2)], 5) == [(2, 3)]
    assert fmt_items([(10, 11)], 30, (30,)) == "batch row 10 of 30"
    assert fmt_items([(3, 5)], 60, (30, 2)) == "items (of the flattened leading axes) 3-4 of 60"


def test_create_or_join_is_race_free(tmp_path):
    """Eight writers create one output at once: one builds it, seven join it, all see one job."""
    loc = Location.parse(str(tmp_path / "race.zarr"))
    match = {"op": "fold", "shape": [8, 4], "dtype": "float32", "lead_shape": [8], "geometry": {}}
    barrier = threading.Barrier(8)
    results, errors = [], []

    def one():
        barrier.wait()
        try:
            results.append(SharedOutput.create_or_join(loc, (8, 4), np.float32, {"a": 1}, match, {"axis": 0, "extent": 2},
                                                       (2, 4), "zstd", shard=True, resume=False, overwrite=False))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(joined for _, joined in results) == [False] + [True] * 7
    assert not [p for p in os.listdir(tmp_path) if p != "race.zarr"]  # the losers' temporaries are gone
    out = results[0][0]
    for ix in out.indexes():
        out.write_block(ix, np.full((ix[0].stop - ix[0].start, 4), 1.5, np.float32))
    assert out.finish() == []
    arr = zarr.open_array(str(tmp_path / "race.zarr"))
    assert "swt_incomplete" not in arr.attrs and (arr[...] == 1.5).all()


# ---- the command line ----

def test_three_concurrent_shards_make_the_local_result(tmp_path, windows):
    win, expected = windows
    out = tmp_path / "out.zarr"
    procs = [subprocess.Popen([SWT, "fold", win, out, *GEOMETRY, "--shard", f"{i}/3", "--batch-size", "2", "-q"],
                              stderr=subprocess.PIPE) for i in range(3)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    got = zarr.open_array(str(out))
    np.testing.assert_array_equal(got[...], expected)
    assert "swt_incomplete" not in got.attrs
    assert len({r["pid"] for r in _done(out).values()}) == 3  # three processes each wrote their own blocks
    local = tmp_path / "local.npy"
    assert invoke("fold", win, local, *GEOMETRY, "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(local), got[...])
    # the output reads as an ordinary input, and swt info calls it complete
    assert "status:      complete" in invoke("info", out).stdout
    assert invoke("unfold", out, tmp_path / "again.npy", "-k", "3", "-s", "2", "-q").exit_code == 0


def test_killed_shard_then_resume(tmp_path, windows):
    win, expected = windows
    out = tmp_path / "out.zarr"
    for i in (0, 2):
        assert invoke("fold", win, out, *GEOMETRY, "--shard", f"{i}/3", "--batch-size", "1", "-q").exit_code == 0
    slow = subprocess.Popen([sys.executable, SLOW_SWT, "0.2", "fold", win, out, *GEOMETRY, "--shard", "1/3",
                             "--batch-size", "1", "-q"])  # each block takes 0.2 s more: killed mid-job
    deadline = time.monotonic() + 60
    while len(read_markers(str(out))) < 20 + 3 and time.monotonic() < deadline:  # shards 0 and 2 made 20
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    before = _done(out)
    assert 23 <= len(before) < 30

    info = invoke("info", out)
    assert info.exit_code == 0 and "INCOMPLETE" in info.stdout
    gaps = missing(read_markers(str(out)), 60)
    assert gaps and all(10 * 2 <= a and b <= 20 * 2 for a, b in gaps)  # only shard 1's rows (2 items each)
    facts = json.loads(invoke("info", out, "--json").stdout)
    assert facts["job"]["complete"] is False and facts["job"]["missing"] == [list(g) for g in gaps]
    with pytest.raises(SwtError, match=r"incomplete: batch rows? 1\d.* of 30 were never written.*--resume"):
        open_reader(str(out))
    refused = invoke("fold", out, tmp_path / "x.npy", "-k", "1")
    assert refused.exit_code == 1 and "--resume" in refused.stderr

    resumed = invoke("fold", win, out, *GEOMETRY, "--shard", "1/3", "--batch-size", "1", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "already done" in resumed.stderr
    after = _done(out)
    assert len(after) == 30
    assert all(after[name] == record for name, record in before.items())  # finished blocks were not redone
    got = zarr.open_array(str(out))
    assert "swt_incomplete" not in got.attrs
    np.testing.assert_array_equal(got[...], expected)


def test_resume_alone_finishes_a_sharded_output_with_another_layout(tmp_path, windows):
    """--resume without --shard does whatever is missing, with the blocks the output recorded."""
    win, expected = windows
    out = tmp_path / "out.zarr:/grp/folded"
    assert invoke("fold", win, out, *GEOMETRY, "--shard", "1/4", "--batch-size", "3", "-q").exit_code == 0
    assert read_markers(str(tmp_path / "out.zarr" / "grp" / "folded"))
    result = invoke("fold", win, out, *GEOMETRY, "--resume", "--max-memory", "1MiB")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), path="grp/folded")[...], expected)
    again = invoke("fold", win, out, *GEOMETRY, "--resume")
    assert again.exit_code == 0 and "3 of 3" not in again.stderr and "already done" in again.stderr


def test_sharded_unfold(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(-50, 50, (7, 12, 10)).astype(np.int16)
    np.save(tmp_path / "img.npy", images)
    for i in range(2):
        r = invoke("unfold", tmp_path / "img.npy", tmp_path / "w.zarr", "-k", "3,2", "-p", "1", "--shard", f"{i}/2", "-q")
        assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "w.zarr"))[...], sliding_window(images, (3, 2), padding=1))


def test_existing_outputs(tmp_path, windows):
    win, _ = windows
    out = tmp_path / "out.zarr"
    assert invoke("fold", win, out, *GEOMETRY, "--shard", "0/2", "-q").exit_code == 0
    # another job's output is never joined nor deleted by a shard
    other = invoke("fold", win, out, "-k", "3", "-s", "2", "-o", "15", "--shard", "1/2", "--overwrite")
    assert other.exit_code == 1 and "another job's output" in other.stderr and "[30, 2, 15, 15]" in other.stderr
    # a plain (non-shard) run neither joins nor silently continues an incomplete output
    plain = invoke("fold", win, out, *GEOMETRY, "--scheduler", "local:1")
    assert plain.exit_code == 1 and "is an incomplete output" in plain.stderr and "once none is writing it, pass --resume" in plain.stderr
    assert invoke("fold", win, out, *GEOMETRY, "--shard", "1/2", "-q").exit_code == 0
    complete = invoke("fold", win, out, *GEOMETRY, "--shard", "1/2")
    assert complete.exit_code == 1 and "is complete" in complete.stderr
    # an ordinary swt output is not a job output: shards refuse it
    assert invoke("fold", win, tmp_path / "plain.zarr", *GEOMETRY, "-q").exit_code == 0
    refused = invoke("fold", win, tmp_path / "plain.zarr", *GEOMETRY, "--shard", "0/2")
    assert refused.exit_code == 1 and "not the output of a sharded" in refused.stderr


def test_refusals(tmp_path, windows):
    win, _ = windows
    r = invoke("fold", win, tmp_path / "o.h5", *GEOMETRY, "--shard", "0/2")
    assert r.exit_code == 1 and "needs a Zarr output" in r.stderr
    r = invoke("fold", win, tmp_path / "o.npy", *GEOMETRY, "--resume")
    assert r.exit_code == 1 and "--resume needs a Zarr output" in r.stderr
    r = invoke("fold", "-", tmp_path / "o.zarr", *GEOMETRY, "--shard", "0/2", input=open(win, "rb").read())
    assert r.exit_code == 1 and "not a pipe" in r.stderr
    r = invoke("fold", win, tmp_path / "o.zarr", *GEOMETRY, "--shard", "2/2")
    assert r.exit_code == 2 and "0 to N-1" in r.stderr
    r = invoke("fold", win, tmp_path / "o.zarr", *GEOMETRY, "--shard", "auto")
    assert r.exit_code == 2 and "SLURM_ARRAY_TASK_ID" in r.stderr
    assert not os.path.exists(tmp_path / "o.zarr")


def test_shard_auto_from_slurm_environment(tmp_path, windows, monkeypatch):
    win, expected = windows
    out = tmp_path / "out.zarr"
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    for task in (1, 2):  # sbatch --array=1-2
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        r = invoke("fold", win, out, *GEOMETRY, "--shard", "auto")
        assert r.exit_code == 0, r.stderr
        assert f"shard {task - 1}/2" in r.stderr
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], expected)
