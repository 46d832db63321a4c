"""Integer shape arithmetic of sliding windows: no arrays here.

Along one spatial axis, window ``i`` at kernel offset ``w`` covers output position
``i*stride - padding + w*dilation`` (MegEngine's implementation and PyTorch's ``F.fold``).
An output of size ``O`` holds ``(O + 2p - d(k-1) - 1) // s + 1`` windows.

>>> g = Geometry.from_args(kernel_size=3, stride=2)
>>> g.grid((64, 64))
(31, 31)
>>> g.output_ranges((31, 31))
((63, 64), (63, 64))
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from .errors import SwtError

#: Largest array, in bytes or elements, that swt will plan: anything beyond cannot be indexed.
MAX_SIZE = 2**62

_AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def axis_name(axis: int, ndim: int) -> str:
    """Human name of spatial axis ``axis`` of ``ndim``: ``axis_name(0, 2) == 'height'``."""
    return _AXIS_NAMES[ndim][axis]


def fmt_shape(shape) -> str:
    """``(2, 3)`` for any sequence of ints; ``3x3`` style is :func:`fmt_dims`."""
    return "(" + ", ".join(str(int(v)) for v in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_dims(dims) -> str:
    """``'3x4'`` for ``(3, 4)``."""
    return "x".join(str(int(v)) for v in dims)


def _as_int(value, name: str) -> int:
    if isinstance(value, bool):
        raise SwtError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise SwtError(f"{name} must be an integer or a tuple of integers, got {value!r}") from None


def spatial_ndim(*values, default: int = 2) -> int:
    """Number of spatial axes implied by the geometry arguments.

    It is the length of any tuple (or list) argument; all of them must agree. Without one, ``default``.

    >>> spatial_ndim(3, (1, 2), 1)
    2
    """
    lengths = {len(v) for v in values if isinstance(v, (tuple, list))}
    if len(lengths) > 1:
        raise SwtError(
            "geometry arguments disagree on the number of spatial axes: got tuples of lengths "
            + ", ".join(str(n) for n in sorted(lengths))
        )
    ndim = lengths.pop() if lengths else default
    if ndim not in _AXIS_NAMES:
        raise SwtError(f"swt handles 1, 2 or 3 spatial axes, got {ndim}")
    return ndim


def as_tuple(value, ndim: int, name: str, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or one int per axis) as a tuple of ``ndim`` ints, each ``>= minimum``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim
    if len(items) != ndim:
        raise SwtError(f"{name} needs {ndim} values (one per spatial axis), got {len(items)}")
    result = tuple(_as_int(v, name) for v in items)
    for v in result:
        if v < minimum:
            raise SwtError(f"{name} must be >= {minimum}, got {v}")
        if v > MAX_SIZE:
            raise SwtError(f"{name} {v} is too large (the limit is {MAX_SIZE})")
    return result


def grid_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Windows along one axis of length ``size``: ``(size + 2p - d(k-1) - 1) // s + 1``.

    May be zero or negative where the dilated kernel does not fit; callers check.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_range(grid: int, kernel: int, stride: int, padding: int, dilation: int):
    """All output sizes ``O >= 1`` with ``grid_size(O, ...) == grid``, as ``(lo, hi)``, or None.

    With stride ``s`` there are ``s`` of them (fewer where padding pushes them below 1).

    >>> output_range(31, 3, 2, 0, 1)
    (63, 64)
    """
    lo = stride * (grid - 1) - 2 * padding + dilation * (kernel - 1) + 1
    hi = lo + stride - 1
    lo = max(lo, 1)
    return (lo, hi) if lo <= hi else None


def _fmt_choices(rng) -> str:
    lo, hi = rng
    if lo == hi:
        return str(lo)
    if hi == lo + 1:
        return f"{lo} or {hi}"
    return f"{lo} to {hi}"


def checked_size(shape, itemsize: int = 1, what: str = "array") -> int:
    """Number of elements of ``shape``; an error if it (or its bytes) would overflow."""
    count = math.prod(int(v) for v in shape)
    if count * max(itemsize, 1) > MAX_SIZE:
        raise SwtError(
            f"{what} of shape {fmt_shape(shape)} would need {count * max(itemsize, 1)} bytes: "
            f"that is too large to address"
        )
    return count


def _plain_ints(value) -> bool:
    """None, an int or a tuple of ints, exactly: arguments whose checked geometry can be kept (a bool, a
    float or a NumPy integer would hash as an int and skip its own check)."""
    return value is None or type(value) is int or (type(value) is tuple and all(type(v) is int for v in value))


@dataclass(frozen=True)
class Geometry:
    """Kernel, stride, padding and dilation of sliding windows, one int per spatial axis: shape arithmetic only.

    Build it with :meth:`from_args`, which takes MegEngine-style arguments (an int for every axis or a
    tuple with one per axis) and checks them; the fields are then tuples of the same length, ``ndim``.

    Parameters
    ----------
    kernel : tuple of int
        Window size per axis (each >= 1).
    stride : tuple of int
        Step between windows per axis (each >= 1).
    padding : tuple of int
        Zeros on each side per axis (each >= 0).
    dilation : tuple of int
        Spacing of window elements per axis (each >= 1).

    Raises
    ------
    SwtError
        From :meth:`from_args`, for a value out of range or tuples of disagreeing lengths.

    Examples
    --------
    >>> g = Geometry.from_args(kernel_size=(3, 4), stride=2)
    >>> g.stride, g.ndim
    ((2, 2), 2)
    >>> g.grid((64, 48))             # windows per axis of a 64x48 image
    (31, 23)
    >>> g.output_ranges((31, 23))    # the image sizes that hold that grid
    ((63, 64), (48, 49))
    >>> g.describe()
    'kernel 3x4, stride 2'
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]

    @classmethod
    def from_args(cls, kernel_size, padding=0, stride=1, dilation=1, output_size=None, ndim=None):
        """The geometry of MegEngine-style arguments, checked.

        Parameters
        ----------
        kernel_size, padding, stride, dilation : int or tuple of int
            One int for every axis, or a tuple (or list) with one per axis.
        output_size : int or tuple of int, optional
            Only helps decide ``ndim`` (its length, where it is a tuple).
        ndim : int, optional
            The number of spatial axes (1, 2 or 3) [default: the length of any tuple argument, else 2].

        Returns
        -------
        Geometry

        Raises
        ------
        SwtError
            For a value below its minimum (``kernel_size`` 0), a non-integer, or tuples whose lengths
            disagree with each other or with ``ndim``.

        >>> Geometry.from_args(5, stride=(2, 3)).kernel
        (5, 5)
        """
        args = (kernel_size, padding, stride, dilation, output_size, ndim)
        plain = cls is Geometry and all(_plain_ints(v) for v in args)
        if plain and args in _GEOMETRIES:  # each call plans anew: checked geometries are kept (ints only)
            return _GEOMETRIES[args]
        geometry = cls._from_args(*args)
        if plain:
            if len(_GEOMETRIES) >= 256:
                _GEOMETRIES.clear()
            _GEOMETRIES[args] = geometry
        return geometry

    @classmethod
    def _from_args(cls, kernel_size, padding, stride, dilation, output_size, ndim):
        if ndim is None:
            ndim = spatial_ndim(kernel_size, padding, stride, dilation, output_size)
        return cls(
            kernel=as_tuple(kernel_size, ndim, "kernel_size", 1),
            stride=as_tuple(stride, ndim, "stride", 1),
            padding=as_tuple(padding, ndim, "padding", 0),
            dilation=as_tuple(dilation, ndim, "dilation", 1),
        )

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    def _axes(self):
        return zip(self.kernel, self.stride, self.padding, self.dilation)

    def grid(self, size) -> tuple[int, ...]:
        """Windows per axis for an image (or fold output) of spatial ``size``; may hold values < 1."""
        return tuple(grid_size(o, *axis) for o, axis in zip(size, self._axes()))

    def output_ranges(self, grid) -> tuple:
        """Per axis, the ``(lo, hi)`` output sizes that hold ``grid`` windows (None where none does)."""
        return tuple(output_range(g, *axis) for g, axis in zip(grid, self._axes()))

    def smallest_output(self, grid) -> tuple[int, ...]:
        """The smallest output size that fits ``grid``, raising where no size does."""
        return tuple(self._check_fold_axis(i, g, None) for i, g in enumerate(grid))

    def describe(self, axis: int | None = None) -> str:
        """``'kernel 3, stride 2'``, naming padding and dilation only where they matter."""
        pick = (lambda t: t[axis]) if axis is not None else (lambda t: t[0] if len(set(t)) == 1 else fmt_dims(t))
        parts = [f"kernel {pick(self.kernel)}", f"stride {pick(self.stride)}"]
        if any(self.padding) if axis is None else self.padding[axis]:
            parts.append(f"padding {pick(self.padding)}")
        if any(d != 1 for d in self.dilation) if axis is None else self.dilation[axis] != 1:
            parts.append(f"dilation {pick(self.dilation)}")
        return ", ".join(parts)

    def _check_fold_axis(self, axis: int, grid: int, size):
        name = axis_name(axis, self.ndim)
        windows = f"{grid} window{'s' if grid != 1 else ''}"
        rng = output_range(grid, *list(self._axes())[axis])
        if rng is None:
            raise SwtError(
                f"no output {name} fits {windows} of {self.describe(axis)}: the padding is larger than "
                f"the windows reach"
            )
        if size is None:
            return rng[0]
        if not rng[0] <= size <= rng[1]:
            raise SwtError(
                f"output {name} {size} is impossible for {windows} of {self.describe(axis)}: "
                f"use {_fmt_choices(rng)}"
            )
        return size

    def check_unfold_axis(self, axis: int, size: int) -> int:
        """Windows along ``axis`` of an image of ``size``; an error where not even one fits."""
        k, s, p, d = list(self._axes())[axis]
        grid = grid_size(size, k, s, p, d)
        if grid < 1:
            need = d * (k - 1) + 1
            pad = f" padded by {p} on each side" if p else ""
            raise SwtError(
                f"image {axis_name(axis, self.ndim)} {size}{pad} is too small for {self.describe(axis)}: "
                f"the window spans {need}"
            )
        return grid


