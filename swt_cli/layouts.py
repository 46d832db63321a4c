"""PyTorch's fold layout ``(..., C*K1*...*KD, L)`` beside MegEngine's ``(..., C, I1..ID, K1..KD)``.

``torch.nn.functional.unfold`` puts kernel offset ``(k1, .., kD)`` of channel ``c`` on row
``c*prod(K) + flat(k1, .., kD)`` and window ``(i1, .., iD)`` on column ``L = flat(i1, .., iD)`` (both
row-major). Converting is a reshape and a transpose: :func:`from_torch` returns a view, :func:`to_torch`
copies. PyTorch implements only 2-d folds; 1-d and 3-d use the same flattening.

>>> import numpy as np
>>> t = np.arange(2 * 4 * 6).reshape(1, 2 * 4, 6)           # C=2, kernel 2x2, grid 2x3
>>> m = from_torch(t, kernel=(2, 2), grid=(2, 3))
>>> m.shape
(1, 2, 2, 3, 2, 2)
>>> int(m[0, 1, 0, 2, 1, 0]) == int(t[0, 1 * 4 + 1 * 2 + 0, 0 * 3 + 2])
True
>>> np.array_equal(to_torch(m, 2), t)
True
"""

from __future__ import annotations

import math

from .choices import LAYOUTS  # noqa: F401 (imported from here by callers)
from .errors import SwtError
from .formats import ArrayReader, ArrayWriter, create_writer
from .geometry import fmt_dims, fmt_shape
from .protocols import Reader


