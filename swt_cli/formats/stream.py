"""The .npy stream on stdin and stdout, read and written block by block in order.

``swt unfold img.npy - -k 3 | swt fold - out.npy -k 3`` passes no temporary file: each side holds one
block at a time.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from ..errors import SwtError
from ..geometry import fmt_shape
from .base import ArrayReader, ArrayWriter, Location
from .npy import _bytes, block_offset, block_shape, header_bytes, read_header


class StdinReader(ArrayReader):
    sequential = True

    def __init__(self, location: Location, stream=None):
        self.location = location
        self.attrs = {}
        self._stream = stream if stream is not None else sys.stdin.buffer
        if self._stream.isatty() if hasattr(self._stream, "isatty") else False:
            raise SwtError("stdin is a terminal: pipe a .npy stream into swt, e.g. swt unfold img.npy - -k 3 | swt fold - out.npy -k 3")
        self.shape, fortran, self.dtype = read_header(self._stream, "stdin")
        if fortran:
            raise SwtError("stdin holds a Fortran-ordered .npy stream: swt streams C order only (save with np.save on a C-ordered array)")
        self._position = 0  # elements consumed

    def read(self, index: tuple) -> np.ndarray:
        offset, count = block_offset(self.shape, index)
        if offset != self._position:
            raise SwtError(f"internal error: stdin blocks must be read in order (at {self._position}, asked for {offset})")
        out = np.empty(block_shape(self.shape, index), self.dtype)
        view = memoryview(_bytes(out))
        got = 0
        while got < len(view):
            n = self._stream.readinto(view[got:])
            if not n:
                total = math.prod(self.shape) * self.dtype.itemsize
                done = offset * self.dtype.itemsize + got
                raise SwtError(
                    f"stdin ended after {done} of {total} bytes of data: the stream of {fmt_shape(self.shape)} "
                    f"{self.dtype} is truncated"
                )
            got += n
        self._position += count
        return out


class StdoutWriter(ArrayWriter):
    """Writes the header at once, then each block in order; a pipe cannot be taken back on failure."""

    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False, stream=None):
        self._stream = stream if stream is not None else sys.stdout.buffer
        if hasattr(self._stream, "isatty") and self._stream.isatty():
            raise SwtError("refusing to write binary .npy data to a terminal: redirect stdout to a file or a pipe")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._position = 0
        self._header = header_bytes(self.shape, self.dtype)
        self._started = False

    def _put(self, data) -> None:
        try:
            if not self._started:
                self._stream.write(self._header)
                self._started = True
            self._stream.write(data)
        except BrokenPipeError:
            _silence_stdout()
            raise SwtError("stdout was closed before the output was complete (the reading end of the pipe exited)") from None

    def write(self, index: tuple, block: np.ndarray) -> None:
        offset, count = block_offset(self.shape, index)
        if offset != self._position:
            raise SwtError(f"internal error: stdout blocks must be written in order (at {self._position}, got {offset})")
        self._put(_bytes(np.ascontiguousarray(block, self.dtype)))
        self._position += count

    def commit(self) -> None:
        if not self._started:
            self._put(b"")
        try:
            self._stream.flush()
        except BrokenPipeError:
            _silence_stdout()
            raise SwtError("stdout was closed before the output was complete (the reading end of the pipe exited)") from None

    def abort(self) -> None:
        pass


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
