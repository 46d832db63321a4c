"""PyTorch's fold layout (N, C*prod(K), L): conversions, the CLI's --layout torch, and torch itself."""

import itertools
import json

import h5py
import numpy as np
import pytest
from clitools import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels import geometries

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.layouts import from_torch, megengine_shape, to_torch, torch_shape


def _torch_reference(x, ndim):
    """MegEngine windows (..., C, *grid, *kernel) -> (..., C*prod(K), L), one element at a time."""
    lead, c = x.shape[: -2 * ndim - 1], x.shape[-2 * ndim - 1]
    grid, kernel = x.shape[-2 * ndim: -ndim], x.shape[-ndim:]
    out = np.zeros(lead + (c * int(np.prod(kernel)), int(np.prod(grid))), x.dtype)
    for b in np.ndindex(*lead):
        for ch in range(c):
            for row, w in enumerate(itertools.product(*(range(k) for k in kernel))):
                for col, i in enumerate(itertools.product(*(range(g) for g in grid))):
                    out[b + (ch * len(list(np.ndindex(*kernel))) + row, col)] = x[b + (ch,) + i + w]
    return out


@settings(max_examples=40, deadline=None)
@given(geometries(max_grid=4), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_conversions_match_a_hand_built_reference(g, channels, seed):
    nd = len(g["kernel"])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + (channels,) + g["grid"] + g["kernel"])
    t = to_torch(x, nd)
    np.testing.assert_array_equal(t, _torch_reference(x, nd))
    assert t.shape == torch_shape(x.shape, nd)
    back = from_torch(t, g["kernel"], g["grid"])
    assert back.shape == megengine_shape(t.shape, g["kernel"], g["grid"]) == x.shape
    np.testing.assert_array_equal(back, x)


def test_conversion_errors():
    with pytest.raises(SwtError) as err:
        from_torch(np.zeros((2, 10, 16)), (3, 3), (4, 4))
    assert str(err.value) == ("torch layout windows of shape (2, 10, 16): axis -2 holds 10 rows, not a multiple of the "
                              "9 elements of a 3x3 kernel (it holds channels x kernel elements)")
    with pytest.raises(SwtError) as err:
        from_torch(np.zeros((2, 18, 15)), (3, 3), (4, 4))
    assert str(err.value) == ("torch layout windows of shape (2, 18, 15): the last axis holds 15 windows, but the geometry "
                              "gives a 4x4 grid of 16: check --output-size and the geometry")
    with pytest.raises(SwtError, match=r"the torch layout needs a channel axis: windows of shape \(4, 4, 3, 3\) have none"):
        to_torch(np.zeros((4, 4, 3, 3)), 2)


torch_geometries = st.builds(
    lambda k, s, p, d, o, n, c: dict(kernel=k, stride=s, padding=p, dilation=d, output=o, batch=n, channels=c),
    st.tuples(st.integers(1, 4), st.integers(1, 4)), st.tuples(st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(1, 2), st.integers(1, 2)),
    st.tuples(st.integers(8, 14), st.integers(8, 14)), st.integers(1, 2), st.integers(1, 3),
)


@settings(max_examples=40, deadline=None)
@given(torch_geometries, st.integers(0, 2**32 - 1))
def test_unfold_and_fold_equal_torch(g, seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    args = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"])
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((g["batch"], g["channels"]) + g["output"])
    cols = F.unfold(torch.from_numpy(image), g["kernel"], **args).numpy()
    windows = sliding_window(image, g["kernel"], **args)
    np.testing.assert_array_equal(to_torch(windows, 2), cols)
    y = rng.standard_normal(cols.shape)
    want = F.fold(torch.from_numpy(y), g["output"], g["kernel"], **args).numpy()
    got = sliding_window_transpose(from_torch(y, g["kernel"], windows.shape[2:4]), g["output"], g["kernel"], **args)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.fixture
def image(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4, 13, 11)).astype(np.float32)
    np.save(tmp_path / "img.npy", x)
    return x


def test_cli_unfold_writes_torch_layout_and_fold_reads_it_back(tmp_path, image):
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "cols.h5", "-k", "3,2", "-s", "2", "-p", "1",
                  "--layout", "torch", "-q").exit_code == 0
    with h5py.File(tmp_path / "cols.h5") as f:
        cols, meta = f["data"][()], json.loads(f["data"].attrs["swt_geometry"])
    windows = sliding_window(image, (3, 2), stride=2, padding=1)
    np.testing.assert_array_equal(cols, to_torch(windows, 2))
    assert meta["layout"] == "torch" and meta["image_size"] == [13, 11]
    # The recorded layout and size need no flags; a mean gives the image back.
    result = invoke("fold", tmp_path / "cols.h5", tmp_path / "back.npy", "--reduce", "mean", "-q")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), image, rtol=1e-6)


