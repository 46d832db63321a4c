"""swt on a real Dask cluster on 127.0.0.1: a `dask scheduler` and two `dask worker` processes.

Results equal the local run; the work verifiably ran on the workers (the markers name them); a failing
task is retried; a worker killed mid-job loses nothing.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

pytest.importorskip("distributed")

from clitools import SWT, invoke, run_swt  # noqa: E402

from swt_cli import sliding_window, sliding_window_transpose  # noqa: E402
from swt_cli.formats import Location  # noqa: E402
from swt_cli.records import MARKERS, read_markers  # noqa: E402

DASK = os.path.join(os.path.dirname(sys.executable), "dask")
TESTS = os.path.dirname(os.path.abspath(__file__))
GEOMETRY = ["-k", "3", "-s", "2", "-o", "16"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and workers as real processes on 127.0.0.1 (random ports, no dashboards)."""

    def __init__(self, folder, workers=2, env=None, preload=None):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        env = {**os.environ, "PYTHONPATH": TESTS, **(env or {})}
        self.log = open(os.path.join(folder, "cluster.log"), "wb")
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1], "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0"],  # its HTTP server too stays on the loopback
            cwd=folder, env=env, stdout=self.log, stderr=self.log)
        self.workers = [subprocess.Popen(
            [DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0",
             "--local-directory", str(folder), "--name", f"w{i}", *(["--preload", preload] if preload else [])],
            cwd=folder, env=env, stdout=self.log, stderr=self.log) for i in range(workers)]
        from distributed import Client

        self.client = Client(self.address, timeout="30s")
        self.client.wait_for_workers(workers, timeout=60)

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def close(self):
        try:
            self.client.close()
        finally:  # workers first, while the scheduler can still hear them leave (else they linger ~10 s)
            for group in (self.workers, [self.scheduler]):
                for proc in group:
                    if proc.poll() is None:
                        proc.terminate()
                for proc in group:
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist-data")
    images = np.random.default_rng(11).standard_normal((30, 2, 16, 16)).astype(np.float32)
    win = sliding_window(images, 3, stride=2)
    np.save(folder / "win.npy", win)
    np.save(folder / "img.npy", images)
    return folder, sliding_window_transpose(win, 16, 3, stride=2), images


def _markers(store):
    folder = os.path.join(store, MARKERS)
    return [json.load(open(os.path.join(folder, n))) for n in os.listdir(folder) if not n.startswith(".")]


def test_fold_on_the_cluster_writes_zarr_from_the_workers(tmp_path, cluster, windows):
    data, expected, _ = windows
    out = tmp_path / "out.zarr"
    result = run_swt("fold", data / "win.npy", out, *GEOMETRY, "--scheduler", cluster.address, "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert b"swt fold: 60/60 items (100%)" in result.stderr  # progress from the futures
    got = zarr.open_array(str(out))
    np.testing.assert_array_equal(got[...], expected)
    local = tmp_path / "local.npy"
    assert invoke("fold", data / "win.npy", local, *GEOMETRY, "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(local), got[...])
    assert "swt_incomplete" not in got.attrs and got.chunks[0] == 2  # one block, one chunk row: no shared chunks
    # every block was written by a worker process, and both workers took part
    records = _markers(out)
    assert len(records) == 15
    pids = cluster.worker_pids()
    assert {r["worker"] for r in records} == set(pids)
    assert all(pids[r["worker"]] == r["pid"] for r in records)


def test_unfold_on_the_cluster_into_single_writer_formats(tmp_path, cluster, windows):
    """HDF5, .npy and stdout take one writer: the workers compute, the client writes in order."""
    data, _, images = windows
    expected = sliding_window(images, (4, 3), stride=(2, 3), padding=1)
    args = ["-k", "4,3", "-s", "2,3", "-p", "1", "--scheduler", cluster.address, "--batch-size", "3", "-q"]
    assert invoke("unfold", data / "img.npy", tmp_path / "w.h5:/windows", *args).exit_code == 0
    import h5py

    with h5py.File(tmp_path / "w.h5") as f:
        np.testing.assert_array_equal(f["windows"][...], expected)
    piped = run_swt("unfold", data / "img.npy", "-", *args)
    assert piped.returncode == 0, piped.stderr
    np.testing.assert_array_equal(np.load(__import__("io").BytesIO(piped.stdout)), expected)


def test_resume_a_sharded_output_on_the_cluster(tmp_path, cluster, windows):
    data, expected, _ = windows
    out = tmp_path / "out.zarr"
    assert invoke("fold", data / "win.npy", out, *GEOMETRY, "--shard", "0/3", "--batch-size", "5", "-q").exit_code == 0
    here = {(r["start"], r["stop"]) for r in _markers(out)}
    result = invoke("fold", data / "win.npy", out, *GEOMETRY, "--scheduler", cluster.address, "--resume")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], expected)
    records = _markers(out)
    assert {r["worker"] for r in records if (r["start"], r["stop"]) not in here} <= set(cluster.worker_pids())
    assert all(r["worker"] is None for r in records if (r["start"], r["stop"]) in here)  # not redone


