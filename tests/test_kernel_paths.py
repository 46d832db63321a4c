"""Both kernel paths (NumPy, numba where installed) against the plain loops, threads, dtypes and torch."""

import contextlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fold_loops, fold_window_order, unfold_loops
from test_kernels import geometries

from swt_cli import SwtError, kernels, sliding_window, sliding_window_transpose
from swt_cli.geometry import grid_size, output_range

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
PATHS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed"))]


@contextlib.contextmanager
def kernel(path, threads=None, tiny_blocks=False):
    """Run with ``SWT_KERNEL=path`` and ``threads``; ``tiny_blocks`` makes even small inputs split into blocks."""
    saved_env = os.environ.get("SWT_KERNEL")
    names = ("_PARALLEL_BYTES", "_BLOCK_BYTES", "_NUMPY_BLOCK_BYTES", "_ROW_BLOCK_BYTES")
    saved = {name: getattr(kernels, name) for name in names}
    saved_threads = kernels._threads
    os.environ["SWT_KERNEL"] = path
    kernels.set_threads(threads)
    if tiny_blocks:
        for name in names:
            setattr(kernels, name, 1)
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("SWT_KERNEL", None)
        else:
            os.environ["SWT_KERNEL"] = saved_env
        for name, value in saved.items():
            setattr(kernels, name, value)
        kernels.set_threads(saved_threads)


def _args(g):
    return dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["padding"], dilation=g["dilation"])


def _fold_ref(x, g):
    return fold_loops(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=50, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]))
def test_fold_matches_plain_loops(path, g, seed, threads):
    x = np.random.default_rng(seed).standard_normal(g["batch"] + g["grid"] + g["kernel"])
    with kernel(path, threads, tiny_blocks=True):
        got = sliding_window_transpose(x, g["output"], **_args(g))
    assert got.shape == g["batch"] + g["output"] and got.flags.c_contiguous
    np.testing.assert_allclose(got, _fold_ref(x, g), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_numpy_pair_and_phase_kernels_agree_to_the_bit(g, seed, dtype):
    """fold_pairs (two kernel columns per complex add) against fold_phases and the loops."""
    from swt_cli.geometry import Geometry, plan_fold

    x = np.random.default_rng(seed).standard_normal(g["batch"] + g["grid"] + g["kernel"]).astype(dtype)
    geometry = Geometry.from_args(g["kernel"], g["padding"], g["stride"], g["dilation"])
    plan = plan_fold(x.shape, geometry, g["output"])
    phases, pairs = (np.full(plan.output_shape, np.nan, dtype) for _ in range(2))
    kernels.fold_phases(np, x, phases, plan)
    if kernels._pairs_apply(x, np.dtype(dtype), geometry):
        kernels.fold_pairs(np, x, pairs, plan)
        np.testing.assert_array_equal(pairs, phases)
    else:
        assert g["kernel"][-1] == 1 or g["dilation"][-1] > 1 or g["stride"][-1] == 1 or x.size == 0
    np.testing.assert_allclose(phases, _fold_ref(x, g), rtol=1e-5, atol=1e-5)
    window_order = fold_window_order(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])
    np.testing.assert_array_equal(phases, window_order)  # the summation rule, to the bit


@st.composite
def long_row_geometries(draw):
    """Geometries whose last axis is undilated, with windows of 1-40 elements 1-20 apart (fold_runs and
    the numba segments), the leading axes as in :func:`geometries`."""
    g = draw(geometries(max_grid=4))
    k, s = draw(st.integers(1, 40)), draw(st.integers(1, 20))
    n, p = draw(st.integers(1, 6)), draw(st.integers(0, 12))
    rng = output_range(n, k, s, p, 1)
    if rng is None:
        p = 0
        rng = output_range(n, k, s, p, 1)
    o = draw(st.integers(*rng))
    for key, value in dict(kernel=k, stride=s, padding=p, dilation=1, grid=n, output=o).items():
        g[key] = g[key][:-1] + (value,)
    return g


def _cancelling(shape, seed, dtype):
    """Random values with large ones that cancel: sums whose last bits show the order of the adds."""
    rng = np.random.default_rng(seed)
    big = 1e3 if np.dtype(dtype).itemsize == 2 else 1e7  # float16 ends at 65504
    x = rng.standard_normal(shape) * np.where(rng.random(shape) < 0.3, big, 1.0)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape) * big
    return x.astype(dtype)


