"""How many windows cover each output element of a fold, from integer arithmetic per axis.

Window ``i`` at kernel offset ``w`` lands on ``i*stride - padding + w*dilation``: along one axis the
elements a window grid covers are a union of ``kernel`` arithmetic progressions. A window is a box of
points, so the number of windows covering an output element is the product of per-axis counts; the
least and the most are products of the per-axis least and most, and the covered elements are the
product of the per-axis covered counts. Nothing here allocates arrays of the output's size: huge axes are
handled segment by segment (between the points where a kernel offset's progression starts or ends).

>>> c = fold_coverage((64, 64), Geometry.from_args(3, stride=2))
>>> c.grid, c.min_overlap, c.max_overlap, c.uncovered
((31, 31), 0, 4, 127)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SwtError
from .geometry import Geometry, axis_name, grid_size

if TYPE_CHECKING:
    import numpy as np

#: Axes up to this padded length are counted with a NumPy array where the kernel is larger than
#: SEGMENTS_KERNEL_LIMIT; longer axes, and any axis of a smaller kernel, segment by segment.
ARRAY_LIMIT = 1 << 22

#: Segment by segment costs O(kernel**2) Python steps whatever the axis's length: for kernels up to this
#: size that is quicker than importing NumPy, which ``swt plan`` without an input then never does.
SEGMENTS_KERNEL_LIMIT = 64


@dataclass(frozen=True)
class AxisCoverage:
    """Coverage along one axis: the least and most windows over an element, and elements covered."""

    size: int
    least: int
    most: int
    covered: int

    @property
    def uncovered(self) -> int:
        return self.size - self.covered


def axis_counts(size: int, kernel: int, stride: int, padding: int, dilation: int, grid: int | None = None) -> np.ndarray:
    """Windows covering each of the ``size`` elements of one axis, as int64 (an array of ``size``).

    >>> axis_counts(7, 3, 2, 0, 1)
    array([1, 1, 2, 1, 2, 1, 1])
    """
    import numpy as np

    grid = grid_size(size, kernel, stride, padding, dilation) if grid is None else grid
    if grid < 1:
        return np.zeros(size, np.int64)
    reach = stride * (grid - 1) + dilation * (kernel - 1) + 1
    buf = np.zeros(max(reach, size + padding), np.int64)
    for w in range(kernel):
        buf[w * dilation: w * dilation + stride * (grid - 1) + 1: stride] += 1
    return buf[padding: padding + size]


def _segments(size, kernel, stride, padding, dilation, grid) -> AxisCoverage:
    """Exact coverage of one axis without an array of ``size``: O(kernel) segments of O(kernel) work."""
    lo, hi = padding, padding + size  # output elements in padded coordinates u = o + padding
    span = stride * (grid - 1)
    points = {lo, hi}
    for w in range(kernel):
        for x in (w * dilation, w * dilation + span + 1):
            if lo < x < hi:
                points.add(x)
    ordered = sorted(points)
    least, most, covered = None, 0, 0
    for x0, x1 in zip(ordered, ordered[1:]):
        # Offsets whose progression spans [x0, x1): w*d <= x0 and w*d + span >= x1 - 1; a range of w.
        w_lo = max(0, -(-(x1 - 1 - span) // dilation))
        w_hi = min(kernel - 1, x0 // dilation)
        multiplicity: dict = {}
        for w in range(w_lo, w_hi + 1):
            r = (w * dilation) % stride
            multiplicity[r] = multiplicity.get(r, 0) + 1
        seg_covered, seg_least, seg_most = 0, None, 0
        for r, m in multiplicity.items():
            n = (x1 - 1 - r) // stride - (x0 - 1 - r) // stride  # elements u in [x0, x1) with u = r mod s
            if n:
                seg_covered += n
                seg_most = max(seg_most, m)
                seg_least = m if seg_least is None else min(seg_least, m)
        if seg_covered < x1 - x0:
            seg_least = 0
        covered += seg_covered
        most = max(most, seg_most)
        least = seg_least if least is None else min(least, seg_least)
    return AxisCoverage(size, least or 0, most, covered)


def axis_coverage(size: int, kernel: int, stride: int, padding: int, dilation: int, grid: int | None = None,
                  method: str = "auto") -> AxisCoverage:
    """Coverage along one axis; ``method`` ``'array'`` or ``'segments'`` forces one way (for tests)."""
    grid = grid_size(size, kernel, stride, padding, dilation) if grid is None else grid
    if grid < 1:
        return AxisCoverage(size, 0, 0, 0)
    if method == "array" or (method == "auto" and kernel > SEGMENTS_KERNEL_LIMIT and size + padding <= ARRAY_LIMIT):
        counts = axis_counts(size, kernel, stride, padding, dilation, grid)
        return AxisCoverage(size, int(counts.min()), int(counts.max()), int((counts != 0).sum()))
    return _segments(size, kernel, stride, padding, dilation, grid)


@dataclass(frozen=True)
class Coverage:
    """Coverage of a fold's output by its window grid, with the per-axis counts behind it."""

    geometry: Geometry
    grid: tuple
    output_size: tuple
    axes: tuple  # AxisCoverage per axis

    @property
    def min_overlap(self) -> int:
        return math.prod(a.least for a in self.axes)

    @property
    def max_overlap(self) -> int:
        return math.prod(a.most for a in self.axes)

    @property
    def total(self) -> int:
        return math.prod(self.output_size)

    @property
    def uncovered(self) -> int:
        return self.total - math.prod(a.covered for a in self.axes)

    @property
    def uncovered_fraction(self) -> float:
        return self.uncovered / self.total if self.total else 0.0

    def warnings(self) -> list:
        """Sentences on what leaves output elements uncovered (empty when every element is covered)."""
        if not self.uncovered:
            return []
        nd = self.geometry.ndim
        notes = [
            f"{self.uncovered} of {self.total} output elements ({100 * self.uncovered_fraction:.3g}%) are in no "
            f"window: a fold leaves them 0 (or --fill)"
        ]
        g = self.geometry
        for a, cov in enumerate(self.axes):
            span = g.dilation[a] * (g.kernel[a] - 1) + 1
            name = axis_name(a, nd)
            if g.stride[a] > span:
                notes.append(
                    f"stride {g.stride[a]} exceeds the window span {span} along {name}, leaving gaps of "
                    f"{g.stride[a] - span} between windows"
                )
            elif cov.uncovered:
                notes.append(f"{cov.uncovered} of {cov.size} positions along {name} are in no window")
        return notes


