"""Dask arrays in, lazy Dask arrays out (issue 14 part 2): the NumPy result bit for bit whatever the chunks,
inside the caller's graph (``from_zarr`` -> fold -> ``to_zarr`` on a real store), on the threaded scheduler
and on a real ``distributed`` cluster, with blocks too large for a worker refused when the graph is built."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from reference import fold_loops

from swt_cli import SlidingWindow, SlidingWindowTranspose, SwtError, sliding_window, sliding_window_transpose

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


def cancelling(shape, dtype=np.float32, seed=0):
    """Large values that cancel (1e8, 1, -1e8 patterns) among ordinary ones: any change of summation order
    changes the bits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    pattern = rng.choice([1e8, 1.0, -1e8], size=shape)
    return np.where(rng.random(shape) < 0.5, pattern, x).astype(dtype)


FOLDS = [  # (windows shape, output_size, kernel, kwargs)
    ((3, 2, 15, 15, 3, 3), (32, 32), 3, dict(stride=2)),
    ((3, 2, 15, 15, 3, 3), (31, 31), 3, dict(stride=2, reduce="mean", weight="hann", fill=7.5)),
    ((2, 3, 8, 8, 4, 4), (32, 32), 4, dict(stride=4)),  # tiled: a copy
    ((2, 2, 10, 8, 3, 3), (20, 15), 3, dict(stride=2, padding=1, cover=True)),
    ((4, 11, 3), (13,), (3,), dict(stride=1)),  # 1-d
    ((2, 5, 4, 3, 2, 2, 2), None, (2, 2, 2), dict(stride=(2, 1, 1))),  # 3-d
]
CHUNKINGS = [lambda s: s, lambda s: (1,) + s[1:], lambda s: (2,) + tuple(max(1, n // 2) for n in s[1:])]


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=["one", "per-item", "split-core"])
@pytest.mark.parametrize("shape,size,kernel,kwargs", FOLDS)
def test_fold_equals_numpy_bit_for_bit_whatever_the_chunks(shape, size, kernel, kwargs, chunking):
    x = cancelling(shape)
    want = sliding_window_transpose(x, size, kernel, **kwargs)
    lazy = sliding_window_transpose(da.from_array(x, chunks=chunking(shape)), size, kernel, **kwargs)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == want.shape and lazy.dtype == want.dtype
    got = lazy.compute()
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(got, want, equal_nan=True) and got.dtype == want.dtype


def test_the_leading_chunks_are_kept_and_the_core_merged():
    x = da.from_array(cancelling((4, 3, 15, 15, 3, 3)), chunks=(1, 2, 5, 15, 3, 2))
    y = sliding_window_transpose(x, 32, 3, stride=2)
    assert y.chunks == ((1, 1, 1, 1), (2, 1), (32,), (32,))


def test_fold_of_cancelling_values_equals_the_plain_loops_too():
    x = cancelling((2, 7, 7, 3, 3), np.float64)
    got = sliding_window_transpose(da.from_array(x, chunks=(1, 3, 7, 3, 3)), 16, 3, stride=2).compute()
    want = fold_loops(x, (16, 16), (3, 3), (2, 2), (0, 0), (1, 1))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kwargs", [dict(stride=3), dict(stride=2, padding=1, cover=True, pad_value=-1.0),
                                    dict(stride=2, layout="torch"), dict(stride=3, dtype=np.float64)])
def test_unfold_equals_numpy(kwargs):
    x = cancelling((3, 2, 17, 13))
    want = sliding_window(x, 4, **kwargs)
    lazy = sliding_window(da.from_array(x, chunks=(2, 1, 9, 13)), 4, **kwargs)
    assert lazy.shape == want.shape and lazy.dtype == want.dtype
    np.testing.assert_array_equal(lazy.compute(), want)


