"""Object storage against a real S3 API: a moto server on 127.0.0.1 (started here, a free port), a bucket
per test, swt run on s3:// URLs and compared bit for bit with the same runs on local files.

Credentials are dummies in the environment (as a user's AWS_* variables would be); the endpoint comes
from FSSPEC_S3_ENDPOINT_URL in subprocesses and from --storage-options in-process, so both ways are used.
moto and s3fs are in the test extra: a missing one fails these tests rather than skipping them.
"""

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import zarr
from clitools import invoke, run_in_process

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.formats import Location
from swt_cli.jobs import fold_file
from swt_cli.shards import SharedOutput
from swt_cli.storage import create_exclusive, filesystem

SLOW_SWT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_swt.py")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_SESSION_TOKEN": "testing", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
               "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}
GEOMETRY = ["-k", "3", "-s", "2"]


@pytest.fixture(scope="module")
def endpoint():
    """A moto S3 server on the loopback interface, for this module's tests."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    """A fresh bucket: ``(s3fs filesystem, "s3://bucket", environment for swt subprocesses, storage options)``."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    bucket = f"swt-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    env = {**os.environ, **CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint, "PYTHONPATH": _pythonpath()}
    return fs, f"s3://{bucket}", env, {"endpoint_url": endpoint}


def _pythonpath() -> str:
    import swt_cli

    root = os.path.dirname(os.path.dirname(os.path.abspath(swt_cli.__file__)))
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])


def _swt(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "swt_cli", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _images(seed: int, shape=(3, 2, 20, 20)) -> np.ndarray:
    """Random images with large values that cancel: a sum in another order gives other bits."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal(shape).astype(np.float32)
    images[..., ::3, :] *= 1e7
    images[..., 1::3, :] *= -1e7
    return images


def _upload(fs, tmp_path, url: str, array: np.ndarray) -> None:
    """``array`` saved as a local .npy file (kept beside the test's other files) and put at ``url`` on S3."""
    local = tmp_path / url.rsplit("/", 1)[-1]
    np.save(local, array)
    fs.put(str(local), url[5:])


def _read_zarr(url: str, options: dict, name: str | None = None) -> np.ndarray:
    store = zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=True)
    return zarr.open_array(store=store, path=name or "", mode="r")[...]


def _attrs(url: str, options: dict) -> dict:
    store = zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=True)
    return dict(zarr.open_array(store=store, mode="r").attrs)


# ---- the default run: a few representative runs ------------------------------------------------------

def test_unfold_and_fold_on_s3_match_local_files(s3, tmp_path):
    """.npy on S3 -> Zarr on S3 -> Zarr on S3: the fold in a subprocess, its endpoint from FSSPEC_S3_ENDPOINT_URL."""
    fs, bucket, env, options = s3
    images = _images(1)
    _upload(fs, tmp_path, f"{bucket}/img.npy", images)
    so = ["--storage-options", json.dumps(options)]

    cut = invoke("unfold", f"{bucket}/img.npy", f"{bucket}/w.zarr", *GEOMETRY, *so, "-q")
    assert cut.exit_code == 0 and cut.stderr == "", cut.stderr
    done = _swt(env, "fold", f"{bucket}/w.zarr", f"{bucket}/back.zarr", "--reduce", "mean", "-q")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.zarr", *GEOMETRY, "-q").exit_code == 0
    assert invoke("fold", tmp_path / "w.zarr", tmp_path / "back.zarr", "--reduce", "mean", "-q").exit_code == 0

    windows = _read_zarr(f"{bucket}/w.zarr", options)
    np.testing.assert_array_equal(windows, zarr.open_array(str(tmp_path / "w.zarr"))[...], strict=True)
    np.testing.assert_array_equal(windows, sliding_window(images, 3, stride=2), strict=True)
    back = _read_zarr(f"{bucket}/back.zarr", options)
    assert back.tobytes() == zarr.open_array(str(tmp_path / "back.zarr"))[...].tobytes()

    facts = json.loads(invoke("info", f"{bucket}/back.zarr", *so, "--json").stdout)
    assert facts["shape"] == list(images.shape) and facts["job"]["complete"] is True
    assert facts["geometry"]["output_size"] == [20, 20]


