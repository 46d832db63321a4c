"""Overlap handling for folds: the sum or the (weighted) mean of the windows that cover each element.

A fold adds up every window element that lands on an output element (MegEngine's semantics,
``reduce="sum"``). ``reduce="mean"`` divides each output element by the number of windows that cover it,
so folding the unfolded image gives the image back wherever a window covers it. A ``weight`` multiplies
every window element by a window function of its kernel offset before summing; with ``mean`` the divisor
is the sum of those weights, giving the weighted average, so tiles blend without seams. Elements that no
window covers get ``fill``.

Window functions, for a kernel of ``K`` elements along an axis and offset ``n = 0..K-1`` (an N-d weight
is the product of the per-axis ones, ``w[n1, n2] = w1[n1] * w2[n2]``):

- ``uniform``:  ``1``
- ``hann``:     ``sin(pi * (n + 0.5) / K) ** 2``  (a Hann window sampled at the centres of ``K``
  equal cells: never 0, ``1`` in the middle of an odd kernel)
- ``triangle``: ``1 - |2 * (n + 0.5) / K - 1|``    (``1/K, 3/K, 5/K, ...`` up to the middle and down again:
  smallest ``1 / K`` at the edges)
- ``gaussian``: ``exp(-0.5 * ((n - (K - 1) / 2) / sigma) ** 2)`` with ``sigma = K / 4``
  (about ``exp(-2) = 0.135`` at the edges of a long kernel)

With stride ``K / 2`` (``K`` even) 1-d ``hann`` and ``triangle`` windows add up to exactly 1 wherever two
windows overlap, so even ``reduce="sum"`` blends them without a seam there.

>>> window("hann", 4).round(4)
array([0.1464, 0.8536, 0.8536, 0.1464])
>>> window("triangle", (2, 3)).round(4)
array([[0.1667, 0.5   , 0.1667],
       [0.1667, 0.5   , 0.1667]])

The divisor (the fold of the weight tiled over the window grid, for one image) depends only on the
geometry: a :class:`Blend` computes it once and reuses it for every block of a batch.
"""

from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from .backend import accumulator_dtype, array_module, cast_result, check_dtype, result_dtype
from .errors import SwtError
from .geometry import FoldPlan, fmt_dims, fmt_shape

#: Names accepted by ``reduce``.
REDUCES = ("sum", "mean")

#: Names accepted by ``weight``.
WINDOWS = ("uniform", "hann", "triangle", "gaussian")


def window_1d(name: str, size: int) -> np.ndarray:
    """The window function ``name`` (see the module docstring) for a kernel of ``size``, float64."""
    n = np.arange(size, dtype=np.float64)
    if name == "uniform":
        return np.ones(size)
    if name == "hann":
        return np.sin(np.pi * (n + 0.5) / size) ** 2
    if name == "triangle":
        return 1.0 - np.abs(2.0 * (n + 0.5) / size - 1.0)
    if name == "gaussian":
        sigma = size / 4.0
        return np.exp(-0.5 * ((n - (size - 1) / 2.0) / sigma) ** 2)
    raise SwtError(f"unknown weight '{name}': use {', '.join(WINDOWS[:-1])} or {WINDOWS[-1]}")


def window(name: str, kernel) -> np.ndarray:
    """The separable N-d window ``name`` of shape ``kernel`` (an int or a tuple): the outer product."""
    kernel = (kernel,) if isinstance(kernel, numbers.Integral) else tuple(kernel)
    result = np.ones(())
    for size in kernel:
        result = np.multiply.outer(result, window_1d(name, int(size)))
    return result


