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