@dataclass(frozen=True)
class FoldPlan:
    """Shapes of one fold: ``(*batch, *grid, *kernel) -> (*batch, *output)``.

    >>> p = plan_fold((2, 3, 31, 31, 3, 3), Geometry.from_args(3, stride=2), (64, 64))
    >>> p.output_shape
    (2, 3, 64, 64)
    """

    geometry: Geometry
    batch: tuple[int, ...]
    grid: tuple[int, ...]
    output_size: tuple[int, ...]

    @property
    def input_shape(self):
        return self.batch + self.grid + self.geometry.kernel

    @property
    def output_shape(self):
        return self.batch + self.output_size

    @property
    def padded_size(self):
        """Output size with the padding on both sides: the kernel's working buffer."""
        return tuple(o + 2 * p for o, p in zip(self.output_size, self.geometry.padding))


@dataclass(frozen=True)
class UnfoldPlan:
    """Shapes of one unfold: ``(*batch, *size) -> (*batch, *grid, *kernel)``."""

    geometry: Geometry
    batch: tuple[int, ...]
    size: tuple[int, ...]
    grid: tuple[int, ...]

    @property
    def input_shape(self):
        return self.batch + self.size

    @property
    def output_shape(self):
        return self.batch + self.grid + self.geometry.kernel

    def fold_plan(self) -> FoldPlan:
        """The fold that takes these windows back to an image of the same size."""
        return FoldPlan(self.geometry, self.batch, self.grid, self.size)


