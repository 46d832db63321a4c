"""The compiled kernels as native code kept on disk: loaded in a fresh process without importing numba.

numba's first kernel call in a process costs about a second of CPU before any work (importing numba,
then setting up its typing and lowering registries to load even a cached kernel; BENCHMARKS.md, "Native
kernels"), which is why a process used to run its first GiB of work on the NumPy kernels. Here, once
numba has compiled (or loaded) a kernel for one kind of argument (a *variant*: the entry point of
:mod:`swt_cli._jit` and its arrays' dtypes and dimensions), that kernel is compiled once more as a C
function (``numba.cfunc``: the same numba code, the same optimisation and target CPU) and its machine
code saved to a file; a later process loads that file with llvmlite alone (numba's own code generator,
installed with it) in tens of milliseconds and calls it through ctypes, which releases the GIL as numba's
``nogil`` kernels do. The machine code is numba's: the same sums in the same order, the same bits.

A file holds one variant, under a name that hashes what its code depends on (the kernels' source,
numba's and llvmlite's versions, Python's, the machine); it also records the CPU it was compiled for,
checked before loading. Files that cannot be read, or were made for another CPU, are ignored (the
variant then runs on numba, which writes the file again). The folder is ``SWT_CACHE_DIR`` where set, else
``__pycache__/swt-native`` beside this module where writable, else ``~/.cache/swt-cli/native``.

This module imports neither numba nor llvmlite until a file is loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: The entry points of :mod:`swt_cli._jit` that the kernels call.
ENTRY_POINTS = ("fold_planes", "fold_planes_tiled", "unfold_planes", "unfold_planes_3x3")

#: Symbols the saved code may leave to the loader: the C library's and Python's (found in this process),
#: and numba's helpers for raising an exception from compiled code, or freeing an array it allocated.
#: The kernels raise nothing (no bounds checks; NumPy's error model) and allocate nothing (their scratch
#: comes from the caller), so those are never called: they are bound to ``abort``. A kernel whose code
#: asks for anything else (an allocation, numba's reshape helper) is not saved and stays on numba.
_NEVER_CALLED = frozenset({"numba_do_raise", "numba_gil_ensure", "numba_gil_release", "numba_unpickle",
                           "numba_runtime_build_excinfo_struct", "NRT_Free", "NRT_MemInfo_call_dtor"})
_C_LIBRARY = frozenset({"memset", "memcpy", "memmove"})

_MAGIC = b"swt-native-1\n"

_lock = threading.Lock()
_engine: Any = None
_host: dict | None = None
_env_digest: str | None = None


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
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jit.py"), "rb") as f:
            h.update(f.read())
        for dist in ("numba", "llvmlite"):
            try:
                h.update(f"{dist} {metadata.version(dist)}\n".encode())
            except metadata.PackageNotFoundError:
                h.update(f"{dist} missing\n".encode())
        h.update(f"{sys.version} {sys.platform} {os.uname().machine if hasattr(os, 'uname') else ''}\n".encode())
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
    digest = hashlib.sha256((_source_digest() + repr(v)).encode()).hexdigest()[:32]
    return os.path.join(cache_dir(), f"{v[0]}-{digest}.bin")


def any_saved() -> bool:
    """Whether any kernel is kept on disk (for any variant): a look at the folder, no import."""
    try:
        with os.scandir(cache_dir()) as entries:
            return any(e.name.endswith(".bin") for e in entries)
    except OSError:
        return False


def saved(v: tuple) -> bool:
    """Whether a file for ``v`` exists (not yet whether it loads): a stat, no import."""
    return os.path.exists(_path(v))


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


def _llvm():
    """llvmlite's binding, its native target set up, and this machine's CPU name and features."""
    global _host
    import llvmlite.binding as ll

    if _host is None:
        ll.initialize_native_target()
        ll.initialize_native_asmprinter()
        _host = {"cpu": ll.get_host_cpu_name(), "features": ll.get_host_cpu_features().flatten()}
    return ll, _host


def _get_engine():
    """One MCJIT engine for the process: each loaded object joins it; its code lives as long as it."""
    global _engine
    ll, host = _llvm()
    if _engine is None:
        abort = ctypes.cast(ctypes.CDLL(None).abort, ctypes.c_void_p).value
        for name in _NEVER_CALLED:
            if not ll.address_of_symbol(name):  # numba, where loaded, has bound the real ones
                ll.add_symbol(name, abort)
        target = ll.Target.from_default_triple()
        machine = target.create_target_machine(cpu=host["cpu"], features=host["features"], opt=3,
                                               reloc="default", codemodel="jitdefault", jit=True)
        _engine = ll.create_mcjit_compiler(ll.parse_assembly(""), machine)
    return _engine


def load(v: tuple):
    """The ctypes function of variant ``v`` from its file, or None (no file, another CPU's, unreadable)."""
    path = _path(v)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        if not data.startswith(_MAGIC):
            return None
        head_len = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 4], "little")
        start = len(_MAGIC) + 4
        meta = json.loads(data[start:start + head_len])
        obj = data[start + head_len:]
        if meta.get("variant") != repr(v) or len(obj) != meta.get("size"):
            return None
        if hashlib.sha256(obj).hexdigest() != meta.get("sha256"):
            return None
        with _lock:
            ll, host = _llvm()
            if meta.get("cpu") != host["cpu"] or meta.get("features") != host["features"]:
                return None
            engine = _get_engine()
            # An unresolved symbol would end the process (LLVM's fatal error) when the code is finalized.
            if not all(ll.address_of_symbol(n) for n in meta["undefined"]):
                return None
            engine.add_object_file(ll.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            address = engine.get_function_address(meta["symbol"])
    except Exception:  # a damaged or foreign file: numba serves this variant
        return None
    if not address:
        return None
    arg_types = [ctypes.c_void_p if a != "i" else ctypes.c_int64 for a in v[1:]] + [ctypes.c_void_p]
    return ctypes.CFUNCTYPE(ctypes.c_double, *arg_types)(address)


def save(v: tuple, symbol: str, obj: bytes, undefined: set | None) -> bool:
    """Keep the machine code ``obj`` of variant ``v`` (its C function ``symbol``) for later processes,
    unless it needs symbols the loader does not give (``undefined``); written whole or not at all."""
    if undefined is None or not all(n in _NEVER_CALLED or n in _C_LIBRARY or n.startswith(("Py", "_Py")) for n in undefined):
        return False
    _, host = _llvm()
    meta = json.dumps({"variant": repr(v), "symbol": symbol, "size": len(obj), "sha256": hashlib.sha256(obj).hexdigest(),
                       "cpu": host["cpu"], "features": host["features"], "undefined": sorted(undefined)}).encode()
    path = _path(v)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + len(meta).to_bytes(4, "little") + meta + obj)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError:  # a read-only or full disk: numba serves this variant next time too
        return False
    return True