@settings(max_examples=80, deadline=None)
@given(long_row_geometries(), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64, np.complex64]))
def test_numpy_runs_kernel_agrees_to_the_bit(g, seed, dtype):
    """fold_runs (the last axis in runs of a stride) gives MegEngine's window-order sums to the bit, on
    any undilated last axis (swt takes it only for long windows far apart, see _runs_apply)."""
    from swt_cli.geometry import Geometry, plan_fold

    x = _cancelling(g["batch"] + g["grid"] + g["kernel"], seed, dtype)
    plan = plan_fold(x.shape, Geometry.from_args(g["kernel"], g["padding"], g["stride"], g["dilation"]), g["output"])
    runs = np.full(plan.output_shape, np.nan, dtype)
    kernels.fold_runs(np, x, runs, plan)
    window_order = fold_window_order(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])
    np.testing.assert_array_equal(runs, window_order)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40, deadline=None)
@given(long_row_geometries(), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.complex128, np.float16]))
def test_long_rows_fold_to_the_bit(path, g, seed, dtype):
    """The whole fold on long, far-apart windows (numba: segments where the stride is 8 or more; NumPy:
    runs where the windows are also 32 or longer), in blocks of one plane on two threads, against the
    window-order loop."""
    x = _cancelling(g["batch"] + g["grid"] + g["kernel"], seed, dtype)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, g["output"], **_args(g))
    want = fold_window_order(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])
    np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_long_rows_take_the_run_kernels():
    """The geometries above do reach the new kernels: NumPy's runs and numba's segment layout."""
    from swt_cli.geometry import Geometry

    assert kernels._runs_apply(np.dtype(np.float32), Geometry.from_args((3, 32), 0, (2, 8)))
    assert not kernels._runs_apply(np.dtype(np.float32), Geometry.from_args((3, 12), 0, (2, 8)))  # short: pairs
    assert not kernels._runs_apply(np.dtype(np.int64), Geometry.from_args(32, 0, 8))  # checked integer sums
    if HAVE_NUMBA:
        jit = kernels._jit()
        assert jit.ring_in_order(np.array([1, 1, 19, 1, 1, 8, 0, 0, 3, 1, 1, 1]), 400).itemsize == 4
        assert jit.ring_in_order(np.array([1, 1, 32, 1, 1, 8, 0, 0, 0, 1, 1, 1]), 8960).itemsize == 4
        assert jit.ring_in_order(np.array([1, 1, 32, 1, 1, 8, 0, 0, 0, 1, 1, 1]), 4096).itemsize == 1
        assert jit.ring_in_order(np.array([1, 1, 32, 1, 1, 8, 0, 0, 0, 1, 1, 2]), 4096).itemsize == 2


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=50, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]))
def test_unfold_matches_plain_loops(path, g, seed, threads):
    x = np.random.default_rng(seed).standard_normal(g["batch"] + g["output"])
    with kernel(path, threads, tiny_blocks=True):
        got = sliding_window(x, **_args(g))
    np.testing.assert_array_equal(got, unfold_loops(x, g["kernel"], g["stride"], g["padding"], g["dilation"]))


