"""One summation order, the same bits on every path (issue 12, part 1).

The rule (README "Summation order", swt_cli.kernels): each covered output element is 0 plus its
contributions added one at a time in the accumulator dtype, windows in row-major order of the window
grid, then cast once to the output dtype. Every comparison here is bit for bit (``np.array_equal``)
against ``reference.fold_window_order``, MegEngine's own loop, on inputs built so that the order shows:
5% of the values are scaled by 1e8, and three windows holding 1, 1e8 and -1e8 land on one element.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from clitools import invoke, run_in_process, run_swt
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fold_window_order
from test_kernel_paths import HAVE_NUMBA, PATHS, kernel
from test_kernels import geometries

from swt_cli import SwtError, kernels, sliding_window, sliding_window_transpose
from swt_cli.backend import accumulator_dtype
from swt_cli.blend import Blend, coverage_weights, window
from swt_cli.geometry import Geometry, plan_fold

REPO = Path(__file__).parents[1]
#: MegEngine's bit-exact cases: ../shared/golden beside the repository (a copy beside the clone in CI).
GOLDEN_EXACT = Path(__file__).parents[2] / "shared" / "golden" / "megengine_exact_cases.npz"

# (kernel, stride, padding, dilation, output): overlap, fold_pairs (float stride >= 2 along the last
# axis, odd and even strides and kernels), dilation, padding wider than a stride, tiles, 1-d and 3-d,
# tiles with an edge the grid does not reach (copied as wide items on the NumPy path).
GEOMETRIES = [
    ((3, 3), (1, 1), (1, 1), (1, 1), (9, 10)),
    ((3, 3), (2, 2), (1, 1), (1, 1), (11, 12)),
    ((4, 5), (2, 3), (0, 2), (1, 1), (10, 13)),
    ((3, 2), (2, 1), (1, 2), (1, 3), (7, 8)),
    ((5, 5), (2, 2), (2, 2), (2, 2), (12, 12)),
    ((2, 2), (2, 2), (0, 0), (1, 1), (8, 9)),
    ((4,), (1,), (2,), (1,), (17,)),
    ((2, 3, 2), (1, 2, 1), (1, 1, 0), (1, 1, 2), (5, 7, 6)),
    ((3,), (3,), (0,), (1,), (10,)),
    ((2, 3), (2, 3), (0, 0), (1, 1), (9, 10)),
]
DTYPES = [np.float32, np.float64, np.float16, np.complex64, np.int16, np.int64]


def _grid(kernel_size, stride, padding, dilation, output):
    return tuple((o + 2 * p - d * (k - 1) - 1) // s + 1 for k, s, p, d, o in zip(kernel_size, stride, padding, dilation, output))


def cancelling(shape, dtype=np.float32, seed=0):
    """Random values, 5% of them scaled by 1e8 (float16: 1e4, integers: 30), so float sums cancel."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        x = rng.integers(-100, 100, shape)
        x[rng.random(shape) < 0.05] *= 30
        return x.astype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    x[rng.random(shape) < 0.05] *= 1e4 if dtype == np.float16 else 1e8
    return x.astype(dtype)


def _want(x, geometry, out_dtype=None):
    k, s, p, d, o = geometry
    out_dtype = np.dtype(out_dtype or x.dtype)
    acc = accumulator_dtype(x.dtype, out_dtype)
    return fold_window_order(x, o, k, s, p, d, acc=acc).astype(out_dtype)


def _fold(x, geometry, **kwargs):
    k, s, p, d, o = geometry
    return sliding_window_transpose(x, o, k, p, s, d, **kwargs)


def _settings(path):
    """Every threads / block-size setting of one path (block constants of 1 cut every plane apart)."""
    return [kernel(path, 1), kernel(path, 2), kernel(path, 2, tiny_blocks=True), kernel(path, 1, tiny_blocks=True)]


