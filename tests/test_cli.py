"""The commands as a user meets them: help, metadata round trips, errors with exit codes and messages."""

import json
import os

import h5py
import numpy as np
import pytest
from clitools import invoke, run_swt

from swt_cli import __version__, sliding_window, sliding_window_transpose


@pytest.fixture
def image(tmp_path):
    x = np.random.default_rng(4).standard_normal((3, 2, 20, 17)).astype(np.float32)
    np.save(tmp_path / "img.npy", x)
    return x


@pytest.fixture
def windows(tmp_path):
    w = np.random.default_rng(5).standard_normal((2, 3, 9, 8, 3, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    return w


def test_version_and_help_with_examples():
    assert invoke("--version").stdout == f"swt {__version__}\n"
    for command in ("fold", "unfold", "info"):
        result = invoke(command, "-h")
        assert result.exit_code == 0 and "Example" in result.stdout
    assert "Example" in invoke("--help").stdout


def test_unfold_records_geometry_so_fold_needs_no_flags(tmp_path, image):
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.h5", "-k", "4,3", "-s", "2", "-p", "1", "-q").exit_code == 0
    with h5py.File(tmp_path / "w.h5") as f:
        attrs = dict(f["data"].attrs)
    geometry = json.loads(attrs["swt_geometry"])
    assert geometry == {"op": "unfold", "kernel_size": [4, 3], "stride": [2, 2], "padding": [1, 1],
                        "dilation": [1, 1], "image_size": [20, 17]}
    assert attrs["swt_version"] == __version__
    assert attrs["swt_command"].startswith("swt unfold ") and "-k 4,3" in attrs["swt_command"]
    result = invoke("fold", tmp_path / "w.h5", tmp_path / "back.zarr", "-q")
    assert result.exit_code == 0, result.stderr
    import zarr

    got = zarr.open_array(str(tmp_path / "back.zarr"), mode="r")[...]
    want = sliding_window_transpose(sliding_window(image, (4, 3), 1, 2), (20, 17), (4, 3), 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_missing_output_size_takes_the_smallest_and_says_so(tmp_path, windows):
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", "3", "-s", "2")
    assert result.exit_code == 0
    assert ("swt: no --output-size given: using 19x17, the smallest that fits 9x8 windows of kernel 3, stride 2 "
            "(sizes that fit: 19-20, 17-18)") in result.stderr
    assert np.load(tmp_path / "o.npy").shape == (2, 3, 19, 17)
    quiet = invoke("fold", tmp_path / "w.npy", tmp_path / "q.npy", "-k", "3", "-s", "2", "--quiet")
    assert quiet.stderr == ""


def test_info_text_and_json(tmp_path, image):
    invoke("unfold", tmp_path / "img.npy", tmp_path / "w.zarr", "-k", "3", "-q")
    text = invoke("info", tmp_path / "w.zarr")
    assert text.exit_code == 0
    assert "shape:       (3, 2, 18, 15, 3, 3)" in text.stdout and "compression: zstd" in text.stdout
    assert "geometry:    unfold: kernel [3, 3], stride [1, 1], padding [0, 0], dilation [1, 1], image size [20, 17]" in text.stdout
    facts = json.loads(invoke("info", tmp_path / "w.zarr", "--json").stdout)
    assert facts["shape"] == [3, 2, 18, 15, 3, 3] and facts["dtype"] == "float32"
    assert facts["geometry"]["kernel_size"] == [3, 3] and facts["chunks"][1:] == [2, 18, 15, 3, 3]
    npy = json.loads(invoke("info", tmp_path / "img.npy", "--json").stdout)
    assert npy["format"] == "npy" and npy["geometry"] is None


def test_info_lists_arrays_of_a_file(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["a"] = np.ones((2, 2), np.float32)
        f["b/c"] = np.ones((3,), np.int8)
    result = invoke("info", f"{tmp_path / 'm.h5'}:/b/c")
    assert "shape:  (3,)\n" in result.stdout and "arrays: /a (2, 2) float32; /b/c (3,) int8\n" in result.stdout
    fail = invoke("fold", tmp_path / "m.h5", tmp_path / "o.npy", "-k", "1")
    assert fail.exit_code == 1
    assert fail.stderr == f"Error: {tmp_path / 'm.h5'} holds 2 arrays (/a, /b/c): name one as {tmp_path / 'm.h5'}:/a\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["-k", "3", "-s", "2", "-o", "21"],
         "output height 21 is impossible for 9 windows of kernel 3, stride 2: use 19 or 20"),
        (["-k", "3", "-s", "2", "-o", "19,19"],
         "output width 19 is impossible for 8 windows of kernel 3, stride 2: use 17 or 18"),
        (["-k", "4"], "the last 2 axes hold windows of 3x3 but the kernel is 4x4"),
        (["-k", "3,3,3"], "a 3-d fold needs at least 6 axes (..., ID, IH, IW, KD, KH, KW), got 6"),
    ],
)
def test_data_errors_exit_1_with_one_line(tmp_path, windows, args, message):
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", *args)
    if "3-d" in message:  # 6 axes are enough for 3-d; the windows then mismatch the kernel instead
        message = "the last 3 axes hold windows of 8x3x3 but the kernel is 3x3x3"
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr and result.stderr.startswith("Error: ")
    assert not os.path.exists(tmp_path / "o.npy")
    assert [n for n in os.listdir(tmp_path) if n not in ("w.npy",)] == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["-k", "0"], "Invalid value for '-k' / '--kernel': 0 is too small: it must be at least 1"),
        (["-k", "3", "-s", "x"], "Invalid value for '-s' / '--stride': 'x' is not an integer or a comma-separated list of integers"),
        (["-k", "3", "-p", "-1"], "Invalid value for '-p' / '--padding': -1 is too small: it must be at least 0"),
        (["-k", "1,2,3,4"], "has 4 values: swt handles 1, 2 or 3 spatial axes"),
        (["-k", "3", "--max-memory", "lots"], "'lots' is not a size: use a number with a unit such as 128MiB"),
        (["-k", "3", "--max-memory", "10KiB"], "10KiB is below the smallest budget, 1MiB"),
        (["-k", "3", "--dtype", "bool"], "'bool' is not a dtype swt can write"),
        (["-k", "3", "--compression", "lzf"], "npy outputs take none, not lzf"),
        (["-k", "3", "--frobnicate"], "No such option '--frobnicate'."),
        ([], "--kernel is required (the input records no swt geometry)"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, windows, args, message):
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not os.path.exists(tmp_path / "o.npy")