#: (kernel, stride, padding, dilation, size): window rows copied as wide items (kernel * itemsize of 1-3
#: items of 8/4/2/1 bytes, aligned to the stride or not), in words (numba: even kernel, stride, padding
#: and row in 8-byte words), neither (dilated, long rows), tiles with an edge, 1-d and 3-d; numba copies
#: windows inside the image along the last axis without bounds checks (rows of 2-5 elements spelled
#: out) and those reaching into the padding element by element.
ROW_GEOMETRIES = [
    ((3, 3), (2, 2), (1, 1), (1, 1), (9, 12)),
    ((3, 3), (1, 1), (1, 0), (1, 1), (7, 8)),
    ((2, 4), (2, 2), (0, 2), (1, 1), (8, 12)),
    ((3, 5), (2, 3), (2, 1), (2, 1), (11, 13)),
    ((2, 8), (1, 4), (0, 0), (1, 1), (6, 20)),
    ((2, 2), (2, 2), (0, 0), (1, 1), (9, 11)),
    ((6,), (3,), (2,), (1,), (17,)),
    ((2, 3, 2), (1, 2, 2), (1, 0, 1), (1, 1, 1), (4, 7, 8)),
    # Dilated rows of 5 and 4 spelled out (numba), with windows at both ends reaching into the padding.
    ((2, 5), (1, 2), (0, 2), (1, 2), (5, 13)),
    ((1, 4), (1, 1), (0, 3), (1, 3), (2, 14)),
    # Rows with no window wholly inside the image: every window copied element by element.
    ((1, 5), (1, 1), (0, 2), (1, 1), (3, 1)),
    ((3, 3), (1, 1), (1, 2), (1, 1), (4, 2)),
    ((2, 2), (3, 3), (1, 1), (1, 1), (5, 4)),
    # Rows of 4 items (or 8-byte words) and more, copied window by window as contiguous runs (numba):
    # tiles of 7 and of 16 (8 words of float32) with the output reaching past the tiles, overlapping
    # runs of 13 reaching into the padding at both ends, and 3-d tiles.
    ((2, 7), (2, 7), (0, 0), (1, 1), (6, 23)),
    ((1, 16), (1, 16), (0, 0), (1, 1), (3, 50)),
    ((2, 13), (1, 3), (1, 5), (1, 1), (5, 30)),
    ((1, 6, 9), (1, 6, 9), (0, 0, 0), (1, 1, 1), (2, 12, 19)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.int8, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("geometry", ROW_GEOMETRIES, ids=str)
def test_unfold_row_copies_of_every_item_size(path, geometry, dtype):
    """Unfold (and the fold of tiles, its mirror) moves bits; rows as wide items must land where single
    elements would, from contiguous and strided images, in blocks of one plane on two threads."""
    k, s, p, d, size = geometry
    rng = np.random.default_rng(7)
    img = (rng.standard_normal((3, 2) + size) * 100).astype(dtype)
    if img.dtype.kind in "fc":
        img[0, 0] = -0.0  # copied, never added: the tiles' fold keeps its sign bit
    want = unfold_loops(img, k, s, p, d)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window(img, k, padding=p, stride=s, dilation=d)
        strided = sliding_window(np.swapaxes(np.swapaxes(img, 0, 1).copy(), 0, 1), k, padding=p, stride=s, dilation=d)
        if s == k and not any(p) and all(v == 1 for v in d):
            back = sliding_window_transpose(want, size, k, stride=s)
            reach = tuple(slice(0, gi * ki) for gi, ki in zip(want.shape[2:2 + len(k)], k))
            edge = np.zeros_like(img)
            edge[(Ellipsis,) + reach] = img[(Ellipsis,) + reach]
            np.testing.assert_array_equal(back.view(np.uint8), edge.view(np.uint8))
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    np.testing.assert_array_equal(strided.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.int16])
def test_one_and_two_threads_give_identical_results(path, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 5, 33, 31, 3, 3)) * 50).astype(dtype)
    img = (rng.standard_normal((6, 5, 40, 37)) * 50).astype(dtype)
    results = []
    for threads in (1, 2):
        with kernel(path, threads, tiny_blocks=True):  # tiny blocks: two threads whatever the size
            results.append((sliding_window_transpose(x, (66, 62), 3, padding=1, stride=2), sliding_window(img, 3, padding=1, stride=2)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_set_threads_and_get_threads():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    saved = kernels._threads
    try:
        kernels.set_threads(None)
        assert kernels.get_threads() == cores
        kernels.set_threads(3)
        assert kernels.get_threads() == 3
        kernels.set_threads(np.int64(1))
        assert kernels.get_threads() == 1 and type(kernels.get_threads()) is int
        for bad in (0, -2, 1.5, True, "2"):
            with pytest.raises(SwtError, match="threads must be a positive integer or None"):
                kernels.set_threads(bad)
        assert kernels.get_threads() == 1
    finally:
        kernels.set_threads(saved)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "grid, kernel_size, output",
    [((7,), (3,), (21,)), ((7,), (3,), (23,)), ((4, 5), (2, 3), (8, 15)), ((4, 5), (2, 3), (9, 16)), ((2, 3, 2), (2, 1, 3), (4, 3, 7))],
)
def test_no_overlap_fast_path(path, grid, kernel_size, output):
    """stride == kernel: every window is a tile; sizes beyond the tiles stay zero."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3) + grid + kernel_size).astype(np.float32)
    nd = len(kernel_size)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, output, kernel_size, stride=kernel_size)
        back = sliding_window(got, kernel_size, stride=kernel_size)
    want = fold_loops(x, output, kernel_size, kernel_size, (0,) * nd, (1,) * nd)
    np.testing.assert_array_equal(got, want.astype(np.float32))  # no sums: exact
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("path", PATHS)
def test_float16_accumulates_in_float32(path):
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(3, 64, 64)).astype(np.float16)  # 1-d: 64 windows of kernel 64
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, (127,), (64,))
        windows = sliding_window(got, (64,))
    want = fold_loops(x.astype(np.float64), (127,), (64,), (1,), (0,), (1,))
    assert got.dtype == np.float16 and windows.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2.0**-11 * 1.01)
    np.testing.assert_array_equal(windows, unfold_loops(got, (64,), (1,), (0,), (1,)))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"])
def test_integers_are_exact(path, dtype):
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -20), min(info.max, 20), size=(2, 3, 5, 5, 3, 2), dtype=dtype, endpoint=True)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, (5, 6), (3, 2), padding=(1, 0))
        wide = sliding_window_transpose(x, (5, 6), (3, 2), padding=(1, 0), dtype=np.float64)
        windows = sliding_window(got, (3, 2), padding=(1, 0))
    want = fold_loops(x.astype(object), (5, 6), (3, 2), (1, 1), (1, 0), (1, 1), acc=object)
    assert got.dtype == np.dtype(dtype)
    assert (got.astype(object) == want).all()
    np.testing.assert_array_equal(wide, want.astype(np.float64))
    np.testing.assert_array_equal(windows, unfold_loops(got, (3, 2), (1, 1), (1, 0), (1, 1)))


@pytest.mark.parametrize("path", PATHS)
def test_overflow_is_refused_from_any_thread(path):
    x = np.zeros((8, 1, 2, 2, 2, 2), np.int64)
    x[5] = 2**62  # in the second thread's block
    with kernel(path, 2, tiny_blocks=True):
        with pytest.raises(SwtError, match="sums overflow int64: use dtype float64"):
            sliding_window_transpose(x, 3, 2)
        small = np.full((4, 1, 3, 3, 2, 2), 100, np.int8)
        with pytest.raises(SwtError, match=r"results range from 100 to 400, which does not fit int8: use dtype int16"):
            sliding_window_transpose(small, 4, 2)


# complex128 through numba (one more compile of each kernel: seconds on a fresh install) in the slow run only;
# the default run takes complex through numba as complex64
@pytest.mark.default_cases("complex64-numpy", "complex64-numba", "complex128-numpy")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex(path, dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 4, 4, 3, 3)) + 1j * rng.standard_normal((2, 4, 4, 3, 3))).astype(dtype)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, 6, 3, dilation=(1, 2), padding=(0, 1))
        windows = sliding_window(got, 3, dilation=(1, 2), padding=(0, 1))
    assert got.dtype == dtype and windows.dtype == dtype
    want = fold_loops(x, (6, 6), (3, 3), (1, 1), (0, 1), (1, 2), acc=np.complex128)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_array_equal(windows, unfold_loops(got, (3, 3), (1, 1), (0, 1), (1, 2)))


@pytest.mark.parametrize("path", PATHS)
def test_mixed_dtypes_non_contiguous_and_empty(path):
    rng = np.random.default_rng(11)
    x = rng.integers(-9, 9, size=(4, 3, 14, 6, 3, 4)).astype(np.int8)[::2, :, ::2, :, :, ::2]
    image = np.asfortranarray(rng.standard_normal((2, 3, 9, 8)))[:, :, ::-1]
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, (9, 7), (3, 2), dtype=np.float32)
        windows = sliding_window(image, 3, stride=2, padding=1)
        empty = sliding_window_transpose(np.zeros((0, 3, 31, 31, 3, 3), np.float32), 64, 3, stride=2)
        no_windows = sliding_window(np.zeros((2, 0, 8, 8)), 3, padding=1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, fold_loops(np.array(x), (9, 7), (3, 2), (1, 1), (0, 0), (1, 1)))
    np.testing.assert_array_equal(windows, unfold_loops(np.array(image), (3, 3), (2, 2), (1, 1), (1, 1)))
    assert empty.shape == (0, 3, 64, 64) and empty.dtype == np.float32
    assert no_windows.shape == (2, 0, 8, 8, 3, 3)


def test_kernel_switch():
    with kernel("nonsense"):
        with pytest.raises(SwtError, match="SWT_KERNEL must be 'numpy' or 'numba'"):
            sliding_window_transpose(np.ones((1, 2, 2)), 3, (2,))
    with kernel("numpy"):
        assert kernels.kernel_name() == "numpy"
    if HAVE_NUMBA:
        with kernel("numba"):
            assert kernels.kernel_name() == "numba"
        with kernel(""):  # loaded (by the forced call above): the choice may take it
            assert kernels.kernel_name() == "numba"


def test_without_numba(monkeypatch, tmp_path):
    """Where numba cannot be imported (and no kernel's machine code is kept), the NumPy path runs; asking
    for numba says how to install it."""
    monkeypatch.setattr(kernels, "_jit_module", None)
    monkeypatch.setattr(kernels, "_jit_error", "No module named 'numba'")
    monkeypatch.setattr(kernels, "_compiled", kernels._native.Compiled(kernels._numba_kernels))
    monkeypatch.setenv("SWT_CACHE_DIR", str(tmp_path))
    x = np.ones((2, 3, 3, 2, 2))
    with kernel(""):
        assert kernels.kernel_name() == "numpy"
        assert sliding_window_transpose(x, 4, 2)[0, 1, 1] == 4
    with kernel("numba"):
        with pytest.raises(SwtError, match=r"numba cannot be imported .*: pip install numba"):
            sliding_window_transpose(x, 4, 2)


def test_importing_swt_does_not_import_numba():
    code = (
        "import sys; sys.modules['numba'] = None\n"  # any import of numba now fails
        "import numpy as np, swt_cli\n"
        "from swt_cli import kernels\n"
        "y = swt_cli.sliding_window_transpose(np.ones((2, 3, 3, 2, 2)), 4, 2)\n"
        "assert kernels.kernel_name() == 'numpy' and y[0, 1, 1] == 4\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SWT_KERNEL"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    code = "import sys, swt_cli; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))


# The benchmark shapes (N, C, O, k, s, p, d), with fewer images.
TORCH_SHAPES = [(2, 3, 256, 3, 2, 1, 1), (1, 16, 128, 3, 1, 1, 1), (4, 1, 256, 8, 4, 0, 1), (2, 3, 128, 5, 2, 2, 2), (4, 8, 96, 2, 2, 0, 1)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", TORCH_SHAPES)
def test_against_torch(path, shape):
    torch = pytest.importorskip("torch")
    n, c, o, k, s, p, d = shape
    g = grid_size(o, k, s, p, d)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, g, g, k, k), dtype=np.float32)
    img = rng.standard_normal((n, c, o, o), dtype=np.float32)
    with kernel(path, 2):
        got = sliding_window_transpose(x, o, k, padding=p, stride=s, dilation=d)
        windows = sliding_window(img, k, padding=p, stride=s, dilation=d)
    cols = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * k * k, g * g))
    want = torch.nn.functional.fold(cols, (o, o), k, dilation=d, padding=p, stride=s).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    want = torch.nn.functional.unfold(torch.from_numpy(img), k, dilation=d, padding=p, stride=s).numpy()
    np.testing.assert_array_equal(windows, want.reshape(n, c, k, k, g, g).transpose(0, 1, 4, 5, 2, 3))


def _largest_output(grid, kernel, stride, padding, dilation):
    """The largest output size that holds the grid: up to ``stride - 1`` past the last window's reach."""
    return tuple(output_range(*axis)[1] for axis in zip(grid, kernel, stride, padding, dilation))


# Geometries for the summing numba kernel (fold_planes): overlapping windows, gaps between windows (stride > kernel),
# dilation, padding wider than the kernel, long window rows (several vectors), 1-d, 2-d and 3-d, each with
# its largest output size. (grid, kernel, stride, padding, dilation, output)
SUMMING_GEOMETRIES = [
    geometry + (_largest_output(*geometry),)
    for geometry in [
        ((7,), (3,), (1,), (1,), (1,)),  # 1-d, overlap
        ((5,), (19,), (2,), (0,), (1,)),  # float32 row of 19: a 64-byte vector and a masked remainder
        ((4,), (9,), (4,), (3,), (1,)),  # float64 row of 9: 72 bytes
        ((6, 5), (3, 3), (2, 2), (1, 1), (1, 1)),  # the common 2-d case
        ((5, 6), (2, 3), (3, 5), (0, 0), (1, 1)),  # stride > kernel: gaps, and columns past the last window
        ((4, 5), (3, 5), (2, 2), (2, 2), (2, 2)),  # dilation == stride
        ((4, 5), (2, 3), (4, 4), (1, 1), (2, 2)),  # dilation divides stride
        ((5, 6), (3, 3), (1, 1), (1, 1), (2, 2)),  # dilation 2, stride 1: windows alternate phases
        ((4, 4), (2, 3), (3, 3), (0, 1), (2, 2)),  # dilation 2, stride 3
        ((3, 5), (2, 4), (2, 2), (0, 3), (3, 3)),  # dilation 3, stride 2
        ((6, 7), (2, 2), (1, 2), (3, 3), (1, 1)),  # padding wider than the kernel
        ((4, 6), (3, 8), (2, 4), (1, 3), (1, 1)),  # kernel 2 strides of 4: ring rows in column order
        ((5, 4), (2, 10), (1, 5), (0, 2), (1, 1)),  # the same, kernel 2 strides of 5 and 1-d-like rows
        ((3, 2, 5), (1, 2, 12), (1, 1, 4), (0, 1, 5), (1, 1, 1)),  # 3-d, kernel 3 strides of 4, wide padding
        ((3, 4, 5), (2, 3, 2), (2, 1, 2), (1, 0, 1), (1, 2, 1)),  # 3-d
        ((2, 3, 4), (3, 2, 3), (1, 2, 3), (0, 1, 2), (2, 1, 3)),  # 3-d, dilation == stride
        # Strides of 8 and more, ring rows in column order filled segment by segment (_add_segments):
        ((5,), (19,), (8,), (3,), (1,)),  # 1-d, kernel 2 strides and a run of 3
        ((4, 6), (2, 12), (1, 8), (0, 5), (1, 1)),  # 2-d, kernel 1.5 strides, padding
        ((3, 4), (2, 9), (2, 10), (1, 0), (1, 1)),  # kernel < stride: one run per segment, gaps
        ((70,), (32,), (8,), (0,), (1,)),  # 4 whole strides, but rows over 8 KiB: segments, not window runs
        ((2, 2, 3), (1, 2, 20), (1, 1, 9), (0, 1, 4), (1, 1, 1)),  # 3-d
    ]
]


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128, np.int16, np.float16])
@pytest.mark.parametrize("grid, kernel_size, stride, padding, dilation, output", SUMMING_GEOMETRIES)
def test_numba_summing_kernels(dtype, grid, kernel_size, stride, padding, dilation, output):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3) + grid + kernel_size) * 20
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(x.shape)
    x = x.astype(dtype)
    args = dict(stride=stride, padding=padding, dilation=dilation)
    acc = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    want = fold_loops(x.astype(acc), output, kernel_size, stride, padding, dilation, acc=acc)
    results = []
    for threads in (1, 2):
        with kernel("numba", threads, tiny_blocks=True):
            results.append(sliding_window_transpose(x, output, kernel_size, **args))
    got = results[0]
    assert got.dtype == dtype and got.shape == (2, 3) + output
    np.testing.assert_array_equal(results[0], results[1])  # the order of the sums does not depend on threads
    window_order = fold_window_order(x, output, kernel_size, stride, padding, dilation)
    np.testing.assert_array_equal(got, window_order.astype(dtype))  # the summation rule, to the bit
    if np.dtype(dtype).kind in "iu":
        np.testing.assert_array_equal(got, want.astype(dtype))
    else:
        tol = {2: 2e-3, 4: 1e-5, 8: 1e-5, 16: 1e-12}[np.dtype(dtype).itemsize]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 50 * np.prod(kernel_size))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("grid, kernel_size, stride, padding, dilation, output", SUMMING_GEOMETRIES)