# ---- the rule itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_three_windows_landing_on_one_element(path):
    """Windows holding 1, then 1e8, then -1e8 on one element: (0 + 1 + 1e8) - 1e8 is 0 in float32."""
    x = np.zeros((3, 3), np.float32)  # grid 3, kernel 3, stride 1: element 2 gets window i at offset 2 - i
    x[0, 2], x[1, 1], x[2, 0] = 1, 1e8, -1e8
    for setting in _settings(path):
        with setting:
            got = sliding_window_transpose(x, 5, (3,))
        assert got[2] == 0.0  # kernel offsets in row-major order would give 1.0
        np.testing.assert_array_equal(got, fold_window_order(x, (5,), (3,), (1,), (0,), (1,)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("path", PATHS)
def test_every_setting_gives_the_window_order_bits(path, geometry, dtype):
    x = cancelling((2, 3) + _grid(*geometry) + geometry[0], dtype, seed=len(geometry[0]))
    want = _want(x, geometry)
    for setting in _settings(path):
        with setting:
            got = _fold(x, geometry)
        assert got.dtype == want.dtype
        assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_float16_sums_in_float32_and_is_cast_once(geometry):
    x = cancelling((2,) + _grid(*geometry) + geometry[0], np.float16, seed=3)
    want = fold_window_order(x, geometry[4], *geometry[:4], acc=np.float32)
    for path in ("numpy",) + (("numba",) if HAVE_NUMBA else ()):
        with kernel(path, 2):
            assert np.array_equal(_fold(x, geometry), want.astype(np.float16))
            assert np.array_equal(_fold(x, geometry, dtype=np.float32), want)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_the_array_operations_path_follows_the_rule(geometry):
    """The CuPy path (_fold_offsets), run with NumPy as its array module: the same code, the same bits."""
    x = cancelling((2, 3) + _grid(*geometry) + geometry[0], np.float32, seed=4)
    k, s, p, d, _ = geometry
    geo = Geometry.from_args(k, p, s, d)
    plan = plan_fold(x.shape, geo, geometry[4])
    acc = np.dtype(np.float32)
    got = kernels._fold_offsets(np, x, plan, acc, acc, "fold")
    assert np.array_equal(got, _want(x, geometry))
    x = cancelling(x.shape, np.float16, seed=4)
    half = kernels._fold_offsets(np, x, plan, acc, np.dtype(np.float16), "fold")
    assert np.array_equal(half, _want(x, geometry))


def test_numpy_kernel_pairs_keep_the_order():
    """fold_pairs (two columns per complex add) on its own, against the reference."""
    geometry = ((3, 5), (2, 3), (1, 2), (1, 1), (13, 20))
    x = cancelling((4,) + _grid(*geometry) + geometry[0], np.float32, seed=5)
    k, s, p, d, _ = geometry
    geo = Geometry.from_args(k, p, s, d)
    plan = plan_fold(x.shape, geo, geometry[4])
    assert kernels._pairs_apply(x, x.dtype, geo)
    out = np.full(plan.output_shape, np.nan, np.float32)
    kernels.fold_pairs(np, x, out, plan)
    assert np.array_equal(out, _want(x, geometry))


@settings(max_examples=80, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64, np.float16]))
def test_numpy_and_numba_paths_agree_to_the_bit(g, seed, dtype):
    x = cancelling(g["batch"] + g["grid"] + g["kernel"], dtype, seed)
    geometry = (g["kernel"], g["stride"], g["padding"], g["dilation"], g["output"])
    want = _want(x, geometry)
    for path in ("numpy",) + (("numba",) if HAVE_NUMBA else ()):
        for threads in (1, 2):
            with kernel(path, threads, tiny_blocks=threads == 2):
                assert np.array_equal(_fold(x, geometry), want), (path, threads)