def test_missing_and_corrupt_inputs(tmp_path):
    result = invoke("fold", tmp_path / "nope.h5", tmp_path / "o.npy", "-k", "3")
    assert (result.exit_code, result.stderr) == (1, f"Error: no such file: {tmp_path / 'nope.h5'}\n")
    (tmp_path / "bad.h5").write_bytes(os.urandom(4096))
    result = invoke("fold", tmp_path / "bad.h5", tmp_path / "o.npy", "-k", "3")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {tmp_path / 'bad.h5'} is not a readable HDF5 file")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    result = invoke("unfold", tmp_path / "bad.npy", tmp_path / "o.npy", "-k", "3")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {tmp_path / 'bad.npy'} is not a valid .npy file")
    result = invoke("info", tmp_path / "nope.zarr")
    assert (result.exit_code, result.stderr) == (1, f"Error: no such file: {tmp_path / 'nope.zarr'}\n")


def test_object_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    result = invoke("unfold", tmp_path / "obj.npy", tmp_path / "o.npy", "-k", "1")
    assert result.exit_code == 1
    assert "holds Python objects (dtype object): swt never unpickles" in result.stderr


def test_existing_output_is_untouched_without_overwrite(tmp_path, windows):
    target = tmp_path / "o.h5"
    target.write_bytes(b"precious")
    result = invoke("fold", tmp_path / "w.npy", target, "-k", "3", "-s", "2", "-q")
    assert (result.exit_code, result.stderr) == (1, f"Error: {target} exists: pass --overwrite to replace it\n")
    assert target.read_bytes() == b"precious"
    result = invoke("fold", tmp_path / "w.npy", target, "-k", "3", "-s", "2", "-q", "--overwrite")
    assert result.exit_code == 0
    with h5py.File(target) as f:
        np.testing.assert_allclose(f["data"][...], sliding_window_transpose(windows, None, 3, stride=2), rtol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["o.h5", "w.npy"]


def test_overwrite_keeps_the_old_output_when_the_new_one_fails(tmp_path, windows):
    target = tmp_path / "o.npy"
    np.save(target, np.arange(3))
    before = target.read_bytes()
    result = invoke("fold", tmp_path / "w.npy", target, "-k", "3", "-s", "2", "-o", "99", "--overwrite")
    assert result.exit_code == 1 and target.read_bytes() == before


def test_no_traceback_unless_debug(tmp_path, windows):
    done = run_swt("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", "3", "-s", "2", "-o", "21")
    assert done.returncode == 1 and b"Traceback" not in done.stderr and done.stderr.count(b"\n") == 1
    debug = run_swt("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", "3", "-s", "2", "-o", "21", "--debug")
    assert debug.returncode == 1 and b"Traceback" in debug.stderr and b"SwtError" in debug.stderr


def test_gpu_without_cupy_names_the_extra(tmp_path, windows):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", "-k", "3", "--device", "gpu")
    assert result.exit_code == 1 and "pip install 'swt-cli[gpu]'" in result.stderr
    assert not os.path.exists(tmp_path / "o.npy")


def test_dtype_option_and_integer_overflow_message(tmp_path):
    np.save(tmp_path / "i.npy", np.full((1, 3, 3, 2, 2), 100, np.int8))
    result = invoke("fold", tmp_path / "i.npy", tmp_path / "o.npy", "-k", "2", "-q")
    assert result.exit_code == 1 and "which does not fit int8: use dtype int16" in result.stderr
    assert not os.path.exists(tmp_path / "o.npy")
    assert invoke("fold", tmp_path / "i.npy", tmp_path / "o.npy", "-k", "2", "-q", "--dtype", "int16").exit_code == 0
    assert np.load(tmp_path / "o.npy").max() == 400


def test_one_and_three_dimensional_files(tmp_path):
    signal = np.random.default_rng(9).standard_normal((4, 50)).astype(np.float32)
    np.save(tmp_path / "s.npy", signal)
    assert invoke("unfold", tmp_path / "s.npy", tmp_path / "sw.npy", "-k", "5,", "-s", "3", "-q").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "sw.npy"), sliding_window(signal, (5,), 0, 3))
    assert invoke("fold", tmp_path / "sw.npy", tmp_path / "sb.npy", "-k", "5", "-s", "3", "--ndim", "1", "-o", "50", "-q").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "sb.npy"), sliding_window_transpose(np.load(tmp_path / "sw.npy"), (50,), (5,), 0, 3), rtol=1e-6)
    volume = np.random.default_rng(9).standard_normal((2, 6, 7, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", volume)
    assert invoke("unfold", tmp_path / "v.npy", tmp_path / "vw.h5", "-k", "2,3,2", "-q").exit_code == 0
    assert invoke("fold", tmp_path / "vw.h5", tmp_path / "vb.npy", "-q").exit_code == 0
    want = sliding_window_transpose(sliding_window(volume, (2, 3, 2)), (6, 7, 8), (2, 3, 2))
    np.testing.assert_allclose(np.load(tmp_path / "vb.npy"), want, rtol=1e-5)
