"""Arrays with ``__dlpack__`` (issue 14 part 3): viewed without a copy, folded, and handed back as the input's
own kind of array. NumPy arrays' own ``__dlpack__`` and an object that has nothing else run everywhere;
torch tensors where torch is installed (the ``bench`` extra), against ``torch.nn.functional.fold``/``unfold``."""

from __future__ import annotations

import numpy as np
import pytest

from swt_cli import SlidingWindow, SlidingWindowTranspose, SwtError, sliding_window, sliding_window_transpose
from swt_cli.interop import from_dlpack, through_dlpack


class OnlyDLPack:
    """An array of a library nobody knows: the DLPack protocol and nothing else (no shape, no dtype)."""

    def __init__(self, array, device=None):
        self._array, self._device = array, device

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device if self._device is not None else self._array.__dlpack_device__()


class NoDevice:
    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)


def cancelling(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    pattern = rng.choice([1e8, 1.0, -1e8], size=shape)
    return np.where(rng.random(shape) < 0.5, pattern, rng.standard_normal(shape)).astype(dtype)


def test_numpys_own_dlpack_is_viewed_without_a_copy_both_ways():
    x = cancelling((2, 3, 4))
    view, back = from_dlpack(x)  # NumPy's own __dlpack__, through the path other libraries take
    assert type(view) is np.ndarray and np.shares_memory(view, x)
    assert np.shares_memory(back(view), x) and type(back(view)) is np.ndarray
    for wrapped in (OnlyDLPack(x), NoDevice(x)):
        same = through_dlpack(lambda a: a, wrapped)  # in and straight out again: still x's memory
        assert type(same) is np.ndarray and np.shares_memory(same, x)


@pytest.mark.parametrize("wrap", [OnlyDLPack, NoDevice])
def test_an_object_with_only_dlpack_is_folded_into_a_numpy_array(wrap):
    x = cancelling((2, 3, 7, 7, 3, 3))
    for kwargs in (dict(), dict(reduce="mean", weight="hann", fill=-2.0), dict(dilation=2)):
        got = sliding_window_transpose(wrap(x), None, 3, stride=2, **kwargs)
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, sliding_window_transpose(x, None, 3, stride=2, **kwargs))
    images = cancelling((2, 3, 9, 8))
    np.testing.assert_array_equal(SlidingWindow(3, stride=2)(wrap(images)), sliding_window(images, 3, stride=2))
    np.testing.assert_array_equal(SlidingWindowTranspose(9, 3, stride=2, cover=True)(wrap(sliding_window(images, 3, stride=2, cover=True))),
                                  sliding_window_transpose(sliding_window(images, 3, stride=2, cover=True), 9, 3, stride=2, cover=True))


def test_devices_swt_cannot_compute_on_are_refused_in_one_line():
    x = np.ones((1, 3, 3, 2, 2))
    with pytest.raises(SwtError, match=r"^swt computes on the CPU \(NumPy\) and on CUDA GPUs \(CuPy\), not on this "
                                       r"OnlyDLPack of unknown dtype on Metal: move it to the CPU"):
        sliding_window_transpose(OnlyDLPack(x, device=(8, 0)), None, 2)
    try:
        import cupy  # noqa: F401
    except ImportError:  # without CuPy, CUDA memory names the extra that brings it
        with pytest.raises(SwtError, match=r"the GPU needs CuPy, which is not installed .*swt-cli\[gpu\]"):
            sliding_window_transpose(OnlyDLPack(x, device=(2, 0)), None, 2)


def test_torch_layout_without_torch_against_the_loops():
    from reference import fold_loops, unfold_loops

    images = cancelling((2, 3, 11, 9), np.float64)
    cols = sliding_window(images, (3, 2), 1, 2, layout="torch")
    windows = unfold_loops(images, (3, 2), (2, 2), (1, 1), (1, 1))  # (2, 3, 6, 5, 3, 2)
    assert cols.shape == (2, 3 * 6, 6 * 5)
    # row c*6 + flat kernel offset, column flat window: torch.nn.functional.unfold's layout
    np.testing.assert_array_equal(cols, windows.transpose(0, 1, 4, 5, 2, 3).reshape(2, 18, 30))
    folded = SlidingWindowTranspose((11, 9), (3, 2), 1, 2, layout="torch")(cols)
    np.testing.assert_array_equal(folded, fold_loops(windows, (11, 9), (3, 2), (2, 2), (1, 1), (1, 1)))
    unbatched = sliding_window_transpose(cols[0], (11, 9), (3, 2), 1, 2, layout="torch")  # (C*K, L), as torch takes
    np.testing.assert_array_equal(unbatched, folded[0])
    with pytest.raises(SwtError, match="layout must be 'megengine' or 'torch', got 'caffe'"):
        SlidingWindow(3, layout="caffe")
    with pytest.raises(SwtError, match="layout='torch' needs output_size"):
        sliding_window_transpose(cols, None, (3, 2), 1, 2, layout="torch")
    with pytest.raises(SwtError, match=r"the last axis holds 30 windows, but the geometry gives a 5x5 grid"):
        sliding_window_transpose(cols, (10, 9), (3, 2), 1, 2, layout="torch")


