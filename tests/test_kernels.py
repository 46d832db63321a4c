"""Kernels against plain loops, the adjoint law, dtypes, empty batches and odd memory layouts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fold_loops, unfold_loops

from swt_cli import SwtError, sliding_window, sliding_window_transpose
from swt_cli.geometry import output_range


@st.composite
def geometries(draw, max_grid=5):
    """A random N-d geometry with a valid output size and its window grid."""
    nd = draw(st.integers(1, 3))
    axes = []
    for _ in range(nd):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, 3))
        d = draw(st.integers(1, 3))
        p = draw(st.integers(0, 3))
        g = draw(st.integers(1, max_grid))
        rng = output_range(g, k, s, p, d)
        if rng is None:
            p = 0
            rng = output_range(g, k, s, p, d)
        o = draw(st.integers(*rng))
        axes.append((k, s, p, d, g, o))
    k, s, p, d, g, o = (tuple(a[i] for a in axes) for i in range(6))
    batch = draw(st.lists(st.integers(0 if draw(st.booleans()) else 1, 2), min_size=0, max_size=2))
    return dict(kernel=k, stride=s, padding=p, dilation=d, grid=g, output=o, batch=tuple(batch))


def _args(g):
    return dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["padding"], dilation=g["dilation"])


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_fold_matches_plain_loops(g, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + g["grid"] + g["kernel"])
    got = sliding_window_transpose(x, g["output"], **_args(g))
    want = fold_loops(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_unfold_matches_plain_loops(g, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + g["output"])
    got = sliding_window(x, **_args(g))
    want = unfold_loops(x, g["kernel"], g["stride"], g["padding"], g["dilation"])
    np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_fold_is_adjoint_of_unfold(g, seed):
    """<unfold(x), y> == <x, fold(y)> for random x, y."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + g["output"])
    y = rng.standard_normal(g["batch"] + g["grid"] + g["kernel"])
    left = np.vdot(sliding_window(x, **_args(g)), y)
    right = np.vdot(x, sliding_window_transpose(y, g["output"], **_args(g)))
    assert left == pytest.approx(right, rel=1e-9, abs=1e-9)


