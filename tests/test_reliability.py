"""Nothing lost under interruption, a full disk or an unwritable destination (issue 7).

Every test here runs the real installed ``swt`` where a signal or the exit status matters:

- Ctrl-C (SIGINT) and SIGTERM in the middle of writing .npy, HDF5 or Zarr, new or ``--overwrite``:
  exit 130 / 143 with one line, the temporary file removed, the destination absent or byte-identical.
- SIGKILL: the destination likewise; the leftover temporary file is named ``.<name>.swt-tmp-<pid>-<hex>``
  and a later run neither trips over it nor touches it.
- A blocked pipe (silent stdin, stalled stdout) does not keep Ctrl-C from ending the run at once.
- ``/dev/full``, a full file system (a 1 MiB tmpfs, where this machine lets root mount one), /proc,
  /sys, a read-only mount, an immutable folder and a path under a file: one clear line, exit 1,
  nothing partial left.
- The input's own file as the output.

The mid-write tests feed the input through a pipe that they hold open: once the temporary output
exists and the first blocks are in, swt waits for more data, so the signal lands mid-write every time
without depending on the machine's speed.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import h5py
import numpy as np
import pytest
from clitools import SWT, invoke, run_swt, write_array

from swt_cli.formats import TEMP_MARK

#: swt with every block read slowed down (a launcher in the tests, not a hook in the package).
SLOW_SWT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_swt.py")

KERNEL = 3
ITEMS = 64  # windows (ITEMS, 8, 8, 3, 3) float32 on the pipe
SENT = 12  # items sent before the pipe goes quiet
FORMATS = ["npy", "h5", "zarr"]


# ---- helpers -------------------------------------------------------------------------------------

def fingerprint(path) -> str | None:
    """A hash of a file, or of a folder's every file and name; None where nothing is there."""
    path = str(path)
    if not os.path.lexists(path):
        return None
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, path).encode() + b"\0")
                with open(full, "rb") as f:
                    digest.update(f.read())
    else:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def temps(folder, name: str) -> list[str]:
    """Temporary siblings of ``folder/name`` left by swt."""
    return sorted(glob.glob(os.path.join(str(folder), f".{glob.escape(name)}{TEMP_MARK}*")))


def one_error_line(stderr: bytes | str) -> str:
    """The single line swt prints on failure (checked: one line, no traceback)."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: "), text
    return lines[0]


def header(shape, descr="<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def existing_output(path, fmt: str) -> None:
    """Something already at the output's name, for the --overwrite cases."""
    write_array(path, fmt, np.arange(24, dtype="int16").reshape(2, 3, 4), name="old", chunks=(1, 3, 4))


def wait_for(predicate, timeout=20.0, every=0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def blocked_in_read(pid: int) -> bool:
    """True once a thread of the process sleeps in a pipe read (Linux's wchan); False where that cannot be seen."""
    return blocked_in("pipe_read", pid)


@functools.lru_cache(maxsize=None)
def wchan_visible() -> bool:
    """Whether this system shows where a sleeping process waits (``/proc/PID/wchan``); some containers hide it."""
    proc = subprocess.Popen(["sleep", "10"])
    try:
        return wait_for(lambda: blocked_in("nanosleep", proc.pid), timeout=3.0)
    finally:
        proc.kill()
        proc.wait()


def blocked_in(name: str, pid: int) -> bool:
    for wchan in glob.glob(f"/proc/{pid}/task/*/wchan"):
        try:
            with open(wchan) as f:
                if name in f.read():
                    return True
        except OSError:
            pass
    return False


class Run:
    """``swt fold - OUT`` fed by a pipe this test holds open: mid-write for as long as the test likes."""

    def __init__(self, folder, out_name: str, extra=()):
        self.folder, self.out_name = folder, out_name
        self.stderr_path = os.path.join(str(folder), f"stderr-{uuid.uuid4().hex[:6]}.txt")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [SWT, "fold", "-", out_name, "-k", str(KERNEL), "-q", "--batch-size", "1", *extra],
                cwd=str(folder), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
            )

    def feed(self, items: int) -> None:
        data = np.random.default_rng(0).random((items, 8, 8, KERNEL, KERNEL), dtype=np.float32)
        self.proc.stdin.write(header((ITEMS, 8, 8, KERNEL, KERNEL)) + data.tobytes())
        self.proc.stdin.flush()

    def wait_mid_write(self) -> str:
        assert wait_for(lambda: temps(self.folder, self.out_name) or self.proc.poll() is not None), "no temporary output"
        assert self.proc.poll() is None, self.stderr()
        temp = temps(self.folder, self.out_name)[0]
        if self.out_name.endswith(".zarr"):  # the first blocks' chunks are in
            assert wait_for(lambda: any(len(files) for _, _, files in os.walk(temp) if _ != temp) or self.proc.poll() is not None)
        if wchan_visible():  # the reader waits on the pipe for the next item: every fed block is in the output
            assert wait_for(lambda: blocked_in_read(self.proc.pid), timeout=10.0), "swt never waited on its stdin"
        time.sleep(0.2)
        assert self.proc.poll() is None, self.stderr()
        return temp

    def stop(self, sig, timeout=15.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"swt did not exit within {timeout}s of {signal.Signals(sig).name}: {self.stderr()}")
        finally:
            self.proc.stdin.close()

    def stderr(self) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")


