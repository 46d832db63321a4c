"""One reader/writer interface for every array format, and the atomic-commit protocol they share.

A reader reads blocks of the leading axes; a writer writes them into a temporary sibling of the output
and moves it into place only on ``commit``:

>>> loc = Location.parse("out.h5:/group/images")
>>> loc.fmt, loc.path, loc.name
('hdf5', 'out.h5', 'group/images')
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from ..choices import COMPRESSIONS  # noqa: F401 (the formats' names, imported from here by callers)
from ..errors import SwtError, first_line
from ..storage import is_url, local_path

#: Marks temporary outputs, so a leftover from a killed run is recognisable (and ignored by later runs).
TEMP_MARK = ".swt-tmp-"

EXTENSIONS = {".npy": "npy", ".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}


# A Zarr store is a folder, whose name shell completion ends with a slash: ``out.zarr/`` is ``out.zarr``.
_SPEC = re.compile(r"^(?P<path>.*?(?P<ext>\.h5|\.hdf5|\.zarr))(?P<slash>/*)(?::(?P<name>.*))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Location:
    """Where an array lives: a path (or a URL such as ``s3://bucket/w.zarr``), its format, and for HDF5 and
    Zarr the array's name inside; for a URL, the fsspec storage options to reach it (never shown)."""

    path: str
    fmt: str
    name: str | None = None
    #: fsspec storage options of a URL (credentials may be among them: left out of repr and comparisons).
    options: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, spec: str, options: Mapping[str, Any] | None = None) -> "Location":
        """``'-'`` is the .npy stream on stdin/stdout; ``file.h5:/a/b`` names an array inside a file; a URL
        (``s3://bucket/w.h5:/a/b``) takes ``options``; ``file://`` is a local path."""
        if spec == "-":
            return cls("-", "stream")
        spec = local_path(spec)
        loc = cls._parse(spec)
        if is_url(loc.path):
            return cls(loc.path, loc.fmt, loc.name, dict(options) if options else None)
        return loc

    @property
    def remote(self) -> bool:
        """Whether the array lives behind a URL (through fsspec), not in a local file."""
        return is_url(self.path)

    @classmethod
    def _parse(cls, spec: str) -> "Location":
        match = _SPEC.match(spec)
        if match and match["slash"] and match["ext"].lower() != ".zarr":
            raise SwtError(f"'{spec}' ends with a slash, as a folder does: an HDF5 file is one file: name it "
                           f"{match['path']}" + (f":{match['name']}" if match["name"] else ""))
        if match:
            name = (match["name"] or "").strip("/") or None
            if name is not None:
                bad = next((part for part in name.split("/") if part in ("", ".", "..")), None)
                if bad is not None:
                    what = "an empty component (//)" if bad == "" else f"a '{bad}' component"
                    raise SwtError(f"'{spec}': the array name /{name} has {what}: name the array by its plain path "
                                   f"inside the file, as {match['path']}:/group/array")
            return cls(match["path"], EXTENSIONS[match["ext"].lower()], name)
        ext = os.path.splitext(spec)[1].lower()
        if ext in EXTENSIONS:
            return cls(spec, EXTENSIONS[ext])
        raise SwtError(f"cannot tell the format of '{spec}': name a .npy, .h5, .hdf5 or .zarr file, or - for a pipe")

    def __str__(self) -> str:
        return self.path + (f":/{self.name}" if self.name else "")


def read_at(fd: int, buffer, offset: int) -> int:
    """Read into ``buffer`` (a writable bytes-like object) from ``offset`` of ``fd`` until it is full or
    the file ends; the bytes read. One ``preadv`` returns at most about 2 GiB on Linux."""
    view = memoryview(buffer).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            break
        done += got
    return done


def out_fits(out: np.ndarray | None, shape, dtype) -> TypeGuard[np.ndarray]:
    """Whether ``out`` (given to ``ArrayReader.read``) can be read into: C-contiguous, ``shape``, ``dtype``."""
    return (out is not None and out.flags.c_contiguous and out.flags.writeable and out.dtype == dtype
            and tuple(out.shape) == tuple(shape))


def block_shape(shape, index) -> tuple:
    """The shape of ``index`` (slices over the leading axes) of an array of ``shape``.

    >>> block_shape((10, 3, 4), (slice(8, 12),))
    (2, 3, 4)
    """
    return tuple(len(range(*sl.indices(shape[a]))) for a, sl in enumerate(index)) + tuple(shape[len(index):])


