"""``out=``: fold and unfold into an array the caller owns (issue 15: no fresh pages per call).

Every result written into ``out`` must be the bits of the call without it (which test_exact.py ties to
MegEngine's window-order loop), on every kernel path and setting, whatever ``out`` held before; every
element is written (``out`` starts as NaN or a marker); wrong ``out`` arguments are refused with one
line before anything is written.
"""

import numpy as np
import pytest
from reference import fold_window_order, unfold_loops
from test_exact import GEOMETRIES, _grid, _settings, cancelling
from test_kernel_paths import HAVE_NUMBA, PATHS

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.errors import OptionError


def _poisoned(shape, dtype):
    out = np.empty(shape, dtype)
    if np.dtype(dtype).kind in "fc":
        out[...] = np.nan
    else:
        out[...] = 77
    return out


@pytest.mark.default_cases("numpy-geometry1", "numba-geometry4", "numba-geometry7")
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"geometry{i}" for i in range(len(GEOMETRIES))])
@pytest.mark.parametrize("path", PATHS)
def test_fold_into_out_gives_the_window_order_bits(path, geometry):
    k, s, p, d, o = geometry
    x = cancelling((2, 3) + _grid(*geometry) + k, np.float32, seed=5)
    want = fold_window_order(x, o, k, s, p, d, acc=np.float32)
    for setting in _settings(path):
        out = _poisoned(want.shape, np.float32)
        with setting:
            got = sliding_window_transpose(x, o, k, p, s, d, out=out)
        assert got is out
        assert np.array_equal(out, want)


@pytest.mark.default_cases("numpy-geometry1", "numba-geometry4", "numba-geometry7")
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"geometry{i}" for i in range(len(GEOMETRIES))])
@pytest.mark.parametrize("path", PATHS)
def test_unfold_into_out_equals_the_loops(path, geometry):
    k, s, p, d, o = geometry
    x = cancelling((2, 3) + o, np.float32, seed=6)
    want = unfold_loops(x, k, s, p, d)
    for setting in _settings(path):
        out = _poisoned(want.shape, np.float32)
        with setting:
            got = sliding_window(x, k, p, s, d, out=out)
        assert got is out
        assert np.array_equal(out, want)


def test_out_reused_across_calls_holds_only_the_last():
    rng = np.random.default_rng()
    out = np.empty((2, 3, 17, 17), np.float64)
    for _ in range(3):
        x = rng.standard_normal((2, 3, 8, 8, 3, 3))
        sliding_window_transpose(x, 17, 3, stride=2, out=out)
        assert np.array_equal(out, sliding_window_transpose(x, 17, 3, stride=2))


@pytest.mark.parametrize("kwargs", [
    dict(reduce="mean"), dict(weight="hann"), dict(fill=-1.0), dict(cover=True), dict(dtype=np.float64),
])
def test_fold_options_copy_into_out(kwargs):
    """Options the kernels do not write directly (blends, cover, casts) are computed, then copied in."""
    x = cancelling((2, 9, 9, 3, 3), np.float32, seed=7)
    want = sliding_window_transpose(x, 19, 3, stride=2, **kwargs)
    out = _poisoned(want.shape, want.dtype)
    assert sliding_window_transpose(x, 19, 3, stride=2, out=out, **kwargs) is out
    assert np.array_equal(out, want)


def test_dtype_defaults_to_outs():
    """An int8 input folded into an int64 ``out`` sums in int64 (as ``dtype=np.int64`` would): no wrap."""
    x = np.full((1, 5, 5, 3, 3), 100, np.int8)
    out = _poisoned((1, 11, 11), np.int64)
    sliding_window_transpose(x, 11, 3, stride=2, out=out)
    assert out.max() == 400
    assert np.array_equal(out, sliding_window_transpose(x, 11, 3, stride=2, dtype=np.int64))
    out16 = _poisoned((1, 11, 11), np.float16)
    xf = cancelling((1, 5, 5, 3, 3), np.float16, seed=8)
    sliding_window_transpose(xf, 11, 3, stride=2, out=out16)  # sums in float32, cast once
    assert np.array_equal(out16, sliding_window_transpose(xf, 11, 3, stride=2))


def test_unfold_options_copy_into_out():
    x = cancelling((2, 3, 10, 11), np.float32, seed=9)
    for kwargs in (dict(layout="torch"), dict(cover=True, pad_value=5), dict(dtype=np.float64)):
        want = sliding_window(x, 3, stride=3, **kwargs)
        out = _poisoned(want.shape, want.dtype)
        assert sliding_window(x, 3, stride=3, out=out, **kwargs) is out
        assert np.array_equal(out, want)


def test_non_contiguous_out_is_written_too():
    x = cancelling((2, 7, 7, 3, 3), np.float32, seed=10)
    want = sliding_window_transpose(x, 15, 3, stride=2)
    big = _poisoned((2, 15, 30), np.float32)
    out = big[:, :, ::2]
    assert sliding_window_transpose(x, 15, 3, stride=2, out=out) is out
    assert np.array_equal(out, want)
    assert np.isnan(big[:, :, 1::2]).all()  # nothing outside out was touched