# ---- MegEngine ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_megengine_sliding_window_transpose(path):
    """MegEngine's own test (imperative/python/test/unit/functional/test_functional.py,
    test_sliding_window_transpose, Apache-2.0), with its assert_equal: a float32 loop over the windows
    in row-major order, each window's elements added in turn into a zeroed output."""
    import itertools

    N, C, H, W = 2, 3, 7, 8
    ph, pw = 1, 2
    sh, sw = 2, 1
    wh, ww = 3, 2
    dh, dw = 1, 3

    def s(i, p, s, d, w):
        return (i + p * 2 - (w - 1) * d - 1) // s + 1

    for seed in range(5):
        rng = np.random.default_rng(seed)
        inp = rng.normal(size=(N, C, s(H, ph, sh, dh, wh), s(W, pw, sw, dw, ww), wh, ww)).astype(np.float32)
        if seed:  # beyond MegEngine's normal values: cancelling sums, where order shows
            inp[rng.random(inp.shape) < 0.05] *= 1e8
        gt_out = np.zeros((N, C, H, W), dtype=np.float32)
        for n, c in itertools.product(*map(range, inp.shape[:2])):
            oh = 0
            for ih in range(-ph, H + ph - dh * (wh - 1), sh):
                ow = 0
                for iw in range(-pw, W + pw - dw * (ww - 1), sw):
                    for kh, kw in itertools.product(*map(range, inp.shape[-2:])):
                        ih2 = ih + dh * kh
                        iw2 = iw + dw * kw
                        if ih2 >= 0 and ih2 < H and iw2 >= 0 and iw2 < W:
                            gt_out[n, c, ih2, iw2] += inp[n, c, oh, ow, kh, kw]
                    ow += 1  # noqa: SIM113 - MegEngine's loop as written
                oh += 1  # noqa: SIM113
        for setting in _settings(path):
            with setting:
                out = sliding_window_transpose(inp, (H, W), (wh, ww), padding=(ph, pw), stride=(sh, sw), dilation=(dh, dw))
            np.testing.assert_equal(gt_out, out)


def _golden_exact():
    if not GOLDEN_EXACT.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{GOLDEN_EXACT} is missing: CI keeps the golden folder beside the clone")
        pytest.skip(f"{GOLDEN_EXACT} is not here (it lies beside the repository)")
    with np.load(GOLDEN_EXACT) as z:
        names = sorted({k.split("/")[0] for k in z.files if k.startswith("case")})
        return [(json.loads(str(z[n + "/params"])), z[n + "/x"], z[n + "/y"]) for n in names]


def _megengine_args(params):
    return {"output_size": params["output_size"], "kernel_size": params["kernel_size"], "padding": params["padding"],
            "stride": params["stride"], "dilation": params["dilation"]}


def _pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


@pytest.mark.parametrize("path", PATHS)
def test_golden_exact_cases_on_every_setting(path):
    cases = _golden_exact()
    assert len(cases) == 24
    for params, x, y in cases:
        assert params["op"] == "fold" and x.dtype == np.float32
        for setting in _settings(path):
            with setting:
                got = sliding_window_transpose(x, **_megengine_args(params))
            assert np.array_equal(got, y), params


def test_golden_exact_cases_on_the_array_operations_path():
    for params, x, y in _golden_exact():
        geo = Geometry.from_args(params["kernel_size"], params["padding"], params["stride"], params["dilation"])
        plan = plan_fold(x.shape, geo, _pair(params["output_size"]))
        acc = np.dtype(np.float32)
        assert np.array_equal(kernels._fold_offsets(np, x, plan, acc, acc, "fold"), y), params


def test_golden_exact_cases_through_the_cli(tmp_path):
    for i, (params, x, y) in enumerate(_golden_exact()):
        src, out = tmp_path / f"x{i}.npy", tmp_path / f"y{i}.npy"
        np.save(src, x)
        flags = []
        for flag, key in (("-k", "kernel_size"), ("-s", "stride"), ("-p", "padding"), ("-d", "dilation"), ("-o", "output_size")):
            flags += [flag, ",".join(map(str, _pair(params[key])))]
        result = invoke("fold", src, out, *flags, "-q")
        assert result.exit_code == 0, result.stderr
        assert np.array_equal(np.load(out), y), params


# ---- weights, means, fills ---------------------------------------------------------------------------


