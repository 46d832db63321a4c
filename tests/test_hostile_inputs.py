"""Hostile or broken inputs, absurd parameters and IEEE values (issue 7).

Every broken file gets one clear ``SwtError`` (exit 1 with one line from the command line) within
seconds, without allocating what its header claims: never a traceback, a hang or an unpickle.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import time

import h5py
import numpy as np
import pytest
from clitools import invoke, run_swt

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.formats import open_reader
from swt_cli.formats.base import Location
from swt_cli.formats.stream import StdinReader

MAGIC = b"\x93NUMPY"


def npy_bytes(header: str, version=(1, 0), data: bytes = b"") -> bytes:
    """A .npy file with any header text at all (padded like numpy's own)."""
    text = header.encode("latin1")
    size_bytes = 2 if version[0] == 1 else 4
    total = len(MAGIC) + 2 + size_bytes + len(text) + 1
    text += b" " * ((64 - total % 64) % 64) + b"\n"
    length = struct.pack("<H" if size_bytes == 2 else "<I", len(text))
    return MAGIC + bytes(version) + length + text + data


def hdr(descr="'<f4'", shape="(2, 4, 4, 3, 3)", fortran="False", extra="") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, {extra}}}"


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# name: (file bytes, words the error must hold)
HOSTILE_NPY = {
    "truncated": (npy_bytes(hdr(shape="(20, 8, 8)"), data=b"\0" * 100), "truncated"),
    "header-over-10000": (npy_bytes(hdr(extra="'pad': '" + "A" * 2_000_000 + "'"), (2, 0)), "over numpy's safety limit"),
    "header-length-4GB": (MAGIC + bytes((2, 0)) + struct.pack("<I", 4_000_000_000) + b"{", "over numpy's safety limit"),
    "petabytes": (npy_bytes(hdr(descr="'<f8'", shape="(1000000, 1000000, 1000, 3, 3)")), "truncated"),
    "overflowing-shape": (npy_bytes(hdr(descr="'<f8'", shape="(4294967296, 4294967296, 4294967296)")), "impossible shape"),
    "negative-shape": (npy_bytes(hdr(shape="(-1, 3, 3)")), "impossible shape"),
    "boolean-shape": (npy_bytes(hdr(shape="(1, 0, True)")), "impossible shape"),  # found by the slow fuzz test
    "float-shape": (npy_bytes(hdr(shape="(2.5, 3)")), "not a valid .npy"),
    "string-shape": (npy_bytes(hdr(shape="'big'")), "not a valid .npy"),
    "object-pickle": (npy_bytes(hdr(descr="'|O'"), data=b"\x80\x04\x95" + b"cos\nsystem\n" * 20), "never unpickles"),
    "void": (npy_bytes(hdr(descr="'<V8'"), data=b"\0" * 2000), "not supported"),
    "structured": (npy_bytes(hdr(descr="[('a', '<f4'), ('b', '<i4')]"), data=b"\0" * 2000), "not supported"),
    "structured-with-object": (npy_bytes(hdr(descr="[('a', '<f4'), ('b', '|O')]"), data=b"\0" * 2000), "never unpickles"),
    "unicode": (npy_bytes(hdr(descr="'<U8'"), data=b"\0" * 5000), "not supported"),
    "datetime": (npy_bytes(hdr(descr="'<M8[s]'"), data=b"\0" * 5000), "not supported"),
    "bad-descr": (npy_bytes(hdr(descr="'zz'")), "not a valid .npy"),
    "subarray-over-int": (npy_bytes(hdr(descr="('<f8', (1000000000,))", shape="(10, 10)")), "not a valid .npy"),
    "version-9.9": (npy_bytes(hdr(), (9, 9), b"\0" * 1000), "unsupported .npy version 9.9"),
    "code-not-a-dict": (npy_bytes("__import__('os').system('touch PWNED')", data=b"\0" * 100), "not a valid .npy"),
    "list-not-a-dict": (npy_bytes("[1, 2, 3]"), "not a valid .npy"),
    "missing-keys": (npy_bytes("{'descr': '<f4'}"), "not a valid .npy"),
    "fortran-not-bool": (npy_bytes(hdr(fortran="'yes'")), "not a valid .npy"),
    "deeply-nested": (npy_bytes("{'descr': " + "(" * 3000 + ")" * 3000 + "}"), "not a valid .npy"),
    "garbage": (os.urandom(4096), "not a valid .npy"),
    "empty": (b"", "not a valid .npy"),
    "magic-only": (MAGIC, "not a valid .npy"),
    "header-cut-short": (npy_bytes(hdr())[:30], "not a valid .npy"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_NPY))