def test_storage_options_hdf5_input_and_redacted_provenance(s3, tmp_path):
    """In-process, the endpoint and keys from --storage-options (never recorded); an HDF5 input named inside the file."""
    fs, bucket, _, options = s3
    images = _images(2)
    windows = sliding_window(images, 3, stride=2)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_group("g").create_dataset("w", data=windows, chunks=(1, *windows.shape[1:]))
        f["other"] = np.zeros(3)
    fs.put(str(tmp_path / "w.h5"), f"{bucket[5:]}/w.h5")
    secret = json.dumps({**options, "key": "testing", "secret": "testing"})

    done = invoke("fold", f"{bucket}/w.h5:/g/w", f"{bucket}/out.zarr:/img", *GEOMETRY, "-o", "20",
                  "--storage-options", secret, "-q")
    assert done.exit_code == 0, done.stderr
    assert invoke("fold", f"{tmp_path}/w.h5:/g/w", tmp_path / "out.npy", *GEOMETRY, "-o", "20", "-q").exit_code == 0
    got = _read_zarr(f"{bucket}/out.zarr", options, "img")
    assert got.tobytes() == np.load(tmp_path / "out.npy").tobytes()

    store = zarr.storage.FsspecStore.from_url(f"{bucket}/out.zarr", storage_options=options, read_only=True)
    command = zarr.open_array(store=store, path="img", mode="r").attrs["swt_command"]
    assert "<redacted>" in command and "testing" not in command and "endpoint" not in command

    listed = invoke("info", f"{bucket}/w.h5", "--storage-options", json.dumps(options), "--json")
    assert listed.exit_code == 0, listed.stderr
    assert {a["name"] for a in json.loads(listed.stdout)["arrays"]} == {"/g/w", "/other"}


def test_refusals_on_s3(s3, tmp_path):
    """One line each: a .npy or HDF5 output on S3, an existing output, the input as output, a read-only protocol."""
    fs, bucket, _, options = s3
    so = ["--storage-options", json.dumps(options)]
    _upload(fs, tmp_path, f"{bucket}/w.npy", sliding_window(_images(3, (2, 1, 8, 8)), 3))
    assert invoke("unfold", f"{bucket}/w.npy", f"{bucket}/w.zarr", "-k", "1", *so, "-q").exit_code == 0

    for out in ("x.npy", "x.h5"):
        refused = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/{out}", *so)
        assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
        assert "only to local files" in refused.stderr and ".zarr" in refused.stderr
    assert not fs.exists(f"{bucket[5:]}/x.npy")

    first = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/out.zarr", "-k", "1", *so, "-q")
    assert first.exit_code == 0, first.stderr
    again = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/out.zarr", "-k", "1", *so)
    assert again.exit_code == 1 and "exists" in again.stderr and "--overwrite" in again.stderr
    fs.pipe(f"{bucket[5:]}/user.zarr/notes.txt", b"mine")
    foreign = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/user.zarr", "-k", "1", *so)
    assert foreign.exit_code == 1 and "exists: pass --overwrite" in foreign.stderr
    assert fs.cat(f"{bucket[5:]}/user.zarr/notes.txt") == b"mine"
    replaced = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/out.zarr", "-k", "1", *so, "--overwrite", "-q")
    assert replaced.exit_code == 0, replaced.stderr

    same = invoke("unfold", f"{bucket}/out.zarr", f"{bucket}/out.zarr/", "-k", "1", *so, "--overwrite")
    assert same.exit_code == 1 and "is the input" in same.stderr
    inside = invoke("unfold", f"{bucket}/out.zarr", f"{bucket}/out.zarr/in.zarr", "-k", "1", *so)
    assert inside.exit_code == 1 and "lies inside the input" in inside.stderr
    before = fs.find(f"{bucket[5:]}/out.zarr")
    for alias in ("s3a://" + bucket[5:] + "/out.zarr", bucket + "//out.zarr"):
        # s3a:// is s3://, and s3fs lists bkt//x as bkt/x: --overwrite would delete the input it then reads
        aliased = invoke("unfold", f"{bucket}/out.zarr", alias, "-k", "1", *so, "--overwrite")
        assert aliased.exit_code == 1 and "is the input" in aliased.stderr, (alias, aliased.stderr)
    assert fs.find(f"{bucket[5:]}/out.zarr") == before
    https = invoke("fold", f"{bucket}/w.zarr", "https://example.invalid/o.zarr", "-k", "1", *so)
    assert https.exit_code == 1 and "read-only" in https.stderr
    bad = invoke("fold", f"{bucket}/w.zarr", f"{bucket}/o.zarr", "-k", "1", "--storage-options", "{nope")
    assert bad.exit_code == 2 and "not JSON" in bad.stderr


