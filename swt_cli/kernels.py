"""Fold (sliding-window transpose) and unfold on arrays, NumPy or CuPy alike.

>>> import numpy as np
>>> from swt_cli.api import sliding_window_transpose
>>> windows = np.ones((1, 1, 3, 3, 2, 2), np.float32)          # (N, C, IH, IW, KH, KW)
>>> sliding_window_transpose(windows, (4, 4), 2, stride=1)[0, 0]
array([[1., 2., 2., 1.],
       [2., 4., 4., 2.],
       [2., 4., 4., 2.],
       [1., 2., 2., 1.]], dtype=float32)

Summation order (the definition every path follows, so every path gives the same bits): each covered
output element is 0 plus its contributions, added one at a time in the accumulator dtype
(:func:`swt_cli.backend.accumulator_dtype`: float16 sums in float32, integers in 64 bits), **windows in
row-major order of the window grid** (for one output element: kernel offsets in reverse row-major
order), then cast once to the output dtype; elements no window covers are 0 (or a blend's ``fill``).
This is MegEngine's order (its naive and CUDA kernels, and the float32 loop its tests compare with
``assert_equal``). Windows that tile the output (stride = kernel, no padding, no dilation) do not
overlap: their fold is a copy on every path, so a -0.0 stays -0.0 there (``0 + -0.0`` would be +0.0).
No kernel adds with fused multiply-add or reassociates (numba compiles without ``fastmath``); weighted
folds multiply before they add and a mean divides once at the end (see :mod:`swt_cli.blend`).

NumPy arrays take one of two paths, both threaded over blocks of the flattened leading (batch) axes,
neither of which changes a bit (threads and blocks only split the batch):

- ``numba``: compiled kernels (:mod:`swt_cli._jit`) that sum each row of windows into a few output rows
  held in cache and write each output element once;
- ``numpy``: one strided add per kernel offset, offsets ordered so that each element's windows arrive in
  row-major order (:func:`_window_order`), on blocks of planes small enough to stay in cache; two
  adjacent kernel columns as one complex add (:func:`fold_pairs`), or, for long windows far apart, the
  last axis in contiguous runs of a stride (:func:`fold_runs`).

Unfold (and the fold of windows that tile the output) only copies: numba copies elements (8-byte words
where rows allow), NumPy copies undilated window rows as a few wide unsigned integers (:func:`_row_chunks`).

The environment variable ``SWT_KERNEL=numpy|numba`` picks one (read at each call). By default a call
that follows enough work on arrays in this process, or whose job announced enough (:func:`expect_work`),
to repay loading numba has numba and its kernels for that call's dtypes and geometry loaded on a
background thread, and takes the NumPy path until they are ready; from then on calls like it take numba
(the blocks of a streamed job switch part-way, which changes no bit). Small work, and a single call
however large, never start the load. Where numba has compiled a kernel on this machine before, its
machine code is kept on disk (:mod:`swt_cli._native`) and later processes load it without numba, in tens
of milliseconds: they take the compiled kernels after much less work (``_NATIVE_WORTH_BYTES``,
``_JOB_NATIVE_WORTH_BYTES``), importing numba only for kernels not kept. Where numba cannot be
imported or compiled, every call takes the NumPy path, silently. 64-bit integer sums always take the
NumPy path, which refuses to overflow. CuPy
arrays take the NumPy path's array operations on the GPU: whole-array adds in the same order, no atomics.
:func:`set_threads` sets how many threads the NumPy-array kernels use at most (default: every core);
a call takes a second thread only for enough work of its kind (``_COPY_SPLIT`` and the like).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from . import _native
from .backend import accumulator_dtype, array_module, cast_result
from .errors import SwtError
from .geometry import FoldPlan, Geometry, UnfoldPlan, fmt_shape

#: Work below this many bytes (input plus output) runs on the calling thread alone.
_PARALLEL_BYTES = 1 << 19
#: Work is weighed against ``_PARALLEL_BYTES`` divided by these, by kind of kernel, where a second
#: thread pays only on more bytes (``benchmarks/bench_threads.py`` times one thread against two by size;
#: BENCHMARKS.md, "Long windows"). Waking a second thread costs tens of microseconds (more on a virtual
#: machine), and: the numba kernels that only copy (unfold, the fold without overlap) cost a few times
#: less per byte than a sum; the NumPy path's sums and its copies of window rows and tiles make many
#: small NumPy calls a block, holding the GIL between them, so two threads mostly wait for each other.
_COPY_SPLIT = 4
_NUMPY_SUM_SPLIT = 8
_NUMPY_COPY_SPLIT = 32
#: Planes per block of dtype conversions for the numba kernels aim at this many input bytes (L2-sized).
_BLOCK_BYTES = 1 << 19
#: Planes per block of the NumPy kernels. Each block costs a dozen NumPy calls, under the GIL, so small
#: blocks keep the second thread waiting: fold on two threads took 21 / 23 / 70 / 17 ms on the benchmark
#: shapes 1-4 at 512 KiB, 14 / 12 / 27 / 6 ms at 4 MiB (16 MiB: no better; unfold the same or better).
_NUMPY_BLOCK_BYTES = 4 << 20

_lock = threading.Lock()
_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_jit_module = None
_jit_error: str | None = None
#: Loading numba and its cached kernels costs about 0.45 s of CPU and 65-110 MB, mostly holding the GIL:
#: NumPy calls running meanwhile (on two cores) take 2-4x their time, so the load costs them about 0.4 s
#: of wall time, once; afterwards numba's kernels take a third to a half of the NumPy kernels' time.
#: A call on NumPy arrays starts the load once the calls before it in this process add up to this much
#: work (input plus output bytes), so that: a script whose calls add up to less (ten calls of 80 MB, the
#: README's examples) never loads numba; repeated calls reach it after about 0.2 s of NumPy work and
#: take numba half a second to a second later; and a single call, however large, never pays for a load it
#: could not use (a call keeps the path it started on). Both paths give the same bits, so the choice
#: only changes speed (BENCHMARKS.md, "When numba loads").
_JIT_WORTH_BYTES = 1 << 30
#: The same for a job streamed through files, which announces its work (``expect_work``): there the
#: kernel shares the cores with reading and writing, and numba saved about 0.1 s of CPU per GB of input,
#: so that a 3.5 GB fold (5 GB of work) spent more CPU with numba's load than without it (BENCHMARKS.md,
#: "The kernel choice and the pipeline").
_JOB_JIT_WORTH_BYTES = 8 << 30
#: The same where the kernels' machine code is kept on disk (:mod:`swt_cli._native`): loading it costs
#: about a tenth of a second of CPU (llvmlite and the code; no numba), repaid by about 50 MiB of work in
#: memory, or 256 MiB of a job (where reading and writing share the cores: BENCHMARKS.md, "Native kernels").
_NATIVE_WORTH_BYTES = 32 << 20
_JOB_NATIVE_WORTH_BYTES = 512 << 20
_expected_work: int | None = None
#: Work of every call on NumPy arrays so far (a lost update between threads only delays the load).
_work_seen = 0
#: The background load: keys (op, plan without its batch, dtypes) whose numba kernels are compiled or
#: loaded from numba's cache, the keys asked for, the work queue and its thread (None when idle).
_ready: set = set()
_asked: set = set()
#: Keys whose kernels were asked for from their files only (without numba), before the numba threshold.
_asked_native: set = set()
_queue: list = []
_loader: threading.Thread | None = None


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> None:
    """Use ``n`` threads for NumPy-array kernels; ``None``: every core this process may run on.

    >>> set_threads(1); get_threads()
    1
    >>> set_threads(None)
    """
    global _threads, _pool
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SwtError(f"threads must be a positive integer or None, got {n!r}")
        n = int(n)
    with _lock:
        _threads = n
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)


def get_threads() -> int:
    """How many threads NumPy-array kernels use."""
    return _threads if _threads is not None else _cpu_count()


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool._max_workers < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swt-kernel")
        return _pool


def _parallel(fn, count: int, nbytes: int) -> None:
    """``fn(lo, hi)`` over ``range(count)``, on up to :func:`get_threads` threads.

    The range is cut into a few runs per thread that the threads take in turn, so that a core slowed by
    another process leaves its share to the others instead of holding everyone up.
    """
    threads = min(get_threads(), count, max(1, nbytes // _PARALLEL_BYTES))
    if threads <= 1:
        if count:
            fn(0, count)
        return
    runs = min(count, 4 * threads)
    bounds = [count * i // runs for i in range(runs + 1)]
    queue = iter(range(runs))
    take = threading.Lock()

    def work():
        while True:
            with take:
                i = next(queue, None)
            if i is None:
                return
            fn(bounds[i], bounds[i + 1])

    pool = _get_pool(threads - 1)
    futures = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        errors = [f.exception() for f in futures]  # wait for every run before anything is raised
    for err in errors:
        if err is not None:
            raise err


def _jit():
    """The numba kernels (:mod:`swt_cli._jit`), or None where numba cannot be imported."""
    global _jit_module, _jit_error
    if _jit_module is None and _jit_error is None:
        try:
            from . import _jit as module
        except Exception as err:  # ImportError, or a numba that refuses this NumPy in its own way
            _jit_error = str(err) or type(err).__name__
        else:
            _jit_module = module
    return _jit_module


def _export_soon() -> None:
    """Have the loader thread keep the machine code of the kernels numba has just run (for later processes)."""
    _ask(None, None, set(), True)


def _numba_kernels():
    """numba's kernels for a variant whose machine code is not kept (or not for these arrays): forced
    (``SWT_KERNEL=numba``), imported now, or an error where numba cannot be; chosen, only where numba is
    loaded already (None otherwise: the call then takes NumPy, see :func:`fold`)."""
    if _forced() != "numba":
        return _jit_module
    jit = _jit()
    if jit is None:
        raise SwtError(f"SWT_KERNEL=numba but numba cannot be imported ({_jit_error}): pip install numba")
    return jit


#: The kernels as the fold and unfold call them: machine code kept on disk where loaded, else numba's.
_compiled = _native.Compiled(_numba_kernels, _export_soon)


def expect_work(nbytes: int | None) -> None:
    """Announce the total work (input plus output bytes) of a job, so that its first block already
    starts loading numba where the whole job repays it, and a smaller job never does (see
    :func:`kernel_name`); None withdraws the announcement."""
    global _expected_work
    _expected_work = nbytes


def _forced() -> str:
    """``SWT_KERNEL``: ``''`` (choose), ``'numpy'`` or ``'numba'``."""
    choice = os.environ.get("SWT_KERNEL", "").strip().lower()
    if choice not in ("", "numpy", "numba"):
        raise SwtError(f"SWT_KERNEL must be 'numpy' or 'numba', got {choice!r}")
    return choice


def kernel_name(nbytes: int | None = None) -> str:
    """``'numba'`` or ``'numpy'``: the path NumPy-array calls take now (where their kernels are ready).

    ``SWT_KERNEL`` where set (``numba``: imported now, or an error that says how to install it); else
    ``'numba'`` once the background load (started by a call when the calls before it in this process add
    up to ``_JIT_WORTH_BYTES`` of work, or a job announces ``_JOB_JIT_WORTH_BYTES``, see :func:`expect_work`)
    has imported numba, ``'numpy'`` before or where it failed. ``nbytes`` is accepted for compatibility and does not
    enter the answer. Both paths give the same bits.
    """
    choice = _forced()
    if choice == "numba":
        _numba_kernels()  # an error where numba cannot be imported
        return "numba"
    if choice == "numpy" or (_jit_module is None and not _compiled.native_loaded):
        return "numpy"
    return "numba"


def _take_numba(plan, in_dtype, out_dtype, nbytes: int) -> bool:
    """Whether a fold or unfold of ``plan`` (a FoldPlan or UnfoldPlan) with ``nbytes`` of work takes numba now.

    Forced: yes (numba is imported at the first kernel whose machine code is not kept on disk). Chosen:
    where the compiled kernels for this problem (its geometry, shapes without the batch, dtypes) are
    ready; else, once enough work has been seen (less where kernels are kept on disk), a warm-up of them
    (:func:`_one_plane`) is queued on the background thread (from their files only, below numba's own
    threshold) and the call takes NumPy.
    """
    global _work_seen
    choice = _forced()
    if choice:
        return choice == "numba"
    lead = len(plan.batch)
    key = (type(plan), plan.geometry, plan.input_shape[lead:], plan.output_shape[lead:], in_dtype, out_dtype)
    if key in _ready:
        return True
    if _expected_work is not None:  # a job: its announced total decides, not the blocks seen so far
        worth = _expected_work >= _JOB_JIT_WORTH_BYTES
        native_worth = _expected_work >= _JOB_NATIVE_WORTH_BYTES
    else:  # the calls before this one: repeated work, not one call
        worth = _work_seen >= _JIT_WORTH_BYTES
        native_worth = _work_seen >= _NATIVE_WORTH_BYTES
        _work_seen += nbytes
    if worth and _jit_error is None and key not in _asked:
        warm = _one_plane(plan, in_dtype, out_dtype)
        if warm is not None:
            _ask(key, warm, _asked, True)
    elif native_worth and key not in _asked_native and _native.any_saved():
        warm = _one_plane(plan, in_dtype, out_dtype)
        if warm is not None:
            _ask(key, warm, _asked_native, False)
    return False


def _ask(key, warm, asked: set, with_numba: bool) -> None:
    global _loader
    with _lock:
        if key in asked:
            return
        asked.add(key)
        _queue.append((key, warm, with_numba))
        if _loader is None:
            # A daemon: a process that ends meanwhile does not wait for numba.
            _loader = threading.Thread(target=_load, name="swt-numba-load", daemon=True)
            _loader.start()


def _load() -> None:
    """The background thread: import numba, then warm each key asked for; any failure leaves the NumPy
    path in place, silently (``SWT_KERNEL=numba`` says what failed)."""
    global _loader
    while True:
        with _lock:
            if not _queue or _jit_error is not None:
                _loader = None
                return
            key, warm, with_numba = _queue.pop(0)
        if key is None:
            _compiled.export()
            continue
        try:
            try:
                with _compiled.native_only():  # the kernels' files, where kept: no numba
                    warm()
            except _native.NotNative:
                if not with_numba or _jit() is None:
                    continue  # asked again, with numba, once the calls reach _JIT_WORTH_BYTES
                warm()  # the kernels numba ran are kept for the next process (_export_soon)
            _ready.add(key)
        except Exception:  # a kernel numba cannot compile here: this key stays on NumPy
            pass


class _Context:
    """What an error message starts with, formatted only when one is raised (it costs a few microseconds)."""

    __slots__ = ("dtype", "geometry", "op", "shape")

    def __init__(self, op, x, plan):
        self.op, self.dtype, self.shape, self.geometry = op, x.dtype, x.shape, plan.geometry

    def __str__(self):
        return f"{self.op} of {self.dtype} input of shape {fmt_shape(self.shape)} with {self.geometry.describe()}"


def _context(op: str, x, plan) -> _Context:
    return _Context(op, x, plan)


def _allocate(xp, shape, dtype, context, zero=True):
    try:
        return xp.zeros(shape, dtype) if zero else xp.empty(shape, dtype)
    except MemoryError:
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        raise SwtError(f"{context}: not enough memory for {nbytes} bytes of shape {fmt_shape(shape)}") from None


def _planes(x, inner_ndim: int):
    """``x`` with its leading axes flattened into one: ``(P, *inner)`` (a copy only where no view can be)."""
    return x.reshape((math.prod(x.shape[: x.ndim - inner_ndim]),) + x.shape[x.ndim - inner_ndim :])


def _is_tiled(g: Geometry) -> bool:
    """Windows tile the output without overlap or padding: fold and unfold are pure copies."""
    return g.stride == g.kernel and all(d == 1 for d in g.dilation) and not any(g.padding)


#: Planes larger than this are not warmed on the background thread (they would double the memory of a
#: call of one plane); such calls take numba only where forced.
_WARM_PLANE_BYTES = 64 << 20


def _compiled_ran(run, xs, rs, plan) -> bool:
    """``run`` (a compiled fold or unfold) on these planes; False where it could not: arrays its kept
    kernels do not take (misaligned, say) while numba is not loaded. The NumPy path then writes them all."""
    try:
        run(xs, rs, plan)
    except _native.NotNative:
        return False
    return True


def _one_plane(plan, in_dtype, out_dtype):
    """A function that runs the numba fold or unfold on one zero plane of ``plan``'s problem (so that
    numba compiles, or loads from its cache, just what calls like it need), or None where a plane is too
    large for that."""
    one = replace(plan, batch=(1,))
    nd = plan.geometry.ndim
    size_in, size_out = math.prod(one.input_shape), math.prod(one.output_shape)
    if max(size_in * np.dtype(in_dtype).itemsize, size_out * np.dtype(out_dtype).itemsize) > _WARM_PLANE_BYTES:
        return None
    fold = isinstance(plan, FoldPlan)

    def warm():
        x, out = np.zeros(one.input_shape, in_dtype), np.empty(one.output_shape, out_dtype)
        if fold:
            _fold_numba(_planes(x, 2 * nd), _planes(out, nd), one)
        else:
            _unfold_numba(_planes(x, nd), _planes(out, 2 * nd), one)

    return warm


def _pad3(values, fill):
    return (fill,) * (3 - len(values)) + tuple(values)


def _geo3(g: Geometry) -> np.ndarray:
    return np.array(
        _pad3(g.kernel, 1) + _pad3(g.stride, 1) + _pad3(g.padding, 0) + _pad3(g.dilation, 1), np.int64
    )


def _blocks(lo: int, hi: int, plane_bytes: int, block_bytes: int = _BLOCK_BYTES):
    """``[lo, hi)`` in runs of planes of about ``block_bytes`` (at least one plane each)."""
    step = max(1, block_bytes // max(plane_bytes, 1))
    for a in range(lo, hi, step):
        yield a, min(a + step, hi)


# ----------------------------------------------------------------------------------------------- fold


def fold(x, plan: FoldPlan, out_dtype=None, out=None):
    """Fold a checked ``plan``: windows ``plan.input_shape`` -> images ``plan.output_shape``.

    ``out``: a C-contiguous NumPy array of the output's shape and of the sums' dtype (the accumulator's,
    which is ``out_dtype``'s for floats), not overlapping ``x``, to write the images into instead of a new
    array (the caller checks it: :func:`swt_cli.api.sliding_window_transpose`'s ``out``)."""
    xp = array_module(x)
    out_dtype = np.dtype(out_dtype or x.dtype)
    acc_dtype = accumulator_dtype(x.dtype, out_dtype)
    context = _context("fold", x, plan)
    if xp is not np:
        return _fold_offsets(xp, x, plan, acc_dtype, out_dtype, context)
    nd = plan.geometry.ndim
    result = _allocate(np, plan.output_shape, acc_dtype, context, zero=False) if out is None else out
    xs, rs = _planes(x, 2 * nd), _planes(result, nd)
    compiled = _jit_handles(x.dtype, acc_dtype, plan.geometry) and _take_numba(plan, x.dtype, acc_dtype, x.nbytes + result.nbytes)
    if not (compiled and _compiled_ran(_fold_numba, xs, rs, plan)):
        _fold_numpy(xs, rs, plan, context)
    return cast_result(result, out_dtype, np, context)


def _fold_offsets(xp, x, plan, acc_dtype, out_dtype, context):
    """The array-operations fold (CuPy): one add per kernel offset into stride phases, then one interleave
    (a copy where the windows tile the output, as on the other paths)."""
    result = _allocate(xp, plan.output_shape, acc_dtype, context, zero=False)
    g = plan.geometry
    if _is_tiled(g):
        _copy_tiles(_planes(x, 2 * g.ndim), _planes(result, g.ndim), plan.grid, g.kernel, xp)
    else:
        fold_phases(xp, x, result, plan, context)
    return cast_result(result, out_dtype, xp, context)


def fold_phases(xp, x, out, plan: FoldPlan, context="fold"):
    """Fold ``x`` (``batch + grid + kernel``) into ``out`` (``batch + output_size``) with array operations.

    Window ``i`` at offset ``w`` lands on padded position ``i*s + w*d = s*(i + q) + r`` (``q, r =
    divmod(w*d, s)``). So the sums go into a zeroed buffer per stride phase ``r``, ``(*s, *batch, *A)``,
    where every offset's add is one slice, contiguous along the last axis (into the output directly,
    every ``s``-th element, it was 20-30% slower); then each phase is copied once into every ``s``-th
    output element, the padding cropped on the way. 1-d, stride 2, kernel 3 (phase 0: offsets 0, 2;
    phase 1: offset 1), offsets in :func:`_window_order` so that each element adds its windows in
    row-major order::

        acc[0, i + 1] += x[i, 2];  acc[0, i] += x[i, 0];  acc[1, i] += x[i, 1]
        out[0::2] = acc[0, :];  out[1::2] = acc[1, :]       (with padding 0)
    """
    g = plan.geometry
    lengths = tuple(max(n + (k - 1) * d // s, (o - 1 + p) // s + 1)
                    for n, k, s, p, d, o in zip(plan.grid, g.kernel, g.stride, g.padding, g.dilation, plan.output_size))
    acc = _allocate(xp, g.stride + out.shape[: out.ndim - g.ndim] + lengths, out.dtype, context)
    checked = acc.dtype.itemsize == 8 and acc.dtype.kind in "iu" and x.dtype.itemsize == 8
    for offsets in _window_order(g.kernel, g.stride, g.dilation):
        phase_shift = [divmod(w * d, s) for w, d, s in zip(offsets, g.dilation, g.stride)]
        phases = tuple(r for _, r in phase_shift)
        target = (Ellipsis,) + tuple(slice(q, q + n) for (q, _), n in zip(phase_shift, plan.grid))
        source = x[(Ellipsis,) + offsets]
        if checked:
            _add_checked(acc[phases], target, source, context)
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # IEEE: inf + -inf is NaN, silently, as in numba
                acc[phases][target] += source
    for phases in itertools.product(*(range(s) for s in g.stride)):
        firsts = [(r - p) % s for r, p, s in zip(phases, g.padding, g.stride)]
        picks = tuple(slice(c, None, s) for c, s in zip(firsts, g.stride))
        counts = [len(range(c, o, s)) for c, o, s in zip(firsts, plan.output_size, g.stride)]
        spans = tuple(slice((c + p) // s, (c + p) // s + m) for c, p, s, m in zip(firsts, g.padding, g.stride, counts))
        out[(Ellipsis,) + picks] = acc[phases][(Ellipsis,) + spans]


def _window_order(kernel, stride, dilation) -> list:
    """Kernel offsets in an order that adds each output element's windows in row-major order of the grid.

    One element takes at most one value per offset, and only from offsets of one stride phase (``w*d %
    s`` on every axis, ``q = w*d // s``); within a phase, a larger ``q`` comes from an earlier window.
    So offsets sorted by phase, then by ``q`` descending (row-major over the axes) would do, and so does
    any order that keeps that within each phase, as plain reverse row-major order does. This one keeps
    offsets of one ``q`` together, in ascending order, so that consecutive adds touch neighbouring rows
    (in reverse row-major order fold_pairs ran markedly slower).
    """
    def key(offsets):
        return tuple(v for w, s, d in zip(offsets, stride, dilation) for v in (-(w * d // s), w * d % s))

    return sorted(itertools.product(*(range(k) for k in kernel)), key=key)


def _add_checked(buf, target, source, context):
    """``buf[target] += source`` for 64-bit integers, refusing to wrap around."""
    before = buf[target]
    after = before + source.astype(buf.dtype)
    if buf.dtype.kind == "u":
        wrapped = after < before
    else:
        wrapped = (source > 0) & (after < before) | (source < 0) & (after > before)
    if wrapped.any():
        raise SwtError(f"{context}: sums overflow {buf.dtype.name}: use dtype float64")
    buf[target] = after


def _fold_numpy(xs, rs, plan: FoldPlan, context):
    """Fold planes ``xs (P, *grid, *kernel)`` into ``rs (P, *output)`` with NumPy, block by block."""
    g = plan.geometry
    if _is_tiled(g):
        chunks = _row_chunks(g, xs.itemsize) if xs.dtype == rs.dtype else None
        if chunks is not None:
            return _fold_rows(xs, rs, plan, chunks)
        return _parallel(lambda lo, hi: _copy_tiles(xs[lo:hi], rs[lo:hi], plan.grid, g.kernel), len(xs),
                         (xs.nbytes + rs.nbytes) // _NUMPY_COPY_SPLIT)
    plane_bytes = math.prod(xs.shape[1:]) * xs.itemsize

    fold_block = (fold_runs if _runs_apply(rs.dtype, g) else fold_pairs if _pairs_apply(xs, rs.dtype, g)
                  else fold_phases)

    def run(lo, hi):
        for a, b in _blocks(lo, hi, plane_bytes, _NUMPY_BLOCK_BYTES):
            fold_block(np, xs[a:b], rs[a:b], plan, context)

    _parallel(run, len(xs), (xs.nbytes + rs.nbytes) // _NUMPY_SUM_SPLIT)


#: Two adjacent float32 (float64) taken as one complex64 (complex128): one strided add moves both.
_PAIR_DTYPES = {np.dtype(np.float32): np.dtype(np.complex64), np.dtype(np.float64): np.dtype(np.complex128)}


def _pairs_apply(x, acc_dtype, g: Geometry) -> bool:
    """:func:`fold_pairs` takes float32/float64 sums of the same dtype, strided and undilated along the
    last axis. With stride 1, columns ``w`` and ``w + 1`` of neighbouring windows meet on one output
    element, and the pairs would add them out of order (different last bits than :func:`fold_phases`);
    it was no faster there either (benchmark shape 2: 14.4 ms against 13.9)."""
    return (x.dtype == acc_dtype and acc_dtype in _PAIR_DTYPES and g.dilation[-1] == 1 and g.kernel[-1] >= 2
            and g.stride[-1] >= 2 and x.strides[-1] == x.itemsize)


def _lead_rows(acc, x, lead, plan: FoldPlan, tail: int):
    """For kernel offsets ``lead`` on every axis but the last: the rows of the padded sums ``acc`` that
    those offsets' windows land on, one per window of the leading axes (``acc``'s last ``tail`` axes
    whole), and the windows' rows of ``x`` there, ``(..., *grid, k)``."""
    g = plan.geometry
    rows = acc[(Ellipsis,) + tuple(slice(w * d, w * d + s * (n - 1) + 1, s)
                                   for w, d, s, n in zip(lead, g.dilation, g.stride, plan.grid)) + (slice(None),) * tail]
    return rows, x[(Ellipsis,) + lead + (slice(None),)]


def fold_pairs(xp, x, out, plan: FoldPlan, context="fold"):
    """Fold ``x`` (``batch + grid + kernel``) into ``out`` (``batch + output_size``), two kernel columns
    per add: where :func:`_pairs_apply`, NumPy only.

    Along the last axis, window ``i``'s columns ``w`` and ``w + 1`` land side by side, on padded positions
    ``i*s + w`` and ``i*s + w + 1``, and they sit side by side in the input too: viewed as one complex
    number, the pair is a single element of a strided add, so a 3-wide kernel row takes two adds (a pair
    and a single column) instead of three. With an odd stride (3 and up) the pairs of even and odd
    windows fall on opposite parities, so they go in two adds. The sums go into the padded output,
    zeroed, which is then cropped into ``out`` (or is ``out`` itself, without padding). Each element
    adds its windows in row-major order, as in :func:`fold_phases`, so the sums are the same to the bit. Measured (float32, kernel
    3, stride 2): a fold of 78 items of the pipeline benchmark on one thread took 10.5 ms against 13.0,
    and the benchmark's HDF5 pipeline 1.03 s against 1.09 (medians of 11).
    """
    g = plan.geometry
    s, n, k = g.stride[-1], plan.grid[-1], g.kernel[-1]
    pair = _PAIR_DTYPES[out.dtype]
    if out.shape[out.ndim - g.ndim:] == plan.padded_size:
        acc = out
        acc[...] = 0
    else:
        acc = _allocate(xp, out.shape[: out.ndim - g.ndim] + plan.padded_size, out.dtype, context)
    # Windows of one parity class: all of them for an even stride, else the even ones and the odd ones.
    classes = [slice(0, n)] if s % 2 == 0 else [slice(0, n, 2), slice(1, n, 2)]
    # Each element's windows in row-major order, as in fold_phases: the leading offsets in _window_order,
    # and along the last axis the odd kernel's last column first, then the pairs from the last down. One
    # add gives an element at most one value (two windows' columns never meet in one add: stride >= 2,
    # and odd strides split the windows by parity), so the order of the adds is the order of the values.
    columns = ([k - 1] if k % 2 else []) + list(range(k - 3 if k % 2 else k - 2, -1, -2))
    with np.errstate(invalid="ignore", over="ignore"):  # IEEE: inf + -inf is NaN, silently, as in numba
        for lead in _window_order(g.kernel[:-1], g.stride[:-1], g.dilation[:-1]):
            rows, windows = _lead_rows(acc, x, lead, plan, 1)
            for w in columns:
                if w + 1 < k:  # columns w and w + 1 as one complex add per parity class
                    for cls in classes:
                        first = cls.start
                        count = len(range(first, n, cls.step or 1))
                        if not count:
                            continue
                        step = (cls.step or 1) * s  # in floats, between windows of the class
                        start = first * s + w
                        span = rows[..., start: start + step * (count - 1) + 2]  # an even number of floats
                        target = span.view(pair)[..., ::step // 2]
                        source = windows[..., cls, w:w + 2].view(pair)[..., 0]
                        target += source
                else:  # the last column of an odd kernel
                    rows[..., w: w + s * (n - 1) + 1: s] += windows[..., w]
    if acc is not out:
        out[...] = acc[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(g.padding, plan.output_size))]


#: Undilated windows at least ``_RUN_STRIDE`` elements apart and ``_RUN_KERNEL`` long along the last axis
#: are added in runs (:func:`fold_runs`): by stride phase or in pairs each add walks the windows
#: ``kernel * itemsize`` bytes apart, a cache line or more each for long windows, while a run is
#: contiguous (a 1-d overlap-add took 11-13x the memory floor by phases; BENCHMARKS.md, "Long windows").
#: Where windows are short the runs lose: one NumPy add per run of a stride rather than per row of
#: windows (kernel 12, stride 8 in 2-d was slower than by pairs).
_RUN_STRIDE = 8
_RUN_KERNEL = 32


def _runs_apply(acc_dtype, g: Geometry) -> bool:
    """:func:`fold_runs` takes float and complex sums (integer sums keep their overflow checks in
    :func:`fold_phases`) of undilated windows long enough and far enough apart along the last axis."""
    return (acc_dtype.kind in "fc" and g.dilation[-1] == 1 and g.stride[-1] >= _RUN_STRIDE
            and g.kernel[-1] >= _RUN_KERNEL)


def fold_runs(xp, x, out, plan: FoldPlan, context="fold"):
    """Fold ``x`` (``batch + grid + kernel``) into ``out`` (``batch + output_size``) where
    :func:`_runs_apply`: along the last axis in contiguous runs of a stride, NumPy only.

    Window ``i`` at offset ``w = t*s + j`` (``0 <= j < s``) of the last axis lands on padded column
    ``(i + t)*s + j``: viewing that axis as segments of ``s`` columns, offsets ``t*s`` to ``t*s + s - 1``
    of every window are one add of whole runs, ``segments[i + t, j] += windows[i, t*s + j]``. ``t`` from
    the largest down gives each element its windows of a row in order, and the leading axes' offsets go
    in :func:`_window_order`, so the sums are those of :func:`fold_phases` to the bit. The sums go into
    the padded output, zeroed, then cropped into ``out``.
    """
    g = plan.geometry
    s, n, k = g.stride[-1], plan.grid[-1], g.kernel[-1]
    top = (k - 1) // s  # the largest t
    segments = max(n + top, -(-plan.padded_size[-1] // s))
    lead = out.shape[: out.ndim - g.ndim] + plan.padded_size[:-1]
    acc = _allocate(xp, lead + (segments, s), out.dtype, context)
    with np.errstate(invalid="ignore", over="ignore"):  # IEEE: inf + -inf is NaN, silently, as in numba
        for offsets in _window_order(g.kernel[:-1], g.stride[:-1], g.dilation[:-1]):
            rows, windows = _lead_rows(acc, x, offsets, plan, 2)
            for t in range(top, -1, -1):
                m = min(s, k - t * s)
                rows[..., t:t + n, :m] += windows[..., t * s:t * s + m]
    flat = acc.reshape(lead + (segments * s,))  # acc is contiguous: a view
    out[...] = flat[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(g.padding, plan.output_size))]


def _copy_tiles(windows, images, grid, kernel, xp=np):
    """Fold or unfold without overlap: ``windows (P, *grid, *kernel)`` <-> ``images (P, *output)``, into ``images``."""
    nd = len(kernel)
    reach = tuple(g * k for g, k in zip(grid, kernel))
    if reach != images.shape[1:]:
        images[...] = 0
    tiles = images[(slice(None),) + tuple(slice(0, r) for r in reach)]
    tiles = tiles.reshape((len(images),) + tuple(v for gk in zip(grid, kernel) for v in gk))
    order = (0,) + tuple(a for i in range(nd) for a in (1 + i, 1 + nd + i))
    xp.copyto(tiles, windows.transpose(order), casting="unsafe")


#: Float and complex dtypes numba compiles for (not float16, nor long double).
_JIT_FLOATS = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


def _jit_handles(in_dtype, acc_dtype, g: Geometry) -> bool:
    """The numba fold takes float and complex sums (of the dtypes numba knows), and integer sums that
    cannot overflow int64."""
    if acc_dtype.kind in "fc":
        return acc_dtype in _JIT_FLOATS
    if acc_dtype == np.int64 and in_dtype.kind in "iu" and in_dtype.itemsize < 8:
        # |value| < 2**(8*itemsize) and each output sums at most prod(kernel) of them.
        return math.prod(g.kernel) < 2 ** (63 - 8 * in_dtype.itemsize)
    return False


def _rows3(values, fill):
    """3 axes for the fold kernel, whose scratch ring runs over the first: 2-d problems put their size-1
    axis in the middle, so that the ring holds a few image rows rather than the whole image."""
    return (values[0], fill, values[1]) if len(values) == 2 else _pad3(values, fill)


def _fold_numba(xs, rs, plan: FoldPlan):
    jit = _compiled
    g = plan.geometry
    x7 = xs.reshape((len(xs),) + _rows3(plan.grid, 1) + _rows3(g.kernel, 1))
    r4 = rs.reshape((len(rs),) + _rows3(plan.output_size, 1))
    geo = np.array(_rows3(g.kernel, 1) + _rows3(g.stride, 1) + _rows3(g.padding, 0) + _rows3(g.dilation, 1), np.int64)
    tiled = _is_tiled(g)
    direct = x7.dtype == r4.dtype and x7.flags.c_contiguous
    plane_bytes = math.prod(x7.shape[1:]) * max(x7.itemsize, r4.itemsize)
    # Without overlap the fold copies bits: where a window row and an output row are whole 8-byte words,
    # move words (float32 with an even kernel: two elements per load and store).
    words = tiled and r4.itemsize < 8 and geo[2] * r4.itemsize % 8 == 0 and r4.shape[3] * r4.itemsize % 8 == 0
    if words:
        geo[2] = geo[2] * r4.itemsize // 8
    layout = _native.ring_in_order(geo, x7.shape[3] * math.prod(x7.shape[4:]) * r4.itemsize)
    k0, k2, s2, p2, d0, d2 = (int(geo[i]) for i in (0, 2, 5, 8, 9, 11))
    _, _, nring, slot = _native.ring_dims(k0, d0, k2, s2, d2, p2, x7.shape[3], r4.shape[2], r4.shape[3])

    def kernel(xb, rb, lo, hi):
        if words:
            xw, rw = xb.view(np.uint64), rb.view(np.uint64)
            jit.fold_planes_tiled(xw, rw, lo, hi, geo, xw.reshape(-1), rw.reshape(-1))
        elif tiled:
            jit.fold_planes_tiled(xb, rb, lo, hi, geo, xb.reshape(-1), rb.reshape(-1))
        else:  # a scratch ring of its own for each thread and block
            jit.fold_planes(xb, rb, lo, hi, geo, layout, np.zeros(nring * slot, rb.dtype), xb.reshape(-1))

    def run(lo, hi):
        if direct:
            kernel(x7, r4, lo, hi)
            return
        for a, b in _blocks(lo, hi, plane_bytes):  # convert (or make contiguous) one cache-sized block at a time
            kernel(np.ascontiguousarray(x7[a:b], dtype=r4.dtype), r4[a:b], 0, b - a)

    # A copy costs a few times less per byte than a sum: it pays for a second thread only on more bytes.
    _parallel(run, len(x7), (xs.nbytes + rs.nbytes) // (_COPY_SPLIT if tiled else 1))


# --------------------------------------------------------------------------------------------- unfold


def unfold(x, plan: UnfoldPlan, out_dtype=None, out=None):
    """Unfold a checked ``plan``: images ``plan.input_shape`` -> windows ``plan.output_shape``.

    ``out``: as for :func:`fold`, of ``x``'s dtype."""
    xp = array_module(x)
    out_dtype = np.dtype(out_dtype or x.dtype)
    context = _context("unfold", x, plan)
    if xp is not np:
        result = _unfold_view(xp, x, plan, context)
        try:
            result = xp.ascontiguousarray(result)
        except MemoryError:
            raise SwtError(f"{context}: not enough memory for the output of shape {fmt_shape(plan.output_shape)}") from None
        return cast_result(result, out_dtype, xp, context)
    nd = plan.geometry.ndim
    result = _allocate(np, plan.output_shape, x.dtype, context, zero=False) if out is None else out
    xs, rs = _planes(x, nd), _planes(result, 2 * nd)
    # A copy moves bits: items of 1-8 bytes as unsigned integers, complex128 as itself; not long double.
    copies_bits = x.dtype.itemsize in _BITS or x.dtype == np.complex128
    compiled = copies_bits and _take_numba(plan, x.dtype, x.dtype, x.nbytes + result.nbytes)
    if not (compiled and _compiled_ran(_unfold_numba, xs, rs, plan)):
        _unfold_numpy(xs, rs, plan, context)
    return cast_result(result, out_dtype, np, context)


def _unfold_view(xp, x, plan: UnfoldPlan, context):
    """The windows of ``x`` as a strided view (of a zero-padded copy where there is padding)."""
    g = plan.geometry
    if any(g.padding):
        padded_shape = x.shape[: x.ndim - g.ndim] + tuple(s + 2 * p for s, p in zip(plan.size, g.padding))
        padded = _allocate(xp, padded_shape, x.dtype, context)
        padded[(Ellipsis,) + tuple(slice(p, p + s) for p, s in zip(g.padding, plan.size))] = x
        x = padded
    spans = tuple(d * (k - 1) + 1 for k, d in zip(g.kernel, g.dilation))
    axes = tuple(range(x.ndim - g.ndim, x.ndim))
    view = xp.lib.stride_tricks.sliding_window_view(x, spans, axis=axes)
    # view: (..., S1-span1+1, ..., span1, ...); pick every stride-th window and every dilation-th element.
    pick = (Ellipsis,) + tuple(slice(0, s * (n - 1) + 1, s) for s, n in zip(g.stride, plan.grid)) + tuple(
        slice(None, None, d) for d in g.dilation
    )
    return view[pick]


def _unfold_numpy(xs, rs, plan: UnfoldPlan, context):
    g = plan.geometry
    chunks = _row_chunks(g, xs.itemsize)
    if chunks is not None:
        return _unfold_rows(xs, rs, plan, chunks, context)
    if _is_tiled(g):
        # Each window is a tile of the image: copy the tiles (the image beyond the grid is dropped).
        reach = tuple(n * k for n, k in zip(plan.grid, g.kernel))
        shape = tuple(v for gk in zip(plan.grid, g.kernel) for v in gk)
        nd = g.ndim
        order = (0,) + tuple(1 + 2 * i for i in range(nd)) + tuple(2 + 2 * i for i in range(nd))

        def tiles(lo, hi):
            src = xs[(slice(lo, hi),) + tuple(slice(0, r) for r in reach)].reshape((hi - lo,) + shape)
            np.copyto(rs[lo:hi], src.transpose(order))

        return _parallel(tiles, len(xs), (xs.nbytes + rs.nbytes) // _NUMPY_COPY_SPLIT)
    plane_bytes = math.prod(xs.shape[1:]) * xs.itemsize

    def run(lo, hi):
        for a, b in _blocks(lo, hi, plane_bytes, _NUMPY_BLOCK_BYTES):
            rs[a:b] = _unfold_view(np, xs[a:b], plan, context)

    _parallel(run, len(xs), xs.nbytes + rs.nbytes)


#: A window row (undilated) of at most this many unsigned-integer items moves as whole items: see _row_chunks.
_ROW_CHUNKS = 3
#: Planes per block of the row copies aim at this many window bytes: a block's windows are written once
#: per leading kernel offset and chunk, so they should stay in (L2) cache between those passes.
_ROW_BLOCK_BYTES = 1 << 18


def _row_chunks(g: Geometry, itemsize: int):
    """How the NumPy path copies one window row of an undilated last axis, or None where it should not.

    Along an undilated last axis a window row is ``k`` adjacent elements in the image and in the windows
    alike, so it can move as a few wide unsigned integers instead of ``k`` elements: float32 with kernel
    2 as one uint64, kernel 3 as a uint64 and a uint32. NumPy copies such a strided view in one tight
    loop, where the window view's innermost axis of ``k`` elements costs a loop call every ``k`` elements.
    Items are at most as wide as the image stride between windows is aligned (an 8-byte item read every
    4 bytes ran at half speed). Returns ``[(byte offset, width), ...]``; None for a dilated last axis or
    a row of more than ``_ROW_CHUNKS`` items (the window view is as fast there).
    """
    if g.dilation[-1] != 1:
        return None
    nbytes, align = g.kernel[-1] * itemsize, g.stride[-1] * itemsize
    chunks, offset = [], 0
    while offset < nbytes:
        width = 8
        while width > 1 and (width > nbytes - offset or align % width):
            width //= 2
        chunks.append((offset, width))
        offset += width
    return chunks if len(chunks) <= _ROW_CHUNKS else None


def _row_views(images, windows, g: Geometry, grid, chunks):
    """Pairs of views ``(image rows, window rows)``, one per leading kernel offset and chunk, each of shape
    ``(P, *grid)`` in unsigned integers of the chunk's width: ``images (P, *size)`` (padded: window ``i``
    at offset ``w`` starts at ``i*s + w*d``) and ``windows (P, *grid, *kernel)``, both C-contiguous."""
    nd = g.ndim
    shape = (len(images),) + tuple(grid)
    image_strides = (images.strides[0],) + tuple(s * images.strides[1 + a] for a, s in enumerate(g.stride))
    window_strides = windows.strides[: 1 + nd]
    for lead in itertools.product(*(range(k) for k in g.kernel[:-1])):
        image_at = sum(w * d * images.strides[1 + a] for a, (w, d) in enumerate(zip(lead, g.dilation)))
        window_at = sum(w * windows.strides[1 + nd + a] for a, w in enumerate(lead))
        for offset, width in chunks:
            dtype = np.dtype(f"u{width}")
            yield (np.ndarray(shape, dtype, images, image_at + offset, image_strides),
                   np.ndarray(shape, dtype, windows, window_at + offset, window_strides))


def _row_blocks(run, images, windows):
    """``run(lo, hi)`` over the planes in blocks of about ``_ROW_BLOCK_BYTES`` of windows, on the threads."""
    plane_bytes = math.prod(windows.shape[1:]) * windows.itemsize

    def blocks(lo, hi):
        for a, b in _blocks(lo, hi, plane_bytes, _ROW_BLOCK_BYTES):
            run(a, b)

    _parallel(blocks, len(windows), (images.nbytes + windows.nbytes) // _NUMPY_COPY_SPLIT)


def _unfold_rows(xs, rs, plan: UnfoldPlan, chunks, context):
    """Unfold with one strided copy per leading kernel offset and chunk of a window row (:func:`_row_chunks`)."""
    g = plan.geometry

    def run(a, b):
        image = xs[a:b]
        if any(g.padding):
            padded = _allocate(np, (b - a,) + tuple(n + 2 * p for n, p in zip(plan.size, g.padding)), xs.dtype, context)
            padded[(slice(None),) + tuple(slice(p, p + n) for p, n in zip(g.padding, plan.size))] = image
            image = padded
        elif not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        for src, dst in _row_views(image, rs[a:b], g, plan.grid, chunks):
            np.copyto(dst, src)

    _row_blocks(run, xs, rs)


def _fold_rows(xs, rs, plan: FoldPlan, chunks):
    """Fold without overlap (:func:`_is_tiled`): each window row copied into place as in :func:`_unfold_rows`."""
    g = plan.geometry
    reach = tuple(n * k for n, k in zip(plan.grid, g.kernel))

    def run(a, b):
        images, windows = rs[a:b], xs[a:b]
        if reach != plan.output_size:
            images[...] = 0
        if not windows.flags.c_contiguous:
            windows = np.ascontiguousarray(windows)
        for dst, src in _row_views(images, windows, g, plan.grid, chunks):
            np.copyto(dst, src)

    _row_blocks(run, rs, xs)


#: Unfold only copies, so it runs on the bits: one compiled kernel per item size.
_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _unfold_numba(xs, rs, plan: UnfoldPlan):
    jit = _compiled
    g = plan.geometry
    if g.ndim == 2 and g.kernel == (3, 3):  # whole windows at a time: see _jit.unfold_planes_3x3
        return _unfold_numba_3x3(jit, xs, rs, plan)
    bits = _BITS.get(xs.itemsize)
    x4 = xs.reshape((len(xs),) + _pad3(plan.size, 1))
    r7 = rs.reshape((len(rs),) + _pad3(plan.grid, 1) + _pad3(g.kernel, 1))
    geo = _geo3(g)
    # Where window rows, the steps between them, the padding and image rows are whole 8-byte words
    # (undilated float32 with an even kernel and stride, say), copy words: fewer, wider elements.
    if bits is not None and xs.itemsize < 8 and geo[11] == 1 and not any(
            v * xs.itemsize % 8 for v in (geo[2], geo[5], geo[8], x4.shape[3])):
        geo[[2, 5, 8]] //= 8 // xs.itemsize
        bits = np.uint64
    if bits is not None:
        r7 = r7.view(bits)
    plane_bytes = math.prod(x4.shape[1:]) * x4.itemsize

    def copy(xb, rb, lo, hi):
        xb = xb.view(bits) if bits is not None else xb
        jit.unfold_planes(xb, rb, lo, hi, geo, xb.reshape(-1), rb.reshape(-1))

    def run(lo, hi):
        if x4.flags.c_contiguous:
            copy(x4, r7, lo, hi)
            return
        for a, b in _blocks(lo, hi, plane_bytes):
            copy(np.ascontiguousarray(x4[a:b]), r7[a:b], 0, b - a)

    _parallel(run, len(x4), (xs.nbytes + rs.nbytes) // _COPY_SPLIT)


def _unfold_numba_3x3(jit, xs, rs, plan: UnfoldPlan):
    g = plan.geometry
    geo = np.array(g.stride + g.padding + g.dilation, np.int64)
    r4 = rs.reshape(rs.shape[:3] + (9,))
    bits = _BITS.get(xs.itemsize)  # a copy moves bits: float16, which numba lacks, as uint16
    if bits is not None:
        xs, r4 = xs.view(bits), r4.view(bits)
    plane_bytes = math.prod(xs.shape[1:]) * xs.itemsize

    def run(lo, hi):
        if xs.flags.c_contiguous:
            jit.unfold_planes_3x3(xs, r4, lo, hi, geo)
            return
        for a, b in _blocks(lo, hi, plane_bytes):
            jit.unfold_planes_3x3(np.ascontiguousarray(xs[a:b]), r4[a:b], 0, b - a, geo)

    _parallel(run, len(xs), (xs.nbytes + rs.nbytes) // _COPY_SPLIT)
