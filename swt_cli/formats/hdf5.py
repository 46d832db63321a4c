"""HDF5 files through h5py: an array named ``file.h5:/group/name``, or the only one in the file."""

from __future__ import annotations

import math
import os
from typing import Any

import h5py
import numpy as np

from ..backend import check_dtype
from ..errors import SwtError, first_line
from .base import (
    ArrayReader,
    ArrayWriter,
    Location,
    block_shape,
    find_arrays,
    nbytes,
    out_fits,
    read_at,
    write_failed,
)
from .npy import block_offset, contiguous_block


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


def _links(h5file) -> list[tuple[str, str]]:
    """Soft and external links in the file, as ``(path, 'a soft link to /x')`` (external ones are listed,
    never followed: ``visit_links`` does not enter other files)."""
    found: list[tuple[str, str]] = []

    def note(path, link):
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            found.append((path, _describe_link(link)))

    try:
        if hasattr(h5file, "visititems_links"):  # h5py 3.11 and later
            h5file.visititems_links(note)
        else:
            groups = [("", h5file)] + [(p, o) for p, is_array, o in _members(h5file) if isinstance(o, h5py.Group)]
            for prefix, group in groups:
                for key in group:
                    note(f"{prefix}/{key}".lstrip("/"), group.get(key, getlink=True))
    except Exception:  # noqa: BLE001 - links are named in messages only; damage is met (and reported) elsewhere
        pass
    return found


def _describe_link(link) -> str:
    if isinstance(link, h5py.ExternalLink):
        return f"an external link to {link.filename}:{link.path}"
    return f"a soft link to {link.path}"


def _locked(err: BaseException) -> bool:
    """Whether opening failed on HDF5's file lock (another process has the file open for writing)."""
    text = str(err).lower()
    return "lock" in text and ("errno = 11" in text or "unavailable" in text or "unable to lock" in text)


#: Bytes an HDF5 file behind a URL is read by, at least: its metadata lies in small pieces all over the file.
REMOTE_BLOCK = 2 << 20


def open_file(where: str | Location) -> h5py.File:
    """A file (a path, or a :class:`Location`, which may be a URL) opened for reading, or one line saying why
    not (missing, locked by a writer, not HDF5). Behind a URL, through an fsspec file object that reads
    what HDF5 asks for by ranged requests (never the whole file)."""
    path = where if isinstance(where, str) else where.path
    try:
        if not isinstance(where, str) and where.remote:
            from ..storage import filesystem, remote_errors

            with remote_errors(path):
                fs, inner = filesystem(path, where.options)
                source = fs.open(inner, "rb", block_size=REMOTE_BLOCK, cache_type="readahead")
            return h5py.File(source, "r")
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise SwtError(f"no such file: {path}") from None
    except Exception as err:  # OSError mostly; h5py raises others for some damage
        if _locked(err):
            raise SwtError(
                f"{path} is locked by a program that has it open for writing (HDF5 file locking): wait "
                f"until it closes the file; if no one is writing it (a writer that crashed, or a file system whose "
                f"locks misbehave), read it with HDF5_USE_FILE_LOCKING=FALSE in the environment") from None
        raise SwtError(f"{path} is not a readable HDF5 file ({first_line(err)})") from None


def _check_own_bytes(dataset, where: str) -> None:
    """Refuse a dataset whose values come from files other than its own: external raw storage, or a
    virtual dataset with sources in other files. swt reads only what the user named (``--allow-external``)."""
    dcpl = dataset.id.get_create_plist()
    count = dcpl.get_external_count()
    if count:
        names = sorted({dcpl.get_external(i)[0].decode(errors="replace") for i in range(count)})
        raise SwtError(f"{where} keeps its data in other files (HDF5 external storage: {', '.join(names)}): swt reads "
                       f"only the file you named; pass --allow-external to read them")
    if dataset.is_virtual:
        own = dataset.file.filename
        files = sorted({m.file_name for m in dataset.virtual_sources() if not _same_file_source(m.file_name, own)})
        if files:
            raise SwtError(f"{where} is a virtual dataset whose data lies in other files ({', '.join(files)}): swt reads "
                           f"only the file you named; pass --allow-external to read them")