def test_float16_accumulates_in_float32():
    """Middle pixels sum 64 windows; summed in float16 they would drift by several ulps."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(3, 64, 64)).astype(np.float16)  # 1-d: 64 windows of kernel 64
    got = sliding_window_transpose(x, (127,), (64,))
    want = fold_loops(x.astype(np.float64), (127,), (64,), (1,), (0,), (1,))
    assert got.dtype == np.float16
    # Summed in float32 and rounded once: within half a float16 ulp of the exact sum.
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2.0**-11 * 1.01)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
def test_integers_are_exact(dtype):
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -20), min(info.max, 20), size=(2, 3, 5, 5, 2, 2), dtype=dtype, endpoint=True)
    got = sliding_window_transpose(x, (6, 6), 2)
    want = fold_loops(x.astype(object), (6, 6), (2, 2), (1, 1), (0, 0), (1, 1), acc=object)
    assert got.dtype == np.dtype(dtype)
    assert (got.astype(object) == want).all()


def test_integer_overflow_is_refused_with_a_dtype_that_holds_it():
    x = np.full((1, 1, 3, 3, 2, 2), 100, np.int8)  # inner pixels get 4 * 100 = 400
    with pytest.raises(SwtError, match=r"results range from 100 to 400, which does not fit int8: use dtype int16"):
        sliding_window_transpose(x, 4, 2)
    np.testing.assert_array_equal(sliding_window_transpose(x, 4, 2, dtype=np.int16)[0, 0, 1:3, 1:3], 400)


def test_int64_overflow_is_refused():
    x = np.full((1, 1, 2, 2, 2, 2), 2**62, np.int64)
    with pytest.raises(SwtError, match="sums overflow int64: use dtype float64"):
        sliding_window_transpose(x, 3, 2)
    assert sliding_window_transpose(x, 3, 2, dtype=np.float64)[0, 0, 1, 1] == 4.0 * 2**62


def test_uint64_overflow_is_refused():
    x = np.full((1, 1, 2, 2, 2, 2), 2**63, np.uint64)
    with pytest.raises(SwtError, match="sums overflow uint64"):
        sliding_window_transpose(x, 3, 2)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64, np.complex128])
def test_float_and_complex_dtypes(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 4, 4, 3, 3)) + (1j * rng.standard_normal((2, 4, 4, 3, 3)) if np.dtype(dtype).kind == "c" else 0)).astype(dtype)
    got = sliding_window_transpose(x, 6, 3)
    assert got.dtype == dtype
    want = fold_loops(x, (6, 6), (3, 3), (1, 1), (0, 0), (1, 1), acc=np.complex128)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [bool, object, "U3", "datetime64[s]"])
def test_unsupported_dtypes_are_refused(dtype):
    x = np.zeros((1, 1, 2, 2, 2, 2), dtype)
    with pytest.raises(SwtError, match="input dtype .* is not supported: use an integer, float or complex dtype"):
        sliding_window_transpose(x, 3, 2)
    with pytest.raises(SwtError, match="is not supported"):
        sliding_window(np.zeros((1, 1, 3, 3), dtype), 2)


def test_dtype_override_refuses_to_drop_fractions():
    with pytest.raises(SwtError, match="cannot compute float32 input as int32: that would drop the fractional part"):
        sliding_window_transpose(np.ones((1, 1, 2, 2, 2, 2), np.float32), 3, 2, dtype=np.int32)
    assert sliding_window_transpose(np.ones((1, 1, 2, 2, 2, 2), np.int8), 3, 2, dtype=np.float32).dtype == np.float32


def test_empty_batch_gives_empty_output_of_the_right_shape():
    x = np.zeros((0, 3, 31, 31, 3, 3), np.float32)
    y = sliding_window_transpose(x, 64, 3, stride=2)
    assert y.shape == (0, 3, 64, 64) and y.dtype == np.float32
    assert sliding_window(np.zeros((2, 0, 8, 8)), 3, padding=1).shape == (2, 0, 8, 8, 3, 3)


def test_no_leading_axes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 5, 2, 2))
    np.testing.assert_allclose(sliding_window_transpose(x, 6, 2), fold_loops(x, (6, 6), (2, 2), (1, 1), (0, 0), (1, 1)))
    assert sliding_window(rng.standard_normal((6, 6)), 2).shape == (5, 5, 2, 2)


@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided", "transposed"])
def test_non_contiguous_inputs(layout):
    rng = np.random.default_rng(11)
    base = rng.standard_normal((2, 3, 7, 6, 3, 2))
    if layout == "fortran":
        x = np.asfortranarray(base)
    elif layout == "reversed":
        x = base[::-1, :, ::-1]
    elif layout == "strided":
        x = rng.standard_normal((4, 3, 14, 6, 3, 4))[::2, :, ::2, :, :, ::2]
    else:
        x = np.ascontiguousarray(base.transpose(1, 0, 2, 3, 4, 5)).transpose(1, 0, 2, 3, 4, 5)
    assert not x.flags.c_contiguous
    got = sliding_window_transpose(x, (9, 7), (3, 2), stride=1, dilation=1)
    np.testing.assert_allclose(got, fold_loops(np.array(x), (9, 7), (3, 2), (1, 1), (0, 0), (1, 1)))
    image = np.asfortranarray(rng.standard_normal((2, 3, 9, 8)))[:, :, ::-1]
    np.testing.assert_array_equal(sliding_window(image, 3, stride=2, padding=1), unfold_loops(np.array(image), (3, 3), (2, 2), (1, 1), (1, 1)))


def test_inputs_are_not_modified_and_lists_are_accepted():
    x = np.arange(16.0).reshape(1, 1, 2, 2, 2, 2)
    before = x.copy()
    sliding_window_transpose(x, 3, 2)
    np.testing.assert_array_equal(x, before)
    assert sliding_window_transpose(x.tolist(), 3, 2).shape == (1, 1, 3, 3)


@pytest.mark.parametrize("path", ["numpy", "numba"])
def test_ieee_overflow_and_inf_minus_inf_are_silent(path, monkeypatch):
    """Sums past float16's range are inf and inf + -inf is NaN, as IEEE says, with no RuntimeWarning."""
    import warnings

    if path == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("SWT_KERNEL", path)
    x = np.full((1, 1, 2, 2, 2, 2), 60000, np.float16)
    x[0, 0, 0, 0, 1, 1] = -np.inf
    x[0, 0, 0, 1, 1, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sliding_window_transpose(x, 3, 2)
    assert y.dtype == np.float16 and np.isnan(y[0, 0, 1, 1]) and np.isinf(y[0, 0, 0, 1]) and y[0, 0, 0, 0] == 60000
