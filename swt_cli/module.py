"""Parameter-free modules that stand in for ``megengine.module.SlidingWindowTranspose`` and ``SlidingWindow``.

>>> import numpy as np
>>> m = SlidingWindowTranspose(64, 3, stride=2)
>>> m(np.ones((1, 1, 31, 31, 3, 3), np.float32)).shape
(1, 1, 64, 64)
"""

from __future__ import annotations

from collections import OrderedDict

from .api import check_layout, sliding_window, sliding_window_transpose
from .cover import check_coverable
from .errors import SwtError
from .geometry import Geometry


class HookHandler:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: "OrderedDict[int, object]", hook):
        self._hooks = hooks
        self.id = HookHandler._next_id
        HookHandler._next_id += 1
        hooks[self.id] = hook

    def remove(self):
        self._hooks.pop(self.id, None)


class Module:
    """MegEngine's ``Module`` protocol for a module with no parameters, buffers or children.

    Subclasses implement ``forward`` and ``_module_info_string``.
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self.training = True
        self.quantize_disabled = False
        self._forward_pre_hooks: OrderedDict = OrderedDict()
        self._forward_hooks: OrderedDict = OrderedDict()

    def forward(self, inputs):
        raise NotImplementedError

    def __call__(self, *inputs, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            modified = hook(self, inputs)
            if modified is not None:
                inputs = modified if isinstance(modified, tuple) else (modified,)
        outputs = self.forward(*inputs, **kwargs)
        for hook in list(self._forward_hooks.values()):
            modified = hook(self, inputs, outputs)
            if modified is not None:
                outputs = modified
        return outputs

    def register_forward_pre_hook(self, hook) -> HookHandler:
        """``hook(module, inputs)`` runs before ``forward``; a non-None result replaces the inputs."""
        return HookHandler(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook) -> HookHandler:
        """``hook(module, inputs, outputs)`` runs after ``forward``; a non-None result replaces the outputs."""
        return HookHandler(self._forward_hooks, hook)

    # Tree traversal: this module is a leaf, so only ``modules`` yields anything (itself).
    def named_children(self, **kwargs):
        return iter(())

    def children(self, **kwargs):
        return (module for _, module in self.named_children(**kwargs))

    def named_modules(self, prefix: str | None = None, **kwargs):
        yield ("" if prefix is None else prefix), self

    def modules(self, **kwargs):
        return (module for _, module in self.named_modules(**kwargs))

    def named_parameters(self, prefix: str | None = None, recursive: bool = True, **kwargs):
        return iter(())

    def parameters(self, recursive: bool = True, **kwargs):
        return (value for _, value in self.named_parameters(recursive=recursive, **kwargs))

    named_buffers = named_tensors = named_parameters

    def buffers(self, recursive: bool = True, **kwargs):
        return self.parameters(recursive=recursive, **kwargs)

    tensors = buffers

    def apply(self, fn) -> None:
        for module in self.modules():
            fn(module)

    def train(self, mode: bool = True, recursive: bool = True) -> None:
        def set_mode(module):
            module.training = mode

        self.apply(set_mode) if recursive else set_mode(self)

    def eval(self) -> None:
        self.train(False)

    def zero_grad(self) -> None:
        """No parameters, so nothing to zero."""

    def disable_quantize(self, value: bool = True):
        def set_flag(module):
            module.quantize_disabled = value

        self.apply(set_flag)
        return self

    def replace_param(self, params: dict, start_pos: int, seen=None) -> int:
        """Swap parameters numbered from ``start_pos``; returns how many this module holds (none)."""
        return 0

    def state_dict(self, rst=None, prefix: str = "", keep_var: bool = False):
        return OrderedDict() if rst is None else rst

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Accepts an empty mapping (or a callable, as MegEngine does); ``strict`` refuses any key."""
        if callable(state_dict):
            return
        unexpected = sorted(state_dict)
        if strict and unexpected:
            raise SwtError(
                f"{type(self).__name__} has no parameters, but the state dict holds {', '.join(map(str, unexpected))}"
                " (pass strict=False to ignore them)"
            )

    def _module_info_string(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._module_info_string()})"