@pytest.mark.parametrize("bad, words", [
    (lambda x, out: dict(out=np.empty((2, 15, 14), np.float32)), "out has shape (2, 15, 14) but the result has shape (2, 15, 15)"),
    (lambda x, out: dict(out=out, dtype=np.float64), "dtype=float64 but out is float32"),
    (lambda x, out: dict(out=x[..., 0, 0]), None),  # overlaps: below
    (lambda x, out: dict(out=[0.0] * 4), "out must be a NumPy or CuPy array, got builtins.list"),
    (lambda x, out: dict(out=np.broadcast_to(np.float32(0), out.shape)), "out is read-only"),
])
def test_bad_out_is_refused_before_anything_is_written(bad, words):
    x = cancelling((2, 7, 7, 3, 3), np.float32, seed=11)
    before = x.copy()
    out = _poisoned((2, 15, 15), np.float32)
    kwargs = bad(x, out)
    with pytest.raises(OptionError) as err:
        sliding_window_transpose(x, 15, 3, stride=2, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert (words or "out overlaps the input") in message
    assert np.array_equal(x, before)
    assert np.isnan(out).all()


def test_unfold_out_of_the_wrong_shape_or_overlapping():
    x = cancelling((1, 2, 12, 12), np.float32, seed=12)
    with pytest.raises(OptionError, match=r"out has shape \(1, 2, 6, 6, 3, 3\) but the result has shape \(1, 2, 6, 6, 2, 2\)"):
        sliding_window(x, 2, stride=2, out=np.empty((1, 2, 6, 6, 3, 3), np.float32))
    buf = np.zeros(x.size, np.float32)
    images = buf.reshape(x.shape)
    images[...] = x
    with pytest.raises(OptionError, match="overlaps"):
        sliding_window(images, 2, stride=2, out=buf.reshape(1, 2, 6, 6, 2, 2))
    assert np.array_equal(images, x)


def test_dask_and_dlpack_inputs_take_no_out():
    class Wrapped:  # an array known only by __dlpack__
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kwargs):
            return self.a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    x = np.ones((1, 4, 4, 2, 2), np.float32)
    with pytest.raises(OptionError, match="out= takes NumPy and CuPy arrays"):
        sliding_window_transpose(Wrapped(x), 8, 2, stride=2, out=np.empty((1, 8, 8), np.float32))
    import dask.array as da

    with pytest.raises(OptionError, match="out= takes NumPy and CuPy arrays"):
        sliding_window(da.ones((1, 8, 8), chunks=4), 2, stride=2, out=np.empty((1, 4, 4, 2, 2)))



def test_readme_example_runs():
    from readme_blocks import python_blocks

    for code in python_blocks("Writing into your own array: `out=`"):
        exec(compile(code, "README.md", "exec"), {})


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix's own
def test_ndarray_subclasses_as_out():
    """np.matrix (always 2-d) and np.memmap are written through a plain view; a masked array, whose mask
    would stay, is refused."""
    m = np.matrix(np.full((4, 3), -1.0))
    assert sliding_window(np.arange(6.0), (3,), out=m) is m
    assert m.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    fm = np.matrix(np.full((4, 4), np.nan))
    sliding_window_transpose(np.ones((2, 2, 3, 3)), 4, 3, out=fm)
    assert np.array_equal(np.asarray(fm), sliding_window_transpose(np.ones((2, 2, 3, 3)), 4, 3))
    with pytest.raises(OptionError, match="masked array"):
        sliding_window(np.arange(6.0), (3,), out=np.ma.masked_array(np.zeros((4, 3)), mask=True))


def test_memmap_out(tmp_path):
    x = cancelling((2, 9, 9, 3, 3), np.float32, seed=13)
    mm = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(2, 19, 19))
    assert sliding_window_transpose(x, 19, 3, stride=2, out=mm) is mm
    mm.flush()
    del mm
    assert np.array_equal(np.load(tmp_path / "out.npy"), sliding_window_transpose(x, 19, 3, stride=2))


@pytest.mark.parametrize("path", PATHS)
def test_an_overflow_leaves_out_as_it_was(path):
    """int64 sums of int64 windows are checked block by block: with out= they go through a new array, so
    the error leaves out untouched (not half written)."""
    from test_kernel_paths import kernel

    w = np.ones((40, 6, 6, 3, 3), np.int64)
    w[-1] = 2**62
    out = np.full((40, 8, 8), 77, np.int64)
    with kernel(path, 2, tiny_blocks=True), pytest.raises(SwtError, match="overflow"):
        sliding_window_transpose(w, 8, 3, out=out)
    assert (out == 77).all()


def test_byte_order_named_where_dtypes_share_a_name():
    with pytest.raises(OptionError, match=r"dtype=>f8 but out is <f8"):
        sliding_window(np.ones((1, 5, 5)), 3, dtype=">f8", out=np.zeros((1, 3, 3, 3, 3)))


@pytest.mark.parametrize("op", ["fold", "unfold"])
def test_long_double_with_numba_forced_runs_on_numpy(op):
    """numba compiles no long double: a call with SWT_KERNEL=numba takes NumPy for it (it raised numba's
    own TypingError)."""
    from test_kernel_paths import kernel

    x = np.arange(2 * 7 * 7, dtype=np.longdouble).reshape(2, 7, 7)
    with kernel("numba" if HAVE_NUMBA else "numpy", 1):
        if op == "unfold":
            got = sliding_window(x, 3, padding=1)
            assert np.array_equal(got, unfold_loops(x, (3, 3), (1, 1), (1, 1), (1, 1)))
        else:
            w = sliding_window(x, 3, padding=1)
            got = sliding_window_transpose(w, 7, 3, padding=1)
            assert np.array_equal(got, fold_window_order(w, (7, 7), (3, 3), (1, 1), (1, 1), (1, 1), acc=np.longdouble))
