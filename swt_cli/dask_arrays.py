"""Dask arrays: a fold or unfold as one lazy, blockwise step of the caller's own Dask graph.

:func:`blockwise` maps a function of NumPy (or CuPy) arrays, the public function itself with its
arguments bound, over the blocks of a ``dask.array.Array``. The leading (batch, channel) axes keep their
chunks; the core axes (the window grid and kernel of a fold, the image of an unfold) are merged into one
chunk where they are split, since every window of an image may land on any part of it. Each image is
folded on its own, and swt's kernels split only the leading axes, so the result is the NumPy result, bit
for bit, whatever the chunks. The output's shape and dtype come from a call on an empty (zero-image)
block, which checks the arguments too: errors arise when the graph is built, not when it runs.

One block, its windows and its output, must fit the memory of whoever computes it: the smallest worker's
memory limit where a ``distributed`` client is current, else this machine's memory and swap (or its
cgroup's limit). A block that would not is refused when the graph is built, with a rechunk that fits.

Nothing here imports Dask until a Dask array arrives.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

from .backend import accumulator_dtype, array_module
from .errors import SwtError
from .geometry import fmt_shape


def blockwise(call: Callable[[Any], Any], x, core_ndim: int, op: str):
    """``call`` (a function of one NumPy or CuPy array whose last ``core_ndim`` axes it transforms, the leading
    ones passing through) over the blocks of the Dask array ``x``: a lazy Dask array.

    ``op`` (``"fold"`` or ``"unfold"``) names the operation in messages and graph keys; a fold counts an
    accumulator of the output's size where its dtype differs from the output's.
    """
    import dask.array as da
    from dask.base import tokenize

    if any(math.isnan(c) for chunks in x.chunks for c in chunks):
        raise SwtError(f"the Dask array of shape {x.shape} has chunks of unknown size: call x.compute_chunk_sizes() "
                       f"before the {op}")
    xp = array_module(x._meta)
    lead = x.ndim - core_ndim
    if lead < 0:  # too few axes: the call names what is missing, reading nothing (a zero-strided view)
        call(xp.lib.stride_tricks.as_strided(xp.empty(1, x.dtype), x.shape, (0,) * x.ndim))
        raise SwtError(f"{op} needs at least {core_ndim} axes, got shape {fmt_shape(x.shape)}")
    # The output's core shape and dtype, and every argument checked, from a block of no images.
    empty = xp.empty((0,) * max(lead, 1) + tuple(x.shape[lead:]), x.dtype)
    try:
        probe = call(empty)
    except SwtError as err:  # its message names the empty block's shape: name the caller's array instead
        raise SwtError(str(err).replace(f"of shape {fmt_shape(empty.shape)}", f"of shape {fmt_shape(x.shape)}")) from None
    core_out = tuple(probe.shape[max(lead, 1):])
    out_dtype = probe.dtype
    if any(len(x.chunks[axis]) > 1 for axis in range(lead, x.ndim)):
        x = x.rechunk({axis: -1 for axis in range(lead, x.ndim)})
    item_bytes = math.prod(x.shape[lead:]) * x.dtype.itemsize + math.prod(core_out) * out_dtype.itemsize
    if op == "fold":
        acc = accumulator_dtype(x.dtype, out_dtype)
        item_bytes += math.prod(core_out) * acc.itemsize if acc != out_dtype else 0
    _check_block_memory(x, lead, item_bytes, op)
    index_in = tuple(range(x.ndim))
    index_out = index_in[:lead] + tuple(range(x.ndim, x.ndim + len(core_out)))
    return da.blockwise(
        call, index_out, x, index_in,
        new_axes=dict(zip(index_out[lead:], core_out)),
        concatenate=True,  # the core axes are one chunk: each call gets one block
        dtype=out_dtype,
        meta=xp.empty((0,) * len(index_out), out_dtype),
        name=f"swt-{op}-{tokenize(call, x)}",
    )


def memory_limit() -> tuple[int | None, str]:
    """The bytes one block may take and where that limit comes from: the smallest worker's memory limit of
    the current ``distributed`` client, else this machine's memory and swap or its cgroup's limit."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            client = distributed.default_client()
        except ValueError:  # no client: the graph runs on a local scheduler
            client = None
        if client is not None:
            limits = [w.get("memory_limit") for w in client.scheduler_info().get("workers", {}).values()]
            limits = [int(limit) for limit in limits if limit]
            if limits:
                return min(limits), "the memory limit of the smallest Dask worker"
    from .pipeline import cgroup_memory_limit
    from .pipeline import memory_limit as machine_limit

    found = [(limit, what) for limit, what in ((machine_limit(), "this machine's memory and swap"),
                                               (cgroup_memory_limit(), "this job's cgroup memory limit")) if limit]
    return min(found) if found else (None, "")


def _check_block_memory(x, lead: int, item_bytes: int, op: str) -> None:
    """Refuse a graph whose largest block (of the leading axes' chunks) could not fit its worker."""
    limit, where = memory_limit()
    if limit is None:
        return
    items = math.prod(max(chunks) for chunks in x.chunks[:lead]) if lead else 1
    core = fmt_shape(tuple(x.shape[lead:]))
    if item_bytes > limit:
        raise SwtError(f"a {op} of one image ({core} per item of the leading axes) needs about {item_bytes:,} bytes "
                       f"with its output, more than {where} ({limit:,} bytes): swt splits only the leading axes, "
                       f"so one image must fit")
    if items * item_bytes > limit:
        raise SwtError(f"a {op} of blocks of {items} images of {core} needs about {items * item_bytes:,} bytes each, "
                       f"more than {where} ({limit:,} bytes): rechunk the leading axes, e.g. "
                       f"x.rechunk({_fitting_chunks(x.shape[:lead], limit // item_bytes)})")


def _fitting_chunks(lead_shape, fit: int) -> dict[int, int]:
    """Chunks of the leading axes that hold at most ``fit`` images: whole trailing axes while they fit.

    >>> _fitting_chunks((10, 3), 5)
    {0: 1, 1: 3}
    """
    chunks = {}
    for axis in range(len(lead_shape) - 1, -1, -1):
        size = max(1, min(lead_shape[axis], fit))
        chunks[axis] = size
        fit = max(1, fit // size)
    return dict(sorted(chunks.items()))