class SlidingWindowTranspose(Module):
    """Module form of :func:`~swt_cli.api.sliding_window_transpose`: ``megengine.module.SlidingWindowTranspose``.

    Calling the module (or ``forward``) folds windows ``(..., I1..ID, K1..KD)`` into images
    ``(..., O1..OD)``; it holds no parameters, and follows MegEngine's ``Module`` protocol (hooks,
    ``train``/``eval``, an empty ``state_dict``). It takes what the function takes: NumPy, CuPy and Dask
    arrays, and torch tensors (or any array with ``__dlpack__``), returning the same kind.

    Parameters
    ----------
    output_size : int or tuple of int or None
        The image size; None takes the smallest that holds the window grid.
    kernel_size : int or tuple of int
        Window size.
    padding : int or tuple of int, default 0
        Padding that was added on each side before cutting.
    stride : int or tuple of int, default 1
        Step between windows.
    dilation : int or tuple of int, default 1
        Spacing of the window elements.
    reduce : {"sum", "mean"}, default "sum"
        How overlapping windows combine (keyword-only): see :func:`~swt_cli.api.sliding_window_transpose`.
    weight : str or array_like, optional
        A window function's name or an array of the kernel's shape (keyword-only).
    fill : number, default 0
        Value of output elements no window covers (keyword-only).
    cover : bool, default False
        The windows of ``SlidingWindow(..., cover=True)`` from images of ``output_size`` (keyword-only).
    layout : {"megengine", "torch"}, default "megengine"
        ``"torch"``: windows in ``torch.nn.functional.unfold``'s layout ``(N, C*K1*..*KD, L)``
        (keyword-only; needs ``output_size``).
    name : str, optional
        The module's name, as MegEngine's ``Module`` takes it.

    Raises
    ------
    SwtError
        At construction, for an invalid geometry, ``reduce``, ``weight`` or ``fill``; when called, where
        the windows' shape does not fit the geometry.

    Examples
    --------
    >>> import numpy as np
    >>> fold = SlidingWindowTranspose((64, 48), 3, stride=2)
    >>> fold(np.ones((2, 3, 31, 23, 3, 3), np.float32)).shape
    (2, 3, 64, 48)
    >>> fold
    SlidingWindowTranspose(output_size=(64, 48), kernel_size=3, padding=0, stride=2, dilation=1)
    """

    def __init__(self, output_size, kernel_size, padding=0, stride=1, dilation=1, *, reduce="sum", weight=None,
                 fill=0, cover=False, layout="megengine", **kwargs):
        super().__init__(**kwargs)
        geometry = Geometry.from_args(kernel_size, padding, stride, dilation, output_size)  # fail early, not at forward
        from .blend import Blend

        Blend(geometry.kernel, reduce, weight, fill)  # checks reduce, weight and fill now
        if cover:
            check_coverable(geometry)
        check_layout(layout, output_size)
        self.cover, self.layout = cover, layout
        self.reduce = reduce
        self.weight = weight
        self.fill = fill
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.dilation = dilation

    def forward(self, inp):
        return sliding_window_transpose(
            inp, self.output_size, self.kernel_size, self.padding, self.stride, self.dilation,
            reduce=self.reduce, weight=self.weight, fill=self.fill, cover=self.cover, layout=self.layout,
        )

    def _module_info_string(self) -> str:
        extra = "" if self.reduce == "sum" else f", reduce={self.reduce!r}"
        if self.weight is not None:
            extra += f", weight={self.weight!r}" if isinstance(self.weight, str) else ", weight=<array>"
        if not self.fill == 0:
            extra += f", fill={self.fill}"
        if self.cover:
            extra += ", cover=True"
        if self.layout != "megengine":
            extra += f", layout={self.layout!r}"
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"stride={self.stride}, dilation={self.dilation}{extra}"
        )


class SlidingWindow(Module):
    """Module form of :func:`~swt_cli.api.sliding_window`: ``megengine.module.SlidingWindow``.

    Calling the module (or ``forward``) cuts images ``(..., S1..SD)`` into windows
    ``(..., I1..ID, K1..KD)``, zero-padded at the borders; it holds no parameters.

    Parameters
    ----------
    kernel_size : int or tuple of int
        Window size.
    padding : int or tuple of int, default 0
        Zeros added on each side of every spatial axis.
    stride : int or tuple of int, default 1
        Step between windows.
    dilation : int or tuple of int, default 1
        Spacing of the window elements.
    cover : bool, default False
        Pad the far edges with ``pad_value`` so the windows reach every element (keyword-only).
    pad_value : number, default 0
        The value padded in with ``cover=True`` (keyword-only).
    layout : {"megengine", "torch"}, default "megengine"
        ``"torch"``: return windows in ``torch.nn.functional.unfold``'s layout ``(N, C*K1*..*KD, L)``
        (keyword-only).
    name : str, optional
        The module's name, as MegEngine's ``Module`` takes it.

    Raises
    ------
    SwtError
        At construction, for an invalid geometry; when called, where not even one window fits.

    Examples
    --------
    >>> import numpy as np
    >>> unfold = SlidingWindow(3, stride=2)
    >>> unfold(np.ones((2, 3, 64, 64), np.float32)).shape
    (2, 3, 31, 31, 3, 3)
    >>> unfold
    SlidingWindow(kernel_size=3, padding=0, stride=2, dilation=1)
    """

    def __init__(self, kernel_size, padding=0, stride=1, dilation=1, *, cover=False, pad_value=0, layout="megengine",
                 **kwargs):
        super().__init__(**kwargs)
        geometry = Geometry.from_args(kernel_size, padding, stride, dilation)
        if cover:
            check_coverable(geometry)
        elif not pad_value == 0:
            raise SwtError(f"pad_value={pad_value!r} pads only with cover=True: pass cover=True, or leave pad_value out")
        check_layout(layout)
        self.cover, self.pad_value, self.layout = cover, pad_value, layout
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.dilation = dilation

    def forward(self, inp):
        return sliding_window(inp, self.kernel_size, self.padding, self.stride, self.dilation, cover=self.cover,
                              pad_value=self.pad_value, layout=self.layout)

    def _module_info_string(self) -> str:
        extra = (", cover=True" + (f", pad_value={self.pad_value}" if not self.pad_value == 0 else "")) if self.cover else ""
        extra += f", layout={self.layout!r}" if self.layout != "megengine" else ""
        return (
            f"kernel_size={self.kernel_size}, padding={self.padding}, stride={self.stride}, "
            f"dilation={self.dilation}{extra}"
        )
