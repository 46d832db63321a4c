"""Trust at the job level (issue 11): an output that is the input by any route, in every mode; shared
outputs joined only by the same job; --overwrite onto the input's own file; -q that means quiet.

Every test runs real files through the installed ``swt`` (or CliRunner) and compares with plain loops
(``reference.py``) or with the input's bytes before the run.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import zarr
from clitools import invoke, run_in_process, run_swt
from reference import fold_loops
from test_reliability import fingerprint, one_error_line

from swt_cli.errors import SwtError
from swt_cli.formats import Location, open_reader
from swt_cli.formats.base import check_not_input


def _windows(seed: int = 7) -> np.ndarray:
    """(4, 3, 5, 5, 3, 3) windows with values that cancel: a wrong summation order or a wrong input shows."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 5, 5, 3, 3))
    w[..., 0, 0] *= 1e6
    w[..., 2, 2] = -w[..., 0, 0] + rng.standard_normal(w.shape[:-2])
    return w.astype(np.float64)


def _folded(w: np.ndarray) -> np.ndarray:
    return fold_loops(w, (7, 7), (3, 3), (1, 1), (0, 0), (1, 1))


def _save_zarr(path, array, **attrs) -> None:
    z = zarr.create_array(store=str(path), shape=array.shape, dtype=array.dtype, chunks=(1, *array.shape[1:]),
                          zarr_format=3)
    z[...] = array
    z.attrs.update(attrs)


def _read(spec) -> np.ndarray:
    with open_reader(str(spec)) as reader:
        return reader.read(())


# ---- 1. the output is the input, by any route, in every mode --------------------------------------

SHARED_MODES = {
    "scheduler-overwrite": ["--scheduler", "local:1", "--overwrite"],
    "scheduler-resume": ["--scheduler", "local:1", "--resume"],
    "tcp-overwrite": ["--scheduler", "tcp://127.0.0.1:9", "--overwrite"],  # refused before any connection
    "resume": ["--resume"],
    "resume-overwrite": ["--resume", "--overwrite"],
    "shard": ["--shard", "0/1"],
    "shard-overwrite": ["--shard", "0/2", "--overwrite"],
}


@pytest.mark.parametrize("mode,route", [(mode, "same") for mode in SHARED_MODES] + [
    ("scheduler-overwrite", "symlink"), ("resume-overwrite", "dotted"), ("shard", "symlinked-folder"),
    ("resume", "symlink")])
