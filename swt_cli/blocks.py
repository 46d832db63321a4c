"""Block arithmetic: how the leading (batch) axes of a job are cut into blocks, and which items of the
flattened leading axes a block covers. Shared by the pipeline, the shared outputs of sharded runs and
the Dask runs, so that all three cut the same way.

>>> b = plan_blocks((10, 3), (10, 3, 8, 8), 4, 1000, 6000)
>>> layout_of(b.indexes, (10, 3)), item_range(b.indexes[1], (10, 3))
({'axis': 0, 'extent': 2}, (6, 12))
>>> layout_indexes((10, 3), layout_of(b.indexes, (10, 3))) == b.indexes
True
>>> shard_part(10, 1, 3), shard_part(10, 2, 3)
(range(3, 6), range(6, 10))
>>> missing([(0, 10), (20, 25)], 30)
[(10, 20), (25, 30)]
>>> fmt_items([(40, 80)], 120, (30, 4))
'batch rows 10-19 of 30'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .formats.base import chunk_shape

#: Chunk size that HDF5 and Zarr outputs aim for: large enough to stream, small enough to stay in budget.
CHUNK_BYTES = 4 << 20

#: Working memory a block aims for when the budget allows more. Blocks this small keep reading, the
#: kernel and writing overlapped from the first block to the last, and large enough that the kernel's
#: per-block costs do not show (BENCHMARKS.md, "Figures behind the pipeline's constants"). A larger
#: budget still lets one large item through whole.
BLOCK_BYTES = 128 << 20


@dataclass
class Blocks:
    """How the leading axes are cut: ``index`` slices per block, and the output chunks they align with."""

    indexes: list
    chunks: tuple
    over_budget: bool = False


def plan_blocks(lead_shape, out_shape, out_itemsize, bytes_per_item, budget, batch_size=None) -> Blocks:
    """Blocks of the leading axes that fit ``budget`` bytes (and ``BLOCK_BYTES`` where a row fits that),
    aligned with the output's chunks.

    Blocks split the first axis; where one of its items alone is over budget, the second as well.

    >>> b = plan_blocks((10, 3), (10, 3, 8, 8), 4, 1000, 6000)
    >>> [i[0] for i in b.indexes], b.chunks
    ([slice(0, 2, None), slice(2, 4, None), slice(4, 6, None), slice(6, 8, None), slice(8, 10, None)], (2, 3, 8, 8))
    """
    lead_shape = tuple(lead_shape)
    if not lead_shape:
        return Blocks([()], chunk_shape(out_shape, out_itemsize, CHUNK_BYTES), False)
    per_row = bytes_per_item * math.prod(lead_shape[1:])
    split_axis, over = 0, False
    if batch_size is not None:
        extent = batch_size
    else:
        extent = min(budget, BLOCK_BYTES) // max(per_row, 1) or min(1, budget // max(per_row, 1))
        if extent < 1 and len(lead_shape) > 1:
            split_axis = 1
            extent = budget // max(bytes_per_item * math.prod(lead_shape[2:]), 1)
        if extent < 1:
            extent, over = 1, True
    extent = max(1, min(extent, lead_shape[split_axis]) if lead_shape[split_axis] else 1)
    chunks = list(chunk_shape(out_shape, out_itemsize, CHUNK_BYTES, max_rows=extent if split_axis == 0 else None))
    if split_axis == 1:
        chunks[0] = 1
    if chunks[split_axis] < extent:
        extent -= extent % chunks[split_axis]
    chunks[split_axis] = min(chunks[split_axis], extent)
    indexes: list[tuple[slice, ...]] = []
    if split_axis == 0:
        indexes = [(slice(i, min(i + extent, lead_shape[0])),) for i in range(0, lead_shape[0], extent)]
    else:
        for i in range(lead_shape[0]):
            indexes += [(slice(i, i + 1), slice(j, min(j + extent, lead_shape[1]))) for j in range(0, lead_shape[1], extent)]
    return Blocks(indexes, tuple(chunks), over)


def block_items(index, lead_shape) -> int:
    """Elements of the leading axes in a block."""
    sizes = [len(range(*sl.indices(lead_shape[a]))) for a, sl in enumerate(index)]
    return math.prod(sizes) * math.prod(lead_shape[len(index):])


def shard_part(n_blocks: int, index: int, count: int) -> range:
    """The contiguous run of blocks shard ``index`` of ``count`` does."""
    return range(index * n_blocks // count, (index + 1) * n_blocks // count)


def layout_of(indexes, lead_shape) -> dict:
    """The cut of the leading axes that ``indexes`` (from :func:`plan_blocks`) make: axis and extent."""
    if not lead_shape or not indexes:
        return {"axis": 0 if lead_shape else None, "extent": 1}
    axis = len(indexes[0]) - 1
    sl = indexes[0][axis]
    return {"axis": axis, "extent": max(1, sl.stop - sl.start)}


def layout_indexes(lead_shape, layout: dict) -> list:
    """The blocks of ``layout``, the same as ``plan_blocks`` made them."""
    lead_shape = tuple(lead_shape)
    axis, extent = layout["axis"], int(layout["extent"])
    if not lead_shape:
        return [()]
    if axis == 0:
        return [(slice(i, min(i + extent, lead_shape[0])),) for i in range(0, lead_shape[0], extent)]
    return [(slice(i, i + 1), slice(j, min(j + extent, lead_shape[1])))
            for i in range(lead_shape[0]) for j in range(0, lead_shape[1], extent)]


def item_range(index, lead_shape) -> tuple[int, int]:
    """Items ``[start, stop)`` of the flattened leading axes that a block covers."""
    if not lead_shape:
        return 0, 1
    offset, stride = 0, math.prod(lead_shape)
    count = 0
    for axis, sl in enumerate(index):
        stride //= max(lead_shape[axis], 1)
        start, stop, _ = sl.indices(lead_shape[axis])
        offset += start * stride
        count = (stop - start) * stride
    return offset, offset + count


def merge(ranges) -> list:
    """Sorted, non-overlapping union of ``[start, stop)`` ranges."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if stop <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def missing(done, total: int) -> list:
    """The parts of ``[0, total)`` not covered by ``done``."""
    gaps, position = [], 0
    for start, stop in merge(done):
        if start > position:
            gaps.append((position, min(start, total)))
        position = max(position, stop)
    if position < total:
        gaps.append((position, total))
    return [g for g in gaps if g[0] < g[1]]


def covered(index, lead_shape, done_merged) -> bool:
    """Whether a block's items all lie in the (merged) done ranges."""
    start, stop = item_range(index, lead_shape)
    return any(a <= start and stop <= b for a, b in done_merged)


def fmt_items(ranges, total: int, lead_shape) -> str:
    """``'batch rows 10-19 of 30'``, or items of the flattened leading axes where rows are split."""
    row = math.prod(lead_shape[1:]) if lead_shape else 1
    if row and all(a % row == 0 and b % row == 0 for a, b in ranges):
        unit, ranges, total = "batch rows", [(a // row, b // row) for a, b in ranges], total // row
    else:
        unit = "items (of the flattened leading axes)"
    parts = [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges]
    if unit == "batch rows" and len(parts) == 1 and ranges[0][1] == ranges[0][0] + 1:
        unit = "batch row"
    return f"{unit} {', '.join(parts)} of {total}"
