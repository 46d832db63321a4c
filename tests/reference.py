"""Plain-loop references: slow, obvious, independent of swt's kernels."""

import itertools

import numpy as np


def fold_loops(x, output_size, kernel, stride, padding, dilation, acc=np.float64):
    """Windows (..., *grid, *kernel) -> images (..., *output_size), one element at a time."""
    nd = len(kernel)
    batch, grid = x.shape[: -2 * nd], x.shape[-2 * nd : -nd]
    out = np.zeros(batch + tuple(output_size), acc)
    for b in np.ndindex(*batch):
        for i in itertools.product(*(range(g) for g in grid)):
            for w in itertools.product(*(range(k) for k in kernel)):
                pos = tuple(i[a] * stride[a] - padding[a] + w[a] * dilation[a] for a in range(nd))
                if all(0 <= pos[a] < output_size[a] for a in range(nd)):
                    out[b + pos] += x[b + i + w]
    return out


def unfold_loops(x, kernel, stride, padding, dilation):
    """Images (..., *size) -> windows (..., *grid, *kernel), zero outside the image."""
    nd = len(kernel)
    batch, size = x.shape[:-nd], x.shape[-nd:]
    grid = tuple((size[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in range(nd))
    out = np.zeros(batch + grid + tuple(kernel), x.dtype)
    for b in np.ndindex(*batch):
        for i in itertools.product(*(range(g) for g in grid)):
            for w in itertools.product(*(range(k) for k in kernel)):
                pos = tuple(i[a] * stride[a] - padding[a] + w[a] * dilation[a] for a in range(nd))
                if all(0 <= pos[a] < size[a] for a in range(nd)):
                    out[b + i + w] = x[b + pos]
    return out


def window_order_dtype(dtype):
    """The accumulator of swt's summation rule: float16 sums in float32, integers in 64 bits."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind in "iu":
        return np.dtype(np.uint64 if dtype == np.uint64 else np.int64)
    return dtype


def fold_window_order(x, output_size, kernel, stride, padding, dilation, acc=None):
    """MegEngine's order: whole windows added into a zeroed padded output, windows in row-major order of
    the grid, in ``acc`` (default: the rule's accumulator of ``x.dtype``), then the padding cropped.

    Returns the sums in ``acc``; cast once to the output dtype to compare with a fold.
    """
    nd = len(kernel)
    acc = window_order_dtype(x.dtype) if acc is None else np.dtype(acc)
    batch, grid = x.shape[: -2 * nd], x.shape[-2 * nd : -nd]
    size = tuple(max(output_size[a] + 2 * padding[a], (grid[a] - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1)
                 for a in range(nd))
    buf = np.zeros(batch + size, acc)
    for i in itertools.product(*(range(g) for g in grid)):
        target = (Ellipsis,) + tuple(
            slice(i[a] * stride[a], i[a] * stride[a] + (kernel[a] - 1) * dilation[a] + 1, dilation[a]) for a in range(nd)
        )
        buf[target] += x[(slice(None),) * len(batch) + i].astype(acc)
    return buf[(Ellipsis,) + tuple(slice(padding[a], padding[a] + output_size[a]) for a in range(nd))]
