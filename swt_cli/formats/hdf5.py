"""HDF5 files through h5py: an array named ``file.h5:/group/name``, or the only one in the file."""

from __future__ import annotations

import h5py
import numpy as np

from ..backend import check_dtype
from ..errors import SwtError, first_line
from .base import (
    ArrayReader, ArrayWriter, Location, commit_path, find_arrays, nbytes, remove_path, write_failed,
)


def _attrs(obj) -> dict:
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _members(h5file):
    found = []
    h5file.visititems(lambda path, obj: found.append((path, isinstance(obj, h5py.Dataset), obj)))
    return found


class H5Reader(ArrayReader):
    def __init__(self, location: Location):
        self.location = location
        try:
            self._file = h5py.File(location.path, "r")
        except FileNotFoundError:
            raise SwtError(f"no such file: {location.path}") from None
        except Exception as err:  # OSError mostly; h5py raises others for some damage
            raise SwtError(f"{location.path} is not a readable HDF5 file ({first_line(err)})") from None
        try:
            self._members = _members(self._file)
            self._dataset = find_arrays(self._members, location.path, location.name)
            if self._dataset.dtype.kind in "OSUV" or self._dataset.dtype.fields:
                raise SwtError(f"{location.path}:/{self._dataset.name.strip('/')} holds {self._dataset.dtype} data: swt needs numbers")
            self.dtype = check_dtype(self._dataset.dtype, str(location))
            if self._dataset.shape is None:
                raise SwtError(f"{location.path}:{self._dataset.name} is an empty dataset with no shape")
            self.shape = tuple(self._dataset.shape)
            self.attrs = _attrs(self._dataset)
        except BaseException as err:
            self._file.close()
            if isinstance(err, Exception) and not isinstance(err, SwtError):  # damage met while walking the file
                raise SwtError(f"{location.path} is damaged: cannot read its structure ({first_line(err)})") from None
            raise

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        try:
            if out is not None and index and out.size:
                self._dataset.read_direct(out, source_sel=index)
                return out
            return np.asarray(self._dataset[index] if index else self._dataset[()])
        except Exception as err:  # OSError, RuntimeError, ValueError, KeyError... for damaged chunks and B-trees
            raise SwtError(f"{self.location.path}: cannot read {self._dataset.name} ({first_line(err)}): the file is damaged") from None

    def describe(self) -> dict:
        info = super().describe()
        ds = self._dataset
        info.update(
            path=f"{self.location.path}:{ds.name}",
            chunks=list(ds.chunks) if ds.chunks else None,
            compression=ds.compression,
            compression_opts=ds.compression_opts,
            arrays=[{"name": "/" + p, "shape": list(o.shape or ()), "dtype": str(o.dtype)} for p, is_array, o in self._members if is_array],
        )
        return info

    def close(self) -> None:
        self._file.close()


class _Sink:
    """The temporary file as HDF5 sees it (h5py's ``fileobj`` driver): write errors are kept, not raised.

    HDF5 (2.0) does not survive a failed write: after ENOSPC or EIO inside the library, closing the
    file or freeing its objects crashes the process (SIGSEGV). So HDF5 is never told: the first error
    is kept, later writes are dropped, and ``H5Writer`` raises it itself, after which the temporary file
    is closed cleanly and removed.
    """

    def __init__(self, raw):
        self.raw = raw
        self.error: OSError | None = None

    def _keep(self, err: OSError) -> None:
        if self.error is None:
            self.error = err

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            view = memoryview(data).cast("B")
            try:
                while len(view):  # unbuffered: a write may take part of the data
                    done = self.raw.write(view)
                    if not done:
                        raise OSError(5, "the file system accepted none of a write")
                    view = view[done:]
            except OSError as err:
                self._keep(err)
        return size

    def readinto(self, buffer) -> int:
        return self.raw.readinto(buffer)

    def read(self, size=-1) -> bytes:
        return self.raw.read(size)

    def seek(self, offset, whence=0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def truncate(self, size=None) -> int:
        try:
            return self.raw.truncate(size)
        except OSError as err:
            self._keep(err)
            return self.raw.tell() if size is None else size

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as err:
            self._keep(err)


class H5Writer(ArrayWriter):
    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False):
        self._start(location, overwrite, nbytes(shape, dtype) if compression == "none" else None)
        self._file = None
        try:
            self._raw = open(self._temp, "w+b", buffering=0)  # unbuffered: every write error surfaces in write()
        except OSError as err:
            raise write_failed(location.path, err) from None
        with self._creating(errors=(OSError, RuntimeError)):
            self._sink = _Sink(self._raw)
            self._file = h5py.File(self._sink, "w")
            options = {} if compression == "none" else {"compression": compression}
            if compression == "gzip":
                options["compression_opts"] = 4
            has_data = all(int(v) > 0 for v in shape)
            self._dataset = self._file.create_dataset(
                location.name or "data", shape=tuple(shape), dtype=np.dtype(dtype),
                chunks=tuple(chunks) if chunks and has_data and len(shape) else None, **(options if has_data and len(shape) else {}),
            )
            for key, value in (attrs or {}).items():
                self._dataset.attrs[key] = value
            self._check()

    def _check(self) -> None:
        if self._sink.error is not None:
            raise write_failed(self.location.path, self._sink.error)

    def write(self, index: tuple, block: np.ndarray) -> None:
        try:
            if index:
                self._dataset[index] = block
            else:
                self._dataset[()] = block
        except (OSError, RuntimeError) as err:
            raise write_failed(self.location.path, self._sink.error or err) from None
        self._check()

    def commit(self) -> None:
        try:
            self._file.close()
            self._check()
            self._raw.close()
            commit_path(self._temp, self.location.path)
        except (OSError, RuntimeError) as err:
            raise write_failed(self.location.path, self._sink.error or err) from None

    def abort(self) -> None:
        try:
            if self._file is not None and self._file.id.valid:
                self._file.close()
        except Exception:  # h5py may refuse to close a damaged file; the file goes anyway
            pass
        try:
            self._raw.close()
        except OSError:
            pass
        remove_path(self._temp)