# ---- interrupted runs ----------------------------------------------------------------------------

def run_caught_mid_write(tmp_path, fmt, overwrite):
    """A fold into ``out.<fmt>`` (over an existing output with ``overwrite``), stopped in the middle of
    writing: ``(out, fingerprint of the output before, the run, its temporary file)``."""
    out = tmp_path / f"out.{fmt}"
    if overwrite:
        existing_output(out, fmt)
    before = fingerprint(out)
    run = Run(tmp_path, out.name, ["--overwrite"] if overwrite else [])
    run.feed(SENT)
    temp = run.wait_mid_write()
    return out, before, run, temp


# the default run: each signal, format and kind of output once; the slow run: every combination
@pytest.mark.default_cases("SIGINT-npy-new", "SIGTERM-h5-new", "SIGINT-zarr-overwrite")
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_write_leaves_nothing(tmp_path, fmt, overwrite, sig, code):
    out, before, run, _ = run_caught_mid_write(tmp_path, fmt, overwrite)
    assert run.stop(sig) == code
    line = one_error_line(run.stderr())
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in line
    assert temps(tmp_path, out.name) == []
    assert fingerprint(out) == before


@pytest.mark.default_cases("npy-new", "h5-overwrite", "zarr-new")  # each format and kind of output once; all in the slow run
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_sigkill_mid_write_leaves_a_named_temp_that_later_runs_ignore(tmp_path, fmt, overwrite):
    out, before, run, temp = run_caught_mid_write(tmp_path, fmt, overwrite)
    assert run.stop(signal.SIGKILL) == -signal.SIGKILL
    assert fingerprint(out) == before
    # the leftover says what it is: .<name>.swt-tmp-<pid of the killed run>-<random>
    assert temps(tmp_path, out.name) == [temp]
    match = re.fullmatch(rf"\.{re.escape(out.name)}{re.escape(TEMP_MARK)}(\d+)-[0-9a-f]{{8}}", os.path.basename(temp))
    assert match and int(match[1]) == run.proc.pid
    leftover = fingerprint(temp)
    # a later run succeeds beside it and leaves it alone
    windows = tmp_path / "windows.npy"
    np.save(windows, np.ones((2, 4, 4, KERNEL, KERNEL), np.float32))
    done = run_swt("fold", windows, out, "-k", KERNEL, *(["--overwrite"] if overwrite else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(temp) for f in fs) if os.path.isdir(temp) \
        else os.path.getsize(temp)
    # ... and says that the leftover is there, on stderr
    assert (f"swt: 1 temporary file of another run lies beside {out} ({os.path.basename(temp)}; {size:,} bytes): a run "
            f"killed outright leaves it; delete it once no swt writes there\n") in done.stderr.decode()
    assert fingerprint(temp) == leftover
    assert temps(tmp_path, out.name) == [temp]
    from swt_cli.formats import open_reader

    with open_reader(str(out)) as reader:
        assert reader.shape == (2, 6, 6)


def test_interrupt_while_reading_a_file_input(tmp_path):
    """Ctrl-C with a file input (read-ahead and write-behind threads busy), not a pipe."""
    src = tmp_path / "img.npy"
    np.save(src, np.random.default_rng(1).random((400, 64, 64), dtype=np.float32))
    out = tmp_path / "win.h5"
    with open(tmp_path / "err.txt", "wb") as err:
        # every block read takes 0.1 s more (tests/slow_swt.py): 400 blocks cannot finish before the signal
        proc = subprocess.Popen([sys.executable, SLOW_SWT, "0.1", "unfold", src, out, "-k", "3", "-q", "--batch-size", "1"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    assert wait_for(lambda: temps(tmp_path, out.name) or proc.poll() is not None)
    time.sleep(0.1)
    assert proc.poll() is None, "swt finished before the signal"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    one_error_line((tmp_path / "err.txt").read_bytes())
    assert temps(tmp_path, out.name) == [] and not out.exists()


def test_ctrl_c_on_a_silent_stdin_before_the_header(tmp_path):
    """swt waits for the header of an open but silent pipe: Ctrl-C ends it at once."""
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen([SWT, "fold", "-", "out.npy", "-k", "3", "-q"], cwd=tmp_path,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    try:
        if not wait_for(lambda: blocked_in_read(proc.pid), timeout=10):
            time.sleep(1.5)  # no wchan here: give Python time to start
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    one_error_line((tmp_path / "err.txt").read_bytes())
    assert os.listdir(tmp_path) == ["err.txt"]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_with_the_reader_thread_blocked_on_stdin(tmp_path, sig, code):
    """The header came, the data stops: the read-ahead thread is stuck in read(). Used to hang forever
    (executor threads joined at exit), then to abort Python (stdin's buffer lock held at exit)."""
    run = Run(tmp_path, "out.npy")
    run.feed(0)
    run.wait_mid_write()
    start = time.monotonic()
    assert run.stop(sig) == code
    assert time.monotonic() - start < 5
    one_error_line(run.stderr())
    assert temps(tmp_path, "out.npy") == [] and not (tmp_path / "out.npy").exists()


def test_ctrl_c_with_stdout_stalled(tmp_path):
    """The write-behind thread is stuck writing to a pipe nobody reads: Ctrl-C still ends the run."""
    src = tmp_path / "img.npy"
    np.save(src, np.zeros((50, 32, 32), np.float32))
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen([SWT, "unfold", src, "-", "-k", "3", "-q", "--batch-size", "1"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=err)
    try:
        time.sleep(1.5)  # the pipe's 64 KiB fill at once; swt is then blocked in write()
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    one_error_line((tmp_path / "err.txt").read_bytes())


# ---- full disk, unwritable destinations -------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "img.npy"
    np.save(path, np.random.default_rng(2).random((300, 32, 32), dtype=np.float32))  # 1.2 MB of noise: too much for 1 MiB even compressed
    return path


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_stdout_on_dev_full(image):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([SWT, "unfold", image, "-", "-k", "3", "-q"], stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert "No space left on device" in line and "stdout" in line


def test_stdout_closed_early(image):
    """The reading end exits after a few bytes: one line, exit 1 (a pipe cannot be taken back)."""
    proc = subprocess.Popen([SWT, "unfold", image, "-", "-k", "3", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "stdout was closed" in one_error_line(err)


def _mount(kind_options: str, folder) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", kind_options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _umount(folder) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only, and only where the container allows mounts)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if not _mount("size=1m", folder):
        pytest.skip("cannot mount a 1 MiB tmpfs here (needs root and mount permission): no full disk to test on")
    yield folder
    _umount(folder)


# refused up front, ENOSPC inside HDF5 and in Zarr (new and over an old output); all in the slow run
@pytest.mark.default_cases("npy-new", "h5-gzip-overwrite", "zarr-new")
@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize("fmt,options", [
    ("npy", []),  # refused up front: the free space is checked against the exact size
    ("h5", []),  # uncompressed: refused up front (the data alone is over the free space)
    ("h5", ["--compression", "gzip"]),  # random data barely compresses: ENOSPC mid-write, inside HDF5
    ("zarr", []),  # zstd: ENOSPC mid-write
], ids=["npy", "h5", "h5-gzip", "zarr"])
def test_full_disk(tiny_disk, image, fmt, options, overwrite):
    out = tiny_disk / f"out.{fmt}"
    if overwrite:
        existing_output(out, fmt)
    before = fingerprint(out)
    proc = run_swt("unfold", image, out, "-k", "3", "-q", "--max-memory", "1MiB", *options,
                   *(["--overwrite"] if overwrite else []))
    assert proc.returncode == 1, proc  # not 139: HDF5 used to crash on its way out after ENOSPC
    line = one_error_line(proc.stderr)
    assert f"cannot write {out}" in line
    assert "No space left on device" in line or "free" in line
    assert temps(tiny_disk, out.name) == []
    assert fingerprint(out) == before


def test_full_disk_mid_write_npy(tiny_disk, image, monkeypatch):
    """Past the up-front space check (another process fills the disk): ENOSPC mid-write is one line too."""
    from swt_cli.formats import base

    monkeypatch.setattr(base, "check_space", lambda path, nbytes: None)
    result = invoke("unfold", image, tiny_disk / "out.npy", "-k", "3", "-q")
    assert result.exit_code == 1
    assert "No space left on device" in one_error_line(result.stderr)
    assert os.listdir(tiny_disk) == []


UNWRITABLE = [
    ("/proc", "a folder where no file can be created"),
    ("/sys", "a folder that refuses new files even to root"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("folder", [u[0] for u in UNWRITABLE])
def test_unwritable_system_folders(image, folder, fmt):
    if not os.path.isdir(folder):
        pytest.skip(f"no {folder} here")
    out = os.path.join(folder, f"swt-test-{uuid.uuid4().hex[:6]}.{fmt}")
    result = invoke("unfold", image, out, "-k", "3", "-q")
    assert result.exit_code == 1
    assert f"cannot write {out}" in one_error_line(result.stderr)
    assert not os.path.lexists(out) and temps(folder, os.path.basename(out)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_under_a_file(tmp_path, image, fmt):
    (tmp_path / "img.npy").write_bytes(b"not a folder")
    result = invoke("unfold", image, tmp_path / "img.npy" / f"out.{fmt}", "-k", "3", "-q")
    assert result.exit_code == 1
    assert "is not a folder" in one_error_line(result.stderr)


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_mount(tmp_path, image, fmt):
    folder = tmp_path / "ro"
    folder.mkdir()
    if not _mount("ro,size=1m", folder):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount permission)")
    try:
        result = invoke("unfold", image, folder / f"out.{fmt}", "-k", "3", "-q")
        assert result.exit_code == 1
        assert "not writable" in one_error_line(result.stderr)
        assert os.listdir(folder) == []
    finally:
        _umount(folder)


@pytest.mark.default_cases("zarr")  # one format here, all three in the slow run
@pytest.mark.parametrize("fmt", FORMATS)
def test_immutable_folder(tmp_path, image, fmt):
    """chattr +i: a folder that even root cannot add to (root ignores permission bits)."""
    folder = tmp_path / "frozen"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        proc = run_swt("unfold", image, folder / f"out.{fmt}", "-k", "3", "-q")
        assert proc.returncode == 1
        assert f"cannot write {folder / f'out.{fmt}'}" in one_error_line(proc.stderr)
        assert os.listdir(folder) == []
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


# ---- the input's own file ----------------------------------------------------------------------------

def _windows(seed=3):
    return np.random.default_rng(seed).random((3, 4, 4, 3, 3), dtype=np.float32)


def test_same_npy_in_and_out_replaces_it_correctly(tmp_path):
    from swt_cli import sliding_window_transpose

    w = _windows()
    path = tmp_path / "a.npy"
    np.save(path, w)
    refused = run_swt("fold", path, path, "-k", "3", "-q")
    assert refused.returncode == 1 and "--overwrite" in one_error_line(refused.stderr)
    assert np.array_equal(np.load(path), w)
    done = run_swt("fold", "a.npy", "./a.npy", "-k", "3", "-q", "--overwrite", cwd=tmp_path)  # spelt differently
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(path), sliding_window_transpose(w, (6, 6), 3), rtol=1e-6)
    assert temps(tmp_path, "a.npy") == []


def test_same_h5_in_and_out_with_one_array_works(tmp_path):
    from swt_cli import sliding_window_transpose

    w = _windows()
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["windows"] = w
    done = run_swt("fold", path, path, "-k", "3", "-q", "--overwrite")
    assert done.returncode == 0, done.stderr
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["data"][...], sliding_window_transpose(w, (6, 6), 3), rtol=1e-6)


@pytest.mark.parametrize("out", ["a.h5:/images", "a.h5", "a.h5:/windows"])
def test_same_h5_holding_other_arrays_is_refused(tmp_path, out):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["windows"] = _windows()
        f["labels"] = np.arange(3)
    before = fingerprint(path)
    result = invoke("fold", f"{path}:/windows", tmp_path / out, "-k", "3", "-q", "--overwrite")
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "holds other arrays" in line and "/labels" in line
    assert fingerprint(path) == before


def test_zarr_output_around_its_input_is_refused(tmp_path):
    outer = tmp_path / "outer.zarr"
    outer.mkdir()
    inner = outer / "inner.zarr"
    assert invoke("unfold", _save(tmp_path), inner, "-k", "3", "-q").exit_code == 0
    before = fingerprint(outer)
    result = invoke("fold", inner, outer, "-q", "--overwrite")
    assert result.exit_code == 1
    assert "would delete the input" in one_error_line(result.stderr)
    assert fingerprint(outer) == before


def test_same_zarr_in_and_out_works(tmp_path):
    from swt_cli import sliding_window

    img = np.random.default_rng(4).random((2, 9, 9), dtype=np.float32)
    src = tmp_path / "img.npy"
    np.save(src, img)
    store = tmp_path / "a.zarr"
    assert invoke("unfold", src, store, "-k", "3", "-q").exit_code == 0
    result = invoke("unfold", store, store, "-k", "1", "-q", "--overwrite")  # windows of windows, in place
    assert result.exit_code == 0, result.stderr
    from swt_cli.formats import open_reader

    with open_reader(str(store)) as reader:
        got = reader.read(())
    np.testing.assert_array_equal(got, sliding_window(sliding_window(img, 3), 1))


def _save(tmp_path):
    path = tmp_path / "img.npy"
    np.save(path, np.random.default_rng(5).random((2, 8, 8), dtype=np.float32))
    return path


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_while_a_class_is_made_is_still_an_interrupt(tmp_path, monkeypatch, sig, code, word):
    """A signal that lands while Python makes a class (a dataclass's fields, as swt's modules load) raises
    swt's KeyboardInterrupt inside ``__set_name__``, which Python 3.11 hands on wrapped in a RuntimeError:
    found by test_interrupt_stress as "unexpected RuntimeError ... this is a bug in swt". It is the
    interrupt it is: exit 130/143, one line, nothing left. The signal here is real, sent to this process
    while swt's handlers are in place (CliRunner runs swt's main)."""
    import swt_cli.jobs

    class Lands:
        def __set_name__(self, owner, name):
            signal.raise_signal(sig)

    def fold_file(*args, **kwargs):
        class Made:  # noqa: F841 - making it is the point
            field = Lands()

    monkeypatch.setattr(swt_cli.jobs, "fold_file", fold_file)
    src = tmp_path / "in.npy"
    write_array(src, "npy", np.ones((1, 4, 4, 3, 3), np.float32))
    result = invoke("fold", src, tmp_path / "out.npy", "-k", "3")
    assert result.exit_code == code
    assert result.stderr == f"Error: {word}: no output was left behind\n"
    assert not (tmp_path / "out.npy").exists()
