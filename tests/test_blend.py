"""Overlap handling: --reduce sum|mean, --weight and --fill, in the library, the module and the CLI."""

import numpy as np
import pytest
from clitools import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fold_loops
from test_kernels import geometries

from swt_cli import SlidingWindowTranspose, SwtError, sliding_window, sliding_window_transpose
from swt_cli import blend as blend_module
from swt_cli.blend import WINDOWS, Blend, window, window_1d
from swt_cli.geometry import Geometry, plan_fold
from swt_cli.pipeline import Transform


def _args(g):
    return dict(kernel_size=g["kernel"], stride=g["stride"], padding=g["padding"], dilation=g["dilation"])


def _loops(x, g):
    return fold_loops(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])


def _coverage(g):
    return _loops(np.ones(g["grid"] + g["kernel"]), g)


# Window functions: the definitions the README documents.

@pytest.mark.parametrize("k", range(1, 9))
def test_window_functions_are_the_documented_formulas(k):
    n = np.arange(k)
    np.testing.assert_array_equal(window_1d("uniform", k), np.ones(k))
    np.testing.assert_allclose(window_1d("hann", k), np.sin(np.pi * (n + 0.5) / k) ** 2, rtol=1e-15)
    np.testing.assert_allclose(window_1d("triangle", k), 1 - np.abs(2 * (n + 0.5) / k - 1), rtol=1e-15)
    np.testing.assert_allclose(window_1d("gaussian", k), np.exp(-0.5 * ((n - (k - 1) / 2) / (k / 4)) ** 2), rtol=1e-15)
    for name in WINDOWS:
        w = window_1d(name, k)
        assert (w > 0).all() and w.max() <= 1 and np.allclose(w, w[::-1])  # positive, at most 1, symmetric
    assert window_1d("triangle", k).min() == pytest.approx(1 / k)


def test_nd_windows_are_outer_products():
    w = window("hann", (3, 4, 2))
    assert w.shape == (3, 4, 2)
    np.testing.assert_allclose(w, np.einsum("i,j,k->ijk", window_1d("hann", 3), window_1d("hann", 4), window_1d("hann", 2)))