#: Geometries made by :meth:`Geometry.from_args` from plain int arguments, by those arguments.
_GEOMETRIES: dict[tuple, Geometry] = {}


class _Context:
    """The start of a planning error's message, formatted only when one is raised: a plan is made on
    every call, and the text cost a tenth of a small call's time."""

    __slots__ = ("geometry", "op", "shape")

    def __init__(self, op: str, shape: tuple, geometry: Geometry):
        self.op, self.shape, self.geometry = op, shape, geometry

    def __str__(self) -> str:
        return f"{self.op} input of shape {fmt_shape(self.shape)} with {self.geometry.describe()}"


def _in_context(err: SwtError, context: object) -> SwtError:
    return SwtError(f"{context}: {err}")


def plan_fold(input_shape, geometry: Geometry, output_size=None, itemsize: int = 1) -> FoldPlan:
    """Check a fold of windows of ``input_shape`` and return its plan.

    ``output_size`` is an int, one int per axis, or None for the smallest size that fits the grid.
    """
    input_shape = tuple(int(v) for v in input_shape)
    d = geometry.ndim
    context = _Context("fold", input_shape, geometry)
    if len(input_shape) < 2 * d:
        raise SwtError(
            f"{context}: a {d}-d fold needs at least {2 * d} axes (..., {', '.join(_grid_letters(d))}, "
            f"{', '.join(_kernel_letters(d))}), got {len(input_shape)}"
        )
    batch, grid, kernel = input_shape[:-2 * d], input_shape[-2 * d:-d], input_shape[-d:]
    if kernel != geometry.kernel:
        raise SwtError(
            f"{context}: the last {d} axes hold windows of {fmt_dims(kernel)} but the kernel is "
            f"{fmt_dims(geometry.kernel)}"
        )
    if any(g < 1 for g in grid):
        raise SwtError(f"{context}: the window grid {fmt_dims(grid)} is empty")
    try:
        if output_size is None:
            out = geometry.smallest_output(grid)
        else:
            out = as_tuple(output_size, d, "output_size", 1)
            out = tuple(geometry._check_fold_axis(i, g, o) for i, (g, o) in enumerate(zip(grid, out)))
    except SwtError as err:
        raise _in_context(err, context) from None
    plan = FoldPlan(geometry, batch, grid, out)
    checked_size(plan.input_shape, itemsize, "fold input")
    checked_size(plan.batch + plan.padded_size, max(itemsize, 8), "fold output")
    return plan


def plan_unfold(input_shape, geometry: Geometry, itemsize: int = 1) -> UnfoldPlan:
    """Check an unfold of images of ``input_shape`` and return its plan."""
    input_shape = tuple(int(v) for v in input_shape)
    d = geometry.ndim
    context = _Context("unfold", input_shape, geometry)
    if len(input_shape) < d:
        raise SwtError(f"{context}: a {d}-d unfold needs at least {d} axes, got {len(input_shape)}")
    batch, size = input_shape[:-d], input_shape[-d:]
    try:
        grid = tuple(geometry.check_unfold_axis(i, s) for i, s in enumerate(size))
    except SwtError as err:
        raise _in_context(err, context) from None
    plan = UnfoldPlan(geometry, batch, size, grid)
    checked_size(plan.output_shape, itemsize, "unfold output")
    return plan


def _grid_letters(d):
    return ["I" + c for c in ("L" if d == 1 else "HW" if d == 2 else "DHW")]


def _kernel_letters(d):
    return ["K" + c for c in ("L" if d == 1 else "HW" if d == 2 else "DHW")]