# ---------------------------------------------------------------------------------------------- torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", [dict(kernel=3, stride=2, padding=1, dilation=1), dict(kernel=(2, 3), stride=(1, 2), padding=0, dilation=(2, 1)),
                                      dict(kernel=4, stride=4, padding=0, dilation=1)])
def test_torch_layout_matches_torch_fold_and_unfold(torch, dtype, geometry):
    F = torch.nn.functional
    k, s, p, d = geometry["kernel"], geometry["stride"], geometry["padding"], geometry["dilation"]
    images = torch.from_numpy(cancelling((2, 3, 17, 16), dtype))
    cols = sliding_window(images, k, p, s, d, layout="torch")
    want_cols = F.unfold(images, k, dilation=d, padding=p, stride=s)
    assert type(cols) is torch.Tensor and cols.dtype == images.dtype and cols.device == images.device
    assert torch.equal(cols, want_cols)  # an unfold copies: exactly torch's
    folded = sliding_window_transpose(want_cols, (17, 16), k, p, s, d, layout="torch")
    assert type(folded) is torch.Tensor and folded.dtype == images.dtype and folded.shape == (2, 3, 17, 16)
    # torch adds overlaps in its own order: close to it, and exactly swt's NumPy fold.
    reference = F.fold(want_cols, (17, 16), k, dilation=d, padding=p, stride=s)
    scale = float(want_cols.abs().max())
    np.testing.assert_allclose(folded.numpy(), reference.numpy(), rtol=0, atol=scale * (1e-5 if dtype == "float32" else 1e-13))
    exact = sliding_window_transpose(want_cols.numpy(), (17, 16), k, p, s, d, layout="torch")
    np.testing.assert_array_equal(folded.numpy(), exact)
    module = SlidingWindowTranspose((17, 16), k, p, s, d, layout="torch")
    np.testing.assert_array_equal(module(want_cols).numpy(), exact)
    assert torch.equal(SlidingWindow(k, p, s, d, layout="torch")(images), want_cols)


def test_torch_megengine_layout_and_dtypes(torch):
    windows = torch.from_numpy(cancelling((2, 3, 7, 6, 3, 3), np.float64))
    got = SlidingWindowTranspose(None, 3, stride=2, reduce="mean", weight="gaussian", fill=9)(windows)
    assert type(got) is torch.Tensor and got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), sliding_window_transpose(windows.numpy(), None, 3, stride=2, reduce="mean",
                                                                        weight="gaussian", fill=9))
    ints = torch.randint(-50, 50, (1, 2, 5, 5, 2, 2), dtype=torch.int16)
    summed = sliding_window_transpose(ints, None, 2)
    assert summed.dtype == torch.int16
    assert sliding_window_transpose(ints, None, 2, reduce="mean").dtype == torch.float64
    half = sliding_window_transpose(ints.to(torch.float16), None, 2)
    assert half.dtype == torch.float16
    np.testing.assert_array_equal(half.numpy(), sliding_window_transpose(ints.numpy().astype(np.float16), None, 2))


def test_torch_tensors_are_viewed_and_returned_without_a_copy(torch):
    t = torch.arange(24.0).reshape(2, 3, 4)
    same = through_dlpack(lambda a: a, t)
    assert type(same) is torch.Tensor and same.data_ptr() == t.data_ptr()
    view, _ = from_dlpack(t)
    view[0, 0, 0] = -1.0  # writes through the view reach the tensor: one buffer
    assert t[0, 0, 0] == -1.0
    strided = torch.from_numpy(cancelling((2, 3, 9, 9))).transpose(-1, -2)  # not contiguous
    np.testing.assert_array_equal(sliding_window(strided, 3).numpy(), sliding_window(strided.numpy(), 3))


def test_tensors_that_require_grad_or_have_no_numpy_dtype_are_refused(torch):
    w = torch.ones((1, 3, 3, 2, 2), requires_grad=True)
    with pytest.raises(SwtError, match=r"^swt has no autograd: the Tensor requires grad; pass it detached \(x.detach\(\)\)"):
        sliding_window_transpose(w, None, 2)
    with pytest.raises(SwtError, match="no autograd"):
        SlidingWindowTranspose(None, 2)(w)
    assert sliding_window_transpose(w.detach(), None, 2).shape == (1, 4, 4)
    with pytest.raises(SwtError, match=r"cannot view the Tensor of torch.bfloat16 on CPU as a numpy array through DLPack"):
        sliding_window_transpose(torch.ones((1, 3, 3, 2, 2), dtype=torch.bfloat16), None, 2)


def test_the_readme_example_runs(torch, tmp_path, monkeypatch):
    from readme_blocks import python_blocks

    monkeypatch.chdir(tmp_path)
    for code in python_blocks("torch tensors and DLPack"):
        exec(compile(code, "README.md", "exec"), {})


@pytest.mark.gpu
def test_cuda_tensors_fold_on_their_gpu_and_come_back_there(torch):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    windows = cancelling((2, 3, 9, 8, 3, 3))
    got = sliding_window_transpose(torch.from_numpy(windows).cuda(), (19, 17), 3, stride=2)
    assert type(got) is torch.Tensor and got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), sliding_window_transpose(windows, (19, 17), 3, stride=2))
