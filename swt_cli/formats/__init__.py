"""Array formats: ``.npy``, HDF5, Zarr and the ``.npy`` stream on stdin/stdout, behind one interface.

>>> Location.parse("tiles.zarr:/windows").fmt
'zarr'
"""

from __future__ import annotations

from ..errors import SwtError
from .base import COMPRESSIONS, TEMP_MARK, ArrayReader, ArrayWriter, Location, block_shape, chunk_shape


def open_reader(spec: str | Location) -> ArrayReader:
    """A reader for ``spec`` (a path, ``file.h5:/name`` or ``-``)."""
    loc = spec if isinstance(spec, Location) else Location.parse(spec)
    if loc.fmt == "npy":
        from .npy import NpyReader as cls
    elif loc.fmt == "hdf5":
        from .hdf5 import H5Reader as cls
    elif loc.fmt == "zarr":
        from .zarr_store import ZarrReader as cls
    else:
        from .stream import StdinReader as cls
    return cls(loc)


def list_arrays(spec: str | Location) -> list[dict] | None:
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
    return listing(loc)


def writer_class(loc: Location):
    if loc.fmt == "npy":
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


__all__ = ["COMPRESSIONS", "TEMP_MARK", "ArrayReader", "ArrayWriter", "Location", "block_shape", "chunk_shape", "create_writer",
           "list_arrays", "open_reader"]