def test_hostile_npy_files(tmp_path, name):
    data, words = HOSTILE_NPY[name]
    path = tmp_path / f"{name}.npy"
    path.write_bytes(data)
    rss = max_rss_mb()
    start = time.monotonic()
    with pytest.raises(SwtError, match=words.replace(".", r"\.")):
        with open_reader(str(path)) as reader:
            reader.read((slice(0, 1),) if reader.shape else ())
    assert time.monotonic() - start < 5
    assert max_rss_mb() - rss < 100  # nothing near the claimed size was allocated
    result = invoke("info", path)
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith("Error: ")
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")  # never eval'd


@pytest.mark.parametrize("name", ["petabytes", "header-length-4GB", "object-pickle", "truncated", "version-9.9", "garbage"])
def test_hostile_npy_on_stdin(name):
    """The same headers on a pipe: refused before any data is read (the 4 GB header is not read at all)."""
    data, _ = HOSTILE_NPY[name]
    with pytest.raises(SwtError):
        reader = StdinReader(Location.parse("-"), stream=io.BytesIO(data))
        reader.read((slice(0, 1),) * (len(reader.shape) - 3))  # a small block: the stream ends first


def test_petabyte_header_on_stdin_of_the_real_command(tmp_path):
    """swt unfold - out.npy with a header claiming petabytes: refused by the plan's checks, at once."""
    data = npy_bytes(hdr(descr="'<f8'", shape="(1000000, 1000000, 1000, 64, 64)"))
    start = time.monotonic()
    proc = run_swt("unfold", "-", tmp_path / "out.npy", "-k", "3", "-q", input=data, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    one_line(proc.stderr)
    assert os.listdir(tmp_path) == []


def test_stdin_that_ends_early(tmp_path):
    data = npy_bytes(hdr(shape="(4, 4, 4, 3, 3)")) + b"\0" * 100
    proc = run_swt("fold", "-", tmp_path / "out.npy", "-k", "3", "-q", input=data)
    assert proc.returncode == 1
    assert "truncated" in one_line(proc.stderr)
    assert os.listdir(tmp_path) == []


def test_fortran_order_npy_is_read_correctly(tmp_path):
    img = np.random.default_rng(0).random((3, 7, 9), dtype=np.float32)
    np.save(tmp_path / "f.npy", np.asfortranarray(img))
    assert invoke("unfold", tmp_path / "f.npy", tmp_path / "w.npy", "-k", "3", "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), sliding_window(img, 3))
    with open_reader(str(tmp_path / "f.npy")) as reader:
        np.testing.assert_array_equal(reader.read((slice(1, 3),)), img[1:3])


# ---- HDF5 ---------------------------------------------------------------------------------------------

def _h5_good(path):
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(1).random((50, 64, 64), dtype=np.float32)


def make_h5(kind: str, path) -> str:
    """A broken HDF5 file of ``kind``; returns the spec to open."""
    if kind in ("truncated-half", "truncated-head"):
        good = str(path) + ".good"
        _h5_good(good)
        data = open(good, "rb").read()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated-half" else data[:1000])
    elif kind == "garbage":
        path.write_bytes(os.urandom(8192))
    elif kind == "group-only":
        with h5py.File(path, "w") as f:
            f.create_group("g").attrs["a"] = 1
    elif kind == "named-group":
        with h5py.File(path, "w") as f:
            f.create_group("g")
            f["x"] = np.zeros((2, 3))
        return f"{path}:/g"
    elif kind == "strings":
        with h5py.File(path, "w") as f:
            f["s"] = np.array([b"ab", b"cd"])
    elif kind == "compound":
        with h5py.File(path, "w") as f:
            f["c"] = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])
    elif kind == "no-shape":
        with h5py.File(path, "w") as f:
            f.create_dataset("e", dtype="f4")
    elif kind == "links-only":
        with h5py.File(path, "w") as f:
            f["soft"] = h5py.SoftLink("/nowhere")
            f["ext"] = h5py.ExternalLink("/etc/passwd", "/x")
    elif kind == "external-link":
        with h5py.File(path, "w") as f:
            f["ext"] = h5py.ExternalLink("/etc/passwd", "/x")
        return f"{path}:/ext"
    elif kind == "corrupt-chunk":
        with h5py.File(path, "w") as f:
            d = f.create_dataset("x", data=np.random.default_rng(2).random((40, 32, 32)), chunks=(10, 32, 32), compression="gzip")
            offset = d.id.get_chunk_info(1).byte_offset
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(os.urandom(256))
    elif kind == "huge-dataset":  # 72 TB, claimed only
        with h5py.File(path, "w") as f:
            f.create_dataset("big", shape=(10**6, 10**6, 3, 3), dtype="f8", chunks=(1, 10, 3, 3))
    return str(path)