def test_torch_layout_round_trip_and_integers():
    x = np.random.default_rng(1).integers(-100, 100, (2, 3, 12, 10)).astype(np.int16)
    cols = sliding_window(da.from_array(x, chunks=(1, 3, 6, 10)), 3, stride=2, layout="torch")
    assert cols.chunks[-2:] == ((27,), (20,))
    folded = sliding_window_transpose(cols, (12, 10), 3, stride=2, layout="torch", reduce="mean")
    assert folded.dtype == np.float64
    want = sliding_window_transpose(sliding_window(x, 3, stride=2, layout="torch"), (12, 10), 3, stride=2,
                                    layout="torch", reduce="mean")
    np.testing.assert_array_equal(folded.compute(), want)
    summed = sliding_window_transpose(cols, (12, 10), 3, stride=2, layout="torch")
    assert summed.dtype == np.int16
    np.testing.assert_array_equal(summed.compute(), sliding_window_transpose(sliding_window(x, 3, stride=2), (12, 10), 3, stride=2))


def test_the_modules_take_dask_arrays():
    x = cancelling((2, 3, 16, 16))
    lazy = SlidingWindowTranspose(16, 4, stride=2, reduce="mean", weight="triangle")(
        SlidingWindow(4, stride=2)(da.from_array(x, chunks=(1, 1, 16, 16))))
    np.testing.assert_array_equal(lazy.compute(), sliding_window_transpose(
        sliding_window(x, 4, stride=2), 16, 4, stride=2, reduce="mean", weight="triangle"))


def test_shape_dtype_and_errors_come_without_computing():
    def boom(block):
        raise AssertionError("the input was computed")

    x = da.zeros((2, 3, 15, 15, 3, 3), np.int8, chunks=(1, 3, 15, 15, 3, 3)).map_blocks(boom, dtype=np.int8)
    y = sliding_window_transpose(x, None, 3, stride=2, weight="hann")
    assert (y.shape, y.dtype, type(y._meta)) == ((2, 3, 31, 31), np.float64, np.ndarray)
    with pytest.raises(SwtError, match=r"of shape \(2, 3, 15, 15, 3, 3\) .*output height 65 is impossible for 15 windows"):
        sliding_window_transpose(x, 65, 3, stride=2)  # the message names the caller's shape, not the probe's
    with pytest.raises(SwtError, match=r"of shape \(15, 15\) .*too small for kernel 16"):
        sliding_window(x[0, 0, :, :, 0, 0], 16)
    with pytest.raises(SwtError, match="fractional results"):
        sliding_window_transpose(x, 31, 3, stride=2, reduce="mean", dtype=np.int32)
    with pytest.raises(SwtError, match="needs output_size"):
        sliding_window_transpose(x, None, 3, layout="torch")


def test_integer_overflow_is_an_error_when_computed():
    x = da.full((1, 3, 3, 2, 2), 100, np.int8, chunks=(1, 3, 3, 2, 2))
    y = sliding_window_transpose(x, 4, 2, dtype=np.int8)
    with pytest.raises(SwtError, match="does not fit int8: use dtype int16"):
        y.compute()


def test_unknown_chunks_and_blocks_beyond_memory_are_refused_when_the_graph_is_built():
    x = da.from_array(np.ones((4, 5, 5, 2, 2)), chunks=2)
    unknown = x[x[:, 0, 0, 0, 0] > 0]
    with pytest.raises(SwtError, match=r"unknown size: call x.compute_chunk_sizes\(\)"):
        sliding_window_transpose(unknown, None, 2)
    huge = da.zeros((1, 1, 100_000, 100_000, 3, 3), np.float32, chunks=(1, 1, 1000, 1000, 3, 3))
    with pytest.raises(SwtError, match=r"one image \(\(100000, 100000, 3, 3\) per item.*more than this machine's "
                                       r"memory and swap .*so one image must fit"):
        sliding_window_transpose(huge, None, 3)
    many = da.zeros((100, 100, 1000, 1000, 3, 3), np.float64, chunks=(50, 100, 1000, 1000, 3, 3))
    with pytest.raises(SwtError, match=r"blocks of 5000 images .* rechunk the leading axes, e.g. x.rechunk\(\{0: \d+, 1: 100\}\)"):
        sliding_window_transpose(many, None, 3)