class ArrayReader:
    """An array in a file, read block by block. Subclasses set ``shape``, ``dtype`` and ``attrs``.

    ``read(index, out=None)`` takes a tuple of slices over the leading axes and returns a NumPy array.
    ``out``, where given, is an array the reader may fill and return instead of allocating, if it is
    C-contiguous, of the block's shape and of the reader's dtype (else, and for formats that cannot read
    into it, it is ignored): the pipeline reuses two such buffers, since reading into fresh memory costs
    the kernel a page fault per page.
    """

    location: Location
    shape: tuple
    dtype: np.dtype
    attrs: dict
    sequential = False  # True where blocks must be read in order (a pipe)

    def read(self, index: tuple, out: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts for ``swt info``: format, shape, dtype, chunks, compression, arrays in the file."""
        return {"path": str(self.location), "format": self.location.fmt, "shape": list(self.shape),
                "dtype": str(self.dtype), "chunks": None, "compression": None, "arrays": [], "attrs": self.attrs}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ArrayWriter:
    """A new array written block by block into a temporary sibling, moved into place by ``commit``."""

    #: True where several processes may write disjoint blocks at once (Zarr with aligned chunks).
    parallel_safe = False
    #: True for a pipe: blocks in order, and a write may block for as long as the far end waits.
    sequential = False

    def _start(self, location: Location, overwrite: bool, at_least_bytes: int | None = None) -> None:
        """Check the destination (and the free space, where a lower bound on the size is known), then
        name the temporary sibling the output is written into."""
        check_destination(location.path, overwrite)
        if at_least_bytes is not None:
            check_space(location.path, at_least_bytes)
        self.location = location
        self._overwrite = overwrite
        self._kept = False  # True once a refused commit leaves the finished result under its temporary name
        self._temp = temp_sibling(location.path)

    def _move_into_place(self) -> None:
        """Commit the finished temporary output (``commit_path``); where an output appeared under the name
        meanwhile, the temporary output is kept (``abort`` leaves it) and the refusal goes on."""
        try:
            commit_path(self._temp, self.location.path, overwrite=self._overwrite)
        except OutputAppeared:
            self._kept = True
            raise

    def _drop_temp(self) -> None:
        """Remove the temporary output, unless a refused commit kept it for the user."""
        if not getattr(self, "_kept", False):
            remove_path(self._temp)

    @contextlib.contextmanager
    def _creating(self, errors=(OSError,)):
        """Around creating the temporary output: on failure remove it, and report ``errors`` as a failed write."""
        try:
            yield
        except BaseException as err:
            self.abort()
            if isinstance(err, errors):
                raise write_failed(self.location.path, err) from None
            raise

    def write(self, index: tuple, block: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def check_destination(path: str, overwrite: bool) -> None:
    """Refuse to touch an existing output without ``overwrite``; fail early on an unwritable folder."""
    if os.path.lexists(path) and not overwrite:
        raise SwtError(f"{path} exists: pass --overwrite to replace it")
    if os.path.isdir(path) and not path.lower().endswith(".zarr"):
        raise SwtError(f"{path} is a folder, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise SwtError(f"cannot write {path}: {parent} is not a folder")
        raise SwtError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SwtError(f"cannot write {path}: the folder {parent} is not writable")


def _route(src: str, out: str) -> str:
    """How the path ``out`` reaches the input ``src`` (the same file or store), for the error message."""
    if os.path.abspath(src) == os.path.abspath(out):
        return "the same path"
    if os.path.realpath(src) == os.path.realpath(out):
        return "through a symbolic link" if os.path.islink(out.rstrip("/")) or os.path.islink(src.rstrip("/")) \
            else "the same path by another name"
    return "a hard link to it" if not os.path.isdir(out) else "the same store under another name"


def _inside(inner: str, outer: str) -> bool:
    """Whether the real path ``inner`` lies inside the real path ``outer`` (not equal to it)."""
    return inner != outer and os.path.commonpath([inner, outer]) == outer


def _same_file(a: str, b: str) -> bool:
    """Whether two paths are one file or folder: one (st_dev, st_ino), or one real path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _listed(items: list[str], most: int = 4) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def _hdf5_contents(path: str, keep: str) -> list[str]:
    """What the HDF5 file ``path`` holds beyond the dataset ``keep`` (and the groups leading to it, bare):
    other datasets and groups, attributes of the root and of those groups, soft and external links, named types."""
    import h5py

    keep = "/" + keep.strip("/")
    ancestors = {"/"} | {"/" + "/".join(keep.strip("/").split("/")[:i]) for i in range(1, keep.count("/"))}
    found: list[str] = []

    def walk(group, prefix: str) -> None:
        if len(group.attrs) and prefix in ancestors:
            found.append(f"the attributes of {'the root' if prefix == '/' else prefix}")
        for name in group:
            path = prefix.rstrip("/") + "/" + name
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                found.append(f"the soft link {path}")
            elif isinstance(link, h5py.ExternalLink):
                found.append(f"the external link {path}")
            elif path in ancestors:
                walk(group[name], path)
            elif path != keep:
                kind = group.get(name, getclass=True)
                what = "dataset" if kind is h5py.Dataset else "group" if kind is h5py.Group else "named type"
                found.append(f"the {what} {path}")

    with h5py.File(path, "r") as f:
        walk(f, "/")
    return found


#: What an array's own folder holds in a Zarr v3 store: its metadata, chunks ("c/0/0", "c.0.0", v2-style
#: "0.0") and the markers of a shared output; anything else there is the user's.
_ZARR_OWN = re.compile(r"zarr\.json|c|c\..*|[0-9][0-9.]*|\.swt-done")


def _zarr_node(path: str) -> str:
    """What ``path`` in a Zarr store is: "array", "group", "folder" or "file"."""
    if not os.path.isdir(path):
        return "file"
    try:
        with open(os.path.join(path, "zarr.json")) as meta:
            kind = json.load(meta).get("node_type")
    except (OSError, ValueError, AttributeError):
        return "folder"
    return kind if kind in ("array", "group") else "folder"


def _zarr_contents(store: str, keep: str) -> list[str]:
    """What the Zarr store folder ``store`` holds beyond the array ``keep`` (its folder is replaced with it):
    other arrays, groups and files, files of the user's in the array's folder, and the attributes of the
    groups leading to it."""
    parts = keep.strip("/").split("/") if keep.strip("/") else []
    found: list[str] = []
    for depth in range(len(parts) + 1):
        folder = os.path.join(store, *parts[:depth])
        where = "/" + "/".join(parts[:depth])
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        if depth == len(parts):  # the array's own folder
            found += [f"the file {where.rstrip('/')}/{n}" for n in names if not _ZARR_OWN.fullmatch(n)]
            break
        for name in names:
            if name == parts[depth]:
                continue
            if name == "zarr.json":
                try:
                    with open(os.path.join(folder, name)) as meta:
                        attrs = json.load(meta).get("attributes")
                except (OSError, ValueError, AttributeError):
                    attrs = None
                if attrs:
                    found.append(f"the attributes of {'the root' if depth == 0 else where}")
            else:
                kind = _zarr_node(os.path.join(folder, name))
                found.append(f"the {kind} {where.rstrip('/')}/{name}")
    return found


def _input_array_name(reader: "ArrayReader") -> str:
    """The input array's name in its file ('' for a .npy file or a Zarr array at the root of its store)."""
    if reader.location.name:
        return reader.location.name.strip("/")
    arrays = [str(a.get("name", "")) for a in (reader.describe().get("arrays") or [])]
    return arrays[0].strip("/") if len(arrays) == 1 else ""


def check_not_input(reader: "ArrayReader", out: Location, in_place: bool = True) -> None:
    """Refuse, before anything is written, an output that would destroy the input or what lies beside it.

    The output is the input when the two paths are one file or store by any route: the same path, a
    symbolic or hard link, a trailing slash (``os.path.samefile``: one ``(st_dev, st_ino)``, else one real
    path). ``in_place`` (a plain run, whose output is written beside and renamed into place after the
    input was read to the end) may then replace the input, but only where the file holds nothing besides
    the one array that the output replaces: other arrays, groups, attributes, links or files would be
    lost with it. Without ``in_place`` (a shared output of ``--scheduler``, ``--shard`` or ``--resume``,
    written where it lies while workers read the input) it is refused outright. An output inside the
    input's store, or one whose folder holds the input, is refused in every mode.
    """
    src = reader.location
    while getattr(reader, "inner", None) is not None:  # a converting reader (torch layout): the file's own reader
        reader = reader.inner  # type: ignore[attr-defined]
    if src.fmt == "stream" or out.fmt == "stream":
        return
    if src.remote or out.remote:
        _check_remote_not_input(src, out)
        return
    inner, outer = os.path.realpath(src.path), os.path.realpath(out.path)
    if _same_file(src.path, out.path) if os.path.lexists(out.path) else inner == outer:
        how = _route(src.path, out.path)
        if not in_place:
            raise SwtError(f"{out} is the input {src} ({how}): --scheduler, --shard and --resume write their output "
                           f"where it lies while the input is still being read, so the input would be destroyed; "
                           f"write to a new file (a plain run may replace the input)")
        keep = _input_array_name(reader)
        lost = []
        if src.fmt == out.fmt == "hdf5":
            lost = _hdf5_contents(src.path, keep)
        elif src.fmt == out.fmt == "zarr":
            lost = _zarr_contents(src.path, keep)
        if lost:  # the input array itself is the run's to replace, under whichever name the output gives
            raise SwtError(f"{out} would replace the input's own file {src.path} ({how}), which holds other arrays or "
                           f"data too ({_listed(lost)}): swt replaces whole files, so they would be lost; write to a new "
                           f"file")
        return
    if _inside(outer, inner):
        raise SwtError(f"{out} lies inside the input {src.path}: writing it would change the input; write outside it")
    if os.path.isdir(outer) and _inside(inner, outer):
        raise SwtError(f"{out} holds the input {src.path}: replacing it would delete the input; write to a new file")


def _check_remote_not_input(src: Location, out: Location) -> None:
    """:func:`check_not_input` where a URL is involved: an output on an object store is written where it
    lies (there is no rename), so it may never be the input, lie inside it or hold it. A local path and a
    URL are never one file (``file://`` URLs are local paths by then)."""
    from ..storage import same_or_inside

    if not (src.remote and out.remote):
        return
    how = same_or_inside(src.path, out.path)
    if how == "same":
        raise SwtError(f"{out} is the input {src}: an output on an object store is written where it lies while the "
                       f"input is still being read, so the input would be destroyed; write to a new name")
    if how == "inside":
        raise SwtError(f"{out} lies inside the input {src.path}: writing it would change the input; write outside it")
    if how == "holds":
        raise SwtError(f"{out} holds the input {src.path}: replacing it would delete the input; write to a new name")


def check_space(path: str, nbytes: int) -> None:
    """Refuse up front an output whose data alone cannot fit the free space where it goes.

    Exact for .npy, a lower bound for uncompressed HDF5 and Zarr; compressed sizes cannot be known.
    An old output being replaced keeps its space until the commit, so it does not count as free.
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(parent)
    except OSError:
        return
    if not st.f_blocks:  # /proc and other file systems that report no size
        return
    free = st.f_bavail * st.f_frsize
    if nbytes > free:
        raise SwtError(f"cannot write {path}: it needs {nbytes:,} bytes and {parent} has {free:,} free")


def os_reason(err: BaseException) -> str:
    """One line of the system's words for ``err``: an OSError, or an h5py error that carries ``errno = N``."""
    code = getattr(err, "errno", None)
    if not isinstance(code, int) or not code:
        found = re.search(r"errno = (\d+)", str(err))
        code = int(found[1]) if found else None
    if code:
        name = errno.errorcode.get(code)
        return os.strerror(code) + (f" ({name})" if name else "")
    return first_line(err)


def nbytes(shape, dtype) -> int:
    """Bytes of an array of ``shape`` and ``dtype``."""
    return math.prod(int(v) for v in shape) * np.dtype(dtype).itemsize


def write_failed(path: str, err: BaseException) -> SwtError:
    """The error for a failed write of the output ``path`` (its temporary file is removed after)."""
    return SwtError(f"cannot write {path}: {os_reason(err)}")


#: Room a temporary name takes beyond its stem: the dot, ``TEMP_MARK``, a pid of up to 10 digits, '-' and 8 hex digits.
_TEMP_EXTRA = 1 + len(TEMP_MARK) + 10 + 1 + 8


def _name_max(folder: str) -> int:
    try:
        return int(os.pathconf(folder or ".", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def temp_stem(folder: str, base: str) -> str:
    """The stem temporary siblings of ``base`` are named by: ``base`` itself, or where a temporary name
    would pass the file system's name limit (outputs of 231-255 bytes), its start and a hash of the whole.

    The stem depends on ``base`` alone, so :func:`leftover_temps` finds the temporaries of long names too.

    >>> temp_stem("/tmp", "out.h5")
    'out.h5'
    >>> len(temp_stem("/tmp", "x" * 250 + ".npy").encode()) + _TEMP_EXTRA <= 255
    True
    """
    room = _name_max(folder) - _TEMP_EXTRA
    raw = base.encode("utf-8", "surrogateescape")
    if len(raw) <= room:
        return base
    digest = hashlib.sha256(raw).hexdigest()[:8]
    head = raw[: max(room - 9, 1)].decode("utf-8", "ignore")  # a multi-byte character cut in two is dropped
    return f"{head}~{digest}"


def temp_sibling(path: str) -> str:
    """A fresh name beside ``path`` that says what it is: ``.out.h5.swt-tmp-<pid>-<random>``."""
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{temp_stem(folder, base)}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def leftover_temps(path: str) -> list[str]:
    """Temporary siblings of ``path`` that some run left (killed outright, or still writing), sorted.

    >>> leftover_temps("/nonexistent/folder/out.h5")
    []
    """
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    prefix = f".{temp_stem(folder, base)}{TEMP_MARK}"
    return sorted(os.path.join(folder, n) for n in names if n.startswith(prefix))


def _tree_bytes(path: str) -> int:
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def describe_leftovers(path: str) -> str | None:
    """One line about ``path``'s leftover temporary files, or None where there are none."""
    found = leftover_temps(path)
    if not found:
        return None
    try:
        size = sum(_tree_bytes(p) for p in found)
    except OSError:  # one went away while we looked: another run finished
        return None
    names = ", ".join(os.path.basename(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
    many = len(found) > 1
    return (f"{len(found)} temporary file{'s' * many} of another run {'lie' if many else 'lies'} beside {path} "
            f"({names}; {size:,} bytes): a run killed outright leaves {'them' if many else 'it'}; delete "
            f"{'them' if many else 'it'} once no swt writes there")


class OutputAppeared(SwtError):
    """A commit without ``--overwrite`` found something under the output's name that appeared while swt
    ran: it is left alone, and the finished result stays under its temporary name."""


def commit_path(temp: str, path: str, overwrite: bool = False) -> None:
    """Move a finished ``temp`` onto ``path``.

    Without ``overwrite`` nothing under ``path`` is ever replaced, even what appeared there after the
    start-up check (another process, another swt writing the same name, a user's folder): the move is a
    no-replace primitive, and a refusal raises :class:`OutputAppeared` naming where ``temp`` is kept.
    With ``overwrite`` an old file or folder there survives until this moment, then is replaced.
    """
    if not overwrite:
        try:
            move_no_replace(temp, path)
        except FileExistsError:
            raise OutputAppeared(
                f"{path} appeared while swt was writing it (another process or another swt created it): it was "
                f"left alone; the finished result is kept as {temp}: move it into place, or rerun with --overwrite"
            ) from None
        return
    if os.path.isdir(temp) and os.path.lexists(path):
        try:
            # rename(2) cannot replace a folder that holds anything: swap the two in one step, so that readers
            # (and a kill) never find the name empty, then drop the old output, now under the temporary name
            exchange(temp, path)
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                raise
        else:
            remove_path(temp)
            return
        old = temp_sibling(path)
        os.rename(path, old)  # no exchange here: park the old one, then drop it (the name is briefly empty)
        try:
            os.rename(temp, path)
        except OSError:
            os.rename(old, path)
            raise
        remove_path(old)
    else:
        os.replace(temp, path)


#: Answers of a file system (or a kernel or C library) that lacks a no-replace primitive, not a refusal.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def _renameat2():
    """glibc's ``renameat2`` (2.28 and later), which Python's ``os`` lacks; None elsewhere."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _renameat2_flags(src: str, dst: str, flags: int) -> None:
    fn = _renameat2()
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", dst)
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def exchange(src: str, dst: str) -> None:
    """Swap ``src`` and ``dst`` (both must exist) in one step: ``renameat2(RENAME_EXCHANGE)``; OSError(ENOSYS)
    where the system has none, EINVAL where the file system does not support it."""
    _renameat2_flags(src, dst, _RENAME_EXCHANGE)


def rename_no_replace(src: str, dst: str) -> None:
    """``rename(src, dst)`` that fails with ``FileExistsError`` where ``dst`` exists (even an empty folder,
    which plain ``rename`` would replace): ``renameat2(RENAME_NOREPLACE)``; OSError(ENOSYS) where the
    system has none, EINVAL where the file system does not support it."""
    _renameat2_flags(src, dst, _RENAME_NOREPLACE)


def claim_then_rename(src: str, dst: str) -> None:
    """The no-replace move where the file system has no primitive for it: claim ``dst`` by creating it
    exclusively (an empty folder, or an empty file, of ``src``'s kind), then rename ``src`` onto that claim
    of our own. Another process can only meddle with the claim in between by deleting or filling it."""
    if os.path.isdir(src):
        os.mkdir(dst)  # FileExistsError where anything is there
    else:
        os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        os.rename(src, dst)  # onto our own empty claim; a folder someone filled meanwhile fails with ENOTEMPTY
    except OSError as err:
        with contextlib.suppress(OSError):
            os.rmdir(dst) if os.path.isdir(dst) else os.remove(dst)
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(errno.EEXIST, "appeared while committing", dst) from None
        raise


def move_no_replace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` unless something is there (``FileExistsError``): a file by a hard link then
    unlinking ``src``; a folder by ``renameat2(RENAME_NOREPLACE)``; the claim where neither is supported."""
    if not os.path.isdir(src):
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError as err:
            if err.errno not in _UNSUPPORTED:  # EEXIST: FileExistsError
                raise
        else:
            os.unlink(src)
            return
    try:
        rename_no_replace(src, dst)
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            raise
        claim_then_rename(src, dst)


def remove_path(path: str) -> None:
    """Remove a file or folder if it is there; never raises."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


def chunk_shape(shape, itemsize: int, target_bytes: int = 4 << 20, max_rows: int | None = None) -> tuple:
    """Chunks of about ``target_bytes`` that split only the leading axes, for HDF5 and Zarr outputs.

    >>> chunk_shape((2048, 3, 127, 127), 4)
    (21, 3, 127, 127)
    """
    chunks = [max(int(v), 1) for v in shape]
    for axis in range(len(shape)):
        inner = math.prod(chunks[axis + 1:]) * itemsize
        if inner <= target_bytes or axis == len(shape) - 1:
            rows = max(1, target_bytes // max(inner, 1))
            if axis == 0 and max_rows:
                rows = min(rows, max_rows)
            chunks[axis] = max(1, min(chunks[axis], rows))
            break
        chunks[axis] = 1
    return tuple(chunks)


def find_arrays(items, where: str, name: str | None, notes: list[str] | None = None):
    """Pick the array named ``name`` (or the only one) from ``items``: ``(path, is_array, obj)`` triples.
    ``notes`` name links beside the arrays in the listings of messages (``'/s is a soft link to /x'``)."""
    items = list(items)
    arrays = [(p, obj) for p, is_array, obj in items if is_array]
    notes = notes or []
    if name is not None:
        for p, is_array, obj in items:
            if p.strip("/") == name:
                if not is_array:
                    raise SwtError(f"{where}:/{name} is a group, not an array{_listing(arrays, where, notes)}")
                return obj
        raise SwtError(f"{where} has no array /{name}{_listing(arrays, where, notes)}")
    if len(arrays) == 1:
        return arrays[0][1]
    if not arrays:
        raise SwtError(f"{where} holds no arrays" + (f" ({'; '.join(notes)})" if notes else ""))
    raise SwtError(f"{where} holds {len(arrays)} arrays{_listing(arrays, where, notes)}: name one as "
                   f"{where}:/{arrays[0][0].strip('/')}")


def _listing(arrays, where, notes=()) -> str:
    if not arrays:
        return f" ({where} holds no arrays" + "".join(f"; {n}" for n in notes) + ")"
    return " (" + ", ".join(["/" + p.strip("/") for p, _ in arrays] + list(notes)) + ")"
