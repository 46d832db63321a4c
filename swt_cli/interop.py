"""Arrays of other libraries: anything with ``__dlpack__`` (torch tensors, JAX arrays, ...) in and out.

swt computes on NumPy arrays (CPU) and CuPy arrays (CUDA). Another library's array is viewed as one of
those through DLPack, without a copy (:func:`from_dlpack`), folded, and the result viewed back as an array
of the input's own library, on the input's device (``namespace.from_dlpack``, again without a copy). The
input's library (its array-API namespace) is found by ``array-api-compat``, which knows the libraries by
their types without importing any, so swt needs no torch, JAX or CuPy of its own. An object whose library
array-api-compat does not know (one with nothing but ``__dlpack__``) gets a NumPy array back (a CuPy one
from a GPU).

There is no autograd: a tensor that requires gradients is refused rather than silently detached.

>>> import numpy as np
>>> class Only:  # an array of an unknown library: nothing but the DLPack protocol
...     def __init__(self, a):
...         self.a = a
...     def __dlpack__(self, **kwargs):
...         return self.a.__dlpack__(**kwargs)
>>> x = np.arange(6.0)
>>> view, back = from_dlpack(Only(x))
>>> np.shares_memory(view, x), type(back(view * 2)).__name__
(True, 'ndarray')
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import import_cupy
from .errors import SwtError

#: DLPack device types (``DLDeviceType``): memory NumPy reads, and memory CuPy reads.
_CPU_DEVICES = {1: "CPU", 3: "CUDA host (pinned)"}
_CUDA_DEVICES = {2: "CUDA", 13: "CUDA managed"}
_DEVICE_NAMES = {**_CPU_DEVICES, **_CUDA_DEVICES, 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                 11: "ROCm host", 12: "extension device", 14: "oneAPI", 15: "WebGPU", 16: "Hexagon", 17: "MAIA"}


def is_dask_array(x) -> bool:
    """``x`` is a ``dask.array.Array`` (without importing dask: no dask array exists unless it is imported)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(x, dask_array.Array)


def is_foreign(x) -> bool:
    """``x`` is an array of another library that swt takes through DLPack: it has ``__dlpack__`` and is
    none of NumPy's, CuPy's or Dask's (which swt computes with directly)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack__"):
        return False
    from array_api_compat import is_cupy_array

    return not is_cupy_array(x) and not is_dask_array(x)


def _device(x) -> tuple[int, int]:
    try:
        kind, index = x.__dlpack_device__()
    except AttributeError:  # only __dlpack__: the protocol's default is the CPU
        return 1, 0
    return int(kind), int(index)


def from_dlpack(x) -> tuple[Any, Callable[[Any], Any]]:
    """``x`` viewed (zero-copy) as a NumPy array, or as a CuPy array where it lives on a CUDA device, and a
    function that views a result of swt as an array of ``x``'s library on ``x``'s device.

    Raises ``SwtError`` for a tensor that requires gradients, a device other than the CPU and CUDA, or a
    dtype NumPy has no equivalent of (bfloat16).
    """
    if getattr(x, "requires_grad", False) is True:
        raise SwtError(f"swt has no autograd: the {type(x).__name__} requires grad; pass it detached (x.detach()) "
                       f"or fold it with a differentiable operation (torch.nn.functional.fold)")
    kind, index = _device(x)
    what = f"{type(x).__name__} of {getattr(x, 'dtype', 'unknown dtype')} on {_DEVICE_NAMES.get(kind, f'device type {kind}')}"
    if kind in _CPU_DEVICES:
        xp: Any = np
    elif kind in _CUDA_DEVICES:
        xp = import_cupy()
    else:
        raise SwtError(f"swt computes on the CPU (NumPy) and on CUDA GPUs (CuPy), not on this {what}: "
                       f"move it to the CPU or a CUDA device first")
    try:
        if xp is np:
            view = np.from_dlpack(x)
        else:
            with xp.cuda.Device(index):
                view = xp.from_dlpack(x)
    except (RuntimeError, BufferError, TypeError, ValueError) as err:
        raise SwtError(f"cannot view the {what} as a {xp.__name__} array through DLPack ({err}): "
                       f"convert it to a float, complex or integer dtype first") from None
    return view, _returner(x, kind, index)


def _returner(x, kind: int, index: int) -> Callable[[Any], Any]:
    """How to hand a result back as ``x``'s kind of array: its library's ``from_dlpack`` (which keeps the
    device of the memory it is given), or the NumPy/CuPy array itself for a library nobody knows."""
    from array_api_compat import array_namespace

    try:
        namespace = array_namespace(x)
    except TypeError:  # an object with only the protocol: swt's own arrays are the best answer
        return lambda result: result

    def back(result):
        if kind in _CUDA_DEVICES:
            with sys.modules["cupy"].cuda.Device(index):
                return namespace.from_dlpack(result)
        return namespace.from_dlpack(result)

    return back


def through_dlpack(call: Callable[[Any], Any], x):
    """``call`` (a function of one NumPy or CuPy array) on ``x`` viewed through DLPack, its result returned
    as ``x``'s kind of array on ``x``'s device; no copy either way."""
    view, back = from_dlpack(x)
    return back(call(view))
