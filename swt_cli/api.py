"""The public array functions: fold (sliding-window transpose) and unfold of whole arrays, NumPy or CuPy.

They sit above :mod:`swt_cli.kernels` (the block kernels) and :mod:`swt_cli.blend` (mean, weights, fill),
so that neither of those imports the other's callers.

>>> import numpy as np
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> np.array_equal(sliding_window_transpose(sliding_window(x, 2, stride=2), 4, 2, stride=2), x)
True
"""

from __future__ import annotations

import numpy as np  # noqa: F401 (the docstrings' examples use it)

from .backend import as_array, result_dtype
from .blend import Blend
from .geometry import Geometry, plan_fold, plan_unfold
from .kernels import fold, unfold

__all__ = ["blended_transpose", "sliding_window", "sliding_window_transpose"]


def sliding_window_transpose(inp, output_size, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None,
                             reduce="sum", weight=None, fill=0):
    """Sum windows back onto the image positions they were cut from (MegEngine's semantics).

    ``inp``: ``(..., I1..ID, K1..KD)`` -> ``(..., O1..OD)``; D (1, 2 or 3) is the length of any tuple
    argument, else 2. ``output_size=None`` takes the smallest size that fits the window grid.
    ``reduce="mean"``, ``weight`` (a window name or an array of the kernel's shape) and ``fill`` (for
    elements no window covers) combine overlaps otherwise: see :mod:`swt_cli.blend`.

    >>> sliding_window_transpose(np.ones((2, 3, 31, 31, 3, 3)), 64, 3, stride=2).shape
    (2, 3, 64, 64)
    """
    x = as_array(inp)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
    if reduce != "sum" or weight is not None or not fill == 0:
        return blended_transpose(x, geometry, output_size, dtype=dtype, reduce=reduce, weight=weight, fill=fill)
    out_dtype = result_dtype(x.dtype, dtype)
    plan = plan_fold(x.shape, geometry, output_size, itemsize=out_dtype.itemsize)
    return fold(x, plan, out_dtype)


def sliding_window(inp, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None):
    """Cut images into windows, zero-padded at the borders (MegEngine's semantics).

    ``inp``: ``(..., S1..SD)`` -> ``(..., I1..ID, K1..KD)``.

    >>> sliding_window(np.ones((2, 3, 64, 64)), 3, stride=2).shape
    (2, 3, 31, 31, 3, 3)
    """
    x = as_array(inp)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation)
    out_dtype = result_dtype(x.dtype, dtype)
    plan = plan_unfold(x.shape, geometry, itemsize=out_dtype.itemsize)
    return unfold(x, plan, out_dtype)


def blended_transpose(x, geometry, output_size, *, dtype=None, reduce="sum", weight=None, fill=0):
    """:func:`sliding_window_transpose` with ``reduce``, ``weight`` and ``fill``."""
    x = as_array(x)
    blend = Blend(geometry.kernel, reduce, weight, fill)
    out_dtype = blend.output_dtype(x.dtype, dtype)
    plan = plan_fold(x.shape, geometry, output_size, itemsize=out_dtype.itemsize)
    return blend.fold(x, plan, out_dtype)

