"""Fold (sliding-window transpose) and unfold on arrays, NumPy or CuPy alike.

>>> import numpy as np
>>> windows = np.ones((1, 1, 3, 3, 2, 2), np.float32)          # (N, C, IH, IW, KH, KW)
>>> sliding_window_transpose(windows, (4, 4), 2, stride=1)[0, 0]
array([[1., 2., 2., 1.],
       [2., 4., 4., 2.],
       [2., 4., 4., 2.],
       [1., 2., 2., 1.]], dtype=float32)
"""

from __future__ import annotations

import itertools

import numpy as np

from .backend import accumulator_dtype, array_module, as_array, cast_result, result_dtype
from .errors import SwtError
from .geometry import FoldPlan, Geometry, UnfoldPlan, fmt_shape, plan_fold, plan_unfold


def sliding_window_transpose(inp, output_size, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None):
    """Sum windows back onto the image positions they were cut from (MegEngine's semantics).

    ``inp``: ``(..., I1..ID, K1..KD)`` -> ``(..., O1..OD)``; D (1, 2 or 3) is the length of any tuple
    argument, else 2. ``output_size=None`` takes the smallest size that fits the window grid.

    >>> sliding_window_transpose(np.ones((2, 3, 31, 31, 3, 3)), 64, 3, stride=2).shape
    (2, 3, 64, 64)
    """
    x = as_array(inp)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
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


def _context(op: str, x, plan) -> str:
    return f"{op} of {x.dtype} input of shape {fmt_shape(x.shape)} with {plan.geometry.describe()}"


def _allocate(xp, shape, dtype, context):
    try:
        return xp.zeros(shape, dtype)
    except MemoryError:
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        raise SwtError(f"{context}: not enough memory for {nbytes} bytes of shape {fmt_shape(shape)}") from None


def fold(x, plan: FoldPlan, out_dtype=None):
    """Fold a checked ``plan``: windows ``plan.input_shape`` -> images ``plan.output_shape``."""
    xp = array_module(x)
    out_dtype = np.dtype(out_dtype or x.dtype)
    acc_dtype = accumulator_dtype(x.dtype, out_dtype)
    context = _context("fold", x, plan)
    buf = _allocate(xp, plan.batch + plan.padded_size, acc_dtype, context)
    fold_into(buf, x, plan, context)
    crop = (Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(plan.geometry.padding, plan.output_size))
    return cast_result(buf[crop], out_dtype, xp, context)


def fold_into(buf, x, plan: FoldPlan, context: str = "fold"):
    """Add every window of ``x`` onto the padded image buffer ``buf`` (``plan.batch + plan.padded_size``)."""
    g = plan.geometry
    checked = buf.dtype.itemsize == 8 and buf.dtype.kind in "iu" and x.dtype.itemsize == 8
    for offsets in itertools.product(*(range(k) for k in g.kernel)):
        target = (Ellipsis,) + tuple(
            slice(w * d, w * d + s * (n - 1) + 1, s)
            for w, d, s, n in zip(offsets, g.dilation, g.stride, plan.grid)
        )
        source = x[(Ellipsis,) + offsets]
        if checked:
            _add_checked(buf, target, source, context)
        else:
            buf[target] += source


def _add_checked(buf, target, source, context):
    """``buf[target] += source`` for 64-bit integers, refusing to wrap around."""
    before = buf[target]
    after = before + source.astype(buf.dtype)
    if buf.dtype.kind == "u":
        wrapped = after < before
    else:
        wrapped = (source > 0) & (after < before) | (source < 0) & (after > before)
    if wrapped.any():
        raise SwtError(f"{context}: sums overflow {buf.dtype.name}: use dtype float64")
    buf[target] = after


def unfold(x, plan: UnfoldPlan, out_dtype=None):
    """Unfold a checked ``plan``: images ``plan.input_shape`` -> windows ``plan.output_shape``."""
    xp = array_module(x)
    out_dtype = np.dtype(out_dtype or x.dtype)
    g = plan.geometry
    nd = g.ndim
    context = _context("unfold", x, plan)
    if any(g.padding):
        padded = _allocate(xp, plan.batch + tuple(s + 2 * p for s, p in zip(plan.size, g.padding)), x.dtype, context)
        padded[(Ellipsis,) + tuple(slice(p, p + s) for p, s in zip(g.padding, plan.size))] = x
        x = padded
    spans = tuple(d * (k - 1) + 1 for k, d in zip(g.kernel, g.dilation))
    axes = tuple(range(x.ndim - nd, x.ndim))
    view = xp.lib.stride_tricks.sliding_window_view(x, spans, axis=axes)
    # view: (..., S1-span1+1, ..., span1, ...); pick every stride-th window and every dilation-th element.
    pick = (Ellipsis,) + tuple(slice(0, s * (n - 1) + 1, s) for s, n in zip(g.stride, plan.grid)) + tuple(
        slice(None, None, d) for d in g.dilation
    )
    windows = view[pick]
    try:
        result = xp.ascontiguousarray(windows)
    except MemoryError:
        raise SwtError(f"{context}: not enough memory for the output of shape {fmt_shape(plan.output_shape)}") from None
    return cast_result(result, out_dtype, xp, context)