#: HDF5 filter ids of compressions (h5py's own and the registered plugins: https://portal.hdfgroup.org/documentation/),
#: named as swt names them in every format.
_COMPRESSION_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", 32000: "lzf", h5py.h5z.FILTER_SZIP: "szip", 32015: "zstd",
                        32001: "blosc", 32004: "lz4", 307: "bzip2"}


def compression_name(dataset) -> str:
    """The dataset's compression as swt names it (``gzip``, ``lzf``, ``zstd``, ``blosc``, ...; ``none``);
    shuffle and checksum filters are not compressions. An unknown filter shows as ``filter N``."""
    plist = dataset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code in _COMPRESSION_FILTERS:
            return _COMPRESSION_FILTERS[code]
        if code not in (h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32, h5py.h5z.FILTER_SCALEOFFSET,
                        h5py.h5z.FILTER_NBIT):
            return f"filter {code}"
    return "none"


def list_arrays(location: Location, allow_external: bool = False) -> list[dict]:
    """Every dataset in the file, as ``swt info`` lists them: name, path, shape, dtype, chunks, compression,
    attributes (metadata only: no data is read, no link followed out of the file)."""
    h5file = open_file(location)
    try:
        with h5file:
            return [{"name": "/" + p, "path": f"{location.path}:/{p}", "shape": list(o.shape or ()), "dtype": str(o.dtype),
                     "chunks": list(o.chunks) if o.chunks else None, "compression": compression_name(o),
                     "attrs": _attrs(o)} for p, is_array, o in _members(h5file) if is_array]
    except SwtError:
        raise
    except Exception as err:
        raise SwtError(f"{location.path} is damaged: cannot read its structure ({first_line(err)})") from None


def _same_file_source(name: str, own: str) -> bool:
    """Whether a virtual dataset's source file ``name`` is the dataset's own file ``own``: ``"."``, or a name
    whose first existing candidate in HDF5's search order (the name itself where absolute, then its base name
    under each ``HDF5_VDS_PREFIX`` folder, beside ``own``, and in the working folder) is ``own`` itself.
    Tools other than h5py write the file's own name (often absolute) for sources in the same file."""
    if name == ".":
        return True
    origin = os.path.dirname(os.path.abspath(own))
    candidates = [name] if os.path.isabs(name) else []
    base = os.path.basename(name) if os.path.isabs(name) else name
    prefixes = [p.replace("${ORIGIN}", origin) for p in os.environ.get("HDF5_VDS_PREFIX", "").split(":") if p]
    candidates += [os.path.join(p, base) for p in prefixes] + [os.path.join(origin, base), base]
    for candidate in candidates:
        if os.path.isfile(candidate):
            try:
                return os.path.samefile(candidate, own)
            except OSError:
                return False
    return False


#: Soft links followed one after another before a name is taken for a loop (HDF5's own limit is 16).
_MAX_SOFT_HOPS = 16

#: Datasets of more chunks than this are read through HDF5 (looking each one up costs a few microseconds).
MAX_RAW_CHUNKS = 1 << 16