def test_scheduler_file(tmp_path, cluster, windows):
    data, expected, _ = windows
    (tmp_path / "scheduler.json").write_text(json.dumps({"type": "Scheduler", "address": cluster.address}))
    r = invoke("fold", data / "win.npy", tmp_path / "out.zarr", *GEOMETRY, "--scheduler", tmp_path / "scheduler.json", "-q")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], expected)


def test_a_failing_task_is_retried(tmp_path, cluster, windows):
    from flaky_task import FailOnce

    from swt_cli import distributed
    from swt_cli.blocks import missing
    from swt_cli.geometry import Geometry, plan_fold
    from swt_cli.options import RunOptions
    from swt_cli.pipeline import Progress, Transform
    from swt_cli.shards import SharedOutput

    data, expected, _ = windows
    win = np.load(data / "win.npy")
    plan = plan_fold(win.shape, Geometry.from_args(3, stride=2), 16)
    transform = FailOnce(Transform("fold", plan, win.dtype, win.dtype), str(tmp_path))
    loc = Location.parse(str(tmp_path / "out.zarr"))
    match = {"op": "fold", "shape": list(expected.shape), "dtype": "float32", "lead_shape": [30, 2], "geometry": {}}
    output, _ = SharedOutput.create_or_join(loc, expected.shape, np.float32, {}, match, {"axis": 0, "extent": 6},
                                            (6, 2, 16, 16), "zstd", shard=False, resume=False, overwrite=False)
    in_loc = Location.parse(str(data / "win.npy"))
    distributed._cluster_writes(cluster.client, in_loc, loc, transform, output.indexes(), (30, 2), RunOptions.resolve(),
                                Progress("test", 60, "items", quiet=True))
    assert len([n for n in os.listdir(tmp_path) if len(n) == 40]) == 5  # each of the 5 blocks failed once
    assert output.finish() == [] and missing(read_markers(str(tmp_path / "out.zarr")), 60) == []
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], expected)


@pytest.mark.slow  # a stress test: a cluster of its own and a worker killed mid-job (9 s under load)
def test_a_worker_killed_mid_job_loses_nothing(tmp_path, windows):
    data, expected, _ = windows
    own = Cluster(tmp_path, env={"SLOW_SWT_SECONDS": "0.05"}, preload="slow_swt")  # each block takes 0.05 s more
    try:
        victim, survivor = own.workers
        pids = own.worker_pids()
        out = tmp_path / "out.zarr"
        job = subprocess.Popen([SWT, "fold", data / "win.npy", out, *GEOMETRY, "--scheduler", own.address,
                                "--batch-size", "1", "-q"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        started = False
        while not started and time.monotonic() < deadline:  # kill it once it is writing blocks
            started = os.path.isdir(out / MARKERS) and any(r["pid"] == victim.pid for r in _markers(out))
            time.sleep(0.01)
        assert started
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        got = zarr.open_array(str(out))
        np.testing.assert_array_equal(got[...], expected)
        assert "swt_incomplete" not in got.attrs
        # the survivor did what the victim held (a block whose result the client had not yet received runs
        # again: blocks are idempotent, each rewrites its own chunks and marker)
        assert {r["worker"] for r in _markers(out)} <= set(pids)
        late = [r for r in _markers(out) if r["pid"] == survivor.pid]
        assert len(late) > 15
    finally:
        own.close()


def test_local_cluster(tmp_path, windows):
    data, expected, _ = windows
    out = tmp_path / "out.zarr"
    r = invoke("fold", data / "win.npy", out, *GEOMETRY, "--scheduler", "local:2", "--batch-size", "4", "-q")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], expected)
    assert {r["pid"] for r in _markers(out)}.isdisjoint({os.getpid()})


def test_clear_errors(tmp_path, windows, monkeypatch):
    data, _, _ = windows
    r = invoke("fold", data / "win.npy", tmp_path / "o.zarr", *GEOMETRY, "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert r.exit_code == 1 and "cannot reach the Dask scheduler" in r.stderr
    r = invoke("fold", data / "win.npy", tmp_path / "o.zarr", *GEOMETRY, "--scheduler", "local:0")
    assert r.exit_code == 1 and "local:N" in r.stderr
    r = invoke("fold", "-", tmp_path / "o.zarr", *GEOMETRY, "--scheduler", "local:1",
               input=open(data / "win.npy", "rb").read())
    assert r.exit_code == 1 and "not a pipe" in r.stderr
    assert not os.path.exists(tmp_path / "o.zarr")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    r = invoke("fold", data / "win.npy", tmp_path / "o.zarr", *GEOMETRY, "--scheduler", "local:2")
    assert r.exit_code == 1 and "pip install 'swt-cli[dask]'" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["slurm_array.sh", "dask_cluster.sh"])
def test_examples_run(script):
    """Both examples run here, on one machine, and check their own result."""
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    examples = os.path.join(os.path.dirname(TESTS), "examples")
    result = subprocess.run(["bash", os.path.join(examples, script)], env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"equal" in result.stdout and b"True" in result.stdout
