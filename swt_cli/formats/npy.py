""".npy files: headers parsed without pickle, rows read and written at their byte offsets.

Reads go through positioned reads rather than a memory map: mapped pages of a file larger than memory
would count against the process and linger, while a read into a fresh block keeps memory to the budget.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

from ..backend import check_dtype
from ..errors import SwtError, first_line
from ..geometry import MAX_SIZE, fmt_shape
from .base import ArrayReader, ArrayWriter, Location, block_shape, nbytes, out_fits, read_at, write_failed

#: numpy's own limit on header length (numpy >= 1.24 refuses longer headers as unsafe).
MAX_HEADER = 10000


def read_header(stream, where: str):
    """``(shape, fortran_order, dtype)`` from the start of a .npy stream, or a clear error."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy version {version[0]}.{version[1]}")
        # numpy reads the whole header before checking its length: check it first, so a header that
        # claims 4 GB (on a pipe, or in a large file) is refused before any of it is read
        length_bytes = _read_exact(stream, 2 if version == (1, 0) else 4, "the header length")
        length = int.from_bytes(length_bytes, "little")
        if length > MAX_HEADER:
            raise SwtError(f"{where} has a .npy header of {length:,} bytes, over numpy's safety limit of "
                           f"{MAX_HEADER:,}: swt does not read it")
        header = io.BytesIO(length_bytes + _read_exact(stream, length, "the header"))
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(header, max_header_size=MAX_HEADER)  # ast.literal_eval: never eval
    except SwtError:
        raise
    except (Exception, MemoryError, RecursionError) as err:  # numpy's parser raises many types (tokenize.TokenError...)
        raise SwtError(f"{where} is not a valid .npy file: {first_line(err)}") from None
    if dtype.hasobject:
        raise SwtError(f"{where} holds Python objects (dtype {dtype}): swt never unpickles; save numeric data")
    check_dtype(dtype, f"{where}:")
    if (any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in shape)  # True is an int to Python
            or math.prod(max(v, 1) for v in shape) * dtype.itemsize > MAX_SIZE):  # an empty (0, 2**70) too
        raise SwtError(f"{where} claims an impossible shape {shape}")
    return tuple(shape), fortran, dtype


def _read_exact(stream, size: int, what: str) -> bytes:
    """``size`` bytes from ``stream`` (a pipe may hand them over in pieces), or EOFError."""
    data = b""
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            raise EOFError(f"the file ends in {what} ({len(data)} of {size} bytes)")
        data += piece
    return data



def header_bytes(shape, dtype) -> bytes:
    """The .npy header for a C-ordered array of ``shape`` and ``dtype`` (version 1.0 where it fits)."""
    import io

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def block_offset(shape, index) -> tuple[int, int]:
    """Element offset and count of a block of the leading axes, which must be contiguous in C order.

    >>> block_offset((4, 3, 2), (slice(1, 3),))
    (6, 12)
    >>> block_offset((4, 3, 2), (slice(2, 3), slice(1, 3)))
    (14, 4)
    """
    offset, count, stride = 0, 1, math.prod(shape)
    for axis, sl in enumerate(index):
        stride //= max(shape[axis], 1)
        start, stop, _ = sl.indices(shape[axis])
        offset += start * stride
        count = stop - start
        if axis + 1 < len(index) and count != 1:
            raise ValueError(f"block {index} of shape {shape} is not contiguous")
    return offset, count * stride if index else math.prod(shape)


def contiguous_block(shape, index) -> bool:
    """Whether ``index`` is one run of the C-ordered array's elements (what :func:`block_offset` takes)."""
    try:
        block_offset(shape, index)
    except ValueError:
        return False
    return True


def _bytes(array: np.ndarray) -> np.ndarray:
    """A C-contiguous array's memory as flat bytes (works for every dtype, complex included)."""
    return array.reshape(-1).view(np.uint8)


