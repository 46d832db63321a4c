"""CuPy arrays compute on the GPU through the same code; skipped where no CUDA GPU and CuPy are present."""

import numpy as np
import pytest
from golden import golden_cases, tolerance

from swt_cli import sliding_window, sliding_window_transpose

pytestmark = pytest.mark.gpu

CASES = golden_cases()


@pytest.mark.parametrize("name,params,x,y", CASES, ids=[c[0] for c in CASES])
def test_golden_cases_on_the_gpu(name, params, x, y):
    import cupy

    geometry = dict(kernel_size=params["kernel_size"], padding=params["padding"], stride=params["stride"],
                    dilation=params["dilation"])
    xg = cupy.asarray(x)
    got = (sliding_window_transpose(xg, params["output_size"], **geometry) if params["op"] == "fold"
           else sliding_window(xg, **geometry))
    assert isinstance(got, cupy.ndarray) and got.dtype == y.dtype
    tol = tolerance(y.dtype)
    np.testing.assert_allclose(cupy.asnumpy(got).astype(np.float64), y.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float16", "float64", "int8", "int64", "complex64"])
def test_gpu_matches_cpu_for_every_dtype(dtype):
    import cupy

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((2, 3, 9, 8, 3, 3)) * 10).astype(dtype)
    want = sliding_window_transpose(x, (19, 17), 3, stride=2, dtype=np.float64 if x.dtype.kind in "iu" else None)
    got = sliding_window_transpose(cupy.asarray(x), (19, 17), 3, stride=2,
                                   dtype=np.float64 if x.dtype.kind in "iu" else None)
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_gpu_mean_and_weighted_fold():
    import cupy

    rng = np.random.default_rng(9)
    image = rng.standard_normal((2, 3, 40, 36)).astype(np.float32)
    windows = sliding_window(cupy.asarray(image), 8, stride=4, padding=2)
    back = sliding_window_transpose(windows, (40, 36), 8, stride=4, padding=2, reduce="mean", weight="hann")
    np.testing.assert_allclose(cupy.asnumpy(back), image, rtol=1e-5, atol=1e-5)


def test_cli_device_gpu(tmp_path):
    from clitools import invoke

    name, params, x, y = next(c for c in CASES if c[1]["op"] == "fold" and c[1]["dtype"] == "float32")
    np.save(tmp_path / "w.npy", x)
    flag = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", "--device", "gpu", "-q",
                    "-k", flag(params["kernel_size"]), "-s", flag(params["stride"]), "-p", flag(params["padding"]),
                    "-d", flag(params["dilation"]), "-o", flag(params["output_size"]))
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), y, rtol=1e-5, atol=1e-5)


def test_out_on_the_gpu_and_mixed_kinds_refused():
    import cupy

    from swt_cli.errors import OptionError

    x = np.random.default_rng(9).standard_normal((2, 3, 9, 8, 3, 3)).astype(np.float32)
    out = cupy.full((2, 3, 19, 17), cupy.nan, cupy.float32)
    assert sliding_window_transpose(cupy.asarray(x), (19, 17), 3, stride=2, out=out) is out
    np.testing.assert_array_equal(cupy.asnumpy(out), cupy.asnumpy(sliding_window_transpose(cupy.asarray(x), (19, 17), 3, stride=2)))
    with pytest.raises(OptionError, match="out is a cupy"):
        sliding_window_transpose(x, (19, 17), 3, stride=2, out=out)