def _blend_reference(x, geometry, reduce, weight, out_dtype, fill=0):
    """Multiply, round to the accumulator, sum in window order; a mean divides once by the float64
    window-order sum of the weights (scaled to a largest of 1), rounded to the accumulator."""
    k, s, p, d, o = geometry
    acc = accumulator_dtype(x.dtype, np.dtype(out_dtype))
    real = np.zeros((), acc).real.dtype
    w = np.ones(k) if weight is None else np.asarray(weight, np.float64)
    if reduce == "mean":
        w = w / w.max()
    products = x * w.astype(real) if weight is not None else x
    sums = fold_window_order(products, o, k, s, p, d, acc=acc)
    divisor = fold_window_order(np.broadcast_to(w, _grid(*geometry) + k).astype(np.float64), o, k, s, p, d)
    if reduce == "mean":
        sums = sums / np.where(divisor > 0, divisor, 1).astype(real)
    result = sums.astype(out_dtype)
    result[..., divisor == 0] = fill
    return result


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("weight", [None, "hann", "gaussian", "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("path", PATHS)
def test_weighted_and_mean_folds_on_every_setting(path, dtype, weight, reduce):
    geometry = ((4, 3), (3, 2), (1, 0), (1, 1), (15, 13))  # stride 3 > 4 - 1: some elements uncovered
    x = cancelling((2, 2) + _grid(*geometry) + geometry[0], dtype, seed=7)
    if weight == "random":
        weight = np.random.default_rng(8).uniform(0.01, 3.0, geometry[0])
    w = window(weight, geometry[0]) if isinstance(weight, str) else weight
    want = _blend_reference(x, geometry, reduce, w, dtype, fill=-2.5)
    for setting in _settings(path):
        with setting:
            got = _fold(x, geometry, reduce=reduce, weight=weight, fill=-2.5)
        assert got.dtype == want.dtype
        assert np.array_equal(got, want), setting


def test_divisor_is_summed_in_window_order():
    geometry = ((3,), (1,), (0,), (1,), (5,))
    w = np.array([1.0, 1e-16, 1e-16])  # in window order 1e-16 + 1e-16 + 1 rounds up; 1 + 1e-16 + 1e-16 does not
    plan = plan_fold((3, 3), Geometry.from_args((3,)), (5,))
    want = fold_window_order(np.broadcast_to(w, (3, 3)).astype(np.float64), *geometry[4:], *geometry[:4])
    assert np.array_equal(coverage_weights(plan, w), want)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_tiny_weights_never_give_nan_or_inf(reduce, tmp_path):
    """A float64 weight file with 1e-60 entries, folded in float32: computed (mean) or refused (sum)."""
    w = np.full((3, 3), 1e-60)
    w[1, 1] = 4e-60
    x = cancelling((2, 5, 5, 3, 3), np.float32, seed=9)
    if reduce == "mean":
        got = sliding_window_transpose(x, 11, 3, stride=2, reduce="mean", weight=w)
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, _blend_reference(x, ((3, 3), (2, 2), (0, 0), (1, 1), (11, 11)), "mean", w, np.float32))
    else:
        with pytest.raises(SwtError, match=r"^a weighted sum fold in float32 needs weights from 1.18e-38 to 3.4e\+38, "
                                           r"got 1e-60 to 4e-60: scale the weights, use reduce mean, or dtype float64$"):
            sliding_window_transpose(x, 11, 3, stride=2, weight=w)
        assert np.isfinite(sliding_window_transpose(x, 11, 3, stride=2, weight=w, dtype=np.float64)).all()
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "x.npy", x)
    done = run_swt("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "3", "-s", "2", "-o", "11", "--reduce", reduce,
                   "--weight", tmp_path / "w.npy")
    if reduce == "mean":
        assert done.returncode == 0, done.stderr
        assert np.isfinite(np.load(tmp_path / "y.npy")).all()
    else:
        assert done.returncode == 1 and not (tmp_path / "y.npy").exists()
        assert done.stderr.decode().count("\n") == 1 and b"needs weights from" in done.stderr


def test_narrow_gaussian_weights():
    """Weights spanning more than float32 can: a float32 mean is refused up front, float64 computes it."""
    g = np.exp(-0.5 * ((np.arange(9) - 4.0) / 0.2) ** 2)
    w = np.multiply.outer(g, g)  # from 1 down to 1.9e-174
    x = cancelling((1, 4, 4, 9, 9), np.float32, seed=10)
    for reduce in ("mean", "sum"):
        with pytest.raises(SwtError, match="float32 needs weights"):
            sliding_window_transpose(x, 15, 9, stride=2, reduce=reduce, weight=w)
        got = sliding_window_transpose(x, 15, 9, stride=2, reduce=reduce, weight=w, dtype=np.float64)
        assert np.isfinite(got).all()
    assert np.isfinite(sliding_window_transpose(x, 15, 9, stride=2, reduce="mean", weight=w ** 0.125)).all()  # down to 1e-22