def megengine_shape(torch_shape, kernel, grid) -> tuple:
    """The MegEngine shape ``(..., C, *grid, *kernel)`` of windows stored as ``(..., C*prod(K), L)``."""
    torch_shape, kernel, grid = tuple(torch_shape), tuple(kernel), tuple(grid)
    if len(torch_shape) < 2:
        raise SwtError(
            f"torch layout windows need at least 2 axes (C*{'*'.join('K' * len(kernel))}, L), got shape "
            f"{fmt_shape(torch_shape)}"
        )
    rows, cols = torch_shape[-2:]
    per_channel = math.prod(kernel)
    if rows % per_channel:
        raise SwtError(
            f"torch layout windows of shape {fmt_shape(torch_shape)}: axis -2 holds {rows} rows, not a multiple of "
            f"the {per_channel} elements of a {fmt_dims(kernel)} kernel (it holds channels x kernel elements)"
        )
    if cols != math.prod(grid):
        raise SwtError(
            f"torch layout windows of shape {fmt_shape(torch_shape)}: the last axis holds {cols} windows, but the "
            f"geometry gives a {fmt_dims(grid)} grid of {math.prod(grid)}: check --output-size and the geometry"
        )
    return torch_shape[:-2] + (rows // per_channel,) + grid + kernel


def torch_shape(megengine_shape, ndim: int) -> tuple:
    """The torch shape ``(..., C*prod(K), L)`` of windows ``(..., C, *grid, *kernel)``."""
    shape = tuple(megengine_shape)
    if len(shape) < 2 * ndim + 1:
        raise SwtError(
            f"the torch layout needs a channel axis: windows of shape {fmt_shape(shape)} have none "
            f"(torch's unfold takes (N, C, H, W) or (C, H, W) images)"
        )
    lead, grid, kernel = shape[:-2 * ndim - 1], shape[-2 * ndim:-ndim], shape[-ndim:]
    return lead + (shape[-2 * ndim - 1] * math.prod(kernel), math.prod(grid))


def from_torch(x, kernel, grid):
    """Windows ``(..., C*prod(K), L)`` as a MegEngine-layout view ``(..., C, *grid, *kernel)``."""
    kernel, grid = tuple(kernel), tuple(grid)
    shape = megengine_shape(x.shape, kernel, grid)
    d = len(kernel)
    lead = len(shape) - 2 * d  # batch axes and the channel axis
    y = x.reshape(shape[:lead] + kernel + grid)
    return y.transpose(tuple(range(lead)) + tuple(range(lead + d, lead + 2 * d)) + tuple(range(lead, lead + d)))


def to_torch(x, ndim: int):
    """Windows ``(..., C, *grid, *kernel)`` in torch's layout ``(..., C*prod(K), L)`` (a copy)."""
    target = torch_shape(x.shape, ndim)
    lead = x.ndim - 2 * ndim
    perm = tuple(range(lead)) + tuple(range(lead + ndim, lead + 2 * ndim)) + tuple(range(lead, lead + ndim))
    return x.transpose(perm).reshape(target)


def _torch_index(index, n_lead: int, per_channel: int) -> tuple:
    """A block index over MegEngine's leading axes (..., C) as one over torch's (..., C*prod(K))."""
    index = tuple(index)
    if len(index) <= n_lead:
        return index
    if len(index) > n_lead + 1:
        raise SwtError("a torch layout block can split the batch and channel axes only")
    sl = index[n_lead]
    start, stop = sl.start or 0, sl.stop
    if sl.step not in (None, 1):
        raise SwtError("a torch layout block must be a contiguous range of channels")
    return index[:n_lead] + (slice(start * per_channel, None if stop is None else stop * per_channel),)


class TorchFoldReader(ArrayReader):
    """A reader of torch-layout windows that reads blocks in MegEngine's layout (views, no copies)."""

    #: Its blocks are a conversion of the stored array: Dask workers, which open the file themselves, cannot read them.
    converts = True

    def __init__(self, inner: Reader, kernel, grid):
        self.inner = inner
        self.kernel, self.grid = tuple(kernel), tuple(grid)
        self.location, self.dtype, self.attrs = inner.location, inner.dtype, inner.attrs
        self.sequential = getattr(inner, "sequential", False)
        self.shape = megengine_shape(inner.shape, self.kernel, self.grid)
        self._n_lead = len(inner.shape) - 2

    def read(self, index: tuple, out=None):  # the block is a view of another layout: nothing to read into
        block = self.inner.read(_torch_index(index, self._n_lead, math.prod(self.kernel)))
        return from_torch(block, self.kernel, self.grid)

    def describe(self) -> dict:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


class TorchUnfoldWriter(ArrayWriter):
    """A writer that takes MegEngine-layout window blocks and stores them in torch's layout."""

    def __init__(self, inner: ArrayWriter, ndim: int, n_lead: int, per_channel: int):
        self.inner, self.ndim, self.n_lead, self.per_channel = inner, ndim, n_lead, per_channel
        self.parallel_safe = getattr(inner, "parallel_safe", False)

    def write(self, index: tuple, block) -> None:
        self.inner.write(_torch_index(index, self.n_lead, self.per_channel), to_torch(block, self.ndim))

    def commit(self) -> None:
        self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()

    def __getattr__(self, name):  # anything else a caller needs (e.g. a path) comes from the real writer
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def create_torch_writer(spec, shape, dtype, attrs=None, chunks=None, compression=None, overwrite=False, *, ndim: int,
                        **kwargs) -> TorchUnfoldWriter:
    """Like :func:`swt_cli.formats.create_writer` for windows ``shape`` in MegEngine's layout, storing
    them in torch's; ``chunks`` (MegEngine's) become whole channels' rows and all columns."""
    shape = tuple(shape)
    target = torch_shape(shape, ndim)
    n_lead = len(target) - 2
    per_channel = math.prod(shape[-ndim:])
    if chunks is not None:
        chunks = tuple(chunks)[:n_lead] + (max(1, chunks[n_lead]) * per_channel, max(1, target[-1]))
    inner = create_writer(spec, target, dtype, attrs=attrs, chunks=chunks, compression=compression,
                          overwrite=overwrite, **kwargs)
    return TorchUnfoldWriter(inner, ndim, n_lead, per_channel)