def test_cli_fold_of_a_plain_torch_file(tmp_path):
    rng = np.random.default_rng(1)
    cols = rng.standard_normal((2, 3 * 9, 5 * 4)).astype(np.float32)  # C=3, kernel 3x3, grid 5x4
    np.save(tmp_path / "cols.npy", cols)
    result = invoke("fold", tmp_path / "cols.npy", tmp_path / "out.npy", "--layout", "torch", "-k", "3", "-s", "2",
                    "-o", "11,9", "-q")
    assert result.exit_code == 0, result.stderr
    want = sliding_window_transpose(from_torch(cols, (3, 3), (5, 4)), (11, 9), 3, stride=2)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)


def test_cli_torch_fold_streams_channel_blocks(tmp_path):
    """One batch item is over the budget, so blocks split the channel axis: rows c*9 .. (c+1)*9 of torch's."""
    rng = np.random.default_rng(2)
    cols = rng.standard_normal((2, 6 * 9, 62 * 62)).astype(np.float32)  # 6 channels of 62x62 windows of 3x3
    np.save(tmp_path / "cols.npy", cols)
    result = invoke("fold", tmp_path / "cols.npy", tmp_path / "out.h5", "--layout", "torch", "-k", "3", "-o", "64",
                    "--max-memory", "1MiB", "-q")
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        got = f["data"][()]
    np.testing.assert_allclose(got, sliding_window_transpose(from_torch(cols, (3, 3), (62, 62)), 64, 3), rtol=1e-6)


def test_cli_torch_against_torch(tmp_path, image):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "cols.npy", "-k", "4", "-s", "3", "-d", "2",
                  "--layout", "torch", "-q").exit_code == 0
    cols = np.load(tmp_path / "cols.npy")
    np.testing.assert_array_equal(cols, F.unfold(torch.from_numpy(image), 4, stride=3, dilation=2).numpy())
    assert invoke("fold", tmp_path / "cols.npy", tmp_path / "out.npy", "--layout", "torch", "-k", "4", "-s", "3",
                  "-d", "2", "-o", "13,11", "-q").exit_code == 0
    want = F.fold(torch.from_numpy(cols), (13, 11), 4, stride=3, dilation=2).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-6)


def test_cli_torch_layout_errors(tmp_path, image):
    np.save(tmp_path / "cols.npy", np.ones((2, 27, 20), np.float32))
    missing = invoke("fold", tmp_path / "cols.npy", tmp_path / "out.npy", "--layout", "torch", "-k", "3")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("Error: --layout torch needs --output-size: torch's layout flattens the window grid "
                                     "into one axis")
    wrong = invoke("fold", tmp_path / "cols.npy", tmp_path / "out.npy", "--layout", "torch", "-k", "3", "-o", "8")
    assert wrong.exit_code == 1
    assert wrong.stderr == ("Error: torch layout windows of shape (2, 27, 20): the last axis holds 20 windows, but the "
                            "geometry gives a 6x6 grid of 36: check --output-size and the geometry (kernel 3 from "
                            "--kernel, stride 1 (default), output size 8x8 from --output-size)\n")
    np.save(tmp_path / "grey.npy", np.ones((13, 11), np.float32))
    nochannel = invoke("unfold", tmp_path / "grey.npy", tmp_path / "c.npy", "-k", "3", "--layout", "torch")
    assert nochannel.exit_code == 1
    assert nochannel.stderr == ("Error: the torch layout needs a channel axis: windows of shape (11, 9, 3, 3) have none "
                                "(torch's unfold takes (N, C, H, W) or (C, H, W) images)\n")
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "c.npy").exists()


def test_recorded_torch_layout_is_shown_by_info_and_named_when_refused(tmp_path):
    np.save(tmp_path / "img.npy", np.random.default_rng().random((2, 3, 16, 12), dtype=np.float32))
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "cols.h5", "-k", "4", "-s", "4", "--layout", "torch",
                  "-q").exit_code == 0
    info = invoke("info", tmp_path / "cols.h5")
    assert "layout:     torch (swt fold reads it as such without --layout)\n" in info.stdout
    plain = invoke("unfold", tmp_path / "img.npy", tmp_path / "plain.h5", "-k", "4", "-s", "4", "-q")
    assert plain.exit_code == 0 and "layout:" not in invoke("info", tmp_path / "plain.h5").stdout
    recorded = invoke("fold", tmp_path / "cols.h5", tmp_path / "out.zarr", "--shard", "1/2", "-q")
    assert recorded.exit_code == 2
    assert recorded.stderr.startswith("Error: input in torch's layout (as recorded by swt unfold --layout torch) does "
                                      "not combine with --scheduler, --shard or --resume: convert with a plain run first")
    given = invoke("fold", tmp_path / "cols.h5", tmp_path / "out.zarr", "--shard", "1/2", "--layout", "torch", "-q")
    assert given.exit_code == 2
    assert given.stderr.startswith("Error: --layout torch does not combine with --scheduler, --shard or --resume")
    assert not (tmp_path / "out.zarr").exists()
