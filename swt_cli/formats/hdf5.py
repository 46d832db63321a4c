"""HDF5 files through h5py: an array named ``file.h5:/group/name``, or the only one in the file."""

from __future__ import annotations

import h5py
import numpy as np

from ..backend import check_dtype
from ..errors import SwtError
from .base import ArrayReader, ArrayWriter, Location, check_destination, commit_path, find_arrays, remove_path, temp_sibling


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
        except OSError as err:
            raise SwtError(f"{location.path} is not a readable HDF5 file ({_reason(err)})") from None
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
        except BaseException:
            self._file.close()
            raise

    def read(self, index: tuple) -> np.ndarray:
        try:
            return np.asarray(self._dataset[index] if index else self._dataset[()])
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise SwtError(f"{self.location.path}: cannot read {self._dataset.name} ({_reason(err)}): the file is damaged") from None

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


class H5Writer(ArrayWriter):
    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="none", overwrite=False):
        check_destination(location.path, overwrite)
        self.location = location
        self._temp = temp_sibling(location.path)
        try:
            self._file = h5py.File(self._temp, "w")
        except OSError as err:
            raise SwtError(f"cannot write {location.path} ({_reason(err)})") from None
        try:
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
        except BaseException:
            self.abort()
            raise

    def write(self, index: tuple, block: np.ndarray) -> None:
        if index:
            self._dataset[index] = block
        else:
            self._dataset[()] = block

    def commit(self) -> None:
        self._file.close()
        commit_path(self._temp, self.location.path)

    def abort(self) -> None:
        try:
            self._file.close()
        except Exception:  # h5py may refuse to close a file whose disk is full; the file goes anyway
            pass
        remove_path(self._temp)


def _reason(err) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