def fits(args) -> bool:
    """Whether native code, compiled for C-contiguous aligned arrays, may take these arguments."""
    return all(a.flags.c_contiguous and a.flags.aligned for a in args if isinstance(a, np.ndarray))


def call(fn, args):
    """Call a loaded kernel on ``args`` (C-contiguous arrays by their data pointers, integers as they
    are, then every array's shape), as numba's kernel of the same name would be called."""
    dims = np.array([n for a in args if isinstance(a, np.ndarray) for n in a.shape], np.int64)
    return fn(*(a.ctypes.data if isinstance(a, np.ndarray) else int(a) for a in args), dims.ctypes.data)


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
        v = variant(name, args)
        if fits(args):
            fn = self._native.get(v)
            if fn is None and v not in self._native:
                with self._lock:  # one load per variant: its symbols may join the engine only once
                    if v not in self._native:
                        self._native[v] = load(v) if saved(v) else None
                fn = self._native[v]
            if fn is not None:
                return call(fn, args)
        jit = None if getattr(self._local, "native_only", False) else self._numba_kernels()
        if jit is None:
            raise NotNative(v)
        result = getattr(jit, name)(*args)
        if v not in self.used and fits(args):
            self.used[v] = tuple(np.empty((0,) * a.ndim, a.dtype) if isinstance(a, np.ndarray) else 0 for a in args)
            self._on_new()
        return result

    def export(self) -> None:
        """Save the native code of every variant numba ran and no file holds yet (on the loader thread:
        compiling each as a C function costs a fraction of a second)."""
        jit = self._numba_kernels()
        for v, examples in list(self.used.items()):
            if jit is None or self._native.get(v) is not None or saved(v):
                continue
            try:
                symbol, obj, undefined = jit.native_code(v[0], examples)
            except Exception:  # numba could not make a C function of it: it stays on numba
                continue
            save(v, symbol, obj, undefined)

    def fold_planes(self, *args):
        return self._run("fold_planes", args)

    def fold_planes_tiled(self, *args):
        return self._run("fold_planes_tiled", args)

    def unfold_planes(self, *args):
        return self._run("unfold_planes", args)

    def unfold_planes_3x3(self, *args):
        return self._run("unfold_planes_3x3", args)