def resolve_weight(weight, kernel) -> np.ndarray | None:
    """``weight`` (None, a name, or an array of the kernel's shape) as checked float64 weights.

    None and ``"uniform"`` give None: every element counts once, the plain fold.
    """
    kernel = tuple(kernel)
    if weight is None:
        return None
    if isinstance(weight, str):
        if weight not in WINDOWS:
            raise SwtError(f"unknown weight '{weight}': use {', '.join(WINDOWS[:-1])} or {WINDOWS[-1]}")
        if weight == "uniform":
            return None
        values, what = window(weight, kernel), f"{weight} weights of kernel {fmt_dims(kernel)}"
    else:
        try:
            values = np.asarray(array_module(weight).asnumpy(weight) if array_module(weight) is not np else weight)
        except (TypeError, ValueError) as err:
            raise SwtError(f"weight must be a name ({', '.join(WINDOWS)}) or an array of numbers: {err}") from None
        what = f"the weight array of shape {fmt_shape(values.shape)}"
        if values.dtype.kind not in "fiu":
            raise SwtError(f"weight must hold real numbers, got {values.dtype} ({what})")
        if values.shape != kernel:
            raise SwtError(
                f"weight of shape {fmt_shape(values.shape)} does not fit the kernel {fmt_dims(kernel)}: "
                f"it needs shape {fmt_shape(kernel)}"
            )
        values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise SwtError(f"weight must be finite: {what} has {int(bad.sum())} NaN or infinite elements")
    low = values <= 0
    if low.any():
        raise SwtError(
            f"weight must be positive everywhere: {what} has {int(low.sum())} elements <= 0 "
            f"(smallest {values.min():g}), which would leave pixels without a weight"
        )
    return values


def _describe(reduce: str, weighted: bool) -> str:
    return ("weighted " if weighted else "") + ("mean" if reduce == "mean" else "sum")


def check_fill(fill) -> float:
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
        try:
            return float(fill)
        except (TypeError, ValueError):
            raise SwtError(f"fill must be a number, got {fill!r}") from None
    return fill  # type: ignore[return-value]  # a Real as given: an integer fill keeps its precision