H5_KINDS = ["truncated-half", "truncated-head", "garbage", "group-only", "named-group", "strings", "compound",
            "no-shape", "links-only", "external-link"]


@pytest.mark.parametrize("kind", H5_KINDS)
def test_hostile_h5_files(tmp_path, kind):
    spec = make_h5(kind, tmp_path / f"{kind}.h5")
    start = time.monotonic()
    with pytest.raises(SwtError):
        with open_reader(spec) as reader:
            reader.read(())
    result = invoke("unfold", spec, tmp_path / "out.npy", "-k", "3", "-q")
    assert result.exit_code == 1
    one_line(result.stderr)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "out.npy").exists()


def test_corrupt_h5_chunk(tmp_path):
    spec = make_h5("corrupt-chunk", tmp_path / "c.h5")
    with open_reader(spec) as reader:
        reader.read((slice(0, 10),))  # chunk 0 is fine
        with pytest.raises(SwtError, match="damaged"):
            reader.read((slice(10, 20),))
    result = invoke("unfold", spec, tmp_path / "out.h5", "-k", "3", "-q")
    assert result.exit_code == 1 and "damaged" in one_line(result.stderr)
    assert sorted(os.listdir(tmp_path)) == ["c.h5"]


@pytest.mark.parametrize("op", ["fold", "unfold"])
def test_h5_dataset_claiming_72_terabytes(tmp_path, op):
    spec = make_h5("huge-dataset", tmp_path / "big.h5")
    start = time.monotonic()
    proc = run_swt(op, spec, tmp_path / "out.npy", "-k", "3", "-q", timeout=60)
    assert proc.returncode == 1
    assert any(w in one_line(proc.stderr) for w in ("memory", "free", "too large"))
    assert time.monotonic() - start < 30
    assert sorted(os.listdir(tmp_path)) == ["big.h5"]


# ---- Zarr --------------------------------------------------------------------------------------------

def make_zarr(path):
    import zarr

    z = zarr.create_array(str(path), shape=(20, 16, 16), chunks=(4, 16, 16), dtype="f4")
    z[...] = np.random.default_rng(3).random((20, 16, 16), dtype=np.float32)
    return path


