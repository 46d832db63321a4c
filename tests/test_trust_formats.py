"""Trust at the format layer (issue 11): commit-time no-overwrite, no bytes from outside the input, and one
clear line (never a traceback) for odd streams, names and dtypes.

Everything runs the installed ``swt`` in real processes (or CliRunner) on real .npy, HDF5 and Zarr files.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time

import h5py
import numpy as np
import pytest
from clitools import SWT, invoke, run_in_process, run_swt, write_array
from reference import fold_loops

from swt_cli.errors import SwtError
from swt_cli.formats import TEMP_MARK, open_reader
from swt_cli.formats.base import OutputAppeared, claim_then_rename, commit_path, leftover_temps, temp_sibling

FORMATS = ["npy", "h5", "zarr"]
GRID, KERNEL = 4, 3  # windows (N, 4, 4, 3, 3) fold into images (N, 6, 6)
ITEMS = 6


def npy_header(shape, descr="<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def windows(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((ITEMS, GRID, GRID, KERNEL, KERNEL), dtype=np.float32)


def folded(x: np.ndarray) -> np.ndarray:
    return fold_loops(x, (6, 6), (KERNEL, KERNEL), (1, 1), (0, 0), (1, 1))


def read_any(path: str) -> np.ndarray:
    with open_reader(path) as r:
        return r.read(())


def read_temp(path: str, fmt: str) -> np.ndarray:
    """A kept temporary output (its name has no extension to tell the format by)."""
    if fmt == "npy":
        return np.load(path)
    if fmt == "h5":
        with h5py.File(path, "r") as f:
            return f["data"][()]
    import zarr

    return zarr.open_array(path, mode="r")[...]


def one_error_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text and "unexpected" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: "), text
    return lines[0]


def temps_of(folder, name: str) -> list[str]:
    return sorted(glob.glob(os.path.join(str(folder), f".{glob.escape(name)}{TEMP_MARK}*")))


def wait_for(predicate, timeout=30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class PipedFold:
    """``swt fold - OUT -k 3`` fed by a pipe this test holds open, so it stays mid-run until ``finish``."""

    def __init__(self, folder, out_name: str, seed: int, extra=()):
        self.folder, self.out_name, self.data = folder, out_name, windows(seed)
        self.proc = subprocess.Popen([SWT, "fold", "-", out_name, "-k", str(KERNEL), "-q", "--batch-size", "1", *extra],
                                     cwd=str(folder), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        raw = npy_header(self.data.shape) + self.data.tobytes()
        self._rest = raw[len(raw) // 2:]
        self.proc.stdin.write(raw[: len(raw) // 2])
        self.proc.stdin.flush()

    def wait_writing(self) -> None:
        """Until this run's temporary output exists (it passed the start-up check on the output's name)."""
        before = set(temps_of(self.folder, self.out_name))
        assert wait_for(lambda: self.proc.poll() is not None or len(temps_of(self.folder, self.out_name)) > 0)
        assert self.proc.poll() is None, self.proc.stderr.read()
        del before

    def finish(self):
        self.proc.stdin.write(self._rest)
        self.proc.stdin.close()

    def result(self, timeout=60):
        err = self.proc.stderr.read()
        return self.proc.wait(timeout=timeout), err


def intruder(path, fmt: str) -> None:
    """Another process's output under the name, made while swt runs."""
    write_array(path, fmt, np.arange(12, dtype="int16").reshape(3, 4), name="theirs")


# ---- §2: the no-overwrite promise holds at commit time -------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_output_that_appears_while_running_is_never_replaced(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    run = PipedFold(tmp_path, out.name, seed=1)
    run.wait_writing()
    intruder(out, fmt)
    theirs = read_any(str(out))
    run.finish()
    code, err = run.result()
    line = one_error_line(err)
    assert code == 1, err
    assert "appeared while swt was writing it" in line and "--overwrite" in line, line
    np.testing.assert_array_equal(read_any(str(out)), theirs)  # the other output is untouched
    kept = temps_of(tmp_path, out.name)
    assert len(kept) == 1 and kept[0] in line, (kept, line)  # the finished result is kept, and named
    got = read_temp(kept[0], fmt)
    np.testing.assert_allclose(got, folded(run.data), rtol=1e-5)


