"""The array module (NumPy or CuPy) of an array, and the dtype rules of swt.

CuPy is imported only when a CuPy array arrives, so NumPy users never pay for it; ``array-api-compat``
recognises CuPy arrays by their type without importing CuPy.
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import SwtError

_INTEGER_LADDER = {
    "i": (np.int8, np.int16, np.int32, np.int64),
    "u": (np.uint8, np.uint16, np.uint32, np.uint64),
}


def array_module(x):
    """``numpy`` or ``cupy``, whichever ``x`` belongs to (``numpy`` for anything else)."""
    if isinstance(x, np.ndarray):
        return np
    from array_api_compat import is_cupy_array

    return sys.modules["cupy"] if is_cupy_array(x) else np  # a CuPy array exists only once cupy is imported


def as_array(x):
    """``x`` itself for NumPy and CuPy arrays, else ``np.asarray(x)`` (never through pickle)."""
    xp = array_module(x)
    return x if xp is not np or isinstance(x, np.ndarray) else np.asarray(x)


def import_cupy():
    """CuPy, or an error that says which extra installs it."""
    try:
        import cupy
    except ImportError as err:
        raise SwtError(f"the GPU needs CuPy, which is not installed ({err}): pip install 'swt-cli[gpu]'") from None
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # noqa: BLE001 - CuPy raises its own CUDA error types
        raise SwtError(f"CuPy is installed but no GPU is usable: {err}") from None
    return cupy


def check_dtype(dtype, what: str = "input") -> np.dtype:
    """``dtype`` as a NumPy dtype if swt can compute with it: floats, complex and integers."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fciu" or dtype.fields is not None or dtype.subdtype is not None:
        raise SwtError(
            f"{what} dtype {dtype} is not supported: use an integer, float or complex dtype"
        )
    return dtype


def result_dtype(in_dtype, dtype=None) -> np.dtype:
    """The output dtype: ``dtype`` where given (it must be of a kind the input casts to), else the input's."""
    in_dtype = check_dtype(in_dtype)
    if dtype is None:
        return in_dtype
    out = check_dtype(dtype, "output")
    integers = in_dtype.kind in "iu" and out.kind in "iu"  # range-checked by cast_result
    if not integers and not np.can_cast(in_dtype, out, casting="same_kind"):
        raise SwtError(
            f"cannot compute {in_dtype} input as {out}: that would drop the {_kind_word(in_dtype)} part"
        )
    return out


def _kind_word(dtype) -> str:
    return {"c": "imaginary", "f": "fractional"}[dtype.kind]


def accumulator_dtype(in_dtype, out_dtype) -> np.dtype:
    """The dtype sums are taken in: float16 sums in float32, integers in 64 bits.

    >>> accumulator_dtype(np.dtype('int8'), np.dtype('int8'))
    dtype('int64')
    """
    if out_dtype.kind in "iu":
        return np.dtype(np.uint64 if in_dtype == np.uint64 else np.int64)
    acc = np.result_type(in_dtype, out_dtype)
    if acc == np.float16:
        return np.dtype(np.float32)
    return acc


def holding_dtype(lo, hi, kind: str) -> str:
    """Name of the smallest integer dtype of ``kind`` ('i' or 'u') that holds ``[lo, hi]``; the unsigned
    ones next where none of ``kind`` does and nothing is negative; float64 (which rounds) only where no
    integer dtype holds it.

    >>> holding_dtype(0, 2**63, "i")
    'uint64'
    """
    ladders = [_INTEGER_LADDER["u" if kind == "u" and lo >= 0 else "i"]] + ([_INTEGER_LADDER["u"]] if lo >= 0 else [])
    for ladder in ladders:
        for t in ladder:
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                return np.dtype(t).name
    return "float64"


def cast_result(acc, out_dtype, xp, context: object):
    """``acc`` as ``out_dtype``; integers are range-checked, never wrapped (``context``, formatted only on
    an error, starts its message)."""
    if acc.dtype == out_dtype:
        return acc
    if out_dtype.kind in "iu" and acc.size:
        info = np.iinfo(out_dtype)
        lo, hi = int(acc.min()), int(acc.max())
        if lo < info.min or hi > info.max:
            raise SwtError(
                f"{context}: results range from {lo} to {hi}, which does not fit {out_dtype.name}: "
                f"use dtype {holding_dtype(lo, hi, out_dtype.kind)}"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # floats: a sum beyond float16's range is inf (IEEE)
        return acc.astype(out_dtype, copy=False)
