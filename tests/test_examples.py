"""The README's quick start on the data shipped in examples/, as a new user runs it."""

import pathlib

import h5py
import numpy as np
from clitools import run_swt

from swt_cli import sliding_window, sliding_window_transpose

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_quick_start_folds_the_shipped_tiles(tmp_path):
    image = np.load(EXAMPLES / "image.npy")
    assert image.shape == (1, 3, 112, 96) and image.dtype == np.float32 and image.std() > 0.1
    done = run_swt("fold", EXAMPLES / "tiles.h5", "restored.h5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    with h5py.File(tmp_path / "restored.h5") as f:
        restored = f["data"][...]
    # The tiles are the photo cut by swt unfold (kernel 16, stride 8, padding 4): folding sums overlaps.
    want = sliding_window_transpose(sliding_window(image, 16, 4, 8), (112, 96), 16, 4, 8)
    np.testing.assert_allclose(restored, want, rtol=1e-5, atol=1e-5)


def test_mean_fold_of_the_shipped_tiles_gives_the_photo_back(tmp_path):
    done = run_swt("fold", EXAMPLES / "tiles.h5", tmp_path / "photo.npy", "--reduce", "mean", "-q")
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "photo.npy"), np.load(EXAMPLES / "image.npy"), rtol=1e-5, atol=1e-6)
