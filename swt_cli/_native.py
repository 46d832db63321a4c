"""The compiled kernels as native code kept on disk: loaded in a fresh process without importing numba.

numba's first kernel call in a process costs about a second of CPU before any work (importing numba,
then setting up its typing and lowering registries to load even a cached kernel; BENCHMARKS.md, "Native
kernels"), which is why a process used to run its first GiB of work on the NumPy kernels. Here, once
numba has compiled (or loaded) a kernel for one kind of argument (a *variant*: the entry point of
:mod:`swt_cli._jit` and its arrays' dtypes and dimensions), that kernel is compiled once more as a C
function (``numba.cfunc``: the same numba code, optimisation and target CPU) and linked, by the
system's ``ld``, into a small shared library kept on disk; a later process opens it with ctypes in about
a millisecond and calls it (ctypes releases the GIL, as numba's ``nogil`` kernels do). The machine code
is numba's: the same sums in the same order, the same bits.

A library holds one variant, under a name that hashes what its code depends on (the kernels' source,
numba's and llvmlite's versions, Python's); beside it, a small record of its symbol, its checksum and the
CPU it was compiled for (``/proc/cpuinfo``), checked before it is opened. A library that is missing,
damaged or made for another CPU is passed over: numba runs that variant (and keeps it anew). Only on
Linux (ELF) with ``ld`` on the PATH; elsewhere numba runs every variant, as before. The folder is
``SWT_CACHE_DIR/native`` where that is set, else ``__pycache__/swt-native`` beside this module where
writable, else ``~/.cache/swt-cli/native``.

This module imports neither numba nor llvmlite.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: The entry points of :mod:`swt_cli._jit` that the kernels call.
ENTRY_POINTS = ("fold_planes", "fold_planes_tiled", "unfold_planes", "unfold_planes_3x3")

#: Symbols of numba's helpers for raising an exception from compiled code, or freeing an array it
#: allocated. The kernels raise nothing (no bounds checks; NumPy's error model) and allocate nothing
#: (their scratch comes from the caller), so these are never called: the library defines each as a trap.
NEVER_CALLED = ("numba_do_raise", "numba_gil_ensure", "numba_gil_release", "numba_unpickle",
                "numba_runtime_build_excinfo_struct", "NRT_Free", "NRT_MemInfo_call_dtor")
#: What a kept library may still need from the process: the C library's and Python's symbols. A kernel
#: whose code asks for anything else (an allocation, numba's reshape helper) is not kept.
_C_LIBRARY = frozenset({"memset", "memcpy", "memmove"})

_RECORD = ".json"

_env_digest: str | None = None
_cpu: str | None = None


class NotNative(Exception):
    """A variant with no native code loaded (and numba not loaded either, where it was required)."""


# --------------------------------------------------------------------------------- shared arithmetic


def ring_dims(k0, d0, k2, s2, d2, p2, g2, o1, o2):
    """The fold kernel's scratch ring (see ``_jit.fold_planes``): entries per stride phase of a row, the
    row's length, the rows (of the first axis) that one grid row reaches, and one such row's slot."""
    m = max(g2 + (k2 - 1) * d2 // s2, (o2 + p2) // s2 + 1)  # ring entries per phase: no bounds checks
    rowlen = s2 * m
    nring = (k0 - 1) * d0 + 1
    return m, rowlen, nring, o1 * rowlen


#: Undilated windows at least this many elements apart along the last axis are added segment by
#: segment (``_jit._add_segments``) where the window after window of small rows does not apply, rather than
#: gathered by stride phase: each add is then a contiguous run, where a gather of long windows put each
#: lane on a cache line (or page) of its own (a 1-d overlap-add took 7-15x the memory floor; BENCHMARKS.md,
#: "Long windows"). At stride 4 the segments' runs are too short and the gathers were faster.
SEGMENT_STRIDE = 8


def ring_in_order(geo, row_bytes):
    """The ``layout`` argument of ``_jit.fold_planes`` for windows ``geo`` in rows of windows of
    ``row_bytes``: whether its ring holds the columns in order, and how windows are added to it (see
    there). An empty array whose item size says it: 1, columns in order, window after window; 4, columns
    in order, segment after segment; 2, columns by stride phase."""
    k2, s2, d2 = geo[2], geo[5], geo[11]
    if d2 == 1 and s2 >= 4 and k2 % s2 == 0 and row_bytes <= 8192:
        return np.empty(0, np.uint8)
    if d2 == 1 and s2 >= SEGMENT_STRIDE:
        return np.empty(0, np.uint32)
    return np.empty(0, np.uint16)


# ---------------------------------------------------------------------------------------- variants


def variant(name: str, args) -> tuple:
    """What one compiled kernel serves: the entry point and, per argument, an array's dtype and
    dimensions (C-contiguous) or ``'i'`` for an integer."""
    return (name,) + tuple((a.dtype.str, a.ndim) if isinstance(a, np.ndarray) else "i" for a in args)


def _source_digest() -> str:
    global _env_digest
    if _env_digest is None:
        from importlib import metadata

        h = hashlib.sha256()
        here = os.path.dirname(os.path.abspath(__file__))
        for source in ("_jit.py", "_native.py"):  # the kernels, and the shared arithmetic and calling convention
            with open(os.path.join(here, source), "rb") as f:
                h.update(f.read())
        for dist in ("numba", "llvmlite", "numpy"):
            try:
                h.update(f"{dist} {metadata.version(dist)}\n".encode())
            except metadata.PackageNotFoundError:
                h.update(f"{dist} missing\n".encode())
        h.update(f"{sys.version} {sys.platform} {os.uname().machine if hasattr(os, 'uname') else ''}\n".encode())
        h.update(cpu().encode())  # machines of other CPUs that share a folder keep libraries side by side
        _env_digest = h.hexdigest()
    return _env_digest


def cache_dir() -> str:
    """Where the native kernels are kept (see the module's docstring)."""
    chosen = os.environ.get("SWT_CACHE_DIR")
    if chosen:
        return os.path.join(chosen, "native")
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    if os.access(beside if os.path.isdir(beside) else os.path.dirname(beside), os.W_OK):
        return os.path.join(beside, "swt-native")
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(home, "swt-cli", "native")


def _path(v: tuple) -> str:
    """The library of variant ``v`` (its record: the same path plus ``.json``)."""
    digest = hashlib.sha256((_source_digest() + repr(v)).encode()).hexdigest()[:32]
    return os.path.join(cache_dir(), f"{v[0]}-{digest}.so")


def supported() -> bool:
    """Whether kernels can be kept here: Linux (ELF libraries, ``/proc/cpuinfo``)."""
    return sys.platform.startswith("linux")


def cpu() -> str:
    """This machine's CPU as the kept code depends on it: a hash of /proc/cpuinfo's vendor, family,
    model and feature flags (of its first processor)."""
    global _cpu
    if _cpu is None:
        fields = {}
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if not line.strip():
                        break
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
        except OSError:
            pass
        keep = ("vendor_id", "cpu family", "model", "flags", "Features", "CPU implementer", "CPU part")
        _cpu = hashlib.sha256(repr([(k, fields.get(k)) for k in keep]).encode()).hexdigest()
    return _cpu


def any_saved() -> bool:
    """Whether any kernel is kept on disk (for any variant): a look at the folder, no import."""
    try:
        with os.scandir(cache_dir()) as entries:
            return any(e.name.endswith(".so") for e in entries)
    except OSError:
        return False


def saved(v: tuple) -> bool:
    """Whether a library for ``v`` exists (not yet whether it loads): a stat, no import."""
    return os.path.exists(_path(v) + _RECORD)


def _checked(v: tuple):
    """The record of variant ``v``'s library where the library is whole and for this CPU, else None."""
    path = _path(v)
    try:
        with open(path + _RECORD) as f:
            record = json.load(f)
        with open(path, "rb") as f:
            library = f.read()
        if (not isinstance(record, dict) or record.get("variant") != repr(v) or record.get("cpu") != cpu()
                or hashlib.sha256(library).hexdigest() != record.get("sha256")
                or not str(record.get("symbol", "")).startswith("cfunc.")):  # a numba C function, no trap
            return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record


def elf_undefined(obj: bytes) -> set | None:
    """The undefined symbols of a 64-bit little-endian ELF relocatable object, or None for anything else."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return None

    def num(at: int, n: int) -> int:
        return int.from_bytes(obj[at:at + n], "little")

    shoff, shentsize, shnum = num(0x28, 8), num(0x3A, 2), num(0x3C, 2)
    # per section header: type, offset, size, link
    sections = [(num(h + 4, 4), num(h + 24, 8), num(h + 32, 8), num(h + 40, 4))
                for h in (shoff + i * shentsize for i in range(shnum))]
    names = set()
    for kind, offset, size, link in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strtab = sections[link][1]
        for at in range(offset, offset + size, 24):
            name_at, shndx = num(at, 4), num(at + 6, 2)
            if shndx == 0 and name_at:
                end = obj.index(b"\0", strtab + name_at)
                names.add(obj[strtab + name_at:end].decode())
    return names


# ------------------------------------------------------------------------------------ load and call


def load(v: tuple):
    """The ctypes function of variant ``v`` from its library, or None (none kept, another CPU's, damaged)."""
    record = _checked(v)
    if record is None:
        return None
    try:
        fn = getattr(ctypes.CDLL(_path(v)), record["symbol"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # a damaged or foreign library
        return None
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_void_p if a != "i" else ctypes.c_int64 for a in v[1:]] + [ctypes.c_void_p]
    return fn


def save(v: tuple, symbol: str, library: bytes) -> bool:
    """Keep the shared ``library`` of variant ``v`` (its C function ``symbol``) for later processes,
    unless it needs symbols a process does not give; written whole (each file renamed into place, the
    record last) or not at all."""
    undefined = elf_undefined(library)
    if undefined is None or not all(n in _C_LIBRARY or n.startswith(("Py", "_Py")) for n in undefined):
        return False
    record = json.dumps({"variant": repr(v), "symbol": symbol, "sha256": hashlib.sha256(library).hexdigest(),
                         "cpu": cpu()}).encode()
    path = _path(v)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _drop_stale_temps(os.path.dirname(path))
        for target, data in ((path, library), (path + _RECORD, record)):
            fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(temp, 0o644)  # readable as numba's cache is, by whoever shares the installation
                os.replace(temp, target)
            except BaseException:
                os.unlink(temp)
                raise
    except OSError:  # a read-only or full disk: numba serves this variant next time too
        return False
    return True


def _address(a: np.ndarray) -> int:
    """The data pointer of a C-contiguous array (from its buffer: three times cheaper than ``a.ctypes``)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a.data))
    except (TypeError, ValueError, BufferError):  # read-only or empty
        return a.ctypes.data


def _drop_stale_temps(folder: str) -> None:
    """Remove what writers killed mid-write left (``.tmp-*`` files over an hour old)."""
    import time

    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith(".tmp-") and e.stat().st_mtime < time.time() - 3600:
                    os.unlink(e.path)
    except OSError:
        pass


def call(fn, args):
    """Call a loaded kernel on ``args`` (C-contiguous aligned arrays by their data pointers, integers as
    they are, then every array's shape), as numba's kernel of the same name would be called."""
    values, dims = [], array.array("q")
    for a in args:
        if isinstance(a, np.ndarray):
            values.append(_address(a))
            dims.extend(a.shape)
        else:
            values.append(a)
    return fn(*values, dims.buffer_info()[0])


class Compiled:
    """The kernels of :mod:`swt_cli._jit` as the fold and unfold call them: each call runs its variant's
    native code where loaded (or loadable from its file), else numba's kernel (``numba_kernels()``
    imports them, or gives None where numba cannot be imported; :class:`NotNative` then). In a
    :meth:`native_only` block numba is not imported: a variant without its file raises NotNative.
    ``used`` collects the variants numba ran, with arguments of their types, for :meth:`export`, and a
    new one calls ``on_new`` (which has :meth:`export` called on another thread)."""

    def __init__(self, numba_kernels: Callable[[], Any], on_new: Callable[[], Any] = lambda: None) -> None:
        self._numba_kernels = numba_kernels
        self._on_new = on_new
        self._native: dict = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.used: dict = {}

    @property
    def native_loaded(self) -> bool:
        """Whether any kernel runs from its file in this process."""
        return any(fn is not None for fn in self._native.values())

    @contextlib.contextmanager
    def native_only(self) -> Iterator[None]:
        self._local.native_only = True
        try:
            yield
        finally:
            self._local.native_only = False

    def _run(self, name: str, args):
        # The arrays' dtypes and dimensions pick the variant; native code takes C-contiguous aligned
        # arrays only (a call costs some microseconds here: the kernels are called a few times a fold).
        key: list = [name]
        native = supported()
        for a in args:
            if isinstance(a, np.ndarray):
                key += (a.dtype, a.ndim)
                flags = a.flags
                native = native and flags.c_contiguous and flags.aligned
            else:
                key.append(None)
        if native:
            fn = self._native.get(tuple(key), False)
            if fn is False:
                with self._lock:  # one load per variant
                    fn = self._native.get(tuple(key), False)
                    if fn is False:
                        v = variant(name, args)
                        fn = self._native[tuple(key)] = load(v) if saved(v) else None
            if fn is not None:
                return call(fn, args)
        jit = None if getattr(self._local, "native_only", False) else self._numba_kernels()
        if jit is None:
            raise NotNative(variant(name, args))
        result = getattr(jit, name)(*args)
        v = variant(name, args)
        if native and v not in self.used:
            self.used[v] = tuple(np.empty((0,) * a.ndim, a.dtype) if isinstance(a, np.ndarray) else 0 for a in args)
            self._on_new()
        return result

    def export(self) -> None:
        """Keep the native code of every variant numba ran and none is kept for yet (on the loader
        thread: compiling each as a C function and linking it costs a fraction of a second)."""
        jit = self._numba_kernels()
        if jit is None or not supported() or shutil.which("ld") is None:
            return
        for v, examples in list(self.used.items()):
            if _checked(v) is not None:  # kept and whole (a damaged library is made again)
                continue
            try:
                symbol, library = jit.native_library(v[0], examples)
            except Exception:  # numba or ld could not make a library of it: it stays on numba
                continue
            save(v, symbol, library)

    def fold_planes(self, *args):
        return self._run("fold_planes", args)

    def fold_planes_tiled(self, *args):
        return self._run("fold_planes_tiled", args)

    def unfold_planes(self, *args):
        return self._run("unfold_planes", args)

    def unfold_planes_3x3(self, *args):
        return self._run("unfold_planes_3x3", args)
