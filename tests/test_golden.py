"""Every MegEngine 1.13.0 reference case, through the library."""

import numpy as np
import pytest
from golden import golden_cases, tolerance

from swt_cli import SlidingWindow, SlidingWindowTranspose, sliding_window, sliding_window_transpose

CASES = golden_cases()


@pytest.mark.parametrize("name,params,x,y", CASES, ids=[c[0] for c in CASES])
def test_golden_case(name, params, x, y):
    geometry = dict(
        kernel_size=params["kernel_size"],
        padding=params["padding"],
        stride=params["stride"],
        dilation=params["dilation"],
    )
    if params["op"] == "fold":
        got = sliding_window_transpose(x, params["output_size"], **geometry)
        via_module = SlidingWindowTranspose(params["output_size"], **geometry)(x)
    else:
        got = sliding_window(x, **geometry)
        via_module = SlidingWindow(**geometry)(x)
    assert got.dtype == y.dtype and got.shape == y.shape
    tol = tolerance(y.dtype)
    np.testing.assert_allclose(got.astype(np.float64), y.astype(np.float64), rtol=tol, atol=tol)
    np.testing.assert_array_equal(via_module, got)


def test_golden_file_covers_both_ops_and_dtypes():
    ops = {(c[1]["op"], c[1]["dtype"]) for c in CASES}
    assert ops == {("fold", "float32"), ("fold", "float16"), ("unfold", "float32"), ("unfold", "float16")}
    assert len(CASES) == 48
