"""swt: the sliding-window transpose (fold) and its partner unfold, MegEngine-exact, for arrays and files.

>>> import numpy as np
>>> from swt_cli import sliding_window, sliding_window_transpose
>>> x = np.random.rand(2, 3, 64, 64).astype(np.float32)
>>> sliding_window_transpose(sliding_window(x, 3, stride=2), 64, 3, stride=2).shape
(2, 3, 64, 64)

The names below are imported on first use: ``import swt_cli`` (and the ``swt`` command, which imports
this package first) loads neither NumPy nor the file formats until something needs them.
"""

from __future__ import annotations

import importlib

from ._version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `swt --help` starts here (swt_cli._entry)

#: Each public name and the module it comes from.
_SOURCES = {
    "sliding_window": "api",
    "sliding_window_transpose": "api",
    "SwtError": "errors",
    "Geometry": "geometry",
    "plan_fold": "geometry",
    "plan_unfold": "geometry",
    "SlidingWindow": "module",
    "SlidingWindowTranspose": "module",
    # The job layer (files to files): it brings in the file formats.
    "fold_file": "jobs",
    "unfold_file": "jobs",
    "plan": "jobs",
    "info": "jobs",
    "RunOptions": "jobs",
    "JobResult": "jobs",
    "Plan": "jobs",
}

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .api import sliding_window, sliding_window_transpose
    from .errors import SwtError
    from .geometry import Geometry, plan_fold, plan_unfold
    from .jobs import JobResult, Plan, RunOptions, fold_file, info, plan, unfold_file
    from .module import SlidingWindow, SlidingWindowTranspose


def __getattr__(name: str):
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'swt_cli' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


__all__ = [
    "Geometry",
    "JobResult",
    "Plan",
    "RunOptions",
    "SlidingWindow",
    "SlidingWindowTranspose",
    "SwtError",
    "fold_file",
    "info",
    "plan",
    "plan_fold",
    "plan_unfold",
    "sliding_window",
    "sliding_window_transpose",
    "unfold_file",
    "__version__",
]
