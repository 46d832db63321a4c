"""The public array functions: fold (sliding-window transpose) and unfold of whole arrays: NumPy, CuPy,
Dask (lazily, blockwise: :mod:`swt_cli.dask_arrays`) and any array with ``__dlpack__`` such as torch
tensors (viewed without a copy: :mod:`swt_cli.interop`).

They sit above :mod:`swt_cli.kernels` (the block kernels) and :mod:`swt_cli.blend` (mean, weights, fill),
so that neither of those imports the other's callers.

>>> import numpy as np
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> np.array_equal(sliding_window_transpose(sliding_window(x, 2, stride=2), 4, 2, stride=2), x)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import accumulator_dtype, array_module, as_array, result_dtype
from .blend import Blend
from .choices import LAYOUTS
from .cover import check_coverable, covered_size, crop, pad_to_cover
from .errors import OptionError, SwtError
from .geometry import Geometry, as_tuple, fmt_dims, plan_fold, plan_unfold
from .kernels import fold, unfold

__all__ = ["blended_transpose", "check_layout", "fold_cover", "sliding_window", "sliding_window_transpose", "unfold_cover"]


def sliding_window_transpose(inp, output_size, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None,
                             reduce="sum", weight=None, fill=0, cover=False, layout="megengine", out=None):
    """Fold windows back into images: sum each window element onto the image position it was cut from.

    The sliding-window transpose (col2im, overlap-add) with MegEngine's semantics
    (``megengine.functional.sliding_window_transpose``): window ``i`` at kernel offset ``w`` lands on
    output position ``i*stride - padding + w*dilation`` along each axis. D, the number of spatial axes
    (1, 2 or 3), is the length of any tuple argument, else 2.

    Parameters
    ----------
    inp : array_like, shape (..., I1..ID, K1..KD)
        Windows: any leading (batch, channel) axes, then the window grid, then the kernel. A NumPy or
        CuPy array (CuPy arrays are folded on their GPU), a Dask array (folded lazily, block by block of
        its leading axes), any array with ``__dlpack__`` (a torch tensor: viewed without a copy), or
        anything ``np.asarray`` takes.
    output_size : int or tuple of int or None
        The image size ``(O1..OD)``, one int for every axis or one per axis. None takes the smallest size
        that holds the window grid; a size the grid does not fit raises, naming the sizes that do.
    kernel_size : int or tuple of int
        Window size; it must equal the last D axes of ``inp``.
    padding : int or tuple of int, default 0
        Zero padding that was added on each side before cutting: those positions are dropped.
    stride : int or tuple of int, default 1
        Step between windows.
    dilation : int or tuple of int, default 1
        Spacing of the window elements.
    dtype : dtype, optional
        Output dtype [default: the input's, float64 for an integer input with ``reduce="mean"`` or a
        ``weight``]. Sums are taken in a wider accumulator (float32 for float16, 64 bits for integers).
    reduce : {"sum", "mean"}, default "sum"
        ``"sum"`` adds overlapping windows (MegEngine); ``"mean"`` divides each element by the windows (or
        the weights) covering it, so a fold of an unfold gives the image back wherever a window covers it.
    weight : str or array_like, optional
        Multiply window elements by a window function before summing: ``"uniform"``, ``"hann"``,
        ``"triangle"``, ``"gaussian"``, or an array of the kernel's shape; see :mod:`swt_cli.blend`.
    fill : number, default 0
        Value of output elements no window covers.
    cover : bool, default False
        The windows were cut by ``sliding_window(..., cover=True)`` from images of ``output_size`` (the
        original size): they are folded onto the padded size and cropped back to it.
    layout : {"megengine", "torch"}, default "megengine"
        ``"torch"``: the windows are in ``torch.nn.functional.unfold``'s layout ``(..., C*K1*..*KD, L)``
        (see :mod:`swt_cli.layouts`); ``output_size`` is then needed, as for ``torch.nn.functional.fold``.
    out : ndarray, optional
        Write the images into this NumPy (or CuPy) array, of the result's shape and dtype, instead of a
        new one, and return it. ``dtype`` defaults to its dtype. No memory is allocated for the result,
        so a loop that reuses one ``out`` skips the operating system's zeroing of fresh pages, which can
        cost as much as the fold itself. It must not overlap ``inp``; Dask arrays and DLPack tensors
        take no ``out``.

    Returns
    -------
    ndarray, shape (..., O1..OD)
        The images, of the input's array type: NumPy, CuPy, a lazy Dask array, or the input's library
        on its device for a DLPack input (NumPy for an object whose library array-api-compat does not
        know).

    Raises
    ------
    SwtError
        Where the shapes and the geometry disagree (the message names the shapes, the geometry and the
        valid values), or a value is invalid. ``OptionError`` (a ``SwtError``) for arguments that do not
        combine, such as an integer ``dtype`` with ``reduce="mean"``. For a tensor that requires grad
        (swt has no autograd), and for a Dask array one of whose blocks would not fit a worker's memory.

    Examples
    --------
    A 31x31 grid of 3x3 windows with stride 2 folds into 64x64 images (63 would fit too):

    >>> windows = np.ones((2, 3, 31, 31, 3, 3), np.float32)
    >>> sliding_window_transpose(windows, 64, 3, stride=2).shape
    (2, 3, 64, 64)
    >>> sliding_window_transpose(windows, None, 3, stride=2).shape
    (2, 3, 63, 63)

    Each output element is the sum of the window elements that land on it; ``reduce="mean"`` averages.
    In 1-d (a tuple of one for any argument), three windows of 2 elements, stride 1:

    >>> sliding_window_transpose(np.ones((1, 3, 2)), (4,), 2)
    array([[1., 2., 2., 1.]])
    >>> sliding_window_transpose(np.ones((1, 3, 2)), (4,), 2, reduce="mean")
    array([[1., 1., 1., 1.]])
    """
    if out is not None:
        x, dtype = _check_out(inp, out, dtype)
        if (layout == "megengine" and not cover and reduce == "sum" and weight is None and fill == 0
                and isinstance(x, np.ndarray) and isinstance(out, np.ndarray)):
            geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
            out_dtype = result_dtype(x.dtype, dtype)
            plan = plan_fold(x.shape, geometry, output_size, itemsize=out_dtype.itemsize)
            _check_shape(out, plan.output_shape)
            if _kernel_takes(out, plan.output_shape, accumulator_dtype(x.dtype, out_dtype), x.dtype):
                fold(x, plan, out_dtype, out=out.view(np.ndarray))
                return out
        return _copy_into(out, sliding_window_transpose(
            x, output_size, kernel_size, padding, stride, dilation, dtype=dtype, reduce=reduce, weight=weight,
            fill=fill, cover=cover, layout=layout))
    if not isinstance(inp, np.ndarray):
        args = dict(output_size=output_size, kernel_size=kernel_size, padding=padding, stride=stride, dilation=dilation,
                    dtype=dtype, reduce=reduce, weight=weight, fill=fill, cover=cover, layout=layout)
        geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
        core = 2 if layout == "torch" else 2 * geometry.ndim
        done = _other_array(sliding_window_transpose, inp, args, core, "fold")
        if done is not None:
            return done[0]
    if check_layout(layout, output_size) == "torch":
        return _fold_torch(inp, output_size, kernel_size, padding, stride, dilation, dtype=dtype, reduce=reduce,
                           weight=weight, fill=fill, cover=cover)
    if cover:
        return fold_cover(inp, output_size, kernel_size, padding, stride, dilation, dtype=dtype, reduce=reduce,
                          weight=weight, fill=fill)
    x = as_array(inp)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
    if reduce != "sum" or weight is not None or not fill == 0:
        return blended_transpose(x, geometry, output_size, dtype=dtype, reduce=reduce, weight=weight, fill=fill)
    out_dtype = result_dtype(x.dtype, dtype)
    plan = plan_fold(x.shape, geometry, output_size, itemsize=out_dtype.itemsize)
    return fold(x, plan, out_dtype)


def sliding_window(inp, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None, cover=False, pad_value=0,
                   layout="megengine", out=None):
    """Cut images into windows (unfold, im2col), zero-padded at the borders (MegEngine's semantics).

    ``megengine.functional.sliding_window``: window ``i`` holds, at kernel offset ``w``, the image element
    at ``i*stride - padding + w*dilation`` along each axis (0 outside the image). Along an axis of size
    ``S`` there are ``(S + 2*padding - dilation*(kernel - 1) - 1) // stride + 1`` windows; image elements
    beyond the last window are in none (``swt plan`` shows how many). D, the number of spatial axes (1, 2
    or 3), is the length of any tuple argument, else 2.

    Parameters
    ----------
    inp : array_like, shape (..., S1..SD)
        Images: any leading (batch, channel) axes, then the D spatial axes. A NumPy or CuPy array, a Dask
        array (cut lazily, block by block of its leading axes), any array with ``__dlpack__`` (a torch
        tensor), or anything ``np.asarray`` takes.
    kernel_size : int or tuple of int
        Window size, one for every axis or one per axis.
    padding : int or tuple of int, default 0
        Zeros added on each side of every spatial axis.
    stride : int or tuple of int, default 1
        Step between windows.
    dilation : int or tuple of int, default 1
        Spacing of the window elements.
    dtype : dtype, optional
        Output dtype [default: the input's].
    cover : bool, default False
        First pad the far edges (bottom, right, back) with ``pad_value`` just enough for the windows to
        reach every element (a 477x720 image cut with kernel 64, stride 64 otherwise keeps 448x704); fold
        such windows with ``sliding_window_transpose(..., cover=True)`` and the original size. Geometries
        whose windows leave gaps (a stride longer than the window) are refused. See :mod:`swt_cli.cover`.
    pad_value : number, default 0
        The value padded in with ``cover=True``.
    layout : {"megengine", "torch"}, default "megengine"
        ``"torch"``: return the windows in ``torch.nn.functional.unfold``'s layout ``(..., C*K1*..*KD, L)``
        (a copy of MegEngine's; the images need a channel axis).
    out : ndarray, optional
        Write the windows into this NumPy (or CuPy) array, of the result's shape and dtype, instead of a
        new one, and return it (as for :func:`sliding_window_transpose`).

    Returns
    -------
    ndarray, shape (..., I1..ID, K1..KD)
        The windows: the leading axes, the window grid, the kernel; of the input's array type (as for
        :func:`sliding_window_transpose`).

    Raises
    ------
    SwtError
        Where not even one window fits an axis (the message names the axis, its size and the window's
        span), or a geometry value is invalid (``kernel_size`` 0, a tuple of the wrong length); as
        :func:`sliding_window_transpose` for tensors that require grad and Dask blocks too large.

    Examples
    --------
    >>> sliding_window(np.ones((2, 3, 64, 64)), 3, stride=2).shape
    (2, 3, 31, 31, 3, 3)
    >>> sliding_window(np.arange(5.0), (3,), stride=2)  # 1-d: a tuple of one
    array([[0., 1., 2.],
           [2., 3., 4.]])
    >>> sliding_window(np.ones((1, 10, 8, 6)), (3, 2, 2), padding=(1, 0, 0)).shape
    (1, 10, 7, 5, 3, 2, 2)
    >>> sliding_window(np.ones((477, 720)), 64, stride=64, cover=True).shape
    (8, 12, 64, 64)
    >>> sliding_window(np.ones((2, 3, 64, 64)), 3, stride=2, layout="torch").shape  # torch's unfold
    (2, 27, 961)
    """
    if out is not None:
        x, dtype = _check_out(inp, out, dtype)
        if layout == "megengine" and not cover and isinstance(x, np.ndarray) and isinstance(out, np.ndarray):
            geometry = Geometry.from_args(kernel_size, padding, stride, dilation)
            plan = plan_unfold(x.shape, geometry, itemsize=result_dtype(x.dtype, dtype).itemsize)
            _check_shape(out, plan.output_shape)
            if pad_value == 0 and out.dtype == x.dtype and _kernel_takes(out, plan.output_shape, x.dtype, x.dtype):
                unfold(x, plan, x.dtype, out=out.view(np.ndarray))
                return out
        return _copy_into(out, sliding_window(x, kernel_size, padding, stride, dilation, dtype=dtype, cover=cover,
                                              pad_value=pad_value, layout=layout))
    if not isinstance(inp, np.ndarray):
        args = dict(kernel_size=kernel_size, padding=padding, stride=stride, dilation=dilation, dtype=dtype,
                    cover=cover, pad_value=pad_value, layout=layout)
        ndim = Geometry.from_args(kernel_size, padding, stride, dilation).ndim
        done = _other_array(sliding_window, inp, args, ndim + (layout == "torch"), "unfold")
        if done is not None:
            return done[0]
    if check_layout(layout) == "torch":
        from .layouts import to_torch

        x, ndim = as_array(inp), Geometry.from_args(kernel_size, padding, stride, dilation).ndim
        if x.ndim < ndim + 1:  # before any work
            raise SwtError(f"layout='torch' needs images with a channel axis, (N, C, H, W) or (C, H, W) in 2-d as for "
                           f"torch's unfold: got shape {tuple(x.shape)} for {ndim} spatial axes")
        windows = sliding_window(x, kernel_size, padding, stride, dilation, dtype=dtype, cover=cover, pad_value=pad_value)
        return to_torch(windows, ndim)
    if cover:
        return unfold_cover(inp, kernel_size, padding, stride, dilation, pad_value=pad_value, dtype=dtype)
    if not pad_value == 0:
        raise SwtError(f"pad_value={pad_value!r} pads only with cover=True: pass cover=True, or leave pad_value out")
    x = as_array(inp)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation)
    out_dtype = result_dtype(x.dtype, dtype)
    plan = plan_unfold(x.shape, geometry, itemsize=out_dtype.itemsize)
    return unfold(x, plan, out_dtype)


def _check_out(inp, out, dtype):
    """``(inp as an array, dtype)`` for a call with ``out``: ``out`` a writeable NumPy or CuPy array of the
    input's kind, not overlapping it, whose dtype is ``dtype`` (which it gives where ``dtype`` is None)."""
    from .interop import is_dask_array, is_foreign

    if is_dask_array(inp) or is_foreign(inp):
        raise OptionError(f"out= takes NumPy and CuPy arrays; a {type(inp).__module__}.{type(inp).__name__} input "
                          f"returns a new array of its own kind: leave out out=", option="out")
    kind = f"{type(out).__module__}.{type(out).__name__}"
    if not isinstance(out, np.ndarray) and not type(out).__module__.startswith("cupy"):
        raise OptionError(f"out must be a NumPy or CuPy array, got {kind}", option="out")
    x = as_array(inp)
    xp = array_module(x)
    if array_module(out) is not xp:
        raise OptionError(f"out is a {kind} but the input is a {type(x).__module__}.{type(x).__name__}: pass out of "
                          f"the input's kind", option="out")
    if isinstance(out, np.ma.MaskedArray):
        raise OptionError("out is a masked array, whose mask would stay as it is: pass its .data, or no out",
                          option="out")
    if not out.flags.writeable:
        raise OptionError("out is read-only: pass a writeable array", option="out")
    if dtype is not None and np.dtype(dtype) != out.dtype:
        want, have = np.dtype(dtype), out.dtype
        names = (want.str, have.str) if want.name == have.name else (want.name, have.name)
        raise OptionError(f"dtype={names[0]} but out is {names[1]}: they must agree (or leave out dtype: it is then "
                          f"out's)", option="dtype")
    if xp.may_share_memory(x, out):
        raise OptionError("out overlaps the input: pass an array of its own", option="out")
    return x, out.dtype


def _kernel_takes(out, shape, dtype, in_dtype) -> bool:
    """Whether the kernels can write into ``out`` directly (as a plain ndarray: a subclass such as
    ``np.matrix`` keeps its own idea of reshapes): the result's shape and the sums' dtype, contiguous.
    64-bit integer sums of 64-bit inputs are checked for overflow block by block, so they go through a
    new array: an overflow then leaves ``out`` as it was."""
    checked = dtype.kind in "iu" and dtype.itemsize == 8 and in_dtype.itemsize == 8
    return tuple(out.shape) == tuple(shape) and out.dtype == dtype and bool(out.flags.c_contiguous) and not checked


def _check_shape(out, shape) -> None:
    if tuple(out.shape) != tuple(shape):
        raise OptionError(f"out has shape {tuple(out.shape)} but the result has shape {tuple(shape)}: pass an out of "
                          f"that shape", option="out")


def _copy_into(out, result):
    """``result`` copied into ``out``, which must have its shape (the dtypes agree: see :func:`_check_out`)."""
    _check_shape(out, result.shape)
    array_module(out).copyto(out.view(np.ndarray) if isinstance(out, np.ndarray) else out, result)
    return out


def check_layout(layout, output_size=0) -> str:
    """``layout`` where it is one of :data:`~swt_cli.choices.LAYOUTS` (and a torch-layout fold has an
    ``output_size``: pass the fold's, None included), else an ``OptionError``."""
    if layout not in LAYOUTS:
        raise OptionError(f"layout must be {' or '.join(map(repr, LAYOUTS))}, got {layout!r}", option="layout")
    if layout == "torch" and output_size is None:
        raise OptionError("layout='torch' needs output_size: the window grid is flattened into one axis, so the "
                          "image size cannot be read from the windows' shape", option="output_size")
    return layout


def _other_array(function, inp, args: dict, core_ndim: int, op: str) -> tuple[Any] | None:
    """``(function(inp, **args),)`` for a Dask array (lazy, blockwise) or an array of another library
    (through DLPack), where ``core_ndim`` trailing axes are what ``function`` transforms; None for NumPy,
    CuPy and anything ``np.asarray`` takes, which the caller computes itself."""
    import functools

    from .interop import is_dask_array, is_foreign, through_dlpack

    call = functools.partial(function, **args)
    if is_dask_array(inp):
        from .dask_arrays import blockwise

        return (blockwise(call, inp, core_ndim, op),)
    if is_foreign(inp):
        return (through_dlpack(call, inp),)
    return None


def _fold_torch(inp, output_size, kernel_size, padding, stride, dilation, **kwargs):
    """:func:`sliding_window_transpose` of windows in torch's layout: a MegEngine-layout view of them, folded."""
    from .layouts import from_torch

    check_layout("torch", output_size)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
    size = as_tuple(tuple(output_size) if isinstance(output_size, (tuple, list)) else output_size, geometry.ndim,
                    "output_size", 1)
    grid = geometry.grid(covered_size(size, geometry) if kwargs.get("cover") else size)
    if min(grid) < 1:
        raise SwtError(f"no window of {geometry.describe()} fits an output of {fmt_dims(size)}")
    windows = from_torch(as_array(inp), geometry.kernel, grid)
    return sliding_window_transpose(windows, output_size, kernel_size, padding, stride, dilation, **kwargs)


def blended_transpose(x, geometry, output_size, *, dtype=None, reduce="sum", weight=None, fill=0):
    """:func:`sliding_window_transpose` with ``reduce``, ``weight`` and ``fill``."""
    x = as_array(x)
    blend = Blend(geometry.kernel, reduce, weight, fill)
    out_dtype = blend.output_dtype(x.dtype, dtype)
    plan = plan_fold(x.shape, geometry, output_size, itemsize=out_dtype.itemsize)
    return blend.fold(x, plan, out_dtype)



def unfold_cover(x, kernel_size, padding=0, stride=1, dilation=1, *, pad_value=0, dtype=None):
    """:func:`sliding_window` of ``x`` padded at its far edges so the windows reach every element
    (``sliding_window(..., cover=True)``).

    Geometries with gaps between windows are refused (:func:`swt_cli.cover.check_coverable`). Fold the
    windows with :func:`fold_cover` and the original size.

    >>> x = np.arange(5.0 * 7).reshape(5, 7)
    >>> w = unfold_cover(x, 3, stride=3)
    >>> w.shape
    (2, 3, 3, 3)
    >>> bool((fold_cover(w, (5, 7), 3, stride=3) == x).all())
    True
    """
    x = as_array(x)
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation)
    check_coverable(geometry)
    return sliding_window(pad_to_cover(x, geometry, pad_value), kernel_size, padding, stride, dilation, dtype=dtype)


def fold_cover(w, output_size, kernel_size, padding=0, stride=1, dilation=1, *, dtype=None, reduce="sum",
               weight=None, fill=0):
    """:func:`sliding_window_transpose` of windows cut by :func:`unfold_cover` from images of
    ``output_size`` (the ORIGINAL size): folded onto the covered size, then cropped to ``output_size``
    (``sliding_window_transpose(..., cover=True)``).

    With ``reduce="mean"`` it gives back the images that :func:`unfold_cover` cut, every element.
    """
    w = as_array(w)
    if output_size is None:
        raise SwtError("cover=True needs output_size: the size of the images before they were padded to cover")
    geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)
    size = as_tuple(tuple(output_size) if isinstance(output_size, (tuple, list)) else output_size, geometry.ndim,
                    "output_size", 1)
    padded = covered_size(size, geometry)
    grid = geometry.grid(padded)
    have = tuple(w.shape[w.ndim - 2 * geometry.ndim: w.ndim - geometry.ndim]) if w.ndim >= 2 * geometry.ndim else ()
    if have != grid:
        raise SwtError(f"windows of shape {tuple(w.shape)} are not a covering unfold of {fmt_dims(size)} with "
                       f"{geometry.describe()}: that has a window grid of {fmt_dims(grid)} (of the image padded to "
                       f"{fmt_dims(padded)})")
    y = sliding_window_transpose(w, padded, kernel_size, padding, stride, dilation, dtype=dtype, reduce=reduce,
                                 weight=weight, fill=fill)
    if padded == size:
        return y
    return array_module(y).ascontiguousarray(crop(y, size))
