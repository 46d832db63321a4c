"""The .npy stream on stdin and stdout, read and written block by block in order.

``swt unfold img.npy - -k 3 | swt fold - out.npy -k 3`` passes no temporary file: each side holds one
block at a time.
"""

from __future__ import annotations

import errno
import io
import math
import os
import select
import stat
import sys

import numpy as np

from ..errors import SwtError
from ..geometry import fmt_shape
from ..stdio import CLOSED_AT_START
from .base import ArrayReader, ArrayWriter, Location, out_fits
from .npy import _bytes, block_offset, block_shape, header_bytes, read_header


def is_fifo(path: str) -> bool:
    """Whether ``path`` is a named pipe (``mkfifo x.npy``): read and written as a stream, in order."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class _WaitingReads:
    """A descriptor read until data comes: on a non-blocking stdin a read that finds no data yet returns
    None, which is not the end of the stream; wait for data (``select``) and read again."""

    def __init__(self, raw):
        self.raw = raw

    def _until_data(self, call, arg):
        while True:
            got = call(arg)
            if got is not None:
                return got
            select.select([self.raw.fileno()], [], [])

    def read(self, size: int = -1):
        return self._until_data(self.raw.read, size)

    def readinto(self, buffer) -> int:
        return self._until_data(self.raw.readinto, buffer)

    def isatty(self) -> bool:
        return self.raw.isatty()


class StdinReader(ArrayReader):
    """The .npy stream on stdin, or (``stream``, ``where``) on a named pipe."""

    sequential = True

    def __init__(self, location: Location, stream=None, where: str = "stdin"):
        self.location = location
        self.attrs = {}
        self._where = where
        if stream is None:
            if 0 in CLOSED_AT_START or sys.stdin is None:
                raise SwtError("stdin is closed (as with <&-): pipe a .npy stream into swt, or name an input file")
            stream = _WaitingReads(_unbuffered(sys.stdin, "rb"))
        self._stream = stream
        if self._stream.isatty() if hasattr(self._stream, "isatty") else False:
            raise SwtError("stdin is a terminal: pipe a .npy stream into swt, e.g. "
                           "swt unfold img.npy - -k 3 | swt fold - out.npy -k 3")
        self.shape, fortran, self.dtype = read_header(self._stream, where)
        if fortran:
            raise SwtError(f"{where} holds a Fortran-ordered .npy stream: swt streams C order only (save with np.save on a "
                           f"C-ordered array)")
        self._position = 0  # elements consumed

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        offset, count = block_offset(self.shape, index)
        if offset != self._position:
            raise SwtError(f"internal error: stdin blocks must be read in order (at {self._position}, asked for {offset})")
        if not out_fits(out, block_shape(self.shape, index), self.dtype):
            out = np.empty(block_shape(self.shape, index), self.dtype)
        view = _bytes(out).data
        got = 0
        while got < len(view):
            n = self._stream.readinto(view[got:])
            if not n:
                total = math.prod(self.shape) * self.dtype.itemsize
                done = offset * self.dtype.itemsize + got
                raise SwtError(
                    f"{self._where} ended after {done} of {total} bytes of data: the stream of {fmt_shape(self.shape)} "
                    f"{self.dtype} is truncated"
                )
            got += n
        self._position += count
        return out

    def close(self) -> None:
        if self._where != "stdin":  # a named pipe swt opened
            self._stream.close()


class StdoutWriter(ArrayWriter):
    """Writes the header at once, then each block in order; a pipe cannot be taken back on failure."""

    sequential = True  # blocks go out in order, and a write may block for as long as the reader waits

    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False,
                 stream=None):
        if stream is None and (1 in CLOSED_AT_START or sys.stdout is None):
            raise SwtError("stdout is closed (as with >&-): redirect it to a file or a pipe, or name an output file")
        self._stream = stream if stream is not None else _unbuffered(sys.stdout, "wb")
        if hasattr(self._stream, "isatty") and self._stream.isatty():
            raise SwtError("refusing to write binary .npy data to a terminal: redirect stdout to a file or a pipe")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._position = 0
        self._header = header_bytes(self.shape, self.dtype)
        self._started = False
        self._where = "stdout"

    def _put(self, data, flush: bool = False) -> None:
        try:
            if not self._started:
                _write_all(self._stream, self._header)
                self._started = True
            _write_all(self._stream, data)
            if flush:
                self._stream.flush()
        except BrokenPipeError:
            self._after_error()
            raise SwtError(f"{self._where} was closed before the output was complete (the reading end of the pipe "
                           f"exited)") from None
        except OSError as err:
            self._after_error()
            raise SwtError(f"cannot write to {self._where}: {_strerror(err)}; the stream is incomplete") from None

    def _after_error(self) -> None:
        if self._where == "stdout":
            _silence_stdout()

    def write(self, index: tuple, block: np.ndarray) -> None:
        offset, count = block_offset(self.shape, index)
        if offset != self._position:
            raise SwtError(f"internal error: stdout blocks must be written in order (at {self._position}, got {offset})")
        self._put(_bytes(np.ascontiguousarray(block, self.dtype)))
        self._position += count

    def commit(self) -> None:
        self._put(b"", flush=True)

    def abort(self) -> None:
        pass


class FifoWriter(StdoutWriter):
    """A .npy stream into a named pipe at the output's name (``mkfifo out.npy``): nothing is replaced."""

    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False):
        try:
            stream = open(location.path, "wb", buffering=0)  # noqa: SIM115 - closed by commit and abort
        except OSError as err:
            raise SwtError(f"cannot write {location.path}: {_strerror(err)}") from None
        super().__init__(location, shape, dtype, stream=stream)
        self._where = f"the named pipe {location.path}"
        self.location = location

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._close()

    def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self._stream.close()
        except OSError:
            pass


def _unbuffered(text_stream, mode: str):
    """An unbuffered binary file on ``text_stream``'s descriptor, else its ``.buffer`` (no descriptor: tests).

    Unbuffered, so a block read or write that never returns (a silent or stalled pipe, cut short by
    Ctrl-C) holds no buffer lock that Python's exit would wait for: it aborts with a fatal error then.
    """
    try:
        fd = text_stream.fileno()
    except (AttributeError, OSError, ValueError):
        return text_stream.buffer
    if mode == "wb":
        try:
            text_stream.flush()
        except (OSError, ValueError):
            pass
    return io.FileIO(fd, mode.replace("b", ""), closefd=False)


def _write_all(stream, data) -> None:
    """All of ``data``: an unbuffered write may take only part of it."""
    view = memoryview(data).cast("B")
    while len(view):
        n = stream.write(view)
        if n is None:  # a non-blocking descriptor that is full: wait for it like a blocking one
            select.select([], [stream.fileno()], [])
            continue
        view = view[n:]


def _strerror(err: OSError) -> str:
    name = errno.errorcode.get(err.errno or 0, "")
    return f"{err.strerror or err}" + (f" ({name})" if name else "")


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
