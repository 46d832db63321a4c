"""swt preview: PNG size and mode, channel choice, scaling, coverage heat maps, errors."""

import sys

import numpy as np
import pytest
from clitools import invoke, run_swt

from swt_cli.coverage import coverage_counts
from swt_cli.formats.npy import NpyReader
from swt_cli.geometry import Geometry
from swt_cli.preview import HEAT, heat_colors, to_uint8

Image = pytest.importorskip("PIL.Image")


def _png(path):
    with Image.open(path) as im:
        im.load()
        return im.mode, im.size, np.asarray(im)


def _scaled(x):
    lo, hi = x.min(), x.max()
    return np.round((x.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def test_rgb_image_of_a_batch(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 3, (4, 3, 21, 13)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = invoke("preview", tmp_path / "x.npy", tmp_path / "p.png", "--index", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"swt: wrote {tmp_path / 'p.png'}: image 2 of (4,) (RGB), 13x21 pixels\n"
    mode, size, pixels = _png(tmp_path / "p.png")
    assert (mode, size) == ("RGB", (13, 21))
    np.testing.assert_array_equal(pixels, _scaled(x[2]).transpose(1, 2, 0))


def test_grey_images_and_chosen_channels(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "hw.npy", rng.standard_normal((9, 30)))
    assert invoke("preview", tmp_path / "hw.npy", tmp_path / "a.png", "-q").exit_code == 0
    assert _png(tmp_path / "a.png")[:2] == ("L", (30, 9))
    x = rng.integers(0, 1000, (2, 3, 5, 8, 6)).astype(np.int32)  # (N1, N2, C, H, W): 6 images of 5 channels
    np.save(tmp_path / "x.npy", x)
    result = invoke("preview", tmp_path / "x.npy", tmp_path / "b.png", "-n", "4", "-c", "3")
    assert result.exit_code == 0, result.stderr
    assert "image 4 of (2, 3) channel 3 of 5, 6x8 pixels" in result.stderr
    mode, size, pixels = _png(tmp_path / "b.png")
    assert (mode, size) == ("L", (6, 8))
    np.testing.assert_array_equal(pixels, _scaled(x[1, 1, 3]))
    default = invoke("preview", tmp_path / "x.npy", tmp_path / "c.png")
    assert "image 0 of (2, 3) channel 0 of 5" in default.stderr
    np.testing.assert_array_equal(_png(tmp_path / "c.png")[2], _scaled(x[0, 0, 0]))
    np.save(tmp_path / "rgb.npy", rng.standard_normal((3, 4, 5)))
    invoke("preview", tmp_path / "rgb.npy", tmp_path / "d.png", "--channel", "1", "-q")
    assert _png(tmp_path / "d.png")[:2] == ("L", (5, 4))  # a chosen channel of an RGB image is grey


def test_only_the_one_image_is_read(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.random.default_rng(2).standard_normal((50, 7, 16, 16)).astype(np.float32))
    reads = []
    real = NpyReader.read
    monkeypatch.setattr(NpyReader, "read", lambda self, index: reads.append(index) or real(self, index))
    assert invoke("preview", tmp_path / "x.npy", tmp_path / "p.png", "-n", "31", "-c", "4", "-q").exit_code == 0
    assert reads == [(slice(31, 32), slice(4, 5))]


def test_scaling_constant_nan_and_complex():
    assert (to_uint8(np.full((3, 3), 5.0)) == 128).all()
    x = np.array([[np.nan, -1.0], [1.0, np.inf]])
    np.testing.assert_array_equal(to_uint8(x), [[0, 0], [255, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([3j, 4.0, 0.0])), [191, 255, 0])


def test_volumes_show_the_middle_slice_and_signals_one_row(tmp_path):
    rng = np.random.default_rng(3)
    v = rng.standard_normal((2, 1, 5, 6, 7))
    np.save(tmp_path / "v.npy", v)
    assert invoke("preview", tmp_path / "v.npy", tmp_path / "v.png", "--ndim", "3", "-n", "1", "-q").exit_code == 0
    mode, size, pixels = _png(tmp_path / "v.png")
    assert (mode, size) == ("L", (7, 6))
    np.testing.assert_array_equal(pixels, _scaled(v[1, 0, 2]))
    np.save(tmp_path / "s.npy", rng.standard_normal((2, 1, 40)))
    assert invoke("preview", tmp_path / "s.npy", tmp_path / "s.png", "--ndim", "1", "-q").exit_code == 0
    assert _png(tmp_path / "s.png")[:2] == ("L", (40, 1))


def test_coverage_heat_map(tmp_path):
    image = np.random.default_rng(4).standard_normal((1, 2, 20, 17)).astype(np.float32)
    np.save(tmp_path / "img.npy", image)
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.h5", "-k", "4", "-s", "3", "-q").exit_code == 0
    result = invoke("preview", tmp_path / "w.h5", tmp_path / "cov.png", "--coverage")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"swt: wrote {tmp_path / 'cov.png'}: coverage 0 to 4 windows, 17x20 pixels\n"
    mode, size, pixels = _png(tmp_path / "cov.png")
    assert (mode, size) == ("RGB", (17, 20))
    counts = coverage_counts((20, 17), Geometry.from_args(4, stride=3))
    np.testing.assert_array_equal(pixels, heat_colors(counts))
    assert (pixels[counts == 0] == 0).all() and (pixels[counts == 4] == HEAT[-1]).all()
    # Geometry from the options for a file without records; the output size may be changed.
    np.save(tmp_path / "w.npy", np.ones((2, 6, 5, 4, 4), np.float32))
    assert invoke("preview", tmp_path / "w.npy", tmp_path / "c2.png", "--coverage", "-k", "4", "-s", "3", "-o", "19,16",
                  "-q").exit_code == 0
    assert _png(tmp_path / "c2.png")[:2] == ("RGB", (16, 19))


@pytest.mark.parametrize("args, code, message", [
    (("x.npy", "p.jpg"), 1, "Error: p.jpg: a preview is a PNG: name it something.png\n"),
    (("x.npy", "p.png", "-n", "6"), 1, "Error: x.npy holds 6 images of shape (3, 4, 5): no index 6\n"),
    (("x.npy", "p.png", "-c", "3"), 1, "Error: x.npy: images have 3 channels, no channel 3\n"),
    (("x.npy", "p.png", "-k", "3"), 2, "Error: --kernel only applies with --coverage (see 'swt preview -h')\n"),
    (("x.npy", "p.png", "--coverage", "-n", "1"), 2,
     "Error: --index and --channel do not apply with --coverage: coverage is the same for every image (see 'swt preview -h')\n"),
    (("x.npy", "p.png", "--coverage"), 2, "Error: --kernel is required (the input records no swt geometry) (see 'swt preview -h')\n"),
])
def test_errors(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.ones((6, 3, 4, 5), np.float32))
    result = invoke("preview", *args)
    assert (result.exit_code, result.stderr) == (code, message)
    assert not (tmp_path / "p.png").exists()


def test_existing_png_needs_overwrite(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(3, 4))
    (tmp_path / "p.png").write_bytes(b"old")
    result = invoke("preview", tmp_path / "x.npy", tmp_path / "p.png")
    assert result.exit_code == 1 and result.stderr == f"Error: {tmp_path / 'p.png'} exists: pass --overwrite to replace it\n"
    assert invoke("preview", tmp_path / "x.npy", tmp_path / "p.png", "--overwrite", "-q").exit_code == 0
    assert _png(tmp_path / "p.png")[:2] == ("L", (4, 3))


def test_without_pillow(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.ones((3, 4)))
    monkeypatch.setitem(sys.modules, "PIL", None)
    result = invoke("preview", tmp_path / "x.npy", tmp_path / "p.png")
    assert result.exit_code == 1
    assert result.stderr == "Error: swt preview needs Pillow: pip install 'swt-cli[preview]'\n"


def test_preview_from_a_pipe(tmp_path):
    x = np.random.default_rng(5).standard_normal((3, 1, 6, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_swt("preview", "-", tmp_path / "p.png", "-n", "2", "-q", input=(tmp_path / "x.npy").read_bytes())
    assert proc.returncode == 0, proc.stderr
    mode, size, pixels = _png(tmp_path / "p.png")
    assert (mode, size) == ("L", (9, 6))
    np.testing.assert_array_equal(pixels, _scaled(x[2, 0]))


@pytest.mark.slow
def test_the_walkthrough_runs_end_to_end(tmp_path):
    import os
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(root / "examples" / "walkthrough.sh"), str(tmp_path / "walk")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "piped.npy equals blended.npy" in proc.stdout
    for name in ("original", "before", "summed", "mean", "after", "coverage"):
        assert _png(tmp_path / "walk" / f"{name}.png")[:2] == ("RGB", (96, 112))


def test_a_npy_of_windows_without_a_record_is_read_as_windows(tmp_path):
    """``swt unfold img.npy w.npy`` keeps no record (.npy has no attributes): its 6 axes (N, C, IH, IW, KH, KW)
    make it windows all the same, and the note names the window's place in words; --channel reads it as images."""
    x = np.random.default_rng().uniform(-5, 5, (2, 3, 11, 10)).astype(np.float32)
    np.save(tmp_path / "img.npy", x)
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.npy", "-k", "4", "-s", "3", "-q").exit_code == 0
    windows = np.load(tmp_path / "w.npy")
    assert windows.shape == (2, 3, 3, 3, 4, 4)
    n, c, i, j = 1, 2, 0, 2
    index = ((n * 3 + c) * 3 + i) * 3 + j
    result = invoke("preview", tmp_path / "w.npy", tmp_path / "p.png", "-n", index)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"swt: wrote {tmp_path / 'p.png'}: window {index} of 54 (item {n}, channel {c}, window row {i}, window column {j}; "
        "--index counts windows row-major over item, channel, window row, window column; no swt record: its 6 axes read "
        "as windows, --channel reads them as images), 4x4 pixels\n")
    mode, size, pixels = _png(tmp_path / "p.png")
    assert (mode, size) == ("L", (4, 4))
    np.testing.assert_array_equal(pixels, _scaled(x[n, c, 3 * i:3 * i + 4, 3 * j:3 * j + 4]))
    # Asked for a channel, the same file is a batch (2, 3, 3) of 3-channel images (KH, KW).
    images = invoke("preview", tmp_path / "w.npy", tmp_path / "q.png", "-n", "5", "-c", "1")
    assert images.exit_code == 0, images.stderr
    assert images.stderr == f"swt: wrote {tmp_path / 'q.png'}: image 5 of (2, 3, 3) channel 1 of 3, 4x4 pixels\n"
    np.testing.assert_array_equal(_png(tmp_path / "q.png")[2], _scaled(windows[0, 1, 2, 1]))
    # Five axes are images, as before (a batch of RGB images here).
    np.save(tmp_path / "five.npy", windows[0])
    five = invoke("preview", tmp_path / "five.npy", tmp_path / "r.png", "-n", "4")
    assert five.stderr == f"swt: wrote {tmp_path / 'r.png'}: image 4 of (3, 3) (RGB), 4x4 pixels\n"