def test_from_zarr_fold_to_zarr_in_the_users_graph(tmp_path):
    zarr = pytest.importorskip("zarr")
    x = cancelling((4, 3, 15, 15, 3, 3))
    src = zarr.create_array(tmp_path / "tiles.zarr", shape=x.shape, chunks=(1, 3, 8, 15, 3, 3), dtype=x.dtype)
    src[...] = x
    windows = da.from_zarr(str(tmp_path / "tiles.zarr"))
    folded = sliding_window_transpose(windows * 1, 32, 3, stride=2, reduce="mean", weight="hann")  # inside a graph
    folded.to_zarr(str(tmp_path / "images.zarr"))
    got = zarr.open_array(tmp_path / "images.zarr", mode="r")[...]
    want = sliding_window_transpose(x, 32, 3, stride=2, reduce="mean", weight="hann")
    np.testing.assert_array_equal(got, want)


def test_on_a_distributed_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    x = cancelling((4, 2, 15, 15, 3, 3))
    # The worker runs in this process, whose memory (torch, numba, ...) is more than its small limit: its
    # memory monitor would pause it, so spilling and pausing are off; the limit is still what it reports.
    no_monitor = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause", "terminate")}
    with dask.config.set(no_monitor), distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, memory_limit="64MiB",
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        lazy = sliding_window_transpose(da.from_array(x, chunks=(1, 2, 15, 15, 3, 3)), 32, 3, stride=2, fill=-1)
        np.testing.assert_array_equal(lazy.compute(), sliding_window_transpose(x, 32, 3, stride=2, fill=-1))
        # 128 images of 2 MiB of windows and 2 MiB of output each per block: more than the worker's 64 MiB.
        big = da.zeros((64, 16, 256, 256, 2, 2), np.float64, chunks=(8, 16, 256, 256, 2, 2))
        with pytest.raises(SwtError, match=r"more than the memory limit of the smallest Dask worker \(67,108,864 bytes\)"):
            sliding_window_transpose(big, None, 2, stride=2)


def test_importing_swt_and_folding_numpy_imports_no_dask():
    code = ("import sys, numpy as np; from swt_cli import sliding_window_transpose, SlidingWindowTranspose; "
            "sliding_window_transpose(np.ones((1, 2, 2, 2, 2)), None, 2); SlidingWindowTranspose(None, 2)(np.ones((2, 2, 2, 2))); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'array_api_compat', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_example_runs(tmp_path, monkeypatch):
    from readme_blocks import python_blocks

    monkeypatch.chdir(tmp_path)
    for code in python_blocks("Dask arrays"):
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "images.zarr").is_dir()


@pytest.mark.gpu
def test_cupy_backed_dask_arrays_stay_on_the_gpu():
    import cupy

    x = cancelling((4, 3, 9, 8, 3, 3))
    lazy = sliding_window_transpose(da.from_array(cupy.asarray(x), chunks=(1, 3, 9, 8, 3, 3)), (19, 17), 3, stride=2)
    assert type(lazy._meta) is cupy.ndarray
    np.testing.assert_array_equal(cupy.asnumpy(lazy.compute()), sliding_window_transpose(x, (19, 17), 3, stride=2))


@pytest.mark.parametrize("call,message", [
    (lambda x: sliding_window_transpose(x, None, 3), r"fold input of shape \(40000, 40000\).*"),
    (lambda x: sliding_window(x, 3, layout="torch"), r"layout='torch' needs images with a channel axis.*\(40000, 40000\)"),
    (lambda x: sliding_window(x, (3, 3, 3)), r"40000"),
])
def test_too_few_axes_are_named_without_reading_the_array(call, message):
    x = da.zeros((40_000, 40_000), np.float64, chunks=10_000)  # 12.8 GB if anything were computed
    with pytest.raises(SwtError, match=message):
        call(x)
