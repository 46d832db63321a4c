"""swt: the sliding-window transpose (fold) and its partner unfold, MegEngine-exact, for arrays and files.

>>> import numpy as np
>>> from swt_cli import sliding_window, sliding_window_transpose
>>> x = np.random.rand(2, 3, 64, 64).astype(np.float32)
>>> sliding_window_transpose(sliding_window(x, 3, stride=2), 64, 3, stride=2).shape
(2, 3, 64, 64)
"""

from ._version import __version__
from .api import sliding_window, sliding_window_transpose
from .errors import SwtError
from .geometry import Geometry, plan_fold, plan_unfold
from .module import SlidingWindow, SlidingWindowTranspose

#: The job layer (files to files), imported on first use: it brings in the file formats.
_JOBS = ("fold_file", "unfold_file", "plan", "info", "RunOptions", "JobResult", "Plan")


def __getattr__(name: str):
    if name in _JOBS:
        from . import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module 'swt_cli' has no attribute '{name}'")


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