def test_shared_output_onto_the_input_is_refused_before_anything_is_touched(tmp_path, monkeypatch, mode, route):
    """Data loss before: `--scheduler local:1 --overwrite` and `--resume --overwrite` replaced the input store
    by an empty shared output, then failed reading it (the input gone)."""
    w = _windows()
    store = tmp_path / "w.zarr"
    _save_zarr(store, w)
    out = {"same": "w.zarr", "symlink": "l.zarr", "dotted": "./sub/../w.zarr", "symlinked-folder": "link/w.zarr"}[route]
    (tmp_path / "sub").mkdir()
    os.symlink("w.zarr", tmp_path / "l.zarr")
    os.symlink(".", tmp_path / "link")
    before = fingerprint(store)
    if mode == "scheduler-overwrite" and route == "same":  # the case that lost the input, as a real process
        done = run_swt("fold", "w.zarr", out, "-k", "3", "-q", *SHARED_MODES[mode], cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        line = one_error_line(done.stderr)
    else:
        monkeypatch.chdir(tmp_path)
        result = invoke("fold", "w.zarr", out, "-k", "3", "-q", *SHARED_MODES[mode])
        assert result.exit_code == 1, result.stderr
        line = one_error_line(result.stderr)
    assert "is the input" in line and "write to a new file" in line
    assert fingerprint(store) == before
    assert os.path.islink(tmp_path / "l.zarr")


def test_scheduler_onto_the_input_h5_computes_the_fold_of_the_input(tmp_path):
    """HDF5 and .npy outputs of --scheduler are written by the client beside the output and renamed at the end,
    after every block of the input was read: the input may be replaced, with the right result."""
    w = _windows()
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f["data"] = w
    os.link(path, tmp_path / "hard.h5")
    done = run_swt("fold", "w.h5", "hard.h5", "-k", "3", "-q", "--scheduler", "local:1", "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    np.testing.assert_allclose(_read(tmp_path / "hard.h5"), _folded(w), rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(_read(path), w)  # the other name keeps the input as it was


@pytest.mark.parametrize("fmt,route", [("npy", "same"), ("zarr", "same"), ("h5", "same"), ("npy", "symlink"),
                                       ("zarr", "symlink"), ("h5", "symlinked-folder"), ("zarr", "symlinked-folder")])
def test_plain_run_onto_the_input_gives_the_fold_of_the_input_as_it_was(tmp_path, fmt, route):
    w = _windows(3)
    path = tmp_path / f"w.{fmt}"
    if fmt == "npy":
        np.save(path, w)
    elif fmt == "zarr":
        _save_zarr(path, w)
    else:
        with h5py.File(path, "w") as f:
            f["data"] = w
    os.symlink(f"w.{fmt}", tmp_path / f"l.{fmt}")
    os.symlink(".", tmp_path / "link")
    out = {"same": f"w.{fmt}", "symlink": f"l.{fmt}", "symlinked-folder": f"link/w.{fmt}"}[route]
    done = run_in_process("fold", f"w.{fmt}", out, "-k", "3", "-q", "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_read(tmp_path / out), _folded(w), rtol=1e-12, atol=1e-6)
    assert [n for n in os.listdir(tmp_path) if "swt-tmp" in n] == []


@pytest.mark.parametrize("out", ["w.zarr/c/x.npy", "w.zarr/extra.zarr", "g.zarr/a/x.h5"])
def test_output_inside_the_input_store_is_refused(tmp_path, out):
    _save_zarr(tmp_path / "w.zarr", _windows())
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", data=_windows())
    src = "g.zarr:/a" if out.startswith("g.zarr") else "w.zarr"
    before = fingerprint(tmp_path / src.split(":")[0])
    done = run_in_process("fold", src, out, "-k", "3", "-q", cwd=tmp_path)
    assert done.returncode == 1
    assert "inside the input" in one_error_line(done.stderr)
    assert fingerprint(tmp_path / src.split(":")[0]) == before


def test_trailing_slash_and_hard_link_name_the_input(tmp_path):
    """Library level (the command line's parsing of a trailing slash is the format layer's): one identity."""
    _save_zarr(tmp_path / "w.zarr", _windows())
    np.save(tmp_path / "w.npy", _windows())
    os.link(tmp_path / "w.npy", tmp_path / "hard.npy")
    with open_reader(str(tmp_path / "w.zarr")) as reader:
        with pytest.raises(SwtError, match="is the input .*the same path"):
            check_not_input(reader, Location(str(tmp_path / "w.zarr") + "/", "zarr"), in_place=False)
    with open_reader(str(tmp_path / "w.npy")) as reader:
        with pytest.raises(SwtError, match="is the input .* hard link"):
            check_not_input(reader, Location(str(tmp_path / "hard.npy"), "npy"), in_place=False)
        check_not_input(reader, Location(str(tmp_path / "hard.npy"), "npy"), in_place=True)  # a plain run may


# ---- 3. --overwrite onto the input's own file keeps what is not the array --------------------------

def _h5_with(path, extra: str) -> None:
    with h5py.File(path, "w") as f:
        f["w"] = _windows()
        if extra == "root-attrs":
            f.attrs["experiment"] = "x1"
        elif extra == "group":
            f.create_group("notes")
        elif extra == "soft-link":
            f["alias"] = h5py.SoftLink("/w")
        elif extra == "external-link":
            f["ext"] = h5py.ExternalLink("other.h5", "/x")
        elif extra == "group-attrs":
            del f["w"]
            f.create_group("g").attrs["unit"] = "mm"
            f["g/w"] = _windows()


@pytest.mark.parametrize("extra,named", [("root-attrs", "attributes of the root"), ("group", "group /notes"),
                                         ("soft-link", "soft link /alias"), ("external-link", "external link /ext"),
                                         ("group-attrs", "attributes of /g")])
def test_overwrite_of_the_input_h5_that_holds_more_is_refused_naming_it(tmp_path, extra, named):
    path = tmp_path / "a.h5"
    _h5_with(path, extra)
    name = "g/w" if extra == "group-attrs" else "w"
    before = fingerprint(path)
    done = run_in_process("fold", f"a.h5:/{name}", f"a.h5:/{name}", "-k", "3", "-q", "--overwrite", cwd=tmp_path)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert named in line and "would be lost" in line
    assert fingerprint(path) == before


@pytest.mark.parametrize("extra,named", [("root-attrs", "attributes of the root"), ("file", "file /README.txt"),
                                         ("array", "array /b"), ("in-array", "file /a/notes.txt")])
def test_overwrite_of_the_input_zarr_that_holds_more_is_refused_naming_it(tmp_path, extra, named):
    store = tmp_path / "g.zarr"
    group = zarr.open_group(str(store), mode="w")
    group.create_array("a", data=_windows())
    if extra == "root-attrs":
        group.attrs["experiment"] = "x1"
    elif extra == "file":
        (store / "README.txt").write_text("keep me")
    elif extra == "array":
        group.create_array("b", data=np.arange(3))
    else:
        (store / "a" / "notes.txt").write_text("keep me")
    before = fingerprint(store)
    done = run_in_process("fold", "g.zarr:/a", "g.zarr:/a", "-k", "3", "-q", "--overwrite", cwd=tmp_path)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert named in line and "would be lost" in line
    assert fingerprint(store) == before


def test_overwrite_of_the_input_zarr_group_holding_only_it_works(tmp_path):
    store = tmp_path / "g.zarr"
    w = _windows()
    zarr.open_group(str(store), mode="w").create_array("a", data=w)
    result = invoke("fold", f"{store}:/a", f"{store}:/a", "-k", "3", "-q", "--overwrite")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(_read(f"{store}:/a"), _folded(w), rtol=1e-12, atol=1e-6)
    assert json.loads((store / "a" / "zarr.json").read_text())["attributes"]["swt_geometry"]


# ---- 2. a shared output is joined only by the same job ---------------------------------------------

def _first_shard(tmp_path, src="w.npy", *extra):
    """Shard 0 of 2 of a fold of ``src`` into out.zarr (stride 2: some pixels uncovered, so --fill counts)."""
    w = _windows(5).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["data"] = w
    _save_zarr(tmp_path / "w.zarr", w)
    np.save(tmp_path / "weights.npy", np.arange(1, 10, dtype=np.float64).reshape(3, 3))
    first = invoke("fold", tmp_path / src, tmp_path / "out.zarr", "-k", "3", "-s", "2", "-o", "12", "--shard", "0/2",
                   "-q", *extra)
    assert first.exit_code == 0, first.stderr
    return w


JOIN_MISMATCHES = {
    "fill": (["--fill", "0"], ["--fill", "1"], "--fill: 0 in the output's record, 1 given"),
    "reduce": ([], ["--reduce", "mean"], "--reduce: sum in the output's record, mean given"),
    "dtype": ([], ["--dtype", "float64"], "--dtype (the output's dtype): float32 in the output's record, float64 given"),
    "weight-values": (["--weight", "WEIGHTS"], ["--weight", "WEIGHTS", "rewrite-weights"], "--weight (a SHA-256"),
    "weight-window": ([], ["--weight", "hann"], "--weight (a SHA-256 of its values): none in the output's record"),
    "stride": ([], ["-s", "1", "-o", "7"], "the geometry"),
}


@pytest.mark.parametrize("how", ["shard", "resume"])
@pytest.mark.parametrize("case", list(JOIN_MISMATCHES))
def test_a_different_job_never_joins_a_shared_output(tmp_path, case, how):
    first, second, named = JOIN_MISMATCHES[case]
    weights = str(tmp_path / "weights.npy")
    _first_shard(tmp_path, "w.npy", *[weights if a == "WEIGHTS" else a for a in first])
    out = tmp_path / "out.zarr"
    before = fingerprint(out)
    if "rewrite-weights" in second:  # the same file name, other values
        np.save(weights, np.arange(1, 10, dtype=np.float64)[::-1].reshape(3, 3).copy())
        second = [a for a in second if a != "rewrite-weights"]
    args = [weights if a == "WEIGHTS" else a for a in second]
    if "-s" not in args:
        args += ["-s", "2", "-o", "12"]
    mode = ["--shard", "1/2"] if how == "shard" else ["--resume"]
    result = invoke("fold", tmp_path / "w.npy", out, "-k", "3", *args, *mode, "-q")
    assert result.exit_code == 1, result.stderr
    line = one_error_line(result.stderr)
    assert "another job's output" in line and named in line
    assert fingerprint(out) == before


@pytest.mark.parametrize("fmt", ["npy", "h5", "zarr"])
def test_an_input_changed_since_the_first_shard_is_another_job(tmp_path, fmt):
    """Size and mtime_ns for files; for Zarr, whose metadata stays as it was when a chunk is rewritten,
    a digest of the chunk files' names, sizes and mtime_ns."""
    w = _first_shard(tmp_path, f"w.{fmt}")
    out = tmp_path / "out.zarr"
    changed = w.copy()
    changed[1] += 1  # the same shape, dtype, size: only the data differs
    if fmt == "npy":
        np.save(tmp_path / "w.npy", changed)
    elif fmt == "h5":
        with h5py.File(tmp_path / "w.h5", "r+") as f:
            f["data"][1] = changed[1]
    else:
        zarr.open_array(str(tmp_path / "w.zarr"), mode="r+")[1] = changed[1]  # rewrites one chunk file
    result = invoke("fold", tmp_path / f"w.{fmt}", out, "-k", "3", "-s", "2", "-o", "12", "--resume", "-q")
    assert result.exit_code == 1, result.stderr
    assert "the input's data (its files' sizes and modification times)" in one_error_line(result.stderr)


def test_kernel_threads_and_budget_do_not_make_another_job(tmp_path):
    """Every kernel path gives the same bits, so how a run computes is not part of its job."""
    w = _first_shard(tmp_path, "w.zarr")
    out = tmp_path / "out.zarr"
    result = invoke("fold", tmp_path / "w.zarr", out, "-k", "3", "-s", "2", "-o", "12", "--shard", "1/2", "-q",
                    "--threads", "1", "--max-memory", "64MiB")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(_read(out), fold_loops(w, (12, 12), (3, 3), (2, 2), (0, 0), (1, 1)), rtol=1e-5, atol=1e-2)
    record = zarr.open_array(str(out)).attrs["swt_job"]["match"]
    assert record["input"] == os.path.realpath(tmp_path / "w.zarr")
    assert record["input_signal"].startswith("5 files")  # zarr.json and the 4 chunks, one stat each


# ---- 5. -q: nothing on success, one line on failure, whatever NumPy, zarr and Dask say -------------

def _group_with_a_stray_file(tmp_path) -> np.ndarray:
    """g.zarr:/a, beside a README.txt that zarr warns about (ZarrUserWarning) on every open of the group."""
    w = _windows(9)
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w").create_array("a", data=w, chunks=(1, 3, 5, 5, 3, 3))
    (tmp_path / "g.zarr" / "README.txt").write_text("notes")
    return w


@pytest.mark.parametrize("mode", [[], ["--scheduler", "local:2"]], ids=["plain", "local-cluster"])
def test_quiet_success_prints_nothing(tmp_path, mode):
    w = _group_with_a_stray_file(tmp_path)
    done = run_swt("fold", "g.zarr:/a", "out.zarr", "-k", "3", "-q", *mode, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"" and done.stdout == b""
    np.testing.assert_allclose(_read(tmp_path / "out.zarr"), _folded(w), rtol=1e-12, atol=1e-6)


def test_warnings_are_one_note_each_without_q_and_python_s_own_with_debug(tmp_path):
    _group_with_a_stray_file(tmp_path)
    done = run_swt("fold", "g.zarr:/a", "out.npy", "-k", "3", "-o", "7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.decode().splitlines() if "README.txt" in line]
    assert notes == ["swt: warning: Object at README.txt is not recognized as a component of a Zarr hierarchy. "
                     "(ZarrUserWarning)"]
    debug = run_swt("fold", "g.zarr:/a", "out2.npy", "-k", "3", "-o", "7", "-q", "--debug", cwd=tmp_path)
    assert debug.returncode == 0 and b"ZarrUserWarning: Object at README.txt" in debug.stderr


def test_quiet_failure_inside_a_worker_is_one_line(tmp_path):
    """A damaged chunk fails the task on a worker, Dask retries it twice: before, each try logged
    'distributed.worker - ERROR - Compute Failed' and a traceback to swt's stderr."""
    _save_zarr(tmp_path / "w.zarr", _windows())
    chunk = sorted(str(p) for p in (tmp_path / "w.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")[0]
    with open(chunk, "wb") as f:
        f.write(b"not a chunk")
    done = run_swt("fold", "w.zarr", "out.h5", "-k", "3", "-q", "--scheduler", "local:1", cwd=tmp_path)
    assert done.returncode == 1
    assert "a chunk is damaged" in one_error_line(done.stderr)
    debug = run_swt("fold", "w.zarr", "out.h5", "-k", "3", "-q", "--scheduler", "local:1", "--debug", cwd=tmp_path)
    assert b"Compute Failed" in debug.stderr
