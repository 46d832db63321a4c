"""The names and sizes swt's options accept, with no imports beyond the standard library and ``errors``.

The command line declares its options (``click.Choice`` lists, ``--max-memory`` sizes) from these when
it starts, so they live here rather than beside the code that uses them (:mod:`swt_cli.blend`,
:mod:`swt_cli.layouts`, :mod:`swt_cli.formats`, :mod:`swt_cli.pipeline`), which imports NumPy: ``swt --help``
and ``swt --version`` then start without it. Those modules import the names from here.

>>> parse_size("1.5GiB") == 3 * 2**29
True
"""

from __future__ import annotations

import math
import re

from .errors import SwtError

#: How a fold combines overlapping windows (``reduce``).
REDUCES = ("sum", "mean")

#: Names accepted by ``weight``.
WINDOWS = ("uniform", "hann", "triangle", "gaussian")

#: Layouts of windows: MegEngine's ``(..., I1..ID, K1..KD)`` and torch's ``(N, C*K1*..*KD, L)``.
LAYOUTS = ("megengine", "torch")

#: Compressions each output format takes; the first is its default.
COMPRESSIONS = {
    "npy": ("none",),
    "stream": ("none",),
    "hdf5": ("none", "gzip", "lzf"),
    "zarr": ("zstd", "none", "blosc", "gzip"),
}

#: The memory budget of a run without --max-memory (and of ``swt plan``'s estimate).
DEFAULT_MAX_MEMORY = "512MiB"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in ``'128MiB'``, ``'2GB'``, ``'1.5G'`` or a plain number."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match[2].lower() not in _UNITS:
        raise SwtError(f"'{text}' is not a size: use a number with a unit such as 128MiB, 512MB or 2GiB")
    size = float(match[1]) * _UNITS[match[2].lower()]
    if not math.isfinite(size) or size > 2**62:
        raise SwtError(f"'{text}' is too large a size")
    return int(size)