def test_numba_summing_kernel_called_directly(grid, kernel_size, stride, padding, dilation, output):
    """fold_planes writes every element of its planes, each the window-order sum to the bit."""
    jit = kernels._jit()
    nd = len(kernel_size)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3,) + grid + kernel_size)
    x[rng.random(x.shape) < 0.05] *= 1e8  # cancelling sums show the order
    want = fold_window_order(x, output, kernel_size, stride, padding, dilation)
    rows = kernels._rows3
    x7 = x.reshape((3,) + rows(grid, 1) + rows(kernel_size, 1))
    geo = np.array(rows(kernel_size, 1) + rows(stride, 1) + rows(padding, 0) + rows(dilation, 1), np.int64)
    got = np.full((3,) + output, np.nan)  # every element must be written
    r4 = got.reshape((3,) + rows(output, 1))
    _, _, nring, slot = jit.ring_dims(*geo[[0, 9, 2, 5, 11, 8]], x7.shape[3], r4.shape[2], r4.shape[3])
    jit.fold_planes(x7, r4, 0, 3, geo, jit.ring_in_order(geo, x7[0, 0, 0].nbytes), np.zeros(nring * slot), x7.reshape(-1))
    np.testing.assert_array_equal(got, want)
    assert nd in (1, 2, 3)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("output", [(9, 8), (9, 9), (8, 9)])