def test_mean_weights_are_scaled_to_a_largest_of_one():
    w = np.full((2, 2), 1e30)
    x = np.full((1, 3, 3, 2, 2), 2.0, np.float32)
    got = sliding_window_transpose(x, 4, 2, reduce="mean", weight=w)  # 1e30**2 and their sums overflow float32
    np.testing.assert_array_equal(got, np.full((1, 4, 4), 2.0, np.float32))
    assert Blend((2, 2), "mean", w).weight.max() == 1.0


def test_integer_fill_is_exact():
    big = 2**53 + 1  # float64 would round it to 2**53
    x = cancelling((1, 2, 2, 2, 2), np.int64, seed=11)
    got = sliding_window_transpose(x, 6, 2, stride=3, fill=big)
    assert got.dtype == np.int64 and int(got[0, 2, 2]) == big
    got = sliding_window_transpose(x.astype(np.uint32), 6, 2, stride=3, fill=2**64 - 1, dtype=np.uint64)
    assert int(got[0, 2, 2]) == 2**64 - 1
    with pytest.raises(SwtError, match=r"^fill 9007199254740993 is not exactly a float64 value \(the float64 output "
                                       r"would round it\): use dtype int64$"):
        sliding_window_transpose(x, 6, 2, stride=3, fill=big, dtype=np.float64)
    with pytest.raises(SwtError, match=r"^fill 16777217 is not exactly a float32 value .*: use dtype float64$"):
        sliding_window_transpose(x.astype(np.float32), 6, 2, stride=3, fill=2**24 + 1)
    # uint64 would hold the fill but not the int64 data's negative values: no integer dtype holds both
    with pytest.raises(SwtError, match=r"^fill 9223372036854775808 does not fit the int64 output: no integer dtype holds "
                                       r"both 9223372036854775808 and int64 data: use dtype float64"):
        sliding_window_transpose(x, 6, 2, stride=3, fill=2**63)
    with pytest.raises(SwtError, match=r"^fill 9223372036854775808 does not fit the uint32 output: use dtype uint64$"):
        sliding_window_transpose(np.abs(x).astype(np.uint32), 6, 2, stride=3, fill=2**63)
    with pytest.raises(SwtError, match=r"^fill 1e\+300 overflows the float32 output: use dtype float64$"):
        sliding_window_transpose(x.astype(np.float32), 6, 2, stride=3, fill=1e300)
    assert np.isnan(sliding_window_transpose(x.astype(np.float32), 6, 2, stride=3, fill=np.nan)[0, 2, 2])


def test_cli_integer_fill_is_exact(tmp_path):
    x = cancelling((1, 2, 2, 2, 2), np.int64, seed=12)
    np.save(tmp_path / "x.npy", x)
    result = invoke("fold", tmp_path / "x.npy", tmp_path / "y.npy", "-k", "2", "-s", "3", "-o", "6",
                    "--fill", "9007199254740993", "-q")
    assert result.exit_code == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int64 and int(y[0, 2, 2]) == 2**53 + 1
    assert invoke("fold", tmp_path / "x.npy", tmp_path / "z.npy", "-k", "2", "-s", "3", "-o", "6", "--fill", "-1.5e0",
                  "--dtype", "float32", "-q").exit_code == 0
    assert np.load(tmp_path / "z.npy")[0, 2, 2] == -1.5
    bad = invoke("fold", tmp_path / "x.npy", tmp_path / "w.npy", "-k", "2", "-s", "3", "-o", "6", "--fill", "lots")
    assert bad.exit_code == 2 and "fill must be a number, got 'lots'" in bad.stderr


# ---- through the command line ------------------------------------------------------------------------