def raw_extents(dataset) -> list | None:
    """Where a dataset stored as plain bytes lies in its file: ``[(array_byte, file_byte, length)]`` in
    array order, or None where its bytes must go through HDF5.

    Plain bytes: the stored type is exactly the NumPy dtype h5py reports (native byte order, no odd
    precision, padding or field order that HDF5 would convert on reading), no filters (compression,
    shuffle, checksums), no external files or user block, and either one contiguous run or chunks of
    whole rows (``(c, *shape[1:])``), every one
    of them written (an unwritten chunk reads as the fill value, which only HDF5 knows) and no more than
    ``MAX_RAW_CHUNKS`` of them (each is looked up once, at the first read).
    """
    dsid = dataset.id
    dcpl = dsid.get_create_plist()
    if (not dataset.dtype.isnative or dsid.get_type() != h5py.h5t.py_create(dataset.dtype)
            or dcpl.get_nfilters() or dcpl.get_external_count()
            or dataset.file.id.get_create_plist().get_userblock() or not dataset.shape):
        return None
    row_bytes = math.prod(dataset.shape[1:]) * dataset.dtype.itemsize
    total = dataset.shape[0] * row_bytes
    if dcpl.get_layout() == h5py.h5d.CONTIGUOUS:
        offset = dsid.get_offset()
        return None if offset is None else [(0, offset, total)]
    if dcpl.get_layout() != h5py.h5d.CHUNKED or tuple(dataset.chunks[1:]) != tuple(dataset.shape[1:]):
        return None
    rows = dataset.chunks[0]
    count = -(-dataset.shape[0] // rows)
    if count > MAX_RAW_CHUNKS or dsid.get_num_chunks() != count:
        return None
    extents = []
    for i in range(count):
        info = dsid.get_chunk_info(i)
        if info.byte_offset is None or info.size != rows * row_bytes:
            return None
        start = info.chunk_offset[0] * row_bytes
        extents.append((start, info.byte_offset, min(rows * row_bytes, total - start)))
    return sorted(extents)


class H5Reader(ArrayReader):
    """Reads through h5py, or, for blocks read into a buffer from a dataset stored as plain bytes
    (:func:`raw_extents`), with ``preadv`` on a file descriptor of its own.

    h5py runs one HDF5 call at a time in a process, so while the pipeline's writer thread was inside
    HDF5 its reader thread waited: on the pipeline benchmark (0.88 GB, HDF5 to HDF5) reading the bytes
    directly took the fold from 1.23 s to 0.83 s (medians of 9).
    """

    def __init__(self, location: Location, allow_external: bool = False):
        self.location = location
        # the raw byte extents, once looked up ([]: read through HDF5, as a file behind a URL always is)
        self._raw: list | None = [] if location.remote else None
        self._fd: int | None = None
        self._file = open_file(location)
        try:
            self._members = _members(self._file)
            self._links = _links(self._file)
            if location.name is None:
                self._dataset = find_arrays(self._members, location.path, None, notes=self._link_notes())
            else:
                self._dataset = self._resolve(location.name, allow_external)
            if not allow_external:
                _check_own_bytes(self._dataset, f"{location.path}:/{(location.name or self._dataset.name).strip('/')}")
            if self._dataset.dtype.kind in "OSUV" or self._dataset.dtype.fields:
                raise SwtError(f"{location.path}:/{self._dataset.name.strip('/')} holds {self._dataset.dtype} data: "
                               "swt needs numbers")
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

    def _link_notes(self) -> list[str]:
        return [f"/{p} is {what}" for p, what in self._links]

    def _resolve(self, name: str, allow_external: bool):
        """The dataset ``name`` names: through soft links and other hard links to it, and through external
        links only with ``allow_external`` (each step of the path is checked, not just the last)."""
        where = self.location.path
        if not allow_external:
            self._check_path(name, name, 0)
        else:
            for i in range(1, len(parts := name.split("/")) + 1):
                step = "/".join(parts[:i])
                link = self._file.get(step, getlink=True)
                if isinstance(link, h5py.SoftLink) and self._file.get(step) is None:
                    raise SwtError(f"{where}:/{step} is {_describe_link(link)}, which does not exist")
        obj = self._file.get(name)
        if isinstance(obj, h5py.Dataset):
            return obj
        arrays = [(p, o) for p, is_array, o in self._members if is_array]
        listing = " (" + ", ".join(["/" + p for p, _ in arrays] + self._link_notes()) + ")" if arrays or self._links else ""
        if obj is None:
            raise SwtError(f"{where} has no array /{name}{listing}")
        raise SwtError(f"{where}:/{name} is a group, not an array{listing}")

    def _check_path(self, path: str, named: str, hops: int) -> None:
        """Refuse ``path`` (absolute, without the leading slash) where any step of it is an external link,
        following soft links to where they lead: a soft link to an external link (or to a group reached
        through one) leaves the file as surely as the external link itself. ``named`` is what the user wrote."""
        where, parts = self.location.path, path.split("/")
        if hops > _MAX_SOFT_HOPS:
            raise SwtError(f"{where}:/{named} goes through more than {_MAX_SOFT_HOPS} soft links (a loop?)")
        for i in range(1, len(parts) + 1):
            step = "/".join(parts[:i])
            link = self._file.get(step, getlink=True)
            if link is None:
                return
            via = f" (reached from /{named})" if hops else ""
            if isinstance(link, h5py.ExternalLink):
                raise SwtError(f"{where}:/{step} is {_describe_link(link)}{via}: swt reads only the file you named "
                               f"and does not follow it; name {link.filename}:{link.path} itself, or pass --allow-external")
            if isinstance(link, h5py.SoftLink):
                target = link.path if link.path.startswith("/") else "/".join(parts[: i - 1] + [link.path])
                target = target.strip("/")
                rest = "/".join([target] + parts[i:]).strip("/")
                if self._file.get(target, getlink=True) is None:
                    raise SwtError(f"{where}:/{step} is {_describe_link(link)}, which does not exist{via}")
                return self._check_path(rest, named, hops + 1)

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        try:
            if index and out_fits(out, block_shape(self.shape, index), self.dtype) and out.size:
                if self._raw is None:
                    self._raw = self._raw_layout()
                if self._raw and contiguous_block(self.shape, index):
                    return self._read_raw(index, out)
                self._dataset.read_direct(out, source_sel=index)
                return out
            return np.asarray(self._dataset[index] if index else self._dataset[()])
        except SwtError:
            raise
        except Exception as err:  # OSError, RuntimeError, ValueError, KeyError... for damaged chunks and B-trees
            raise SwtError(f"{self.location.path}: cannot read {self._dataset.name} ({first_line(err)}): "
                           "the file is damaged") from None

    def _raw_layout(self) -> list:
        """:func:`raw_extents`, with a duplicate of h5py's own descriptor (the file it opened, even if the
        path has since been replaced); ``[]`` where the bytes must go through HDF5, or anything fails."""
        try:
            extents = raw_extents(self._dataset)
            if extents:
                # the dataset's own file: through an external link (--allow-external) it is not the one opened
                self._fd = os.dup(self._dataset.file.id.get_vfd_handle())
            return extents or []
        except Exception:  # noqa: BLE001 - an older HDF5 without chunk queries, a driver without a descriptor
            return []

    def _read_raw(self, index: tuple, out: np.ndarray) -> np.ndarray:
        """Read ``index`` (a run of the array's bytes: whole rows, or part of one row) into ``out``."""
        offset, count = block_offset(self.shape, index)
        itemsize = self.dtype.itemsize
        want = out.reshape(-1).view(np.uint8).data
        assert self._raw is not None and self._fd is not None  # set by _raw_layout before any raw read
        start, end = offset * itemsize, (offset + count) * itemsize
        for array_byte, file_byte, length in self._raw:
            lo, hi = max(start, array_byte), min(end, array_byte + length)
            if lo < hi:
                got = read_at(self._fd, want[lo - start: hi - start], file_byte + lo - array_byte)
                if got != hi - lo:
                    raise SwtError(f"{self.location.path}: {self._dataset.name} ends early in the file "
                                   f"(got {got} of {hi - lo} bytes): the file is damaged or was truncated")
        return out

    def describe(self) -> dict:
        info = super().describe()
        ds = self._dataset
        info.update(
            path=f"{self.location.path}:{ds.name}",
            chunks=list(ds.chunks) if ds.chunks else None,
            compression=compression_name(ds),
            compression_opts=ds.compression_opts,
            arrays=[{"name": "/" + p, "shape": list(o.shape or ()), "dtype": str(o.dtype)}
                    for p, is_array, o in self._members if is_array],
            links=[{"name": "/" + p, "link": what} for p, what in self._links],  # named as links, not followed here
        )
        return info

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
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
        self._file: Any = None
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
                chunks=tuple(chunks) if chunks and has_data and len(shape) else None,
                **(options if has_data and len(shape) else {}),
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
            self._move_into_place()
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
        self._drop_temp()