def test_exclusive_create_second_creator_loses(s3):
    """moto honours If-None-Match on PutObject: of two creators of one name, the second loses; and two runs
    creating one shared output at once: one creates it, the other joins it."""
    _, bucket, _, options = s3
    fs, path = filesystem(f"{bucket}/claim", options)
    assert create_exclusive(fs, path, b"first") is True
    assert create_exclusive(fs, path, b"second") is False
    assert fs.cat_file(path) == b"first"

    loc = Location.parse(f"{bucket}/shared.zarr", options)
    match = {"op": "fold", "lead_shape": [4], "shape": [4, 8]}

    def create(_):
        return SharedOutput.create_or_join(loc, (4, 8), np.float32, {}, match, {"rows": 1}, (1, 8), "zstd",
                                           shard=True, resume=False, overwrite=False)[1]

    with ThreadPoolExecutor(2) as pool:  # an error in either is raised here
        assert sorted(pool.map(create, range(2))) == [False, True]


def test_memory_urls(tmp_path):
    """memory:// (fsspec's in-process store): a fold from and to it, as from and to local files."""
    windows = sliding_window(_images(4, (2, 2, 12, 12)), 3, stride=2)
    store = zarr.storage.FsspecStore.from_url(f"memory://swt-{uuid.uuid4().hex}/w.zarr")
    zarr.create_array(store=store, shape=windows.shape, dtype=windows.dtype, chunks=(1, *windows.shape[1:]))[...] = windows
    out = f"{store.path.rsplit('/', 1)[0]}/out.zarr"
    fold_file(f"memory://{store.path}", f"memory://{out}", kernel=3, stride=2, output_size=12)
    got = zarr.open_array(store=zarr.storage.FsspecStore.from_url(f"memory://{out}", read_only=True), mode="r")[...]
    assert got.tobytes() == sliding_window_transpose(windows, 12, 3, stride=2).tobytes()
    with pytest.raises(SwtError, match="exists"):
        fold_file(f"memory://{store.path}", f"memory://{out}", kernel=3, stride=2, output_size=12)


class _RangeServer(http.server.SimpleHTTPRequestHandler):
    """A static file server that serves byte ranges (as object stores and CDNs do) and records each GET's range."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        asked = self.headers.get("Range")
        self.server.asked.append(asked)
        if not asked:
            return super().do_GET()
        data = open(self.translate_path(self.path), "rb").read()
        first, _, last = asked.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start:end + 1])


def test_http_inputs_are_read_by_ranges(tmp_path):
    """http(s):// is read-only, and a .npy or HDF5 file there is read by ranged GETs, never fetched whole."""
    windows = sliding_window(_images(9, (16, 2, 128, 128)), 3, stride=2)  # files of 4.6 MB
    np.save(tmp_path / "w.npy", windows)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_dataset("g/w", data=windows, chunks=(1, *windows.shape[1:]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeServer, directory=str(tmp_path)))
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    expected = sliding_window_transpose(windows, 128, 3, stride=2).tobytes()
    try:
        for name in ("w.npy", "w.h5:/g/w"):
            done = invoke("fold", f"{base}/{name}", tmp_path / f"{name[:4]}out.npy", "-k", "3", "-s", "2", "-o", "128",
                          "--batch-size", "1", "-q")
            assert done.exit_code == 0, done.stderr
            assert np.load(tmp_path / f"{name[:4]}out.npy").tobytes() == expected
        refused = invoke("fold", f"{base}/w.npy", f"{base}/out.zarr", "-k", "3", "-s", "2")
        assert refused.exit_code == 1 and "read-only" in refused.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert server.asked and None not in server.asked  # every GET asked for a range, each a part of the file
    spans = [int(b) - int(a) + 1 for a, b in (r.removeprefix("bytes=").split("-") for r in server.asked)]
    assert max(spans) < os.path.getsize(tmp_path / "w.npy") * 3 // 4


