"""Fuzzing (issue 7): random bytes and random headers for every reader, random option values for the CLI.

Only two outcomes are accepted: it works, or the project's own error (``SwtError`` from the library;
exit 1 or 2 with one line on stderr and no traceback from the command line). Any other exception
fails the test (CliRunner runs with ``catch_exceptions=False``).

Examples are bounded so the quick run takes well under a minute; the slowest tests and the long versions are
marked slow (``pytest -m slow``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile

import numpy as np
import pytest
from clitools import invoke
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from swt_cli import SwtError
from swt_cli.formats import open_reader
from swt_cli.formats.base import Location
from swt_cli.formats.stream import StdinReader

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

MAGIC = b"\x93NUMPY"
SCRATCH = tempfile.mkdtemp(prefix="swt-fuzz-")


def _nbytes(shape, itemsize) -> int:
    count = 1
    for v in shape:
        count *= int(v)
    return count * itemsize


def read_everything(reader) -> None:
    """Read the array in blocks of the first axis (the way the pipeline does), as far as 1 MiB goes."""
    if not reader.shape:
        reader.read(())
        return
    if _nbytes(reader.shape[1:], reader.dtype.itemsize) > 1 << 20:
        return  # the pipeline would not read such a block either: it is refused or split further
    for i in range(0, min(reader.shape[0], 64), 2):
        reader.read((slice(i, i + 2),))


def try_reader(spec) -> None:
    try:
        with open_reader(spec) as reader:
            read_everything(reader)
    except SwtError:
        pass


def scratch(name: str) -> str:
    path = os.path.join(SCRATCH, name)
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    return path


# ---- .npy -----------------------------------------------------------------------------------------

DESCRS = ["'<f4'", "'<f8'", "'>f8'", "'<i2'", "'|u1'", "'<c8'", "'|O'", "'<V8'", "'<U3'", "'|S0'", "'<M8[s]'", "'|b1'",
          "[('a', '<f4')]", "('<f4', (2,))", "'<f2'", "'zz'", "''", "None", "1", "'<f4' + '<f4'"]
SHAPE_ITEMS = st.one_of(st.integers(-3, 6), st.sampled_from([2**31, 2**62, 2**63, 2**64, 10**30]),
                        st.sampled_from(["1.5", "True", "None", "'a'", "()", "-0"]))


@st.composite
def npy_headers(draw) -> bytes:
    descr = draw(st.sampled_from(DESCRS) | st.text(max_size=12).map(repr))
    shape = draw(st.lists(SHAPE_ITEMS, max_size=7))
    shape_text = "(" + "".join(f"{v}, " for v in shape) + ")"
    if draw(st.booleans()):
        shape_text = draw(st.sampled_from(["[2, 3]", "5", "None", "(2, 3", "{}"]))
    fortran = draw(st.sampled_from(["False", "True", "0", "'x'", "None"]))
    keys = [f"'descr': {descr}", f"'fortran_order': {fortran}", f"'shape': {shape_text}"]
    keys = draw(st.permutations(keys))
    keys = keys[: draw(st.integers(1, 3))] if draw(st.integers(0, 9)) == 0 else keys
    if draw(st.booleans()):
        keys.append(draw(st.sampled_from(["'x': 1", "'x': " + "'" + "A" * 20000 + "'", "**{}", "'x': (lambda: 1)"])))
    text = "{" + ", ".join(keys) + "}"
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.text(max_size=60))
    raw = text.encode("utf-8" if draw(st.booleans()) else "latin1", errors="replace")
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (1, 0), (0, 9), (9, 9)]))
    raw += b" " * draw(st.integers(0, 70)) + (b"\n" if draw(st.integers(0, 5)) else b"")
    size_fmt = "<H" if version[0] == 1 else "<I"
    length = len(raw) if draw(st.integers(0, 7)) else draw(st.integers(0, 2**16 - 1 if version[0] == 1 else 2**32 - 1))
    head = MAGIC + bytes(version) + struct.pack(size_fmt, min(length, 2**16 - 1) if version[0] == 1 else length) + raw
    data = draw(st.binary(max_size=600))
    return head + data


@pytest.mark.slow  # the quick run's slowest fuzz test (6 s under load); random bytes and damaged files stay
@FAST
@given(data=npy_headers())
@example(data=MAGIC + b"\x01\x00" + struct.pack("<H", 70) + b"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }" + b" " * 13 + b"\n")
def test_npy_random_headers(data):
    path = scratch("h.npy")
    with open(path, "wb") as f:
        f.write(data)
    try_reader(path)
    try:
        reader = StdinReader(Location.parse("-"), stream=io.BytesIO(data))
        if reader.shape and _nbytes(reader.shape[1:], reader.dtype.itemsize) <= 1 << 20:
            reader.read((slice(0, min(1, reader.shape[0])),))
    except SwtError:
        pass


@FAST
@given(data=st.binary(max_size=2000), prefix=st.sampled_from([b"", MAGIC, MAGIC + b"\x01\x00", MAGIC + b"\x02\x00"]))
def test_npy_random_bytes(data, prefix):
    path = scratch("b.npy")
    with open(path, "wb") as f:
        f.write(prefix + data)
    try_reader(path)


@FAST
@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=6))
def test_npy_damaged_real_file(cut, flips):
    buf = io.BytesIO()
    np.save(buf, np.arange(2 * 3 * 4 * 3, dtype="<f4").reshape(2, 3, 4, 3))
    data = bytearray(buf.getvalue())
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    path = scratch("d.npy")
    with open(path, "wb") as f:
        f.write(bytes(data[: max(cut, 0)] if cut < len(data) else data))
    try_reader(path)


# ---- HDF5 -----------------------------------------------------------------------------------------

def _good_h5() -> bytes:
    import h5py

    path = scratch("good.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(6 * 8 * 8, dtype="f4").reshape(6, 8, 8), chunks=(2, 8, 8), compression="gzip")
        f["x"].attrs["swt_geometry"] = json.dumps({"op": "unfold", "kernel_size": [3, 3]})
    with open(path, "rb") as f:
        return f.read()


GOOD_H5 = None


@FAST
@given(cut=st.integers(0, 20000), flips=st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 255)), max_size=8),
       noise=st.binary(max_size=300))
def test_h5_damaged_and_random(cut, flips, noise):
    global GOOD_H5
    if GOOD_H5 is None:
        GOOD_H5 = _good_h5()
    data = bytearray(GOOD_H5)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[:cut]) if cut < len(data) else bytes(data)
    path = scratch("f.h5")
    with open(path, "wb") as f:
        f.write(data)
    try_reader(path)
    with open(path, "wb") as f:
        f.write(noise)
    try_reader(path)


# ---- Zarr -----------------------------------------------------------------------------------------

def _fresh_zarr(path):
    import zarr

    z = zarr.create_array(path, shape=(6, 8, 8), chunks=(2, 8, 8), dtype="f4")
    z[...] = np.arange(6 * 8 * 8, dtype="f4").reshape(6, 8, 8)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@FAST
@given(field=st.sampled_from(["shape", "data_type", "chunk_grid", "codecs", "fill_value", "node_type", "zarr_format",
                              "attributes", "chunk_key_encoding", "dimension_names"]),
       value=JSON_VALUES, raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_zarr_random_metadata(field, value, raw):
    path = scratch("m.zarr")
    _fresh_zarr(path)
    meta_path = os.path.join(path, "zarr.json")
    if raw is not None:
        with open(meta_path, "wb") as f:
            f.write(raw)
    else:
        with open(meta_path) as f:
            meta = json.load(f)
        meta[field] = value
        with open(meta_path, "w") as f:
            json.dump(meta, f)
    try_reader(path)


@pytest.mark.slow  # 4 s under load; random Zarr metadata stays in the quick run
@FAST
@given(chunk=st.integers(0, 2), data=st.binary(max_size=400))
def test_zarr_random_chunks(chunk, data):
    path = scratch("c.zarr")
    _fresh_zarr(path)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f != "zarr.json")
    with open(files[chunk], "wb") as f:
        f.write(data)
    try_reader(path)


# ---- the command line -----------------------------------------------------------------------------

INT_TEXT = st.one_of(
    st.integers(-5, 12).map(str),
    st.sampled_from(["0", "1099511627776", "4611686018427387904", "4611686018427387905", "9" * 30, "1" + "0" * 5000,
                     "3,", ",", "3,,3", " 3 ", "3, 4", "1e3", "0x10", "-0", "", "nan", "३", "3,3,3", "3,3,3,3", "²"]),
    st.lists(st.integers(-2, 9), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    st.text(max_size=6),
)
SIZE_TEXT = st.one_of(st.sampled_from(["1MiB", "1GiB", "0", "-1MiB", "1e9", "1" + "0" * 400, "inf", "nan", "1.5GiB",
                                       "99999999999999999TiB", "2MB", "MiB", " 4 MiB ", "4 mib"]), st.text(max_size=6))
OPTIONS = st.fixed_dictionaries({}, optional={
    "--kernel": INT_TEXT, "--stride": INT_TEXT, "--padding": INT_TEXT, "--dilation": INT_TEXT,
    "--output-size": INT_TEXT, "--ndim": st.sampled_from(["0", "1", "2", "3", "4", "x", ""]),
    "--max-memory": SIZE_TEXT, "--batch-size": st.sampled_from(["0", "1", "3", "-1", str(2**63), "x"]),
    "--dtype": st.sampled_from(["float32", "float16", "int8", "uint64", "complex64", "object", "bool", "U3", "V8", "x",
                                "datetime64", "f4,f4", ""]),
    "--compression": st.sampled_from(["none", "gzip", "lzf", "zstd", "blosc", "x"]),
    "--threads": st.sampled_from(["1", "2", "0", "-1", "99999999999999999999"]),
})


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    np.save(folder / "img.npy", np.random.default_rng(0).random((2, 9, 9), dtype=np.float32))
    np.save(folder / "win.npy", np.random.default_rng(1).random((2, 4, 4, 3, 3), dtype=np.float32))
    np.save(folder / "iwin.npy", np.arange(2 * 4 * 4 * 9, dtype=np.int16).reshape(2, 4, 4, 3, 3))
    return folder


def _check_cli(result) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr)
    if result.exit_code == 2 and result.stderr.startswith("Usage: swt [OPTIONS] COMMAND"):
        return  # a bare 'swt' shows its help
    if result.exit_code:
        assert "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("swt: ")]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "this is a bug in swt" not in result.stderr, result.stderr


def _run_cli(folder, op, src, out_ext, options, overwrite=True):
    args = [op, folder / src, folder / f"out.{out_ext}", "-q"]
    for key, value in options.items():
        args += [key, value]
    if overwrite:
        args.append("--overwrite")
    return invoke(*args)


@FAST
@given(op_src=st.sampled_from([("fold", "win.npy"), ("fold", "iwin.npy"), ("unfold", "img.npy"), ("unfold", "win.npy")]),
       out_ext=st.sampled_from(["npy", "h5", "zarr"]), options=OPTIONS)
def test_cli_random_options(cli_files, op_src, out_ext, options):
    op, src = op_src
    _check_cli(_run_cli(cli_files, op, src, out_ext, options))


@FAST
@given(argv=st.lists(st.one_of(st.sampled_from(["fold", "unfold", "info", "-k", "3", "-", "--overwrite", "-q", "-o",
                                                 "img.npy", "x.h5", "y.zarr", "z.npy", "a.txt", "--json", "-h", ":/",
                                                 "x.h5:/", "x.h5:/a/b", "--debug-not", "--"]),
                                st.text(max_size=5)), max_size=8))
def test_cli_random_argv(cli_files, argv):
    cwd = os.getcwd()
    os.chdir(cli_files)
    try:
        result = invoke(*argv, input=b"")
    finally:
        os.chdir(cwd)
    _check_cli(result)


# ---- long runs --------------------------------------------------------------------------------------

@pytest.mark.slow
@SLOW
@given(data=npy_headers())
def test_npy_random_headers_long(data):
    test_npy_random_headers.hypothesis.inner_test(data)


@pytest.mark.slow
@SLOW
@given(op_src=st.sampled_from([("fold", "win.npy"), ("unfold", "img.npy")]), out_ext=st.sampled_from(["npy", "h5", "zarr"]),
       options=OPTIONS)
def test_cli_random_options_long(cli_files, op_src, out_ext, options):
    op, src = op_src
    _check_cli(_run_cli(cli_files, op, src, out_ext, options))
