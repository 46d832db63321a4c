"""swt: the sliding-window transpose (fold) and its partner unfold, MegEngine-exact, for arrays and files.

>>> import numpy as np
>>> from swt_cli import sliding_window, sliding_window_transpose
>>> x = np.random.rand(2, 3, 64, 64).astype(np.float32)
>>> sliding_window_transpose(sliding_window(x, 3, stride=2), 64, 3, stride=2).shape
(2, 3, 64, 64)
"""

from ._version import __version__
from .errors import SwtError
from .geometry import Geometry, plan_fold, plan_unfold
from .api import sliding_window, sliding_window_transpose
from .module import SlidingWindow, SlidingWindowTranspose


__all__ = [
    "Geometry",
    "SlidingWindow",
    "SlidingWindowTranspose",
    "SwtError",
    "plan_fold",
    "plan_unfold",
    "sliding_window",
    "sliding_window_transpose",
    "__version__",
]