def test_missing_driver_names_the_extra(tmp_path):
    """Without s3fs, an s3:// URL is one line naming the package and the cloud extra (a local path works as ever)."""
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from swt_cli.cli import main; main()")
    np.save(tmp_path / "w.npy", np.ones((1, 1, 3, 3, 1, 1), np.float32))
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": _pythonpath()}
    run = subprocess.run([sys.executable, "-c", code, "info", "s3://bucket/w.zarr"], env=env, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.count("\n") == 1
    assert "s3fs" in run.stderr and "swt-cli[cloud]" in run.stderr
    local = subprocess.run([sys.executable, "-c", code, "info", str(tmp_path / "w.npy")], env=env, capture_output=True)
    assert local.returncode == 0


# ---- slow: killed runs, shards, Dask, preview ----------------------------------------------------------

def _markers(fs, folder: str) -> int:
    fs.invalidate_cache()
    try:
        return sum(1 for p in fs.ls(f"{folder}/.swt-done", detail=False) if "-" in p.rsplit("/", 1)[-1])
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_killed_shard_reads_incomplete_then_resume_finishes(s3, tmp_path):
    fs, bucket, env, options = s3
    images = _images(5, (12, 2, 16, 16))
    _upload(fs, tmp_path, f"{bucket}/w.npy", sliding_window(images, 3, stride=2))
    src, out = f"{bucket}/w.npy", f"{bucket}/out.zarr"
    args = [*GEOMETRY, "-o", "16", "--batch-size", "1", "-q"]
    for i in (0, 2):
        done = _swt(env, "fold", src, out, *args, "--shard", f"{i}/3")
        assert done.returncode == 0, done.stderr
    slow = subprocess.Popen([sys.executable, SLOW_SWT, "0.3", "fold", src, out, *args, "--shard", "1/3"], env=env)
    deadline = time.monotonic() + 90
    while _markers(fs, out[5:]) < 8 + 2 and time.monotonic() < deadline:  # shards 0 and 2 made 8 blocks
        time.sleep(0.1)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    assert 10 <= _markers(fs, out[5:]) < 12

    info = _swt(env, "info", out)
    assert info.returncode == 0 and "INCOMPLETE" in info.stdout
    refused = _swt(env, "fold", out, tmp_path / "x.npy", "-k", "1")
    assert refused.returncode == 1 and "incomplete" in refused.stderr and "--resume" in refused.stderr
    plain = _swt(env, "fold", src, out, *args)
    assert plain.returncode == 1 and "--resume" in plain.stderr

    resumed = _swt(env, "fold", src, out, *args, "--shard", "1/3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert invoke("fold", tmp_path / "w.npy", tmp_path / "out.npy", *args).exit_code == 0
    assert _read_zarr(out, options).tobytes() == np.load(tmp_path / "out.npy").tobytes()
    assert "swt_incomplete" not in _attrs(out, options)


@pytest.mark.slow
def test_killed_plain_run_reads_incomplete(s3, tmp_path):
    """A plain run to S3 killed mid-way leaves an output that reads as incomplete (never a finished wrong one)."""
    fs, bucket, env, options = s3
    _upload(fs, tmp_path, f"{bucket}/w.npy", sliding_window(_images(6, (8, 1, 12, 12)), 3))
    out = f"{bucket}/out.zarr"
    slow = subprocess.Popen([sys.executable, SLOW_SWT, "0.3", "fold", f"{bucket}/w.npy", out, "-k", "3", "--batch-size",
                             "1", "-q"], env=env)
    deadline = time.monotonic() + 90
    while _markers(fs, out[5:]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    with pytest.raises(SwtError, match="incomplete.*--resume"):
        from swt_cli.jobs import open_input

        open_input(out, storage_options=options)
    resumed = _swt(env, "fold", f"{bucket}/w.npy", out, "-k", "3", "--batch-size", "1", "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert invoke("fold", tmp_path / "w.npy", tmp_path / "out.npy", "-k", "3", "-q").exit_code == 0
    assert _read_zarr(out, options).tobytes() == np.load(tmp_path / "out.npy").tobytes()


@pytest.mark.slow
def test_scheduler_with_two_dask_workers_on_s3(s3, tmp_path):
    fs, bucket, env, options = s3
    images = _images(7, (6, 2, 16, 16))
    _upload(fs, tmp_path, f"{bucket}/img.npy", images)
    for args in (["unfold", f"{bucket}/img.npy", f"{bucket}/w.zarr", *GEOMETRY, "--batch-size", "2"],
                 ["fold", f"{bucket}/w.zarr", f"{bucket}/back.zarr", "--batch-size", "2", "--reduce", "mean"]):
        done = _swt(env, *args, "--scheduler", "local:2", "-q", timeout=300)
        assert done.returncode == 0, done.stderr
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.zarr", *GEOMETRY, "-q").exit_code == 0
    assert invoke("fold", tmp_path / "w.zarr", tmp_path / "back.npy", "--reduce", "mean", "-q").exit_code == 0
    assert _read_zarr(f"{bucket}/w.zarr", options).tobytes() == zarr.open_array(str(tmp_path / "w.zarr"))[...].tobytes()
    assert _read_zarr(f"{bucket}/back.zarr", options).tobytes() == np.load(tmp_path / "back.npy").tobytes()
    # the client writes an HDF5 output from blocks the workers computed from S3
    local = _swt(env, "fold", f"{bucket}/w.zarr", tmp_path / "back.h5", "--reduce", "mean", "--scheduler", "local:2", "-q",
                 timeout=300)
    assert local.returncode == 0, local.stderr
    with h5py.File(tmp_path / "back.h5") as f:
        assert f["data"][...].tobytes() == np.load(tmp_path / "back.npy").tobytes()


@pytest.mark.slow
def test_preview_and_plan_of_s3_inputs(s3, tmp_path):
    fs, bucket, env, _ = s3
    images = _images(8, (1, 3, 16, 16))
    _upload(fs, tmp_path, f"{bucket}/img.npy", images)
    assert _swt(env, "unfold", f"{bucket}/img.npy", f"{bucket}/w.zarr", *GEOMETRY, "-q").returncode == 0
    remote = _swt(env, "preview", f"{bucket}/img.npy", tmp_path / "remote.png", "-q")
    local = _swt(env, "preview", tmp_path / "img.npy", tmp_path / "local.png", "-q")
    assert remote.returncode == local.returncode == 0, remote.stderr
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    planned = _swt(env, "plan", f"{bucket}/w.zarr", "--json")
    assert planned.returncode == 0 and json.loads(planned.stdout)["output_size"] == [16, 16]


def test_url_passwords_never_reach_stderr(tmp_path):
    """A password in a URL (``https://user:password@host``) is left out of every message, as of the
    ``swt_command`` attribute: here the errors of an input that is not there (port 1 refuses at once)."""
    for args in (["info", "https://me:TOPSECRET@127.0.0.1:1/w.zarr"],
                 ["fold", "http://me:TOPSECRET@127.0.0.1:1/w.npy", str(tmp_path / "o.npy"), "-k", "3"]):
        done = run_in_process(*args)
        assert done.returncode == 1, done.stderr
        assert b"TOPSECRET" not in done.stderr and b"<redacted>@127.0.0.1:1" in done.stderr, done.stderr


def test_options_the_driver_does_not_take_are_a_usage_error(s3, tmp_path):
    """``--storage-options`` that s3fs passes on and botocore refuses at its first request: exit 2 with one line
    naming the option source, not 'a bug in swt'."""
    fs, bucket, _, options = s3
    _upload(fs, tmp_path, f"{bucket}/w.npy", sliding_window(_images(3, (1, 1, 6, 6)), 3))
    for extra in ({"bogus_kw": 1}, {"client_kwargs": {"bogus": 1}}, {"config_kwargs": {"nope": 1}}):
        done = invoke("info", f"{bucket}/w.npy", "--storage-options", json.dumps({**options, **extra}))
        assert done.exit_code == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "--storage-options" in done.stderr and "bug in swt" not in done.stderr


def test_url_protocols_are_case_insensitive_and_file_urls_may_name_localhost(s3, tmp_path):
    fs, bucket, _, options = s3
    windows = sliding_window(_images(3, (1, 1, 6, 6)), 3)
    _upload(fs, tmp_path, f"{bucket}/w.npy", windows)
    upper = invoke("info", "S3://" + bucket[5:] + "/w.npy", "--json", "--storage-options", json.dumps(options))
    assert upper.exit_code == 0, upper.stderr
    assert json.loads(upper.stdout)["shape"] == list(windows.shape)
    np.save(tmp_path / "local.npy", windows)
    for url in (f"file://localhost{tmp_path}/local.npy", f"FILE://{tmp_path}/local.npy"):
        done = invoke("info", url, "--json")
        assert done.exit_code == 0 and json.loads(done.stdout)["shape"] == list(windows.shape), done.stderr
    elsewhere = invoke("info", f"file://otherhost{tmp_path}/local.npy")
    assert elsewhere.exit_code == 2 and "not on host 'otherhost'" in elsewhere.stderr
