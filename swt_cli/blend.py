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

Arithmetic (the summation rule of :mod:`swt_cli.kernels`, extended): each window element is multiplied
by its weight, rounded to the accumulator dtype, and only then added (no fused multiply-add); the
products add up in window order like a plain fold. A mean divides each sum once, at the end, by its
divisor: the weights that reach the element, summed in float64 in the same window order and rounded
once to the accumulator's real dtype. For a mean the weights are first divided by their largest (the
mean does not change when all weights scale alike), so no weight exceeds 1 and no divisor overflows;
weights that would still underflow the accumulator (largest over smallest beyond its range, e.g. a
float32 mean of weights spanning more than about 1e38) are refused, as are weighted sums whose weights
do not fit the accumulator, or whose sums on one element (overlapping windows) pass the largest value
the accumulator or the output holds: finite positive weights never produce NaN or Inf themselves. ``fill`` is
written into the output dtype once; one that dtype cannot hold exactly (an integer beyond 2**53 in
float64, 300 in int8) is refused with a dtype that can.
"""

from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from .backend import accumulator_dtype, array_module, cast_result, check_dtype, holding_dtype, result_dtype
from .choices import REDUCES, WINDOWS  # noqa: F401 (imported from here by callers)
from .errors import OptionError, SwtError
from .geometry import FoldPlan, fmt_dims, fmt_shape


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


def check_fill(fill) -> int | float:
    """``fill`` as a Python number: an ``int`` for integers (exact at any size), else a ``float``.

    Text is read as an integer where it is one (``"9007199254740993"`` stays exact), else as a float.
    """
    if isinstance(fill, bool):
        return float(fill)
    if isinstance(fill, numbers.Integral):
        return int(fill)
    if isinstance(fill, numbers.Real):
        return float(fill)
    if isinstance(fill, str):
        try:
            return int(fill.strip())
        except ValueError:
            pass
    try:
        value = float(fill)
    except (TypeError, ValueError):
        raise SwtError(f"fill must be a number, got {fill!r}") from None
    if isinstance(fill, str) and math.isinf(value) and "inf" not in fill.lower():  # '1e400': no dtype holds it
        raise SwtError(f"fill {fill.strip()} is beyond the range of every float dtype (float64 ends near 1.8e308): "
                       "give a smaller number, or inf")
    return value


def _fmt_fill(fill) -> str:
    return str(fill) if isinstance(fill, int) else f"{fill:g}"


def check_fill_fits(fill, out: np.dtype, integers: bool = True, data: np.dtype | None = None) -> None:
    """Refuse a ``fill`` that the output dtype ``out`` cannot hold exactly, naming a dtype that can.

    A float fill in a float output is rounded to it like any float (NaN and infinities included), but
    must not overflow it. ``integers``: an integer output dtype could be asked for (an integer input,
    summed without weights), so one may be offered; ``data``, the input's integer dtype, whose values
    the offered dtype must hold too (uint8 data with fill -1 needs int16, not int8).
    """
    out = np.dtype(out)
    real = np.zeros((), out).real.dtype
    text = _fmt_fill(fill)
    if out.kind in "iu":
        if isinstance(fill, float) and not (math.isfinite(fill) and fill == int(fill)):
            raise SwtError(f"fill {text} does not fit the {out.name} output: use a float dtype")
        info = np.iinfo(out)
        if not info.min <= int(fill) <= info.max:
            raise SwtError(f"fill {text} does not fit the {out.name} output: {_holding(int(fill), integers, data)}")
        return
    if isinstance(fill, float):
        if math.isfinite(fill) and not math.isfinite(_as_real(fill, real)):
            raise SwtError(f"fill {text} overflows the {out.name} output: use dtype float64")
        return
    if _as_real(fill, real) != fill:  # an integer the float output would round
        raise SwtError(f"fill {text} is not exactly a {real.name} value (the {out.name} output would round it): "
                       f"{_holding(fill, integers, data)}")


def _holding(value: int, integers: bool, data: np.dtype | None = None) -> str:
    """What to do with an integer fill: the dtype that holds it exactly (integers first, where allowed),
    and the input's integer ``data`` too."""
    if integers:
        info = np.iinfo(data) if data is not None and data.kind in "iu" else None
        data_name = "" if data is None else data.name
        lo, hi = (value, value) if info is None else (min(value, int(info.min)), max(value, int(info.max)))
        name = holding_dtype(lo, hi, "i")
        if name == "float64" and lo >= 0:
            name = holding_dtype(lo, hi, "u")
        if name != "float64":
            return f"use dtype {name}"
        if info is not None:
            return (f"no integer dtype holds both {value} and {data_name} data: use dtype float64 (exact up to 2**53) "
                    f"or a fill from {info.min} to {info.max}")
    if _as_real(value, np.dtype(np.float64)) == value:
        return "use dtype float64"
    return "no dtype of this fold holds it exactly: round it"


