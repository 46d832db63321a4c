"""Zarr v3 directory stores: an array at the root, or one named ``store.zarr:/group/name``."""

from __future__ import annotations

import os

import numpy as np

from ..backend import check_dtype
from ..errors import SwtError, first_line
from .base import (
    ArrayReader,
    ArrayWriter,
    Location,
    find_arrays,
    nbytes,
    write_failed,
)


def _zarr():
    import zarr

    return zarr


def compressors(name: str):
    """Zarr v3 codecs for a compression name from ``COMPRESSIONS['zarr']``."""
    codecs = _zarr().codecs
    return {
        "zstd": (codecs.ZstdCodec(level=1),),
        "blosc": (codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),),
        "gzip": (codecs.GzipCodec(level=4),),
        "none": None,
    }[name]


def outside_links(root: str) -> list[tuple[str, str]]:
    """Symbolic links inside the local store ``root`` that lead outside it: ``(link, where it leads)``.

    Walks the whole store, every chunk file, without following links (a link to a folder outside would
    bring in every chunk under it): a cost per file, paid once per run by the process that opens the
    input with the check (Dask workers reopen it without).
    """
    top = os.path.realpath(root)
    found: list[tuple[str, str]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable folder: zarr reports it when it reads there
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.commonpath([top, target]) != top:
                    found.append((entry.path, target))
            elif entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return sorted(found)


def store_of(location: Location, read_only: bool = True):
    """What zarr opens for ``location``: its local path, or an fsspec store for a URL."""
    if not location.remote:
        return location.path
    from ..storage import filesystem, remote_errors

    filesystem(location.path, location.options)  # a missing driver or a bad option: one line naming the extra
    with remote_errors(location.path):
        return _zarr().storage.FsspecStore.from_url(location.path, storage_options=dict(location.options or {}),
                                                    read_only=read_only)


def _open_members(location: Location, mode: str = "r", allow_external: bool = False) -> tuple[bool, list]:
    """``(whether the store is a single array, [(path, is_array, node)] of everything in it)``.

    Each array's own metadata is read, never the store's consolidated copy: that copy is not updated by
    writers that resize an array or change its attributes later, and would then give a wrong shape.
    """
    zarr = _zarr()
    path = location.path
    if location.remote:
        return _open_remote_members(location, mode)
    if not os.path.exists(path):
        raise SwtError(f"no such file: {path}")
    if not allow_external and os.path.isdir(path):
        leaving = outside_links(path)
        if leaving:
            link, target = leaving[0]
            more = f" and {len(leaving) - 1} more" if len(leaving) > 1 else ""
            raise SwtError(f"{path} holds a symbolic link that leads outside the store "
                           f"({os.path.relpath(link, path)} -> {target}{more}): swt reads only the store you "
                           f"named; pass --allow-external to follow it")
    try:
        node = zarr.open(store=path, mode=mode, use_consolidated=False)
    except Exception as err:  # zarr raises many types for a store it cannot parse
        raise SwtError(f"{path} is not a readable Zarr store ({first_line(err)})") from None
    if isinstance(node, zarr.Array):
        return True, [("", True, node)]
    try:
        return False, [(p, isinstance(o, zarr.Array), o) for p, o in node.members(max_depth=None)]
    except Exception as err:
        raise SwtError(f"{path} is not a readable Zarr store ({first_line(err)})") from None


def _open_remote_members(location: Location, mode: str) -> tuple[bool, list]:
    """:func:`_open_members` of a store behind a URL (an object store has no links to check)."""
    from ..storage import filesystem, remote_errors

    zarr = _zarr()
    path = location.path
    with remote_errors(path):
        fs, inner = filesystem(path, location.options)
        if not fs.exists(inner + "/zarr.json"):
            raise SwtError(f"no such Zarr store: {path} (no zarr.json there)")
        store = store_of(location, read_only=mode == "r")
        try:
            node = zarr.open(store=store, mode=mode, use_consolidated=False)
        except SwtError:
            raise
        except Exception as err:
            if isinstance(err, (OSError, TimeoutError)) or "Credential" in type(err).__name__:
                raise
            raise SwtError(f"{path} is not a readable Zarr store ({first_line(err)})") from None
        if isinstance(node, zarr.Array):
            return True, [("", True, node)]
        return False, [(p, isinstance(o, zarr.Array), o) for p, o in node.members(max_depth=None)]


def open_array(location: Location, mode: str = "r", allow_external: bool = False):
    """The zarr Array at ``location`` (the only array in the store when no name is given), and the store's members."""
    single, members = _open_members(location, mode, allow_external)
    if single:
        if location.name:
            raise SwtError(f"{location.path} is a single array, not a group: drop the :/{location.name}")
        return members[0][2], members
    return find_arrays(members, location.path, location.name), members


def compression_name(array) -> str:
    """The array's compression as swt names it in every format (``zstd``, ``blosc``, ``gzip``; ``none``),
    not the codec's class name (``ZstdCodec``)."""
    names = [type(c).__name__.lower().removesuffix("codec") for c in (getattr(array, "compressors", None) or ())]
    return "+".join(names) or "none"


def list_arrays(location: Location, allow_external: bool = False) -> list[dict]:
    """Every array in the store, as ``swt info`` lists them: name, path, shape, dtype, chunks, compression,
    attributes (metadata only)."""
    out = []
    for p, is_array, o in _open_members(location, allow_external=allow_external)[1]:
        if not is_array:
            continue
        try:
            attrs = o.attrs.asdict() if hasattr(o.attrs, "asdict") else dict(o.attrs)
            out.append({"name": "/" + p.strip("/"), "path": f"{location.path}:/{p.strip('/')}" if p else location.path,
                        "shape": [int(v) for v in o.shape], "dtype": str(_numpy_dtype(o)), "chunks": list(o.chunks),
                        "compression": compression_name(o), "attrs": attrs if isinstance(attrs, dict) else {}})
        except Exception as err:  # metadata that zarr parsed but cannot use
            raise SwtError(f"{location.path} is not a readable Zarr store ({first_line(err)})") from None
    return out


class ZarrReader(ArrayReader):
    def __init__(self, location: Location, allow_incomplete: bool = False, allow_external: bool = False):
        self.location = location
        self._array, self._members = open_array(location, allow_external=allow_external)
        try:
            self.dtype = check_dtype(_numpy_dtype(self._array), str(location))
            self.shape = tuple(int(v) for v in self._array.shape)
            attrs = self._array.attrs.asdict() if hasattr(self._array.attrs, "asdict") else dict(self._array.attrs)
            self.attrs = attrs if isinstance(attrs, dict) else {}
        except SwtError:
            raise
        except Exception as err:  # metadata that zarr parsed but cannot use (attributes that are not a dict...)
            raise SwtError(f"{location.path} is not a readable Zarr store ({first_line(err)})") from None
        if self.attrs.get("swt_incomplete") and not allow_incomplete:  # a shard or worker never finished
            from ..records import incomplete_message

            raise SwtError(incomplete_message(str(location), self.array_folder(), self.attrs, self.fs))

    @property
    def fs(self):
        """The fsspec filesystem of a store behind a URL (:meth:`array_folder` is a path in it); None for a local store."""
        if not self.location.remote:
            return None
        from ..storage import filesystem

        return filesystem(self.location.path, self.location.options)[0]

    def array_folder(self) -> str:
        """The array's folder in the store (where a shared output keeps its markers): a local path, or for a
        store behind a URL the path inside :attr:`fs`."""
        path = getattr(self._array, "path", "") or ""
        root = self.location.path
        if self.location.remote:
            from ..storage import filesystem

            root = filesystem(root, self.location.options)[1]
            return f"{root}/{path}" if path else root
        return os.path.join(root, path) if path else root

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:  # zarr decodes into its own buffers
        try:
            return np.asarray(self._array[index] if index else self._array[...])
        except Exception as err:  # codec errors come in many types
            raise SwtError(f"{self.location}: cannot read block {_fmt_index(index)} ({first_line(err)}): "
                           "a chunk is damaged") from None

    def describe(self) -> dict:
        info = super().describe()
        a = self._array
        info.update(
            chunks=list(a.chunks),
            compression=compression_name(a),
            arrays=[{"name": "/" + p, "shape": list(o.shape), "dtype": str(_numpy_dtype(o))}
                    for p, is_array, o in self._members if is_array],
        )
        return info


class ZarrWriter(ArrayWriter):
    parallel_safe = True

    def __init__(self, location: Location, shape, dtype, attrs=None, chunks=None, compression="zstd", overwrite=False):
        if location.remote:  # jobs write Zarr outputs on object stores through shards.SharedOutput
            raise SwtError(f"{location.path}: a Zarr output on an object store is written as a shared output (created "
                           f"at its name, marked complete at the end), not through this writer")
        check_storable(dtype, location)
        self._start(location, overwrite, nbytes(shape, dtype) if compression == "none" else None)
        with self._creating():
            self._array = _zarr().create_array(
                store=self._temp, name=location.name, shape=tuple(shape), dtype=np.dtype(dtype),
                chunks=tuple(chunks) if chunks else "auto", compressors=compressors(compression),
                fill_value=0, attributes=dict(attrs or {}), zarr_format=3,
            )

    def write(self, index: tuple, block: np.ndarray) -> None:
        try:
            if index:
                self._array[index] = block
            else:
                self._array[...] = block
        except OSError as err:
            raise write_failed(self.location.path, err) from None

    def commit(self) -> None:
        try:
            self._move_into_place()
        except OSError as err:
            raise write_failed(self.location.path, err) from None

    def abort(self) -> None:
        self._drop_temp()


def check_storable(dtype, location: Location) -> None:
    """Refuse, before anything is created, a dtype Zarr v3 has no data type for (float128, complex256)."""
    dtype = np.dtype(dtype)
    try:
        from zarr.core.dtype import get_data_type_from_native_dtype
    except ImportError:  # zarr before 3.1: no registry to ask; what no version stores is wider than 8/16 bytes
        storable = not (dtype.kind == "f" and dtype.itemsize > 8 or dtype.kind == "c" and dtype.itemsize > 16)
    else:
        try:
            get_data_type_from_native_dtype(dtype)
            storable = True
        except (ValueError, TypeError):
            storable = False
    if not storable:
        raise SwtError(f"{location.path}: Zarr cannot store {np.dtype(dtype).name} data: choose another --dtype "
                       f"(float64, complex128), or write a .npy or HDF5 output") from None


def _numpy_dtype(array) -> np.dtype:
    dtype = array.dtype
    return dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else np.dtype(dtype)


def _fmt_index(index) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in index) + "]"
