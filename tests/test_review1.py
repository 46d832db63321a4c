"""A hostile review of issues 11 and 12: the holes it found, each pinned by a test that failed before its fix.

Real files, ``swt`` in real processes (``run_swt``) or in process where the process is not the point
(``run_in_process``), and the library beside it.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from clitools import run_in_process, run_swt

from swt_cli.errors import SwtError
from swt_cli.formats import open_reader

WINDOWS = np.arange(2 * 3 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 3, 2, 2)


def _one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def linked(tmp_path):
    """in.h5 whose soft links lead, directly or through other soft links and groups, to external links."""
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["secret"] = WINDOWS
        f["grp/data"] = WINDOWS
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["ext"] = h5py.ExternalLink("other.h5", "/secret")
        f["extg"] = h5py.ExternalLink("other.h5", "/grp")
        f["s"] = h5py.SoftLink("/ext")  # a soft link to an external link
        f["s2"] = h5py.SoftLink("/s")  # a chain of soft links to one
        f["sg"] = h5py.SoftLink("/extg")  # a soft link to an external link to a group
        f["deep/s"] = h5py.SoftLink("/extg/data")  # a soft link deeper down, through an external group
        f["deep/rel"] = h5py.SoftLink("/s2")
        f["own"] = np.ones((1, 2, 2, 2, 2), np.float32)
        f["deep/ok"] = h5py.SoftLink("/own")  # soft links inside the file stay followed
        f["loop1"] = h5py.SoftLink("/loop2")
        f["loop2"] = h5py.SoftLink("/loop1")
    return tmp_path / "in.h5"


@pytest.mark.parametrize("name", ["s", "s2", "sg/data", "deep/s", "deep/rel"])
def test_soft_links_through_external_links_are_refused(linked, tmp_path, name):
    """A soft link whose target passes through an external link reads another file just as the external link
    does; before, only the named path's own steps were looked at, so /s -> /ext -> other.h5 was read."""
    out = tmp_path / "o.npy"
    result = run_in_process("fold", f"{linked}:/{name}", out, "-k", 2, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    line = _one_line(result.stderr)
    assert "external link to other.h5" in line and "--allow-external" in line and f"/{name}" in line, line
    assert not out.exists()
    with pytest.raises(SwtError, match="external link"):
        open_reader(f"{linked}:/{name}")
    with open_reader(f"{linked}:/{name}", allow_external=True) as reader:
        np.testing.assert_array_equal(reader.read(()), WINDOWS)
    result = run_in_process("fold", f"{linked}:/{name}", out, "-k", 2, "-q", "--allow-external", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_soft_links_inside_the_file_are_still_followed(linked):
    with open_reader(f"{linked}:/deep/ok") as reader:
        np.testing.assert_array_equal(reader.read(()), np.ones((1, 2, 2, 2, 2), np.float32))
    with pytest.raises(SwtError, match="soft link"):
        open_reader(f"{linked}:/loop1")


@pytest.mark.parametrize("how", ["absolute", "dot-relative", "plain"])
def test_virtual_dataset_naming_its_own_file_is_read(tmp_path, how):
    """A virtual dataset whose sources are in its own file, named by that file's name (as tools other than
    h5py write it, often absolutely), reads nothing from elsewhere: it was refused as 'other files (vds.h5)'."""
    path = tmp_path / "vds.h5"
    name = {"absolute": str(path), "dot-relative": "./vds.h5", "plain": "vds.h5"}[how]
    with h5py.File(path, "w") as f:
        f["src"] = WINDOWS
        layout = h5py.VirtualLayout(shape=WINDOWS.shape, dtype=WINDOWS.dtype)
        layout[...] = h5py.VirtualSource(name, "src", shape=WINDOWS.shape)
        f.create_virtual_dataset("v", layout)
    os.makedirs(tmp_path / "elsewhere")
    result = run_in_process("fold", f"{path}:/v", tmp_path / "o.npy", "-k", 2, "-q", cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    want = run_in_process("fold", f"{path}:/src", tmp_path / "w.npy", "-k", 2, "-q")
    assert want.returncode == 0, want.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), np.load(tmp_path / "w.npy"))


def test_virtual_dataset_over_a_file_of_the_same_base_name_elsewhere_is_refused(tmp_path):
    """The same base name in another folder is another file: still refused."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with h5py.File(tmp_path / "b" / "vds.h5", "w") as f:
        f["src"] = WINDOWS + 1
    path = tmp_path / "a" / "vds.h5"
    with h5py.File(path, "w") as f:
        f["src"] = WINDOWS
        layout = h5py.VirtualLayout(shape=WINDOWS.shape, dtype=WINDOWS.dtype)
        layout[...] = h5py.VirtualSource(str(tmp_path / "b" / "vds.h5"), "src", shape=WINDOWS.shape)
        f.create_virtual_dataset("v", layout)
    result = run_in_process("fold", f"{path}:/v", tmp_path / "o.npy", "-k", 2)
    assert result.returncode == 1
    assert "virtual dataset" in _one_line(result.stderr)


@pytest.mark.parametrize(("data", "fill", "advice"), [
    (np.uint8, -1, "int16"),  # int8 (what -1 alone needs) cannot hold the data's 255
    (np.uint8, 256, "int16"),
    (np.int8, 200, "int16"),  # uint8 holds 200 but not the data's -128
    (np.uint16, -5, "int32"),
    (np.uint64, -1, None),  # no integer dtype holds both
])
def test_fill_advice_names_a_dtype_that_holds_the_data_too(tmp_path, data, fill, advice):
    """A fill the integer output cannot hold was answered with the dtype that holds the fill alone (uint8 data,
    fill -1: 'use dtype int8'), and following that advice failed again on the data."""
    info = np.iinfo(data)
    x = np.full((2, 2, 2, 2, 2), info.max, data)
    x[0] = info.min
    np.save(tmp_path / "w.npy", x)
    args = ("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", 2, "-s", 2, "--output-size", 5, "--fill", fill)
    result = run_in_process(*args)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    if advice is None:
        assert "no integer dtype holds both" in line and "float64" in line, line
        return
    assert line.endswith(f"use dtype {advice}"), line
    result = run_in_process(*args, "--dtype", advice, "-q")  # the advice works
    assert result.returncode == 0, result.stderr
    out = np.load(tmp_path / "o.npy")
    assert out.dtype == advice and out[0, -1, -1] == fill and out[1, 0, 0] == info.max and out[0, 0, 0] == info.min


def test_fill_text_beyond_float64_is_refused_not_made_infinite():
    """``fill="1e400"`` was read as inf and written silently; an infinity must be asked for by name."""
    from swt_cli import sliding_window_transpose

    x = np.ones((1, 2, 2, 2, 2), np.float32)
    with pytest.raises(SwtError, match="1e400"):
        sliding_window_transpose(x, 5, 2, stride=2, fill="1e400")
    out = sliding_window_transpose(x, 5, 2, stride=2, fill="-inf")
    assert out[0, -1, -1] == -np.inf


@pytest.mark.parametrize(("value", "dtype"), [(1e38, None), (3e38, None), (2e4, "float16")])
def test_weighted_sum_whose_weights_add_up_beyond_the_dtype_is_refused(tmp_path, value, dtype):
    """Each weight fitting float32 is not enough: four windows of weight 1e38 on one element gave inf from
    data of ones, exit 0. Refused up front (nothing written), as the tiny weights are; mean and float64 work."""
    from swt_cli import sliding_window_transpose

    x = np.ones((1, 3, 3, 2, 2), np.float32)
    weight = np.full((2, 2), value)
    with pytest.raises(SwtError, match="weighted sum.*adds up to.*reduce mean, or dtype float64"):
        sliding_window_transpose(x, 4, 2, weight=weight, dtype=dtype)
    assert np.all(sliding_window_transpose(x, 4, 2, weight=weight, reduce="mean", dtype=dtype) == 1)
    got = sliding_window_transpose(x, 4, 2, weight=weight, dtype=np.float64)
    assert np.isfinite(got).all() and got[0, 1, 1] == 4 * value
    np.save(tmp_path / "w.npy", x)
    np.save(tmp_path / "weight.npy", weight)
    args = ["fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", 2, "-q", "--weight", tmp_path / "weight.npy"]
    result = run_in_process(*args, *(["--dtype", dtype] if dtype else []))
    assert result.returncode == 1 and "adds up to" in _one_line(result.stderr)
    assert not (tmp_path / "o.npy").exists() and not list(tmp_path.glob(".o.npy*"))


def test_weighted_sum_just_below_the_limit_is_finite():
    from swt_cli import sliding_window_transpose

    x = np.ones((1, 3, 3, 2, 2), np.float32)
    got = sliding_window_transpose(x, 4, 2, weight=np.full((2, 2), 8e37))
    assert np.isfinite(got).all() and got[0, 1, 1] == np.float32(np.float32(8e37) * 4)


def test_overwrite_of_a_zarr_output_never_leaves_the_name_empty(tmp_path):
    """``--overwrite`` onto a Zarr store (a folder) parked the old store, then renamed the new one in: between
    the two a reader found no output at all (tens of thousands of polls in 2 s), and a kill there left none.
    Now the two swap in one step (RENAME_EXCHANGE) and the old one is dropped after."""
    import subprocess
    import sys
    import time

    from swt_cli.formats.base import commit_path, temp_sibling

    path = tmp_path / "o.zarr"
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    poll = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "missing, end = 0, time.time() + 2.5\n"
        "while time.time() < end:\n"
        f"    missing += not os.path.exists({str(path)!r})\n"
        "print(missing)\n")], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    end, commits = time.time() + 1.8, 0
    while time.time() < end:
        temp = temp_sibling(str(path))
        os.mkdir(temp)
        with open(os.path.join(temp, "zarr.json"), "w") as f:
            f.write(str(commits))
        commit_path(temp, str(path), overwrite=True)
        commits += 1
    missing = int(poll.communicate()[0])
    assert commits > 50
    assert missing == 0, f"{missing} polls found no output during {commits} overwrites"
    assert (path / "zarr.json").read_text() == str(commits - 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]  # every old store was dropped


def test_overwrite_of_a_zarr_output_by_the_cli_keeps_only_the_new_store(tmp_path):
    np.save(tmp_path / "w.npy", WINDOWS)
    out = tmp_path / "o.zarr"
    for scale in (1, 2):
        np.save(tmp_path / "w.npy", WINDOWS * scale)
        result = run_in_process("fold", tmp_path / "w.npy", out, "-k", 2, "-q", "--overwrite")
        assert result.returncode == 0, result.stderr
    want = run_in_process("fold", tmp_path / "w.npy", tmp_path / "want.npy", "-k", 2, "-q")
    assert want.returncode == 0, want.stderr
    with open_reader(str(out)) as reader:
        np.testing.assert_array_equal(reader.read(()), np.load(tmp_path / "want.npy"))
    (tmp_path / "want.npy").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr", "w.npy"]


def test_virtual_dataset_own_name_under_a_vds_prefix_elsewhere_is_refused(tmp_path):
    """HDF5_VDS_PREFIX comes first in HDF5's search: a source named like the file itself then reads the file of
    that name under the prefix, another file, so the own-name allowance must not apply."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with h5py.File(tmp_path / "b" / "vds.h5", "w") as f:
        f["src"] = WINDOWS + 1
    with h5py.File(tmp_path / "a" / "vds.h5", "w") as f:
        f["src"] = WINDOWS
        layout = h5py.VirtualLayout(shape=WINDOWS.shape, dtype=WINDOWS.dtype)
        layout[...] = h5py.VirtualSource("vds.h5", "src", shape=WINDOWS.shape)
        f.create_virtual_dataset("v", layout)
    env = {**os.environ, "HDF5_VDS_PREFIX": str(tmp_path / "b")}
    result = run_swt("info", f"{tmp_path}/a/vds.h5:/v", env=env)
    assert result.returncode == 1 and "virtual dataset" in _one_line(result.stderr)
    result = run_swt("info", f"{tmp_path}/a/vds.h5:/v", "-q")  # without the prefix: its own file
    assert result.returncode == 0, result.stderr


def test_cli_fill_text_beyond_float64_is_a_usage_error(tmp_path):
    """--fill reads its text as the library does: 1e400 is refused (exit 2), not turned into inf."""
    np.save(tmp_path / "w.npy", np.ones((1, 3, 3, 2, 2), np.float32))
    done = run_in_process("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", 2, "--fill", "1e400")
    assert done.returncode == 2, done.stderr
    assert b"beyond the range of every float dtype" in done.stderr
    assert not (tmp_path / "o.npy").exists()


def test_shards_of_an_empty_input_all_finish(tmp_path):
    """An input with no items: every shard of it succeeds and the output is complete and empty."""
    np.save(tmp_path / "e.npy", np.zeros((0, 3, 3, 2, 2), np.float32))
    for part in ("0/2", "1/2"):
        done = run_in_process("fold", tmp_path / "e.npy", tmp_path / "o.zarr", "-k", 2, "--shard", part, "-q")
        assert done.returncode == 0, (part, done.stderr)
    info = run_in_process("info", tmp_path / "o.zarr", "--json")
    assert info.returncode == 0, info.stderr
    assert b'"shape": [\n    0,' in info.stdout or b'"shape": [0' in info.stdout, info.stdout
