"""Windows that cover the whole image: what an unfold leaves out, and the far-edge padding that fixes it.

An unfold keeps only what its window grid reaches: with kernel 64 and stride 64, a 477x720 image holds a
7x11 grid reaching 448x704, so 29 rows and 16 columns are in no window, and a later fold (even a mean)
cannot give them back. :func:`edge_loss` says how much is lost and which geometry would lose nothing;
:func:`pad_to_cover` pads the image's far edges (bottom, right, back) just enough for the grid to reach
everything, and :func:`crop` cuts a fold of the padded size back to the original one; ``sliding_window(...,
cover=True)`` and ``sliding_window_transpose(..., cover=True)`` in :mod:`swt_cli.api` compose them (this
module sits below api, which imports it).

Along one axis (image size ``S``, kernel ``k``, stride ``s``, padding ``p``, dilation ``d``), in padded
coordinates ``u = x + p`` window ``i`` covers ``u = i*s + w*d`` for ``w < k`` (see :mod:`swt_cli.geometry`).
Padding at the far edge adds windows but never moves one, so it can cover the whole image exactly when,
with enough windows, every ``u >= p`` is some ``i*s + w*d`` with ``i >= 0``: the offsets ``w*d`` must hit
every remainder modulo ``s`` (else the windows leave gaps everywhere: a stride longer than the kernel,
or a dilation sharing a factor with the stride), and hit it early enough (a dilated kernel can miss the
first few positions for good). Everything here is integer arithmetic per axis, without arrays, except the
array helpers at the end.

>>> g = Geometry.from_args(64, stride=64)
>>> loss = edge_loss((477, 720), g)
>>> loss.lost_per_axis, round(100 * loss.fraction, 1)
((29, 16), 8.2)
>>> cover_padding((477, 720), g)
(35, 48)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import SwtError
from .geometry import Geometry, as_tuple, axis_name, fmt_dims, grid_size

#: Per number of spatial axes: the words for one position along each axis (singular, plural), and for
#: one element of the image.
_UNITS = {
    1: ((("element", "elements"),), "elements"),
    2: ((("row", "rows"), ("column", "columns")), "pixels"),
    3: ((("slice", "slices"), ("row", "rows"), ("column", "columns")), "voxels"),
}


# ------------------------------------------------------------------------------------- one axis, integers


def _span(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


def _residue_gap(kernel: int, stride: int, dilation: int) -> bool:
    """True where the offsets ``w*d`` (``w < k``) miss a remainder modulo ``s``: then the windows leave a
    position uncovered every ``s``, however many there are. They hit every remainder exactly when ``s``
    and ``d`` share no factor (then ``w*d`` for ``w < s`` are ``s`` different remainders) and ``k >= s``."""
    return stride > 1 and (math.gcd(dilation, stride) != 1 or kernel < stride)


def _first_offsets(stride: int, dilation: int) -> list[int]:
    """Per remainder ``r`` modulo ``s``, the smallest kernel offset ``w`` with ``w*d = r (mod s)``.

    Only for geometries without a residue gap: ``d`` is invertible modulo ``s`` and ``w = r/d (mod s)``.
    """
    inverse = pow(dilation, -1, stride) if stride > 1 else 0
    return [r * inverse % stride for r in range(stride)]


def _near_holes(kernel: int, stride: int, padding: int, dilation: int) -> list[int]:
    """Image positions (``x = u - p``) that no window reaches however far the grid extends: ``u >= p`` with
    ``u < w_r*d`` for its remainder ``r`` (a dilated kernel's first offsets skip them). At most the first
    ``(k-1)*d`` positions; none for ``d = 1``. Only for geometries without a residue gap."""
    if dilation == 1:
        return []
    holes: list[int] = []
    for r, w in enumerate(_first_offsets(stride, dilation)):
        first = w * dilation  # the smallest covered u with remainder r
        u = padding + (r - padding) % stride  # the smallest u >= p with remainder r
        holes.extend(range(u - padding, first - padding, stride))
    return sorted(holes)


def _axis_reason(kernel: int, stride: int, padding: int, dilation: int) -> str | None:
    """Why padding at the far edge cannot cover this axis (a phrase), or None where it can."""
    span = _span(kernel, dilation)
    if _residue_gap(kernel, stride, dilation):
        if stride > span:
            return f"stride {stride} exceeds the window span {span}, leaving gaps of {stride - span} between windows"
        g = math.gcd(dilation, stride)
        if g > 1:
            return f"dilation {dilation} and stride {stride} reach only one position in {g}"
        return f"{kernel} kernel offsets {dilation} apart cannot reach every position {stride} apart"
    holes = _near_holes(kernel, stride, padding, dilation)
    if holes:
        where = ", ".join(str(h) for h in holes[:3]) + (", ..." if len(holes) > 3 else "")
        return f"no window reaches position{'s' if len(holes) > 1 else ''} {where} at the near edge"
    return None


def _covering_grid(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The fewest windows (along one axis, of a geometry that far padding can cover) that reach every image
    position ``u`` in ``[p, p + size)``: one more than the largest, over those ``u``, of the first window
    index ``i`` with ``u = i*s + w*d`` for some ``w < k``, which takes the largest such ``w``.

    That index grows with ``u`` within each remainder class once every offset fits (``u >= (k-1)*d``), so
    only the last ``s`` positions count there; below, the at most ``(k-1)*d`` positions are each taken.
    Undilated windows (``s <= k``) leave no gaps: the grid's reach alone counts.
    """
    lo, hi = padding, padding + size  # image positions, padded coordinates
    if dilation == 1:  # the windows reach every u up to (n-1)*s + k - 1, and no further
        return max(0, -(-(hi - kernel) // stride)) + 1
    first = _first_offsets(stride, dilation)

    def index(u: int) -> int:
        top = min(kernel - 1, u // dilation)
        w = top - (top - first[u % stride]) % stride  # the largest w <= top with the right remainder
        return (u - w * dilation) // stride

    full = (kernel - 1) * dilation  # from here on every offset fits
    most = 0
    for u in range(lo, min(hi, full)):
        most = max(most, index(u))
    for u in range(max(lo, full, hi - stride), hi):
        most = max(most, index(u))
    return most + 1


def _axis_cover_padding(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Zeros to add at the far edge so the windows reach all ``size`` positions: the least ``e`` with
    ``grid_size(size + e) >= `` :func:`_covering_grid` (more windows never cover less)."""
    need = _covering_grid(size, kernel, stride, padding, dilation)
    smallest = stride * (need - 1) + _span(kernel, dilation) - 2 * padding  # the least size with that grid
    return max(0, smallest - size)


def _axis_covered(size: int, kernel: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether the windows of an unfold of ``size`` reach every position (no far padding)."""
    if grid_size(size, kernel, stride, padding, dilation) < 1:
        return False
    if _axis_reason(kernel, stride, padding, dilation):  # gaps, which a short image may still escape: count
        from .coverage import axis_coverage

        return axis_coverage(size, kernel, stride, padding, dilation, method="segments").uncovered == 0
    return _axis_cover_padding(size, kernel, stride, padding, dilation) == 0


def _axis_ends(size: int, kernel: int, stride: int, padding: int, dilation: int) -> tuple[int, int]:
    """The uncovered positions before the first covered one and after the last, along one axis of an
    unfold of ``size`` (``(size, 0)`` where no window reaches the image at all)."""
    n = grid_size(size, kernel, stride, padding, dilation)
    lo, hi = padding, padding + size - 1  # image positions, padded coordinates
    firsts, lasts = [], []
    for w in range(kernel) if n >= 1 else ():
        base = w * dilation
        i = max(0, -(-(lo - base) // stride))  # the first window whose offset w is at or after lo
        if i < n and i * stride + base <= hi:
            firsts.append(i * stride + base)
        i = min(n - 1, (hi - base) // stride)  # the last window whose offset w is at or before hi
        if i >= 0 and i * stride + base >= lo:
            lasts.append(i * stride + base)
    if not firsts:
        return size, 0
    return min(firsts) - lo, hi - max(lasts)


# ----------------------------------------------------------------------------------------- geometry


def _check_size(size, geometry: Geometry) -> tuple[int, ...]:
    return as_tuple(tuple(size) if isinstance(size, (tuple, list)) else size, geometry.ndim, "image size", 1)


def check_coverable(geometry: Geometry) -> None:
    """Raise :class:`SwtError` where padding at the far edges cannot make the windows cover an image.

    Windows then leave gaps inside every image (a stride longer than the window's span, ``d*(k-1)+1``), or
    a dilated kernel misses positions for good; the message names a stride that covers.

    >>> check_coverable(Geometry.from_args(5, stride=7))
    Traceback (most recent call last):
    ...
    swt_cli.errors.SwtError: kernel 5, stride 7 cannot cover an image by padding its far edges: along height and width, stride 7 exceeds the window span 5, leaving gaps of 2 between windows: use stride 5
    """
    reasons = [_axis_reason(k, s, p, d) for k, s, p, d in zip(geometry.kernel, geometry.stride, geometry.padding,
                                                              geometry.dilation)]
    if not any(reasons):
        return
    nd = geometry.ndim
    groups: dict[str, list[str]] = {}
    for axis, reason in enumerate(reasons):
        if reason:
            groups.setdefault(reason, []).append(axis_name(axis, nd))
    why = "; ".join(f"along {' and '.join(names)}, {reason}" for reason, names in groups.items())
    raise SwtError(f"{geometry.describe()} cannot cover an image by padding its far edges: {why}: "
                   f"use stride {_fmt_values(covering_stride(geometry))}")


def covering_stride(geometry: Geometry) -> tuple[int, ...]:
    """Per axis, the largest stride up to the given one that far padding can cover (1 always can: the
    largest stride up to the window's span for an undilated kernel)."""
    result = []
    for k, s, p, d in zip(geometry.kernel, geometry.stride, geometry.padding, geometry.dilation):
        result.append(next(t for t in range(min(s, k), 0, -1) if _axis_reason(k, t, p, d) is None))
    return tuple(result)


def cover_padding(size, geometry: Geometry) -> tuple[int, ...]:
    """Per axis, the fewest zeros to add at the FAR edge (after the image's last position, besides the
    geometry's own padding on both sides) so that the windows of the unfold reach every position.

    >>> cover_padding((477, 720), Geometry.from_args(64, stride=48, padding=8))
    (3, 0)
    """
    size = _check_size(size, geometry)
    check_coverable(geometry)
    return tuple(_axis_cover_padding(o, k, s, p, d)
                 for o, k, s, p, d in zip(size, geometry.kernel, geometry.stride, geometry.padding, geometry.dilation))


def covered_size(size, geometry: Geometry) -> tuple[int, ...]:
    """The image size after :func:`cover_padding`: what the covering unfold cuts and its fold computes."""
    size = _check_size(size, geometry)
    return tuple(o + e for o, e in zip(size, cover_padding(size, geometry)))


# --------------------------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class AxisLoss:
    """The positions along one axis that no window of an unfold reaches."""

    size: int
    near: int  # before the first covered position
    far: int  # after the last covered position
    uncovered: int  # all of them, gaps between windows included

    @property
    def covered(self) -> int:
        return self.size - self.uncovered


@dataclass(frozen=True)
class EdgeLoss:
    """What an unfold of an image of ``size`` leaves outside every window, and geometries that lose nothing.

    ``cover``: the far padding of :func:`cover_padding` (None where far padding cannot cover);
    ``padding``: the smallest padding (both sides, at least the given one) that covers, per axis (None where
    none does); ``stride``: the largest stride up to the given one that covers, per axis (None where none does).
    """

    size: tuple[int, ...]
    geometry: Geometry
    axes: tuple[AxisLoss, ...]
    cover: tuple[int, ...] | None
    padding: tuple[int, ...] | None
    stride: tuple[int, ...] | None

    @property
    def lost_per_axis(self) -> tuple[int, ...]:
        """Positions along each axis in no window."""
        return tuple(a.uncovered for a in self.axes)

    @property
    def total(self) -> int:
        return math.prod(self.size)

    @property
    def lost(self) -> int:
        """Image elements in no window (a window is a box, so the covered ones are a product per axis)."""
        return self.total - math.prod(a.covered for a in self.axes)

    @property
    def fraction(self) -> float:
        return self.lost / self.total

    @property
    def gaps(self) -> bool:
        """True where far padding cannot cover the image (:func:`check_coverable` refuses the geometry)."""
        return self.cover is None

    def suggestion(self) -> str:
        """What would lose nothing, as the options that give it."""
        options = []
        if self.padding is not None:
            options.append(f"--padding {_fmt_values(self.padding)}")
        if self.stride is not None:
            options.append(f"--stride {_fmt_values(self.stride)}")
        alternatives = " or ".join(options)
        if self.gaps:
            cover = f"--cover with --stride {_fmt_values(covering_stride(self.geometry))}"
            return f"use {cover}" + (f", or e.g. {alternatives}" if alternatives else "")
        return "use --cover" + (f", or e.g. {alternatives}" if alternatives else "")

    def message(self) -> str:
        """One line for a warning: what is lost, how much, and what would lose nothing.

        >>> print(edge_loss((477, 720), Geometry.from_args(64, stride=64)).message())
        unfold of 477x720 with kernel 64, stride 64 leaves 29 rows and 16 columns (8.2% of the pixels) outside every window: use --cover, or e.g. --padding 24 or --stride 59,41
        >>> print(edge_loss((477, 720), Geometry.from_args(5, stride=7)).message())
        unfold of 477x720 with kernel 5, stride 7 leaves 137 rows and 205 columns (49.0% of the pixels) outside every window, in gaps that padding cannot fill: use --cover with --stride 5, or e.g. --stride 4,5
        """
        nd = self.geometry.ndim
        words, whole = _UNITS[nd]
        parts = [f"{n} {words[a][n != 1]}" for a, n in enumerate(self.lost_per_axis) if n]
        what = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        g = self.geometry
        if any(_residue_gap(k, s, d) for k, s, d in zip(g.kernel, g.stride, g.dilation)):
            gaps = ", in gaps that padding cannot fill"
        else:  # a dilated kernel that misses positions at the near edge: a padding there may reach them
            gaps = ", some at the near edge, which --cover cannot pad" if self.gaps else ""
        return (f"unfold of {fmt_dims(self.size)} with {self.geometry.describe()} leaves {what} "
                f"({_fmt_percent(self.fraction)} of the {whole}) outside every window{gaps}: {self.suggestion()}")


def edge_loss(size, geometry: Geometry) -> EdgeLoss | None:
    """What the unfold of an image of ``size`` leaves outside every window; None where nothing is lost.

    >>> edge_loss((477, 720), Geometry.from_args(64, stride=48, padding=8)).lost_per_axis
    (37, 0)
    >>> edge_loss((477, 720), Geometry.from_args(64, stride=(59, 41))) is None
    True
    """
    from .coverage import axis_coverage  # the exact count of covered positions, gaps between windows included

    size = _check_size(size, geometry)
    params = list(zip(size, geometry.kernel, geometry.stride, geometry.padding, geometry.dilation))
    axes = []
    for o, k, s, p, d in params:
        near, far = _axis_ends(o, k, s, p, d)
        covered = axis_coverage(o, k, s, p, d, method="segments").covered
        axes.append(AxisLoss(o, near, far, o - covered))
    if not any(a.uncovered for a in axes):
        return None
    coverable = not any(_axis_reason(k, s, p, d) for _, k, s, p, d in params)
    cover = tuple(_axis_cover_padding(*axis) for axis in params) if coverable else None
    return EdgeLoss(size, geometry, tuple(axes), cover, _nearest_padding(params), _nearest_stride(params))


def _nearest_padding(params) -> tuple[int, ...] | None:
    """Per axis the smallest padding at least the given one with which the windows reach everything; one
    value for all axes where the given paddings agree and one value does as well. None where no padding
    helps (gaps between windows)."""
    best = []
    for o, k, s, p, d in params:
        if _residue_gap(k, s, d):
            return None
        # From p >= span + s - 2 on, the grid outgrows the image by a whole window: this search ends there.
        limit = max(p, _span(k, d) + s - 2 + (k - 1) * d)
        best.append(next(t for t in range(p, limit + 1) if _axis_covered(o, k, s, t, d)))
    # A padding for every axis is at least the largest of these: it is the nearest if it does for all.
    if len({p for _, _, _, p, _ in params}) == 1 and all(_axis_covered(o, k, s, max(best), d) for o, k, s, _, d in params):
        return (max(best),) * len(params)
    return tuple(best)


def _nearest_stride(params) -> tuple[int, ...] | None:
    """Per axis the largest stride up to the given one with which the windows reach everything (beyond the
    kernel only a short image escapes the gaps, so an axis that loses nothing keeps its stride); one value
    for all axes where the given strides agree and one value does as well. None where no stride does (an
    image smaller than the window)."""
    best = []
    for o, k, s, p, d in params:
        found = next((t for t in range(s, 0, -1) if _axis_covered(o, k, t, p, d)), None)
        if found is None:
            return None
        best.append(found)
    # A stride for every axis is at most the smallest of these: it is the nearest if it does for all.
    if len({s for _, _, s, _, _ in params}) == 1 and all(_axis_covered(o, k, min(best), p, d) for o, k, _, p, d in params):
        return (min(best),) * len(params)
    return tuple(best)


def _fmt_values(values) -> str:
    """``'5'`` where every axis has the same value, else ``'59,41'`` (as the command line takes them)."""
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)


def _fmt_percent(fraction: float) -> str:
    percent = 100 * fraction
    return f"{percent:.1f}%" if percent >= 1 else f"{percent:.2g}%"


# ---------------------------------------------------------------------------------------------- record


def cover_record(size, geometry: Geometry) -> dict:
    """The keys a covering unfold adds to its ``swt_geometry`` record: the ORIGINAL image size (the fold
    crops back to it) and the padded size it cut (the fold computes on it).

    >>> cover_record((477, 720), Geometry.from_args(64, stride=64))
    {'cover': True, 'image_size': [477, 720], 'covered_size': [512, 768]}
    """
    size = _check_size(size, geometry)
    return {"cover": True, "image_size": list(size), "covered_size": list(covered_size(size, geometry))}


def recorded_fold_sizes(record: dict) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """From an unfold's ``swt_geometry`` record: ``(size the fold computes, size it crops to)``; the same
    twice for an unfold without ``cover``; None where the record holds no image size.

    >>> recorded_fold_sizes({"op": "unfold", "cover": True, "image_size": [477, 720], "covered_size": [512, 768]})
    ((512, 768), (477, 720))
    """
    image = record.get("image_size")
    if not image:
        return None
    image = tuple(int(v) for v in image)
    if not record.get("cover"):
        return image, image
    padded = record.get("covered_size")
    if not padded or len(padded) != len(image) or any(int(c) < i for c, i in zip(padded, image)):
        raise SwtError(f"the recorded swt geometry is inconsistent: cover with image size {fmt_dims(image)} needs a "
                       f"covered size at least as large on every axis, got {padded!r}")
    return tuple(int(v) for v in padded), image


# ----------------------------------------------------------------------------------------------- arrays


def fill_value(pad_value, dtype):
    """``pad_value`` as a scalar of ``dtype``; an error where that would change it (0.5 into integers)."""
    import numpy as np

    try:
        value = np.asarray(pad_value)
        cast = value.astype(dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise SwtError(f"pad value {pad_value!r} is not a number that {np.dtype(dtype)} holds ({err})") from None
    if value.shape != () or value.dtype.kind not in "biufc":
        raise SwtError(f"pad value must be one number, got {pad_value!r}")
    with np.errstate(invalid="ignore", over="ignore"):
        same = bool(cast == value) or bool(np.isnan(value) and np.isnan(cast))
    if not same:
        raise SwtError(f"pad value {pad_value!r} does not fit {np.dtype(dtype)}: use a value the images' dtype holds")
    return cast[()]


def pad_to_cover(x, geometry: Geometry, pad_value=0):
    """``x`` (``(..., *size)``) with ``pad_value`` added after the last position of each spatial axis, as
    :func:`cover_padding` says; ``x`` itself where none is needed. NumPy or CuPy alike.

    >>> import numpy as np
    >>> pad_to_cover(np.ones((2, 5)), Geometry.from_args(2, stride=2, ndim=2), pad_value=-1)
    array([[ 1.,  1.,  1.,  1.,  1., -1.],
           [ 1.,  1.,  1.,  1.,  1., -1.]])
    """
    from .backend import array_module, as_array

    x = as_array(x)
    nd = geometry.ndim
    if x.ndim < nd:
        raise SwtError(f"images of shape {tuple(x.shape)} have fewer than the geometry's {nd} spatial axes")
    size = tuple(x.shape[x.ndim - nd:])
    extra = cover_padding(size, geometry)
    if not any(extra):
        return x
    xp = array_module(x)
    padded = xp.full(tuple(x.shape[: x.ndim - nd]) + tuple(o + e for o, e in zip(size, extra)),
                     fill_value(pad_value, x.dtype), x.dtype)
    padded[(Ellipsis,) + tuple(slice(0, o) for o in size)] = x
    return padded


def crop(y, original_size):
    """``y`` (``(..., *covered_size)``) cut back to the last axes' ``original_size``: a view."""
    size = tuple(int(v) for v in original_size)
    nd = len(size)
    if y.ndim < nd or any(have < want for have, want in zip(y.shape[y.ndim - nd:], size)):
        raise SwtError(f"cannot crop an array of shape {tuple(y.shape)} to {fmt_dims(size)}: it is smaller")
    return y[(Ellipsis,) + tuple(slice(0, o) for o in size)]



# ------------------------------------------------------------------------------------ file-to-file blocks


class CoverUnfold:
    """A block transform (``swt_cli.protocols.BlockTransform``) for ``swt unfold --cover``: each block of
    images, as stored, padded at its far edges, then ``inner`` (an unfold planned on the covered size).

    Its ``plan`` describes what it reads and writes (the stored images in, the covering windows out); the
    inner transform's plan is the computation. A plain object, so Dask workers take it like the inner one.
    """

    def __init__(self, inner: Any, size, pad_value=0):
        self.inner, self.pad_value = inner, pad_value
        self.plan = replace(inner.plan, size=tuple(int(v) for v in size))
        self.in_dtype, self.out_dtype, self.device = inner.in_dtype, inner.out_dtype, inner.device

    @property
    def lead(self) -> int:
        return self.inner.lead

    def bytes_per_item(self) -> int:
        """The inner unfold's, plus the padded copy of one item."""
        p = self.inner.plan
        return self.inner.bytes_per_item() + math.prod(p.input_shape[self.lead:]) * self.in_dtype.itemsize

    def __call__(self, block):
        return self.inner(pad_to_cover(block, self.inner.plan.geometry, self.pad_value))


class CroppedFold:
    """A block transform for the fold of a covering unfold's windows: ``inner`` (a fold onto the covered
    size), each block cropped to the original ``size``. ``plan`` describes the shapes read and written."""

    def __init__(self, inner: Any, size):
        self.inner = inner
        self.size = tuple(int(v) for v in size)
        self.plan = replace(inner.plan, output_size=self.size)
        self.in_dtype, self.out_dtype, self.device = inner.in_dtype, inner.out_dtype, inner.device
        self.blend = inner.blend

    @property
    def lead(self) -> int:
        return self.inner.lead

    def bytes_per_item(self) -> int:
        return self.inner.bytes_per_item()

    def __call__(self, block):
        import numpy as np

        return np.ascontiguousarray(crop(self.inner(block), self.size))
