"""The README's quick start on the data shipped in examples/, as a new user runs it."""

import pathlib
import re
import shlex
import shutil

import h5py
import numpy as np
from clitools import run_swt

from swt_cli import sliding_window, sliding_window_transpose

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def quick_start_command() -> list[str]:
    """The ``swt`` command of the README's quick start (its first code block's ``swt`` line), as argv."""
    section = re.search(r"^## Quick start\n(.*?)^## ", (ROOT / "README.md").read_text(), re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    blocks = re.findall(r"^```\n(.*?)^```", section.group(1), re.S | re.M)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("swt ")]
    assert len(lines) == 1, f"the quick start should show one swt command, not {lines}"
    return shlex.split(lines[0])


def test_readme_quick_start_gives_the_photo_back(tmp_path):
    """On a fresh copy of examples/, as a newcomer runs it from the clone's root: the output is the photo."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    argv = quick_start_command()
    done = run_swt(*argv[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    output = tmp_path / next(a for a in argv[2:] if not a.startswith("-") and not a.startswith("examples/"))
    with h5py.File(output) as f:
        restored = f["data"][...]
    photo = np.load(EXAMPLES / "image.npy")
    assert restored.shape == photo.shape == (1, 3, 112, 96)
    np.testing.assert_allclose(restored, photo, rtol=1e-6, atol=1e-6)
    # The last line says where the output is and its shape.
    assert done.stderr.decode().splitlines()[-1] == f"swt: wrote {output.name}: shape (1, 3, 112, 96) float32"


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