def test_empty_folder_that_appears_is_not_replaced_by_a_zarr_output(tmp_path):
    """``os.rename`` silently replaces an empty folder: the commit must not."""
    out = tmp_path / "out.zarr"
    run = PipedFold(tmp_path, out.name, seed=2)
    run.wait_writing()
    out.mkdir()
    run.finish()
    code, err = run.result()
    assert code == 1 and "appeared while swt was writing it" in one_error_line(err)
    assert out.is_dir() and not os.listdir(out)
    assert len(temps_of(tmp_path, out.name)) == 1


@pytest.mark.default_cases("zarr")  # one format in the default run, all three in the slow one
@pytest.mark.parametrize("fmt", FORMATS)
def test_overwrite_still_replaces_an_output_that_appeared(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    run = PipedFold(tmp_path, out.name, seed=3, extra=["--overwrite"])
    run.wait_writing()
    intruder(out, fmt)
    run.finish()
    code, err = run.result()
    assert code == 0, err
    np.testing.assert_allclose(read_any(str(out)), folded(run.data), rtol=1e-5)
    assert not temps_of(tmp_path, out.name)


@pytest.mark.default_cases("h5")  # one format in the default run, all three in the slow one
@pytest.mark.parametrize("fmt", FORMATS)
def test_two_concurrent_runs_to_one_output_exactly_one_wins(tmp_path, fmt):
    """Two real swt processes past their start-up checks, finishing together: one output, one refusal."""
    out = tmp_path / f"out.{fmt}"
    runs = [PipedFold(tmp_path, out.name, seed=10), PipedFold(tmp_path, out.name, seed=11)]
    assert wait_for(lambda: len(temps_of(tmp_path, out.name)) == 2 or any(r.proc.poll() is not None for r in runs))
    for r in runs:
        r.finish()
    results = [r.result() for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    winner = next(r for r, (code, _) in zip(runs, results, strict=True) if code == 0)
    _, loser_err = next(res for res in results if res[0] == 1)
    assert "appeared while swt was writing it" in one_error_line(loser_err)
    np.testing.assert_allclose(read_any(str(out)), folded(winner.data), rtol=1e-5)
    assert len(temps_of(tmp_path, out.name)) == 1  # the loser's finished result, as its message says


@pytest.mark.default_cases("npy")  # one format in the default run, all three in the slow one
@pytest.mark.parametrize("fmt", FORMATS)
def test_two_runs_started_together_one_wins_the_other_says_so(tmp_path, fmt):
    """Both outcomes of a real race: the second is refused at start or at commit, never exit 0."""
    src = tmp_path / "w.npy"
    np.save(src, windows(5))
    out = tmp_path / f"out.{fmt}"
    procs = [subprocess.Popen([SWT, "fold", str(src), str(out), "-k", str(KERNEL), "-q"], stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    line = one_error_line(next(err for code, err in results if code == 1))
    assert "appeared while swt was writing it" in line or "exists: pass --overwrite" in line, line
    np.testing.assert_allclose(read_any(str(out)), folded(windows(5)), rtol=1e-5)


def test_shared_output_with_overwrite_still_replaces_an_old_store(tmp_path):
    """A --resume/--scheduler output over a store of another kind, with --overwrite: replaced (shards.py
    commits with overwrite=True), while without --overwrite it is refused."""
    np.save(tmp_path / "w.npy", windows(12))
    intruder(tmp_path / "out.zarr", "zarr")
    refused(run_swt("fold", "w.npy", "out.zarr", "-k", KERNEL, "-q", "--resume", cwd=tmp_path), "out.zarr")
    result = run_swt("fold", "w.npy", "out.zarr", "-k", KERNEL, "-q", "--resume", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(read_any(str(tmp_path / "out.zarr")), folded(windows(12)), rtol=1e-5)


def test_commit_path_refuses_every_kind_of_existing_name(tmp_path):
    for make in (lambda p: p.write_bytes(b"x"), lambda p: p.mkdir(), lambda p: p.symlink_to(tmp_path / "nowhere")):
        for kind in ("file", "folder"):
            dst = tmp_path / f"dst-{kind}-{len(os.listdir(tmp_path))}"
            make(dst)
            temp = temp_sibling(str(dst))
            if kind == "file":
                with open(temp, "wb") as f:
                    f.write(b"new")
            else:
                os.mkdir(temp)
            with pytest.raises(OutputAppeared, match="appeared"):
                commit_path(temp, str(dst))
            assert os.path.lexists(temp)


def test_claim_fallback_refuses_and_moves(tmp_path):
    """The path taken where the file system answers renameat2 with EINVAL (no RENAME_NOREPLACE support)."""
    for kind in ("file", "folder"):
        src, dst = tmp_path / f"src-{kind}", tmp_path / f"dst-{kind}"
        src.mkdir() if kind == "folder" else src.write_bytes(b"ours")
        (dst.mkdir() if kind == "folder" else dst.write_bytes(b"theirs"))
        with pytest.raises(FileExistsError):
            claim_then_rename(str(src), str(dst))
        assert src.exists() and dst.exists()
        (os.rmdir if kind == "folder" else os.remove)(dst)
        claim_then_rename(str(src), str(dst))
        assert not src.exists() and dst.exists()
        if kind == "file":
            assert dst.read_bytes() == b"ours"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("length", [231, 243, 255])
def test_output_names_up_to_the_name_limit(tmp_path, fmt, length):
    src = tmp_path / "w.npy"
    np.save(src, windows(6))
    ext = {"npy": ".npy", "h5": ".h5", "zarr": ".zarr"}[fmt]
    name = "o" * (length - len(ext)) + ext
    result = run_in_process("fold", src, name, "-k", KERNEL, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    np.testing.assert_allclose(read_any(str(tmp_path / name)), folded(windows(6)), rtol=1e-5)
    assert not [n for n in os.listdir(tmp_path) if TEMP_MARK in n]


def test_leftover_temps_recognises_shortened_temporary_names(tmp_path):
    path = str(tmp_path / ("é" * 120 + ".npy"))  # 244 bytes of UTF-8
    temp = temp_sibling(path)
    assert len(os.path.basename(temp).encode()) <= 255
    open(temp, "wb").close()
    assert leftover_temps(path) == [temp]
    assert leftover_temps(str(tmp_path / ("é" * 119 + "e.npy"))) == []


# ---- §3: bytes from outside the input ------------------------------------------------------------

def image_data() -> np.ndarray:
    return np.random.default_rng(7).random((2, 5, 5)).astype(np.float32)


def unfolds_right(result, path) -> None:
    """``swt unfold INPUT path -k 3`` succeeded and holds the windows of :func:`image_data`."""
    assert result.returncode == 0, result.stderr
    x = image_data()
    got = np.load(path)
    expected = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))
    np.testing.assert_array_equal(got, expected)


def refused(result, *words) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    line = one_error_line(result.stderr)
    for w in words:
        assert w in line, (w, line)
    return line


@pytest.fixture
def external_storage(tmp_path):
    x = image_data()
    raw = tmp_path / "secret.bin"
    raw.write_bytes(x.tobytes())
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f.create_dataset("x", shape=x.shape, dtype=x.dtype, external=[(str(raw), 0, x.nbytes)])
    return tmp_path / "ext.h5"


@pytest.fixture
def other_file(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = image_data()
    return tmp_path / "other.h5"


def test_hdf5_external_storage_is_refused_unless_allowed(tmp_path, external_storage):
    for cmd in (["info", external_storage], ["unfold", external_storage, tmp_path / "o.npy", "-k", 3]):
        refused(run_in_process(*cmd, cwd=tmp_path), "secret.bin", "external storage", "--allow-external")
    assert not (tmp_path / "o.npy").exists()
    unfolds_right(run_in_process("unfold", external_storage, tmp_path / "o.npy", "-k", 3, "--allow-external", cwd=tmp_path),
                  tmp_path / "o.npy")
    # in process too, where open_reader takes the flag
    inproc = invoke("info", external_storage, "--json")
    assert inproc.exit_code == 1 and "secret.bin" in inproc.stderr
    inproc = invoke("info", external_storage, "--json", "--allow-external")
    assert inproc.exit_code == 0 and '"shape": [' in inproc.stdout
    with pytest.raises(SwtError, match="external storage"):
        open_reader(str(external_storage))
    with open_reader(str(external_storage), allow_external=True) as reader:
        np.testing.assert_array_equal(reader.read(()), image_data())


def test_hdf5_virtual_dataset_over_another_file_is_refused_unless_allowed(tmp_path, other_file):
    layout = h5py.VirtualLayout(shape=(2, 5, 5), dtype="f4")
    layout[...] = h5py.VirtualSource(str(other_file), "x", shape=(2, 5, 5))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout)
    refused(run_in_process("unfold", tmp_path / "vds.h5", tmp_path / "o.npy", "-k", 3, cwd=tmp_path),
            "virtual dataset", "other.h5", "--allow-external")
    refused(run_in_process("preview", tmp_path / "vds.h5", tmp_path / "o.png", cwd=tmp_path), "virtual dataset")
    unfolds_right(run_in_process("unfold", tmp_path / "vds.h5", tmp_path / "o.npy", "-k", 3, "--allow-external", cwd=tmp_path),
                  tmp_path / "o.npy")


def test_hdf5_external_link_is_not_followed_unless_allowed(tmp_path, other_file):
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["w"] = h5py.ExternalLink("other.h5", "/x")
    line = refused(run_in_process("unfold", f"{tmp_path}/links.h5:/w", tmp_path / "o.npy", "-k", 3, cwd=tmp_path),
                   "external link to other.h5:/x", "--allow-external")
    assert "does not follow" in line
    refused(run_in_process("info", tmp_path / "links.h5", cwd=tmp_path), "holds no arrays", "/w is an external link to other.h5:/x")
    unfolds_right(run_in_process("unfold", f"{tmp_path}/links.h5:/w", tmp_path / "o.npy", "-k", 3, "--allow-external",
                          cwd=tmp_path), tmp_path / "o.npy")


def test_hdf5_soft_links_and_second_hard_links_are_followed_and_named(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = image_data()
        f["y"] = np.zeros((1, 5, 5), "f4")
        f["s"] = h5py.SoftLink("/x")
        f["g/h"] = f["x"]  # a second hard link
        f["dangling"] = h5py.SoftLink("/nowhere")
    for name in ("s", "g/h", "x"):
        unfolds_right(run_in_process("unfold", f"{tmp_path}/a.h5:/{name}", tmp_path / "o.npy", "-k", 3, "--overwrite"),
                      tmp_path / "o.npy")
    refused(run_in_process("info", f"{tmp_path}/a.h5:/dangling"), "is a soft link to /nowhere, which does not exist")
    listing = run_in_process("info", tmp_path / "a.h5")  # a file of several arrays is listed (issue 13), links not doubled
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.decode().splitlines()[1:]]
    assert sorted(names) in (["/g/h", "/y"], ["/x", "/y"]), listing.stdout
    line = refused(run_in_process("info", f"{tmp_path}/a.h5:/nope"), "has no array /nope")
    assert "/s is a soft link to /x" in line
    listed = invoke("info", f"{tmp_path}/a.h5:/x", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert '"link": "a soft link to /x"' in listed.stdout


def test_hdf5_file_locked_by_a_writer_says_so(tmp_path):
    path = tmp_path / "busy.h5"
    with h5py.File(path, "w") as f:
        f["x"] = image_data()
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    writer = subprocess.Popen([os.path.join(os.path.dirname(SWT), "python"), "-c",
                               f"import h5py, sys; f = h5py.File({str(path)!r}, 'a'); print('open', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert writer.stdout.readline() == b"open\n"
        refused(run_swt("info", path, env=env), "locked", "HDF5_USE_FILE_LOCKING=FALSE")
        assert run_swt("info", path, env={**env, "HDF5_USE_FILE_LOCKING": "FALSE"}).returncode == 0
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)


def zarr_store(path) -> None:
    import zarr

    z = zarr.create_array(str(path), shape=(2, 5, 5), dtype="f4", chunks=(1, 5, 5), compressors=None)
    z[...] = image_data()


def test_zarr_symlink_out_of_the_store_is_refused_unless_allowed(tmp_path):
    store = tmp_path / "s.zarr"
    zarr_store(store)
    chunk = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")
    outside = tmp_path / "elsewhere.bin"
    os.rename(chunk, outside)
    chunk.symlink_to(outside)
    line = refused(run_in_process("unfold", store, tmp_path / "o.npy", "-k", 3), "symbolic link", "outside", "--allow-external")
    assert str(outside) in line
    unfolds_right(run_in_process("unfold", store, tmp_path / "o.npy", "-k", 3, "--allow-external"), tmp_path / "o.npy")


def test_zarr_symlink_inside_the_store_is_read(tmp_path):
    store = tmp_path / "s.zarr"
    zarr_store(store)
    chunk = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")
    os.rename(chunk, store / "moved")
    chunk.symlink_to(store / "moved")
    unfolds_right(run_in_process("unfold", store, tmp_path / "o.npy", "-k", 3), tmp_path / "o.npy")


def test_zarr_consolidated_metadata_that_disagrees_is_not_read(tmp_path):
    import warnings

    import zarr

    store = tmp_path / "c.zarr"
    group = zarr.open_group(str(store), mode="w")
    arr = group.create_array("a", shape=(1, 5, 5), dtype="f4", chunks=(1, 5, 5))
    arr[...] = image_data()[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(store))
    arr = zarr.open_array(str(store / "a"), mode="r+")
    arr.resize((2, 5, 5))  # after consolidation: the root's copy still says (1, 5, 5)
    arr[1:] = image_data()[1:]
    unfolds_right(run_in_process("unfold", f"{store}:/a", tmp_path / "o.npy", "-k", 3), tmp_path / "o.npy")
    info = run_in_process("info", f"{store}:/a", "--json")
    assert info.returncode == 0 and '"shape": [\n    2,' in info.stdout.decode(), info


# ---- §4: streams, names and dtypes: a correct result or one clear line ---------------------------

@pytest.fixture
def img(tmp_path):
    np.save(tmp_path / "img.npy", image_data())
    return tmp_path / "img.npy"


def bash(script: str, cwd, **kw) -> subprocess.CompletedProcess:
    """``script`` run by bash (for ``<&-``, ``>&-``, ``2>&-``), with the installed swt as ``$SWT``."""
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, timeout=120,
                          env={**os.environ, "SWT": SWT}, **kw)


def test_closed_stdin_is_one_line(tmp_path, img):
    result = bash('"$SWT" unfold - o.npy -k 3 <&-', tmp_path)
    assert refused(result, "stdin is closed")
    unfolds_right(bash('"$SWT" unfold img.npy o.npy -k 3 -q <&-', tmp_path), tmp_path / "o.npy")


def test_closed_stdout_is_one_line_and_files_still_work(tmp_path, img):
    refused(bash('"$SWT" unfold img.npy - -k 3 >&-', tmp_path), "stdout is closed")
    result = bash('"$SWT" unfold img.npy o.npy -k 3 >&-', tmp_path)
    assert result.returncode == 0 and b"Error" not in result.stderr, result.stderr
    unfolds_right(result, tmp_path / "o.npy")


def test_closed_stderr_does_not_fail_the_run_or_reach_the_output(tmp_path, img):
    result = bash('"$SWT" unfold img.npy o.npy -k 3 2>&-', tmp_path)  # progress lines have nowhere to go
    unfolds_right(result, tmp_path / "o.npy")
    result = bash('"$SWT" unfold img.npy - -k 3 2>&- | "$SWT" fold - back.npy -k 3 -q', tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert bash('"$SWT" info nothing.npy 2>&-', tmp_path).returncode == 1  # the exit status still tells


def test_non_blocking_stdin_without_data_yet_is_waited_for(tmp_path):
    x = windows(8)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)  # shared with the child: its first reads find no data
    proc = subprocess.Popen([SWT, "fold", "-", "out.npy", "-k", str(KERNEL), "-q"], cwd=tmp_path, stdin=read_end,
                            stderr=subprocess.PIPE)
    os.close(read_end)
    time.sleep(0.5)
    raw = npy_header(x.shape) + x.tobytes()
    os.write(write_end, raw[:50])
    time.sleep(0.3)
    os.write(write_end, raw[50:])
    os.close(write_end)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), folded(x), rtol=1e-5)


def test_named_pipe_called_npy_as_input(tmp_path):
    x = windows(9)
    os.mkfifo(tmp_path / "in.npy")
    proc = subprocess.Popen([SWT, "fold", "in.npy", "out.npy", "-k", str(KERNEL), "-q"], cwd=tmp_path,
                            stderr=subprocess.PIPE)
    with open(tmp_path / "in.npy", "wb") as f:
        f.write(npy_header(x.shape) + x.tobytes())
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), folded(x), rtol=1e-5)
    # cut short: one line naming the pipe, not "truncated: the file has 0 bytes"
    proc = subprocess.Popen([SWT, "fold", "in.npy", "out2.npy", "-k", str(KERNEL), "-q"], cwd=tmp_path,
                            stderr=subprocess.PIPE)
    with open(tmp_path / "in.npy", "wb") as f:
        f.write(npy_header(x.shape) + x.tobytes()[:100])
    assert proc.wait(timeout=60) == 1
    assert "the named pipe in.npy ended after 100 of" in one_error_line(proc.stderr.read())
    assert not (tmp_path / "out2.npy").exists()


def test_named_pipe_called_npy_as_output(tmp_path):
    x = windows(10)
    np.save(tmp_path / "w.npy", x)
    os.mkfifo(tmp_path / "out.npy")
    proc = subprocess.Popen([SWT, "fold", "w.npy", "out.npy", "-k", str(KERNEL), "-q"], cwd=tmp_path,
                            stderr=subprocess.PIPE)
    import io
    import threading

    received = []

    def drain():
        with open(tmp_path / "out.npy", "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = proc.wait(timeout=60)
    if code != 0:  # swt never opened the pipe: open its writing end ourselves so the reader ends
        os.close(os.open(tmp_path / "out.npy", os.O_WRONLY))
    reader.join(timeout=30)
    assert code == 0, proc.stderr.read()
    got = np.load(io.BytesIO(received[0]))  # np.load seeks, which a pipe cannot
    np.testing.assert_allclose(got, folded(x), rtol=1e-5)
    assert os.path.exists(tmp_path / "out.npy") and not os.path.isfile(tmp_path / "out.npy")  # still the pipe


@pytest.mark.parametrize("spec", ["o.h5:/a/../b", "o.zarr:/a/./b", "o.h5:/a//b", "o.zarr:/..", "o.h5/"])
def test_output_names_with_dot_components_are_usage_errors(tmp_path, img, spec):
    result = run_in_process("unfold", img, spec, "-k", 3, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "component" in line or "ends with a slash" in line, line
    assert os.listdir(tmp_path) == ["img.npy"]


@pytest.mark.parametrize("spec,read_as", [("o.zarr:/a/", "o.zarr:/a"), ("o.h5:/g/a/", "o.h5:/g/a"),
                                          ("o.zarr/", "o.zarr"), ("o.zarr/:/a", "o.zarr:/a")])
def test_trailing_slashes_name_the_same_output(tmp_path, img, spec, read_as):
    result = run_in_process("unfold", img, spec, "-k", 3, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = run_in_process("info", spec, cwd=tmp_path)  # the same spelling reads it back
    assert info.returncode == 0, info.stderr
    x = image_data()
    with open_reader(str(tmp_path / read_as)) as r:
        np.testing.assert_array_equal(r.read(()), np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2)))


@pytest.mark.parametrize("dtype", ["float128", "complex256"])
def test_dtype_zarr_cannot_store_is_refused_before_anything_is_created(tmp_path, dtype):
    if np.dtype(dtype).itemsize <= np.dtype(dtype.replace("128", "64").replace("256", "128")).itemsize:
        pytest.skip(f"{dtype} is not wider than double on this platform")
    np.save(tmp_path / "w.npy", windows(11).astype(dtype))
    result = run_in_process("fold", "w.npy", "o.zarr", "-k", KERNEL, "-q", cwd=tmp_path)
    refused(result, f"Zarr cannot store {dtype}", "--dtype")
    assert sorted(os.listdir(tmp_path)) == ["w.npy"]
    result = run_in_process("fold", "w.npy", "o.zarr", "-k", KERNEL, "--dtype", "complex128" if "complex" in dtype else "float64",
                     "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (3, 0, 5), (0, 5, 5)])
def test_preview_of_an_empty_image_is_one_line(tmp_path, shape):
    pytest.importorskip("PIL")
    np.save(tmp_path / "e.npy", np.zeros(shape, "f4"))
    result = run_in_process("preview", "e.npy", "p.png", cwd=tmp_path)
    refused(result, "e.npy")
    assert not (tmp_path / "p.png").exists()


def test_uint64_result_that_does_not_fit_suggests_uint64(tmp_path):
    np.save(tmp_path / "u.npy", np.full((1, 3, 3, 2, 2), 2**61, np.uint64))  # sums up to 2**63: past int64
    line = refused(run_in_process("fold", "u.npy", "o.npy", "-k", 2, "-o", 4, "--dtype", "int64", cwd=tmp_path), "does not fit int64")
    assert line.endswith("use dtype uint64"), line
    ok = run_in_process("fold", "u.npy", "o.npy", "-k", 2, "-o", 4, "--dtype", "uint64", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "o.npy").max() == 2**63


def test_allow_external_reaches_dask_workers(tmp_path):
    """The client checks the input once; workers, which open it per block, read what it allowed."""
    pytest.importorskip("distributed")
    store = tmp_path / "s.zarr"
    zarr_store(store)
    chunk = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")
    os.rename(chunk, tmp_path / "elsewhere.bin")
    chunk.symlink_to(tmp_path / "elsewhere.bin")
    args = ("unfold", store, tmp_path / "o.zarr", "-k", 3, "-q", "--scheduler", "local:1")
    refused(run_swt(*args), "symbolic link", "--allow-external")
    result = run_swt(*args, "--allow-external", timeout=300)
    assert result.returncode == 0, result.stderr
    expected = np.lib.stride_tricks.sliding_window_view(image_data(), (3, 3), axis=(1, 2))
    np.testing.assert_array_equal(read_any(str(tmp_path / "o.zarr")), expected)