CLI_GEOMETRY = ((3, 3), (2, 2), (1, 1), (1, 1), (15, 16))
CLI_FLAGS = ["-k", "3", "-s", "2", "-p", "1", "-o", "15,16"]


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact")
    x = cancelling((6, 2) + _grid(*CLI_GEOMETRY) + CLI_GEOMETRY[0], np.float32, seed=13)
    np.save(folder / "x.npy", x)
    np.save(folder / "h.npy", cancelling(x.shape, np.float16, seed=13))
    return folder, x


@pytest.mark.parametrize("path", PATHS)
def test_cli_settings_give_the_same_bits(cli_data, tmp_path, monkeypatch, path):
    folder, x = cli_data
    monkeypatch.setenv("SWT_KERNEL", path)  # read at each call: in process as in a real one
    want = _want(x, CLI_GEOMETRY)
    runs = {"default": [], "batch1": ["--batch-size", "1"], "threads1": ["--threads", "1"],
            "threads2": ["--threads", "2", "--batch-size", "4"]}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.npy"
        done = run_in_process("fold", folder / "x.npy", out, *CLI_FLAGS, *extra, "-q")
        assert done.returncode == 0, done.stderr
        assert np.array_equal(np.load(out), want), name
    half = run_in_process("fold", folder / "h.npy", tmp_path / "h.npy", *CLI_FLAGS, "--batch-size", "2", "-q")
    assert half.returncode == 0, half.stderr
    assert np.array_equal(np.load(tmp_path / "h.npy"), _want(np.load(folder / "h.npy"), CLI_GEOMETRY))


def test_cli_shards_into_zarr_and_pipes_give_the_same_bits(cli_data, tmp_path):
    folder, x = cli_data
    want = _want(x, CLI_GEOMETRY)
    out = tmp_path / "out.zarr"
    for i in range(2):
        result = invoke("fold", folder / "x.npy", out, *CLI_FLAGS, "--shard", f"{i}/2", "--batch-size", "1", "-q")
        assert result.exit_code == 0, result.stderr
    assert np.array_equal(zarr.open_array(str(out))[...], want)
    piped = run_swt("fold", "-", "-", *CLI_FLAGS, "-q", input=(folder / "x.npy").read_bytes())
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "piped.npy").write_bytes(piped.stdout)
    assert np.array_equal(np.load(tmp_path / "piped.npy"), want)
    # unfold | fold: the windows of a cancelling image, summed back.
    image = cancelling((3, 2, 15, 16), np.float32, seed=14)
    np.save(tmp_path / "img.npy", image)
    cut = run_swt("unfold", tmp_path / "img.npy", "-", "-k", "3", "-s", "2", "-p", "1", "-q")
    assert cut.returncode == 0, cut.stderr
    folded = run_swt("fold", "-", tmp_path / "back.npy", *CLI_FLAGS, "-q", input=cut.stdout)
    assert folded.returncode == 0, folded.stderr
    windows = sliding_window(image, 3, padding=1, stride=2)
    assert np.array_equal(np.load(tmp_path / "back.npy"), _want(windows, CLI_GEOMETRY))


def test_cli_mean_and_weights_give_the_same_bits(cli_data, tmp_path):
    folder, x = cli_data
    want = _blend_reference(x, CLI_GEOMETRY, "mean", window("hann", (3, 3)), np.float32)
    for extra in ([], ["--batch-size", "1", "--threads", "1"], ["--threads", "2"]):
        out = tmp_path / "m.npy"
        result = invoke("fold", folder / "x.npy", out, *CLI_FLAGS, "--reduce", "mean", "--weight", "hann", "--overwrite",
                        "-q", *extra)
        assert result.exit_code == 0, result.stderr
        assert np.array_equal(np.load(out), want), extra


@pytest.mark.slow
def test_cli_local_scheduler_gives_the_same_bits(cli_data, tmp_path):
    pytest.importorskip("distributed")
    folder, x = cli_data
    done = run_swt("fold", folder / "x.npy", tmp_path / "d.zarr", *CLI_FLAGS, "--scheduler", "local:2", "--batch-size", "2",
                   "-q", timeout=300)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(zarr.open_array(str(tmp_path / "d.zarr"))[...], _want(x, CLI_GEOMETRY))
