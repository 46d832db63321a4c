"""Array formats: ``.npy``, HDF5, Zarr and the ``.npy`` stream on stdin/stdout, behind one interface.

>>> Location.parse("tiles.zarr:/windows").fmt
'zarr'
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import SwtError
from .base import COMPRESSIONS, TEMP_MARK, ArrayReader, ArrayWriter, Location, block_shape, chunk_shape


def open_reader(spec: str | Location, allow_external: bool = False) -> ArrayReader:
    """A reader for ``spec`` (a path, ``file.h5:/name`` or ``-``).

    Without ``allow_external`` only the bytes of what was named are read: HDF5 external storage, virtual
    datasets over other files and external links, and symbolic links out of a Zarr store, are refused.
    """
    loc = spec if isinstance(spec, Location) else Location.parse(spec)
    if loc.fmt == "npy" and loc.remote:
        from .npy import RemoteNpyReader

        return RemoteNpyReader(loc)
    if loc.fmt == "npy":
        from .stream import StdinReader, is_fifo

        if is_fifo(loc.path):  # a named pipe: read as the stream it is (its size says nothing)
            try:
                stream = open(loc.path, "rb", buffering=0)  # noqa: SIM115 - closed by the reader
            except OSError as err:
                raise SwtError(f"cannot read {loc.path}: {err.strerror}") from None
            try:
                return StdinReader(loc, stream=stream, where=f"the named pipe {loc.path}")
            except BaseException:
                stream.close()
                raise
        from .npy import NpyReader

        return NpyReader(loc)
    if loc.fmt == "hdf5":
        from .hdf5 import H5Reader

        return H5Reader(loc, allow_external=allow_external)
    if loc.fmt == "zarr":
        from .zarr_store import ZarrReader

        return ZarrReader(loc, allow_external=allow_external)
    from .stream import StdinReader

    return StdinReader(loc)


def list_arrays(spec: str | Location, allow_external: bool = False) -> list[dict] | None:
    """Every array in an HDF5 file or Zarr store (``swt info`` of a file of several arrays): dicts of
    ``name``, ``path``, ``shape``, ``dtype``, ``chunks``, ``compression`` and ``attrs``; None for .npy and
    streams, which hold one array."""
    loc = spec if isinstance(spec, Location) else Location.parse(spec)
    if loc.fmt == "hdf5":
        from .hdf5 import list_arrays as listing
    elif loc.fmt == "zarr":
        from .zarr_store import list_arrays as listing
    else:
        return None
    return listing(loc, allow_external=allow_external)


def check_output(loc: Location) -> None:
    """Refuse, before any work, an output swt cannot write where it is named: on a read-only protocol
    (``https://``), or a .npy or HDF5 file on an object store (which has no rename to make it appear whole)."""
    if not loc.remote:
        return
    from ..storage import check_writable, refuse_whole_file_output

    check_writable(loc.path)
    if loc.fmt != "zarr":
        refuse_whole_file_output(loc.path, loc.fmt)


def writer_class(loc: Location) -> Callable[..., ArrayWriter]:
    check_output(loc)
    cls: Callable[..., ArrayWriter]
    if loc.fmt == "npy":
        from .stream import FifoWriter, is_fifo

        if is_fifo(loc.path):
            return FifoWriter
        from .npy import NpyWriter as cls
    elif loc.fmt == "hdf5":
        from .hdf5 import H5Writer as cls
    elif loc.fmt == "zarr":
        from .zarr_store import ZarrWriter as cls
    else:
        from .stream import StdoutWriter as cls
    return cls


def create_writer(spec, shape, dtype, attrs=None, chunks=None, compression=None, overwrite=False) -> ArrayWriter:
    """A writer for a new array at ``spec``; nothing appears under the output's name until ``commit``."""
    loc = spec if isinstance(spec, Location) else Location.parse(spec)
    compression = compression or COMPRESSIONS[loc.fmt][0]
    if compression not in COMPRESSIONS[loc.fmt]:
        raise SwtError(f"{loc.fmt} outputs take compression {', '.join(COMPRESSIONS[loc.fmt])}, not {compression}")
    return writer_class(loc)(loc, shape, dtype, attrs=attrs, chunks=chunks, compression=compression, overwrite=overwrite)


__all__ = ["COMPRESSIONS", "TEMP_MARK", "ArrayReader", "ArrayWriter", "Location", "block_shape", "check_output", "chunk_shape",
           "create_writer",
           "list_arrays", "open_reader"]