def fold_coverage(output_size, geometry: Geometry, grid=None) -> Coverage:
    """Coverage of an output of ``output_size`` by the windows of ``geometry`` (``grid`` from the size
    where not given)."""
    output_size = tuple(int(o) for o in output_size)
    if len(output_size) != geometry.ndim:
        raise SwtError(f"output size {output_size} has {len(output_size)} axes, the geometry {geometry.ndim}")
    grid = geometry.grid(output_size) if grid is None else tuple(grid)
    axes = tuple(
        axis_coverage(o, k, s, p, d, g)
        for o, g, k, s, p, d in zip(output_size, grid, geometry.kernel, geometry.stride, geometry.padding, geometry.dilation)
    )
    return Coverage(geometry, grid, output_size, axes)


def coverage_counts(output_size, geometry: Geometry, grid=None) -> np.ndarray:
    """Windows covering each element of one output image (int64 of ``output_size``): for pictures."""
    import numpy as np

    output_size = tuple(int(o) for o in output_size)
    grid = geometry.grid(output_size) if grid is None else tuple(grid)
    result = np.ones((), np.int64)
    for o, g, k, s, p, d in zip(output_size, grid, geometry.kernel, geometry.stride, geometry.padding, geometry.dilation):
        result = np.multiply.outer(result, axis_counts(o, k, s, p, d, g))
    return result


def coverage_picture(output_size, geometry: Geometry, grid=None) -> np.ndarray:
    """The 2-d picture of :func:`coverage_counts`: a 1-d output as one row, a 3-d one's middle slice."""
    import numpy as np

    output_size = tuple(int(o) for o in output_size)
    grid = geometry.grid(output_size) if grid is None else tuple(grid)
    per_axis = [
        axis_counts(o, k, s, p, d, g)
        for o, g, k, s, p, d in zip(output_size, grid, geometry.kernel, geometry.stride, geometry.padding, geometry.dilation)
    ]
    if len(per_axis) == 1:
        return per_axis[0][None, :]
    picture = np.multiply.outer(per_axis[-2], per_axis[-1])
    if len(per_axis) == 3:
        picture = picture * per_axis[0][output_size[0] // 2]
    return picture