class Blend:
    """How overlapping windows combine: ``reduce``, the checked ``weight`` (None: uniform) and ``fill``.

    ``fold(x, plan, out_dtype)`` has the signature of :func:`swt_cli.kernels.fold`; the divisor and the
    mask of covered elements are computed for one image by :meth:`prepare` and cached, so a stream of
    blocks computes them once.

    >>> from swt_cli.geometry import Geometry, plan_fold
    >>> b = Blend((2,), reduce="mean")
    >>> b.fold(np.arange(6.0).reshape(3, 2), plan_fold((3, 2), Geometry.from_args((2,)), 4), np.float64)
    array([0. , 1.5, 3.5, 5. ])
    """

    def __init__(self, kernel, reduce: str = "sum", weight=None, fill=0):
        if reduce not in REDUCES:
            raise SwtError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
        self.kernel = tuple(int(k) for k in kernel)
        self.reduce = reduce
        self.weight = resolve_weight(weight, self.kernel)
        self.fill = check_fill(fill)
        self._key: tuple | None = None
        self._norm: np.ndarray | None = None  # float64 divisor of one image (1 where uncovered), or None for a plain sum
        self._uncovered: np.ndarray | None = None  # bool mask of one image, or None when every element is covered
        self._device: dict = {}

    @property
    def active(self) -> bool:
        """False where this is MegEngine's plain sum (no weight, fill 0): no extra work at all."""
        return self.reduce != "sum" or self.weight is not None or not self.fill == 0

    @property
    def fractional(self) -> bool:
        """True where results have fractions (mean or weights): integer inputs then give floats."""
        return self.reduce == "mean" or self.weight is not None

    def describe(self) -> str:
        return _describe(self.reduce, self.weight is not None)

    def output_dtype(self, in_dtype, dtype=None) -> np.dtype:
        """The output dtype: the input's (float64 for integers with mean or weights), or ``dtype``.

        A mean or a weighted fold refuses an integer ``dtype``: its results have fractions.
        """
        if not self.fractional:
            out = result_dtype(in_dtype, dtype)
            self._check_fill_fits(out)
            return out
        in_dtype = check_dtype(in_dtype)
        if dtype is None:
            return in_dtype if in_dtype.kind in "fc" else np.dtype(np.float64)
        out = check_dtype(dtype, "output")
        if out.kind in "iu":
            raise SwtError(f"a {self.describe()} fold has fractional results: use a float dtype, not {out.name}")
        return result_dtype(in_dtype, out)

    def _check_fill_fits(self, out: np.dtype) -> None:
        if out.kind in "iu" and self.fill != 0:
            info = np.iinfo(out)
            if not (math.isfinite(self.fill) and self.fill == int(self.fill) and info.min <= self.fill <= info.max):
                raise SwtError(f"fill {self.fill:g} does not fit the {out.name} output: use a float dtype")

    def prepare(self, plan: FoldPlan):
        """The divisor and uncovered mask of one image of ``plan`` (computed once per geometry)."""
        key = (plan.geometry, plan.grid, plan.output_size)
        if key != self._key:
            if plan.geometry.kernel != self.kernel:
                raise SwtError(f"the blend is for kernel {fmt_dims(self.kernel)}, not {fmt_dims(plan.geometry.kernel)}")
            totals = coverage_weights(plan, self.weight)
            covered = totals > 0
            self._uncovered = None if covered.all() else ~covered
            self._norm = np.where(covered, totals, 1.0) if self.reduce == "mean" else None
            self._key, self._device = key, {}
        return self._norm, self._uncovered

    def _on(self, xp, name: str, value, dtype=None):
        """``value`` as an array of ``xp`` (and ``dtype``), cached: one transfer per run, not per block."""
        if value is None:
            return None
        key = (xp.__name__, name, None if dtype is None else np.dtype(dtype).str)
        if key not in self._device:
            self._device[key] = xp.asarray(value if dtype is None else value.astype(dtype))
        return self._device[key]

    def scratch_bytes(self, plan: FoldPlan, in_dtype, out_dtype) -> int:
        """Extra working memory per item of the leading axes: the weighted copy of the windows."""
        if self.weight is None:
            return 0
        acc = accumulator_dtype(np.dtype(in_dtype), np.dtype(out_dtype))
        inner = math.prod(plan.grid) * math.prod(plan.geometry.kernel)
        return inner * acc.itemsize

    def fixed_bytes(self, plan: FoldPlan) -> int:
        """Memory held once per run: the divisor (float64) and the uncovered mask of one image."""
        return math.prod(plan.output_size) * 9 if self.active else 0

    def fold(self, x, plan: FoldPlan, out_dtype=None):
        """Fold a block like :func:`swt_cli.kernels.fold`, combining overlaps as this blend says."""
        from . import kernels

        xp = array_module(x)
        out_dtype = np.dtype(out_dtype or x.dtype)
        acc = accumulator_dtype(x.dtype, out_dtype)
        norm, uncovered = self.prepare(plan)
        if self.weight is not None:
            real = np.zeros((), acc).real.dtype
            x = x * self._on(xp, "weight", self.weight, real)
        summed = kernels.fold(x, plan, acc)
        if norm is not None:
            summed = summed if summed.flags.writeable and summed.dtype == acc else summed.astype(acc)
            summed /= self._on(xp, "norm", norm, np.zeros((), acc).real.dtype)
        if uncovered is not None:
            if not summed.flags.writeable:
                summed = summed.copy()
            summed[(Ellipsis, self._on(xp, "uncovered", uncovered))] = self.fill
        context = f"{self.describe()} fold of {x.dtype} input of shape {fmt_shape(x.shape)} with {plan.geometry.describe()}"
        return cast_result(summed, out_dtype, xp, context)


def coverage_weights(plan: FoldPlan, weight=None) -> np.ndarray:
    """For one image of ``plan``: the sum of the weights of every window element landing on each
    output element (with ``weight=None``, how many windows cover it), float64 of ``plan.output_size``.

    >>> from swt_cli.geometry import Geometry, plan_fold
    >>> coverage_weights(plan_fold((3, 2), Geometry.from_args((2,)), 4))
    array([1., 2., 2., 1.])
    """
    g = plan.geometry
    buf = np.zeros(plan.padded_size)
    for offsets in itertools.product(*(range(k) for k in g.kernel)):
        target = tuple(
            slice(w * d, w * d + s * (n - 1) + 1, s) for w, d, s, n in zip(offsets, g.dilation, g.stride, plan.grid)
        )
        buf[target] += 1.0 if weight is None else weight[offsets]
    return buf[tuple(slice(p, p + o) for p, o in zip(g.padding, plan.output_size))]
