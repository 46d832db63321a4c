"""What the pipeline, the jobs and the distributed runs need of a reader, a writer and a transform.

``swt_cli.formats.ArrayReader`` and ``ArrayWriter`` are the base classes of the formats; these protocols
also admit the layouts' wrappers, the shared output's writer and the tests' stand-ins, without a base class.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .formats.base import Location


class Reader(Protocol):
    """An array read block by block (``swt_cli.formats.ArrayReader`` and the layouts' wrappers)."""

    location: Location
    shape: tuple
    dtype: np.dtype
    attrs: dict

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray: ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...


class Writer(Protocol):
    """An array written block by block and committed at the end (``swt_cli.formats.ArrayWriter``)."""

    def write(self, index: tuple, block: np.ndarray) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BlockTransform(Protocol):
    """A fold or unfold applied to blocks of the leading axes (``swt_cli.pipeline.Transform``)."""

    plan: Any
    in_dtype: np.dtype
    out_dtype: np.dtype

    @property
    def lead(self) -> int:
        """How many leading axes the blocks split."""
        ...

    def bytes_per_item(self) -> int: ...

    def __call__(self, block: np.ndarray) -> np.ndarray: ...