def test_no_overlap_word_copies(path, output):
    """Tiled float32 folds copy 8-byte words where rows allow (even kernel and output widths), elements elsewhere."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 4, 4, 2, 2)).astype(np.float32)
    with kernel(path, 2, tiny_blocks=True):
        got = sliding_window_transpose(x, output, 2, stride=2)
        from_f16 = sliding_window_transpose(x.astype(np.float16), output, 2, stride=2)
    want = fold_loops(x, output, (2, 2), (2, 2), (0, 0), (1, 1))
    np.testing.assert_array_equal(got, want.astype(np.float32))
    np.testing.assert_array_equal(from_f16, want.astype(np.float16))


def test_small_work_never_imports_numba(tmp_path):
    """Small work stays on NumPy without loading numba (its load would cost more than it saves); work
    announced as large starts the load, on a background thread, and runs on NumPy meanwhile."""
    script = (
        "import sys, numpy as np\n"
        "from swt_cli import kernels, sliding_window_transpose\n"
        "x = np.random.default_rng(0).standard_normal((2, 3, 9, 9, 3, 3)).astype(np.float32)\n"
        "y = [sliding_window_transpose(x, 19, 3, stride=2) for _ in range(20)]\n"
        "assert 'numba' not in sys.modules and kernels._loader is None, 'small work loaded numba'\n"
        "kernels.expect_work(1 << 30)  # a job of 1 GiB: not worth it either\n"
        "assert sliding_window_transpose(x, 19, 3, stride=2) is not None and not kernels._asked\n"
        "kernels.expect_work(16 << 30)  # a job announced as large starts the load at its first block\n"
        "z = sliding_window_transpose(x, 19, 3, stride=2)\n"
        "assert kernels._asked\n"
        "np.testing.assert_array_equal(z, y[0])\n"
    )
    assert HAVE_NUMBA, "numba is a core dependency"
    env = {k: v for k, v in os.environ.items() if k != "SWT_KERNEL"}
    env["SWT_CACHE_DIR"] = str(tmp_path)  # no kernel kept: a job of 1 GiB then loads nothing
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.complex128, np.int64, np.float64, np.uint8])
def test_unfold_3x3_whole_windows(path, dtype):
    """2-d 3x3 windows are copied whole on the numba path (``_jit.unfold_planes_3x3``): every item size,
    complex128 as itself, per-axis strides, dilations and padding wider than a window, contiguous and
    strided images, against the plain loops bit for bit. (A literal 0 at the borders once turned uint64
    bits into float64 and back: float64 values lost their last bits.)"""
    rng = np.random.default_rng()
    img = (rng.standard_normal((2, 3, 11, 13)) * 1e3).astype(dtype)
    if img.dtype.kind == "c":
        img.imag = rng.standard_normal(img.shape) * 1e3
    strided = np.swapaxes(np.swapaxes(img, 0, 1).copy(), 0, 1)
    for k, s, p, d in [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (2, 3), (2, 0), (2, 1)),
                       ((3, 3), (1, 2), (0, 4), (1, 1)), ((3, 3), (3, 1), (3, 1), (1, 3))]:
        want = unfold_loops(img, k, s, p, d)
        with kernel(path, 2, tiny_blocks=True):
            for images in (img, strided):
                got = sliding_window(images, k, padding=p, stride=s, dilation=d)
                np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