def _as_real(value, real: np.dtype) -> float:
    """``value`` rounded to the float dtype ``real`` (inf where it overflows), as a Python number."""
    try:
        with np.errstate(over="ignore"):
            return float(np.asarray(float(value)).astype(real))
    except OverflowError:  # an integer beyond float64's range
        return math.inf


def check_weight_range(weight: np.ndarray, real: np.dtype, reduce: str, describe: str) -> None:
    """Refuse weights that the accumulator's real dtype ``real`` cannot hold as normal numbers.

    For a mean, ``weight`` is already divided by its largest: only its smallest can underflow.
    """
    info = np.finfo(real)
    lo, hi = float(weight.min()), float(weight.max())
    if lo >= info.tiny and hi <= info.max:
        return
    if reduce == "mean":
        raise SwtError(
            f"a {describe} fold in {real.name} needs weights whose smallest is at least {info.tiny:.3g} times "
            f"their largest, got {lo:.3g} times: use dtype float64 or weights closer together"
        )
    raise SwtError(
        f"a {describe} fold in {real.name} needs weights from {info.tiny:.3g} to {info.max:.3g}, got {lo:.3g} "
        f"to {hi:.3g}: scale the weights, use reduce mean, or dtype float64"
    )


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
        if self.weight is not None and reduce == "mean":
            # The mean is the same for weights scaled alike; largest 1, no product or divisor overflows.
            self.weight = self.weight / self.weight.max()
        self.fill = check_fill(fill)
        self._key: tuple | None = None
        self._norm: np.ndarray | None = None  # float64 divisor of one image (1 where uncovered), or None for a plain sum
        self._uncovered: np.ndarray | None = None  # bool mask of one image, or None when every element is covered
        self._device: dict = {}
        self._checked: set = set()  # real dtypes the weights were checked to fit
        self._reach = 0.0  # a weighted sum: the most weight that reaches one element (of the prepared plan)
        self._limit: float | None = None  # the largest such sum the declared output (output_dtype) holds

    @property
    def active(self) -> bool:
        """False where this is MegEngine's plain sum (no weight, fill 0): no extra work at all."""
        return self.reduce != "sum" or self.weight is not None or self.fill != 0

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
        else:
            in_dtype = check_dtype(in_dtype)
            if dtype is None:
                out = in_dtype if in_dtype.kind in "fc" else np.dtype(np.float64)
            else:
                out = check_dtype(dtype, "output")
                if out.kind in "iu":
                    raise OptionError(f"a {self.describe()} fold has fractional results: use a float dtype, not {out.name}",
                                      option="dtype")
                out = result_dtype(in_dtype, out)
        if self.fill != 0:
            integers = not self.fractional and np.dtype(in_dtype).kind in "iu"
            check_fill_fits(self.fill, out, integers=integers, data=np.dtype(in_dtype) if integers else None)
        self._check_weights(accumulator_dtype(np.dtype(in_dtype), out))
        self._limit = _sum_limit(accumulator_dtype(np.dtype(in_dtype), out), out)
        return out

    def _check_weights(self, acc: np.dtype) -> np.dtype:
        """The real dtype the weights are used in for sums in ``acc``, checked to hold them."""
        real = np.zeros((), acc).real.dtype
        if self.weight is not None and real not in self._checked:
            check_weight_range(self.weight, real, self.reduce, self.describe())
            self._checked.add(real)
        return real

    def _check_reach(self, limit: float, plan: FoldPlan) -> None:
        """Refuse a weighted sum whose weights alone, reaching one element from overlapping windows, add up
        beyond ``limit``: even data of ones would give inf there (each weight fitting is not enough)."""
        if self._reach > limit:
            raise SwtError(
                f"a weighted sum fold with {plan.geometry.describe()} adds up to {self._reach:.3g} of weight on one "
                f"element, beyond the {limit:.3g} its dtype holds (data of ones would give inf): scale the weights "
                f"down, use reduce mean, or dtype float64")

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
            self._reach = float(totals.max()) if self.weight is not None and self.reduce == "sum" and totals.size else 0.0
            self._key, self._device = key, {}
            if self._limit is not None:  # refused up front, before a job writes anything
                self._check_reach(self._limit, plan)
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
        real = self._check_weights(acc)
        self._check_reach(_sum_limit(acc, out_dtype), plan)
        if self.weight is not None:
            # Multiply first, rounded to the accumulator, then sum: no fused multiply-add anywhere.
            x = x * self._on(xp, "weight", self.weight, real)
        summed = kernels.fold(x, plan, acc)
        if norm is not None:
            summed = summed if _writeable(summed) and summed.dtype == acc else summed.astype(acc)
            summed /= self._on(xp, "norm", norm, real)
        context = f"{self.describe()} fold of {x.dtype} input of shape {fmt_shape(x.shape)} with {plan.geometry.describe()}"
        result = cast_result(summed, out_dtype, xp, context)
        if uncovered is not None:
            # Into the output dtype directly: one rounding of a float fill, an integer fill exact.
            if not _writeable(result):
                result = result.copy()
            result[(Ellipsis, self._on(xp, "uncovered", uncovered))] = self.fill
        return result