@pytest.mark.parametrize("name", ["hann", "triangle"])
@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_hann_and_triangle_add_up_to_one_at_half_overlap(name, k):
    x = np.ones((1, 9, k))
    got = sliding_window_transpose(x, None, (k,), stride=(k // 2,), weight=name)
    np.testing.assert_allclose(got[0, k // 2: -(k // 2)], 1.0, rtol=1e-12)


# Mean and weighted round trips.

@settings(max_examples=60, deadline=None)
@given(geometries(), st.sampled_from([None, *WINDOWS, "array"]), st.integers(0, 2**32 - 1))
def test_mean_of_unfolded_windows_gives_the_image_back(g, weight, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + g["output"])
    if weight == "array":
        weight = rng.uniform(0.1, 3.0, g["kernel"])
    got = sliding_window_transpose(sliding_window(x, **_args(g)), g["output"], **_args(g), reduce="mean",
                                   weight=weight, fill=-7.5)
    covered = np.broadcast_to(_coverage(g) > 0, got.shape)
    np.testing.assert_allclose(got[covered], x[covered], rtol=1e-10, atol=1e-12)
    assert (got[~covered] == -7.5).all()


@settings(max_examples=60, deadline=None)
@given(geometries(), st.sampled_from(["sum", "mean"]), st.sampled_from([None, *WINDOWS, "array"]), st.integers(0, 2**32 - 1))
def test_weighted_folds_match_plain_loops(g, reduce, weight, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["batch"] + g["grid"] + g["kernel"])
    w = rng.uniform(0.1, 3.0, g["kernel"]) if weight == "array" else window(weight or "uniform", g["kernel"])
    got = sliding_window_transpose(x, g["output"], **_args(g), reduce=reduce, weight=w if weight == "array" else weight)
    want = _loops(x * w, g)
    if reduce == "mean":
        norm = _loops(np.broadcast_to(w, g["grid"] + g["kernel"]), g)
        want = np.where(norm > 0, want / np.where(norm > 0, norm, 1), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_weights_change_the_mean_of_inconsistent_windows():
    """Random windows disagree where they overlap: a weighted mean differs from the plain one there,
    and equals it where one window alone covers an element."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 5, 6, 6))
    plain = sliding_window_transpose(x, 22, 6, stride=4, reduce="mean")
    count = sliding_window_transpose(np.ones((5, 5, 6, 6)), 22, 6, stride=4)
    for name in ("hann", "triangle", "gaussian"):
        weighted = sliding_window_transpose(x, 22, 6, stride=4, reduce="mean", weight=name)
        single = np.broadcast_to(count == 1, weighted.shape)
        np.testing.assert_allclose(weighted[single], plain[single], rtol=1e-12)
        assert (np.abs(weighted - plain)[~single] > 1e-9).all()


def test_sum_with_fill_changes_only_uncovered_elements():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 4, 2, 2))  # stride 3 over kernel 2: every third row and column is empty
    plain = sliding_window_transpose(x, 12, 2, stride=3)
    filled = sliding_window_transpose(x, 12, 2, stride=3, fill=np.nan)
    covered = sliding_window_transpose(np.ones((4, 4, 2, 2)), 12, 2, stride=3) > 0
    np.testing.assert_array_equal(filled[:, covered], plain[:, covered])
    assert np.isnan(filled[:, ~covered]).all() and (~covered).sum() == 144 - 64


# dtypes and errors.

def test_integer_mean_is_float64_unless_a_float_dtype_is_asked_for():
    x = np.random.default_rng(3).integers(-50, 50, (2, 3, 3, 2, 2)).astype(np.int16)
    got = sliding_window_transpose(x, 4, 2, reduce="mean")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _loops(x.astype(float), dict(output=(4, 4), kernel=(2, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1)))
                               / sliding_window_transpose(np.ones((3, 3, 2, 2)), 4, 2))
    assert sliding_window_transpose(x, 4, 2, reduce="mean", dtype=np.float32).dtype == np.float32
    assert sliding_window_transpose(x, 4, 2, weight="hann").dtype == np.float64
    assert sliding_window_transpose(x, 4, 2, weight="uniform").dtype == np.int16  # uniform is the plain sum
    with pytest.raises(SwtError, match=r"^a mean fold has fractional results: use a float dtype, not int32$"):
        sliding_window_transpose(x, 4, 2, reduce="mean", dtype=np.int32)
    with pytest.raises(SwtError, match=r"^a weighted sum fold has fractional results: use a float dtype, not int16$"):
        sliding_window_transpose(x, 4, 2, weight="gaussian", dtype=np.int16)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.complex64])
def test_float_and_complex_means_keep_their_dtype(dtype):
    rng = np.random.default_rng(4)
    image = (rng.standard_normal((2, 9, 7)) + (1j * rng.standard_normal((2, 9, 7)) if dtype == np.complex64 else 0)).astype(dtype)
    got = sliding_window_transpose(sliding_window(image, 3, stride=2, padding=1), (9, 7), 3, stride=2, padding=1,
                                   reduce="mean", weight="hann")
    assert got.dtype == dtype
    np.testing.assert_allclose(got, image, rtol=2e-3 if dtype == np.float16 else 1e-5)


def test_integer_sum_with_fill_checks_the_fill_fits():
    x = np.ones((1, 2, 2, 2, 2), np.int8)
    assert sliding_window_transpose(x, 6, 2, stride=3, fill=-1)[0, 2, 2] == -1
    with pytest.raises(SwtError, match=r"^fill 0.5 does not fit the int8 output: use a float dtype$"):
        sliding_window_transpose(x, 6, 2, stride=3, fill=0.5)
    with pytest.raises(SwtError, match=r"^fill 300 does not fit the int8 output: use dtype int16$"):
        sliding_window_transpose(x, 6, 2, stride=3, fill=300)


@pytest.mark.parametrize("kwargs, message", [
    (dict(reduce="max"), "reduce must be 'sum' or 'mean', got 'max'"),
    (dict(weight="hamming"), "unknown weight 'hamming': use uniform, hann, triangle or gaussian"),
    (dict(weight=np.ones((3, 2))), "weight of shape (3, 2) does not fit the kernel 2x2: it needs shape (2, 2)"),
    (dict(weight=np.array([[1.0, 0.0], [1.0, 1.0]])),
     "weight must be positive everywhere: the weight array of shape (2, 2) has 1 elements <= 0 (smallest 0), "
     "which would leave pixels without a weight"),
    (dict(weight=np.array([[1.0, np.nan], [1.0, 1.0]])),
     "weight must be finite: the weight array of shape (2, 2) has 1 NaN or infinite elements"),
    (dict(weight=np.ones((2, 2), bool)), "weight must hold real numbers, got bool (the weight array of shape (2, 2))"),
    (dict(fill="lots"), "fill must be a number, got 'lots'"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(SwtError) as err:
        sliding_window_transpose(np.ones((1, 3, 3, 2, 2)), 4, 2, **kwargs)
    assert str(err.value) == message


def test_module_takes_reduce_weight_and_fill():
    rng = np.random.default_rng(5)
    image = rng.standard_normal((1, 2, 11, 11))
    m = SlidingWindowTranspose(11, 4, stride=3, padding=1, reduce="mean", weight="triangle", fill=0)
    np.testing.assert_allclose(m(sliding_window(image, 4, stride=3, padding=1)), image, rtol=1e-12)
    assert repr(m) == ("SlidingWindowTranspose(output_size=11, kernel_size=4, padding=1, stride=3, dilation=1, "
                       "reduce='mean', weight='triangle')")
    with pytest.raises(SwtError, match="unknown weight 'box'"):
        SlidingWindowTranspose(10, 4, weight="box")


# Streaming: the divisor once per run, memory counted.

def test_the_divisor_is_computed_once_for_all_blocks(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 2, 7, 7, 4, 4)).astype(np.float32)
    np.save(tmp_path / "w.npy", x)
    calls = []
    real = blend_module.coverage_weights
    monkeypatch.setattr(blend_module, "coverage_weights", lambda *a: calls.append(1) or real(*a))
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "out.npy", "-k", "4", "-s", "2", "-p", "1", "-o", "14",
                    "--reduce", "mean", "--weight", "hann", "--batch-size", "1", "-q")
    assert result.exit_code == 0, result.stderr
    assert len(calls) == 1
    want = sliding_window_transpose(x, 14, 4, stride=2, padding=1, reduce="mean", weight="hann")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-6)


def test_memory_estimate_counts_the_weighted_copy():
    geometry = Geometry.from_args(4, stride=2)
    plan = plan_fold((8, 3, 15, 15, 4, 4), geometry, 32)
    f32 = np.dtype(np.float32)
    plain = Transform("fold", plan, f32, f32).bytes_per_item()
    mean = Transform("fold", plan, f32, f32, blend=Blend((4, 4), "mean")).bytes_per_item()
    weighted = Transform("fold", plan, f32, f32, blend=Blend((4, 4), "mean", "hann")).bytes_per_item()
    assert mean == plain
    assert weighted == plain + 15 * 15 * 16 * 4


# The command line.

def test_cli_mean_weight_and_fill(tmp_path):
    rng = np.random.default_rng(7)
    image = rng.standard_normal((2, 3, 20, 17)).astype(np.float32)
    np.save(tmp_path / "img.npy", image)
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "w.h5", "-k", "5", "-s", "4", "-q").exit_code == 0
    result = invoke("fold", tmp_path / "w.h5", tmp_path / "back.npy", "--reduce", "mean", "--weight", "gaussian",
                    "--fill", "nan", "-q")
    assert result.exit_code == 0, result.stderr
    back = np.load(tmp_path / "back.npy")
    assert back.dtype == np.float32 and back.shape == image.shape
    np.testing.assert_allclose(back[..., :17, :17], image[..., :17, :17], rtol=1e-5, atol=1e-6)
    assert np.isnan(back[..., 17:, :]).all() and not np.isnan(back[..., :17, :17]).any()


def test_cli_weight_from_a_npy_file(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 6, 6, 3, 3))
    w = rng.uniform(0.5, 2.0, (3, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "weights.npy", w)
    assert invoke("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "3", "-o", "8", "--weight",
                  tmp_path / "weights.npy", "-q").exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), sliding_window_transpose(x, 8, 3, weight=w), rtol=1e-12)
    np.save(tmp_path / "bad.npy", np.ones((3, 2)))
    result = invoke("fold", tmp_path / "x.npy", tmp_path / "z.npy", "-k", "3", "--weight", tmp_path / "bad.npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: weight of shape (3, 2) does not fit the kernel 3x3: it needs shape (3, 3)\n"
    assert not (tmp_path / "z.npy").exists()


def test_cli_rejects_unknown_weights_and_integer_mean_dtypes(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(2 * 4 * 4 * 2 * 2, dtype=np.int32).reshape(2, 4, 4, 2, 2))
    bad = invoke("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "2", "--weight", "hamming")
    assert bad.exit_code == 2
    assert ("Invalid value for '--weight': 'hamming' is neither a window (uniform, hann, triangle, gaussian) "
            "nor a .npy file of weights") in bad.stderr
    intmean = invoke("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "2", "--reduce", "mean", "--dtype", "int32")
    assert intmean.exit_code == 2  # a usage error: the options do not combine
    assert intmean.stderr == ("Error: Invalid value for '--dtype': a mean fold has fractional results: use a float dtype, "
                              "not int32 (see 'swt fold -h')\n")
    ok = invoke("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "2", "--reduce", "mean", "-q")
    assert ok.exit_code == 0 and np.load(tmp_path / "y.npy").dtype == np.float64