def chunk_files(path):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f != "zarr.json")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_zarr_chunk(tmp_path, damage):
    store = make_zarr(tmp_path / "z.zarr")
    victim = chunk_files(store)[1]  # rows 4-7
    data = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write({"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with open_reader(str(store)) as reader:
        reader.read((slice(0, 4),))
        with pytest.raises(SwtError, match="damaged"):
            reader.read((slice(4, 8),))
    result = invoke("unfold", store, tmp_path / "out.zarr", "-k", "3", "-q")
    assert result.exit_code == 1 and "damaged" in one_line(result.stderr)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("meta", [
    b"\xff\xfe garbage",
    b"{not json",
    b"[]",
    json.dumps({"zarr_format": 3, "node_type": "array", "shape": [1e30]}).encode(),
    "negative-shape",
    "string-dtype",
])
def test_corrupt_zarr_metadata(tmp_path, meta):
    store = make_zarr(tmp_path / "z.zarr")
    if meta == "negative-shape":
        doc = json.loads((store / "zarr.json").read_text())
        doc["shape"] = [-5, 16, 16]
        meta = json.dumps(doc).encode()
    elif meta == "string-dtype":
        doc = json.loads((store / "zarr.json").read_text())
        doc["data_type"] = "string"
        meta = json.dumps(doc).encode()
    (store / "zarr.json").write_bytes(meta)
    with pytest.raises(SwtError):
        with open_reader(str(store)) as reader:
            reader.read(())
    result = invoke("info", store)
    assert result.exit_code == 1
    one_line(result.stderr)


def test_zarr_claiming_petabytes(tmp_path):
    store = make_zarr(tmp_path / "z.zarr")
    doc = json.loads((store / "zarr.json").read_text())
    doc["shape"] = [10**12, 10**6, 16]
    (store / "zarr.json").write_text(json.dumps(doc))
    start = time.monotonic()
    result = invoke("unfold", store, tmp_path / "out.npy", "-k", "3", "-q")
    assert result.exit_code == 1 and "too large" in one_line(result.stderr)
    assert time.monotonic() - start < 10


def test_zarr_output_marked_incomplete_by_swt(tmp_path):
    """A sharded output whose other shards never ran: zarr would read the missing chunks as zeros;
    swt refuses it and says which rows are missing and how to finish it."""
    windows = np.random.default_rng(4).random((12, 4, 4, 3, 3), dtype=np.float32)
    np.save(tmp_path / "w.npy", windows)
    out = tmp_path / "out.zarr"
    shard = invoke("fold", tmp_path / "w.npy", out, "-k", "3", "-q", "--shard", "1/3", "--batch-size", "2")
    assert shard.exit_code == 0, shard.stderr
    start = time.monotonic()
    with pytest.raises(SwtError, match=r"incomplete.*--resume"):
        open_reader(str(out))
    result = invoke("unfold", out, tmp_path / "again.npy", "-k", "1", "-q")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "is incomplete" in line and "were never written" in line and "--resume" in line
    assert time.monotonic() - start < 10
    assert not (tmp_path / "again.npy").exists()


def test_garbage_with_each_extension(tmp_path):
    for name in ("g.npy", "g.h5", "g.hdf5"):
        (tmp_path / name).write_bytes(os.urandom(3000))
        result = invoke("unfold", tmp_path / name, tmp_path / "out.npy", "-k", "3", "-q")
        assert result.exit_code == 1, name
        one_line(result.stderr)
    (tmp_path / "g.zarr").write_bytes(os.urandom(3000))  # a file, not a folder
    result = invoke("unfold", tmp_path / "g.zarr", tmp_path / "out.npy", "-k", "3", "-q")
    assert result.exit_code == 1
    one_line(result.stderr)
    assert not (tmp_path / "out.npy").exists()


# ---- absurd parameters ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    np.save(folder / "img.npy", np.zeros((2, 8, 8), np.float32))
    np.save(folder / "win.npy", np.zeros((2, 4, 4, 3, 3), np.float32))
    return folder


ABSURD = [
    ("unfold", "img", ["--kernel", "1099511627776"]),
    ("unfold", "img", ["-k", "1099511627776", "-p", "1099511627776"]),
    ("unfold", "img", ["-k", "3", "-p", "4611686018427387904"]),
    ("unfold", "img", ["-k", "3", "-p", "4611686018427387905"]),
    ("unfold", "img", ["-k", "3", "-d", "4611686018427387904"]),
    ("unfold", "img", ["-k", "1", "-p", "1073741824,1073741824"]),  # 2**62 bytes: overflows int64 products
    ("unfold", "img", ["-k", "3", "-d", "9" * 5000]),
    ("fold", "win", ["-k", "3", "--output-size", "4611686018427387904"]),
    ("fold", "win", ["-k", "3", "-s", "4611686018427387904"]),
    ("fold", "win", ["-k", "3", "-s", "2147483648,2147483648", "-o", "6442450947,6442450947"]),
    ("fold", "win", ["-k", "3", "-s", "1073741824", "-o", "3221225475"]),
    ("fold", "win", ["-k", "3", "-p", "-1"]),
    ("fold", "win", ["-k", "0"]),
    ("fold", "win", ["-k", "3,3,3,3"]),
    ("fold", "win", ["-k", "3", "--max-memory", "1" + "0" * 400]),
    ("fold", "win", ["-k", "3", "--max-memory", "-5MiB"]),
    ("fold", "win", ["-k", "3", "--batch-size", "0"]),
    ("fold", "win", ["-k", "3", "--ndim", "4"]),
]


@pytest.mark.parametrize("op,src,args", ABSURD, ids=[" ".join(a)[:40] for _, _, a in ABSURD])
def test_absurd_parameters_are_refused_before_allocating(small, op, src, args):
    out = small / "out.npy"
    rss = max_rss_mb()
    start = time.monotonic()
    result = invoke(op, small / f"{src}.npy", out, "-q", *args)
    assert result.exit_code in (1, 2), result.stderr
    one_line(result.stderr)
    assert time.monotonic() - start < 5
    assert max_rss_mb() - rss < 100
    assert not out.exists()


def test_huge_batch_size_is_clamped(small):
    """--batch-size larger than the batch is just 'all of it'."""
    result = invoke("unfold", small / "img.npy", small / "b.npy", "-k", "3", "-q", "--batch-size", str(2**62))
    assert result.exit_code == 0, result.stderr
    os.remove(small / "b.npy")


def test_geometry_overflow_in_the_library():
    """The same checks guard the library functions (products beyond 64 bits are Python ints, checked)."""
    x = np.zeros((1, 1, 2, 2, 1, 1), np.float32)
    with pytest.raises(SwtError, match="too large"):
        sliding_window_transpose(x, (2**40, 2**40), 1, stride=2**40 - 1)
    with pytest.raises(SwtError):
        sliding_window(np.zeros((1, 1, 4, 4), np.float32), 2**40)


# ---- IEEE values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64])
def test_nan_in_a_window_spreads_to_the_outputs_it_touches(dtype):
    w = np.ones((1, 1, 4, 4, 3, 3), dtype)
    w[0, 0, 1, 2, 0, 1] = np.nan  # window (1, 2), kernel offset (0, 1): output (1, 3)
    out = sliding_window_transpose(w, (6, 6), 3)
    nan = np.isnan(out)
    expected = np.zeros((1, 1, 6, 6), bool)
    expected[0, 0, 1, 3] = True
    np.testing.assert_array_equal(nan, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinities_pass_through(dtype):
    w = np.zeros((1, 4, 4, 3, 3), dtype)
    w[0, 0, 0, 0, 0] = np.inf  # output (0, 0)
    w[0, 3, 3, 2, 2] = -np.inf  # output (5, 5)
    w[0, 2, 2, 0, 0] = np.inf  # output (2, 2) ...
    w[0, 1, 1, 1, 1] = -np.inf  # ... also output (2, 2): inf + -inf = nan
    out = sliding_window_transpose(w, (6, 6), 3)
    assert out[0, 0, 0] == np.inf and out[0, 5, 5] == -np.inf and np.isnan(out[0, 2, 2])
    assert np.isfinite(np.delete(out.reshape(-1), [0, 35, 14])).all()
    img = np.array([[[np.nan, 1, np.inf], [2, -np.inf, 3], [4, 5, 6]]], dtype)
    win = sliding_window(img, 2)
    np.testing.assert_array_equal(win[0, 0, 0], img[0, :2, :2])  # NaN and Inf copied, never dropped
    assert np.isnan(win[0, 0, 0, 0, 0]) and win[0, 0, 1, 0, 1] == np.inf


def test_nan_and_inf_through_the_command_line(tmp_path):
    img = np.random.default_rng(5).random((2, 6, 6)).astype(np.float32)
    img[0, 2, 3] = np.nan
    img[1, 0, 0] = np.inf
    np.save(tmp_path / "img.npy", img)
    for fmt in ("npy", "h5", "zarr"):
        assert invoke("unfold", tmp_path / "img.npy", tmp_path / f"w.{fmt}", "-k", "3", "-q").exit_code == 0
        assert invoke("fold", tmp_path / f"w.{fmt}", tmp_path / f"back.{fmt}", "-k", "3", "-q").exit_code == 0
        with open_reader(str(tmp_path / f"back.{fmt}")) as reader:
            back = reader.read(())
        expected = sliding_window_transpose(sliding_window(img, 3), (6, 6), 3)
        np.testing.assert_array_equal(np.isnan(back), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(back), np.isinf(expected))
        assert np.isnan(back[0, 2, 3]) and np.isnan(back).sum() == 1  # fold(unfold(x)) = x times its window count
        assert back[1, 0, 0] == np.inf and np.isinf(back).sum() == 1


# ---- helpers ------------------------------------------------------------------------------------------

def one_line(stderr) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]