class NpyReader(ArrayReader):
    def __init__(self, location: Location):
        self.location = location
        self.attrs = {}
        try:
            self._file = open(location.path, "rb")
        except FileNotFoundError:
            raise SwtError(f"no such file: {location.path}") from None
        except IsADirectoryError:
            raise SwtError(f"{location.path} is a folder, not a .npy file") from None
        self.shape, self._fortran, self.dtype = read_header(self._file, location.path)
        self._data_offset = self._file.tell()
        try:
            self._check_size(os.fstat(self._file.fileno()).st_size)
        except SwtError:
            self._file.close()
            raise

    def _check_size(self, actual: int) -> None:
        expected = self._data_offset + math.prod(self.shape) * self.dtype.itemsize
        if actual < expected:
            raise SwtError(
                f"{self.location.path} is truncated: its header promises {fmt_shape(self.shape)} {self.dtype} "
                f"({expected} bytes) but the file has {actual}"
            )

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        if self._fortran:
            view = np.memmap(self._file, self.dtype, "r", self._data_offset, self.shape, order="F")
            return np.array(view[index], order="C")
        offset, count = block_offset(self.shape, index)
        shape = block_shape(self.shape, index)
        if not out_fits(out, shape, self.dtype):
            out = np.empty(shape, self.dtype)
        nbytes = count * self.dtype.itemsize
        got = read_at(self._file.fileno(), _bytes(out), self._data_offset + offset * self.dtype.itemsize) if nbytes else 0
        if got != nbytes:
            raise SwtError(f"{self.location.path} changed while being read: got {got} of {nbytes} bytes")
        return out

    def describe(self) -> dict:
        info = super().describe()
        info["order"] = "F" if self._fortran else "C"
        return info

    def close(self) -> None:
        self._file.close()


class RemoteNpyReader(NpyReader):
    """A .npy file behind a URL, read by ranged requests: the header, then each block's bytes (the file is
    never downloaded whole)."""

    def __init__(self, location: Location):
        from ..storage import filesystem, remote_errors

        self.location = location
        self.attrs = {}
        with remote_errors(location.path):
            self._fs, self._inner = filesystem(location.path, location.options)
            size = int(self._fs.size(self._inner))
            head = self._fs.cat_file(self._inner, start=0, end=min(size, MAX_HEADER + 16))
        stream = io.BytesIO(head)
        self.shape, self._fortran, self.dtype = read_header(stream, location.path)
        if self._fortran:
            raise SwtError(f"{location.path} is stored in Fortran order, which swt reads only from local files: copy it "
                           f"here first, or save it in C order")
        self._data_offset = stream.tell()
        self._check_size(size)

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        from ..storage import remote_errors

        offset, count = block_offset(self.shape, index)
        shape = block_shape(self.shape, index)
        if not out_fits(out, shape, self.dtype):
            out = np.empty(shape, self.dtype)
        size = count * self.dtype.itemsize
        start = self._data_offset + offset * self.dtype.itemsize
        with remote_errors(self.location.path):
            data = self._fs.cat_file(self._inner, start=start, end=start + size) if size else b""
        if len(data) > size:
            raise SwtError(f"{self.location.path}: the server sent {len(data):,} bytes for a range of {size:,}: it does "
                           f"not serve byte ranges, by which swt reads files in pieces; copy the file here first")
        if len(data) != size:
            raise SwtError(f"{self.location.path} changed while being read: got {len(data)} of {size} bytes")
        _bytes(out)[:] = np.frombuffer(data, np.uint8)
        return out

    def close(self) -> None:
        pass


class NpyWriter(ArrayWriter):
    """Writes blocks at their offsets in a temporary file; ``commit`` renames it onto the output."""

    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._start(location, overwrite, len(header_bytes(self.shape, self.dtype)) + nbytes(self.shape, self.dtype))
        try:
            self._file = open(self._temp, "wb")
        except OSError as err:
            raise write_failed(location.path, err) from None
        with self._creating():
            header = header_bytes(self.shape, self.dtype)
            self._file.write(header)
            self._data_offset = len(header)
            self._file.truncate(self._data_offset + nbytes(self.shape, self.dtype))

    def write(self, index: tuple, block: np.ndarray) -> None:
        offset, count = block_offset(self.shape, index)
        data = np.ascontiguousarray(block, self.dtype)
        if data.size != count:
            raise SwtError(f"internal error: block of {data.size} elements for {count} places")
        try:
            self._file.seek(self._data_offset + offset * self.dtype.itemsize)
            self._file.write(_bytes(data).data)
        except OSError as err:
            raise write_failed(self.location.path, err) from None

    def commit(self) -> None:
        try:
            self._file.close()
            self._move_into_place()
        except OSError as err:
            raise write_failed(self.location.path, err) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:  # a full disk fails the last flush; the file goes anyway
            pass
        self._drop_temp()