def _sum_limit(acc: np.dtype, out: np.dtype) -> float:
    """The largest value a weighted sum may reach in ``acc`` and keep finite in the output ``out``."""
    limit = float(np.finfo(np.zeros((), acc).real.dtype).max) if acc.kind in "fc" else math.inf
    if out.kind in "fc":
        limit = min(limit, float(np.finfo(np.zeros((), out).real.dtype).max))
    return limit


def _writeable(a) -> bool:
    """Whether ``a`` may be written in place (CuPy arrays have no such flag: they always may)."""
    return getattr(a.flags, "writeable", True)


def coverage_weights(plan: FoldPlan, weight=None) -> np.ndarray:
    """For one image of ``plan``: the sum of the weights of every window element landing on each
    output element (with ``weight=None``, how many windows cover it), float64 of ``plan.output_size``.

    >>> from swt_cli.geometry import Geometry, plan_fold
    >>> coverage_weights(plan_fold((3, 2), Geometry.from_args((2,)), 4))
    array([1., 2., 2., 1.])
    """
    g = plan.geometry
    buf = np.zeros(plan.padded_size)
    # Offsets in reverse row-major order: each element adds its windows' weights in row-major window
    # order, the order of the fold's own sums (see swt_cli.kernels).
    for offsets in reversed(list(itertools.product(*(range(k) for k in g.kernel)))):
        target = tuple(
            slice(w * d, w * d + s * (n - 1) + 1, s) for w, d, s, n in zip(offsets, g.dilation, g.stride, plan.grid)
        )
        buf[target] += 1.0 if weight is None else weight[offsets]
    return buf[tuple(slice(p, p + o) for p, o in zip(g.padding, plan.output_size))]
