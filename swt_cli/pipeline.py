"""Streaming a fold or unfold through files: blocks of the leading axes sized to a memory budget,
read ahead and written behind on two threads, with progress on stderr and an atomic commit.

>>> parse_size("512MiB"), parse_size("2GB"), parse_size("1000")
(536870912, 2000000000, 1000)
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import kernels
from .backend import accumulator_dtype, import_cupy
from .blend import Blend
from .blocks import Blocks, block_items
from .choices import DEFAULT_MAX_MEMORY, parse_size  # noqa: F401 (imported from here by callers)
from .errors import SwtError
from .formats import block_shape
from .protocols import BlockTransform, Reader, Writer


def return_freed_blocks_to_the_system() -> None:
    """Have glibc serve every allocation over 16 MiB with its own mapping, unmapped when freed, and keep
    up to 16 MiB of freed memory at the top of each heap.

    By default glibc raises the mapping threshold as large blocks are freed (up to 32 MiB), after which
    blocks come from per-thread heaps that keep their pages: with the I/O threads, resident memory then
    drifts well above the budget. A much lower threshold costs page faults on the codecs' chunk-sized
    buffers; fixing the threshold also fixes the trim threshold at 128 KiB, so each freed result block
    would be handed back and faulted in again for the next, hence 16 MiB for both (the measurements:
    BENCHMARKS.md, "Figures behind the pipeline's constants"). A no-op where the C library is not glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 16 << 20)
        libc.mallopt(m_trim_threshold, 16 << 20)
    except (OSError, AttributeError):
        pass


def memory_limit() -> int | None:
    """Bytes of memory plus swap on this machine, or None where unknown: no block can need more."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("SwapTotal:"):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return total


#: A cgroup v1 limit this large means none (the kernel's page-rounded LONG_MAX).
_NO_CGROUP_LIMIT = 1 << 62


def cgroup_memory_limit(cgroup_file: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The memory limit of this process's cgroup, the smallest along its path up to the root of the
    mount (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``), or None where none is set or readable.

    A batch scheduler (SLURM, Kubernetes, systemd) kills a job that goes over it, whatever the machine has.
    """
    try:
        with open(cgroup_file) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = os.path.join(root, "memory"), "memory.limit_in_bytes"
        else:
            continue
        steps = [p for p in path.split("/") if p]
        for depth in range(len(steps), -1, -1):
            try:
                with open(os.path.join(base, *steps[:depth], name)) as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < _NO_CGROUP_LIMIT:
                limits.append(int(text))
    return min(limits) if limits else None


def default_budget(budget: int) -> int:
    """The memory budget of a run not given --max-memory: ``budget``, or a third of this job's cgroup limit
    where that is less (the rest is for Python and its libraries, the I/O buffers and the allocator's
    slack: peak memory ran up to 1.9 times the budget at 128 MiB)."""
    job_limit = cgroup_memory_limit()
    return min(budget, job_limit // 3) if job_limit else budget


def check_memory(block_bytes: int, items: int = 1) -> None:
    """Refuse, before reading anything, a block (of ``items`` items) that could never fit memory and swap,
    or this job's cgroup memory limit."""
    hint = ("lower --batch-size" if items > 1 else
            "swt splits only the leading axes, so one image (or one image's windows) must fit in memory")
    limit = memory_limit()
    if limit and block_bytes > limit:
        raise SwtError(f"one block needs about {block_bytes:,} bytes of memory, more than this machine has "
                       f"({limit:,} bytes with swap): {hint}")
    job_limit = cgroup_memory_limit()
    if job_limit and block_bytes > job_limit:
        raise SwtError(f"one block needs about {block_bytes:,} bytes of memory, more than this job may use "
                       f"(its cgroup's limit is {job_limit:,} bytes): {hint}")


@dataclass
class Transform:
    """One fold or unfold, applied block by block: the full-array ``plan`` with its leading axes split."""

    op: str  # "fold" or "unfold"
    #: A FoldPlan for "fold", an UnfoldPlan for "unfold".
    plan: Any
    in_dtype: np.dtype
    out_dtype: np.dtype
    device: str = "cpu"
    #: Fold only: a ``swt_cli.blend.Blend`` (mean, weights, fill), its divisor prepared once per run.
    blend: Blend | None = None

    @property
    def lead(self) -> int:
        return len(self.plan.batch)

    def bytes_per_item(self) -> int:
        """Working memory per element of the leading axes: two blocks in and out in flight, plus the sums."""
        g = self.plan.geometry
        inner_in = math.prod(self.plan.input_shape[self.lead:]) * self.in_dtype.itemsize
        inner_out = math.prod(self.plan.output_shape[self.lead:]) * self.out_dtype.itemsize
        if self.op == "fold":
            scratch = math.prod(self.plan.padded_size) * accumulator_dtype(self.in_dtype, self.out_dtype).itemsize
            if self.blend is not None:
                scratch += self.blend.scratch_bytes(self.plan, self.in_dtype, self.out_dtype)
        else:
            scratch = math.prod(s + 2 * p for s, p in zip(self.plan.size, g.padding)) * self.in_dtype.itemsize
        return 2 * inner_in + 3 * inner_out + scratch

    def __call__(self, block: np.ndarray) -> np.ndarray:
        plan = replace(self.plan, batch=tuple(block.shape[: self.lead]))
        run: Any = kernels.fold if self.op == "fold" else kernels.unfold
        if self.op == "fold" and self.blend is not None and self.blend.active:
            run = self.blend.fold
        if self.device == "gpu":
            cupy = import_cupy()
            return cupy.asnumpy(run(cupy.asarray(block), plan, self.out_dtype))
        return run(block, plan, self.out_dtype)


class Progress:
    """Items done, throughput and ETA on stderr: a live bar on a terminal, plain lines in a log."""

    def __init__(self, label: str, total: int, unit: str, quiet: bool = False, stream=None, every: float = 2.0):
        self.label, self.total, self.unit, self.quiet = label, total, unit, quiet
        self.stream = stream or sys.stderr
        self.every = every
        self.done = 0
        self._start = self._last = time.monotonic()
        self._bar: Any = None

    def __enter__(self):
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[time]}"),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", time="")
        return self

    def advance(self, items: int) -> None:
        self.done += items
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, advance=items, rate=self._rate(now), time=self._time(now))
        elif not self.quiet and (now - self._last >= self.every or self.done >= self.total):
            self._last = now
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def _rate(self, now) -> str:
        elapsed = max(now - self._start, 1e-9)
        return f"{self.done / elapsed:,.0f} {self.unit}/s"

    def _time(self, now, finished: bool = False) -> str:
        """``'ETA 0:01:02'`` while items remain, ``'done in 0:03:04'`` once all are done or the run has ``finished``."""
        elapsed = max(now - self._start, 1e-9)
        if finished or self.done >= self.total:
            return "done in " + _fmt_time(elapsed)
        rate = self.done / elapsed
        return "ETA " + _fmt_time((self.total - self.done) / rate if rate > 0 else 0.0)

    def _line(self, now) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {self._rate(now)}, {self._time(now)}"

    def __exit__(self, exc_type, *exc):
        if self._bar is not None:
            if exc_type is None:  # the bar's last words: the run's total time (not an ETA of 0:00:00)
                now = time.monotonic()
                self._bar.update(self._task, rate=self._rate(now), time=self._time(now, finished=True))
            self._bar.stop()


class CallbackProgress(Progress):
    """A :class:`Progress` that reports to a callable ``(done, total)`` instead of stderr (``RunOptions.progress``)."""

    def __init__(self, label: str, total: int, callback: Callable[[int, int], Any]):
        super().__init__(label, total, "items", quiet=True)
        self.callback = callback

    def advance(self, items: int) -> None:
        super().advance(items)
        self.callback(self.done, self.total)


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _spawn(fn, *args, track: list | None = None, may_block: bool = False) -> Future:
    """``fn(*args)`` on a daemon thread of its own, as a Future; the thread goes into ``track`` (with
    ``may_block``) before it starts, so that an interrupt arriving at any moment finds it there.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so a read blocked on a
    silent stdin pipe (or a write blocked on a stalled stdout pipe) would hang Ctrl-C forever.
    """
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def target():
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # handed to the main thread by future.result()
            future.set_exception(err)

    thread = threading.Thread(target=target, name="swt-io", daemon=True)
    if track is not None:
        track.append((thread, may_block))
    thread.start()
    return future


#: Seconds to let an in-flight file read or write finish after an error, before the temporary output goes.
SETTLE_SECONDS = 30.0


def _settle(threads: list) -> None:
    """Wait (bounded) for every I/O thread on files to end, so nothing writes into a temporary output being
    removed; a second Ctrl-C or SIGTERM meanwhile does not cut the wait short (the clean-up must finish).

    Pipes are not waited for: they may never answer, and the daemon thread dies with the process.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    for thread, may_block in threads:
        if may_block:
            continue
        while True:
            try:
                if thread.ident is None and not thread.is_alive():
                    # interrupted inside start(): it runs or it never will; give it a moment to say which
                    time.sleep(0.01)
                    if thread.ident is None:
                        break
                thread.join(max(0.0, deadline - time.monotonic()))
                break
            except KeyboardInterrupt:
                continue
            except RuntimeError:  # never started
                break


class _HeldSignals:
    """SIGINT and SIGTERM held back (recorded, not acted on) in the main thread, for the steps that must
    not be cut in two: creating the temporary output, the commit, the clean-up. ``release`` restores the
    handlers and, where asked, raises the first signal held as if it came now. Elsewhere than the main
    thread, nothing is held (Python runs handlers only there)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.held: list[int] = []
        self._previous: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            previous = signal.getsignal(sig)
            if previous is None:  # installed outside Python: cannot be restored, so not replaced
                continue
            self._previous[sig] = previous
            signal.signal(sig, self._hold)

    def _hold(self, signum, frame) -> None:
        self.held.append(signum)

    def release(self, replay: bool = True) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        if replay and self.held:
            signal.raise_signal(self.held[0])  # the restored handler raises it (KeyboardInterrupt) here

    def __enter__(self) -> "_HeldSignals":
        return self

    def __exit__(self, *exc) -> None:
        self.release(replay=exc[0] is None)


def _clean_up(writer: Writer | None, threads: list) -> None:
    """After an error or an interrupt: the I/O threads end, then the temporary output goes; signals that
    arrive meanwhile are dropped (the run is ending with the first one)."""
    held = _HeldSignals()
    try:
        _settle(threads)
        if writer is not None:
            writer.abort()
    finally:
        held.release(replay=False)


def run(reader: Reader, writer: Writer | None, transform: BlockTransform, blocks: Blocks, progress: Progress,
        make_writer: Callable[[], Writer] | None = None, on_commit: Callable[[], Any] | None = None) -> None:
    """Read, transform and write every block, overlapping the three; commit only when all is written.

    ``make_writer`` (with ``writer`` None) creates the writer here, with interrupts held, so that no
    temporary output is ever created without being removed on an interrupt. ``on_commit`` is called as
    soon as the output is in place (with interrupts held: an interrupt after that point leaves the
    complete output, and ``on_commit`` can say so).

    Blocks are read into two buffers in turn (the next block is read while this one is transformed),
    where the format can read into a buffer: fresh arrays would have to be faulted in page by page
    (BENCHMARKS.md, "Figures behind the pipeline's constants").

    On any error or interrupt every I/O thread started on files finishes (pipes are not waited for),
    then the writer's temporary output is removed and the exception goes on.
    """
    threads: list = []
    committed = False
    try:
        if writer is None:
            assert make_writer is not None
            with _HeldSignals():
                writer = make_writer()
        _run(reader, writer, transform, blocks, progress, threads)
        # a pipe's commit may block for as long as its reader waits: Ctrl-C must still end it
        with _HeldSignals() if not getattr(writer, "sequential", False) else contextlib.nullcontext():
            writer.commit()
            committed = True
            if on_commit is not None:
                on_commit()
    except BaseException:
        if not committed:
            _clean_up(writer, threads)
        raise
    finally:
        kernels.expect_work(None)


def _run(reader: Reader, writer: Writer, transform: BlockTransform, blocks: Blocks, progress: Progress,
         threads: list) -> None:
    """Every block read, transformed and written, up to (not including) the commit."""
    lead_shape = reader.shape[: transform.lead]
    indexes = blocks.indexes
    if not indexes:  # an empty batch: nothing to read, an empty output to commit
        return
    pending_read = pending_write = None
    read_may_block = bool(getattr(reader, "sequential", False))
    write_may_block = bool(getattr(writer, "sequential", False))
    most = max(block_items(i, lead_shape) if lead_shape else 1 for i in indexes)
    check_memory(most * transform.bytes_per_item(), most)
    plan = getattr(transform, "plan", None)
    if plan is not None:  # choose the kernel once for the whole job (see kernels.expect_work)
        kernels.expect_work(math.prod(plan.input_shape) * transform.in_dtype.itemsize
                            + math.prod(plan.output_shape) * transform.out_dtype.itemsize)
    largest = max(math.prod(block_shape(reader.shape, i)) for i in indexes)
    buffers = [np.empty(largest, reader.dtype) for _ in range(2)]  # no memory until read into

    def read(i):
        shape = block_shape(reader.shape, indexes[i])
        return reader.read(indexes[i], buffers[i % 2][: math.prod(shape)].reshape(shape))

    with progress:
        pending_read = _spawn(read, 0, track=threads, may_block=read_may_block)
        for i, index in enumerate(indexes):
            assert pending_read is not None  # read ahead at the end of the previous step
            block = pending_read.result()
            pending_read = None
            if i + 1 < len(indexes):
                pending_read = _spawn(read, i + 1, track=threads, may_block=read_may_block)
            result = transform(block)
            if isinstance(result, np.ndarray) and np.may_share_memory(result, buffers[i % 2]):
                result = result.copy()  # the buffer is read into again while this is written
            del block
            if pending_write is not None:
                pending_write.result()
            pending_write = _spawn(writer.write, index, result, track=threads, may_block=write_may_block)
            del result
            progress.advance(block_items(index, lead_shape) if lead_shape else 1)
            del threads[:-2]  # finished: only the last read and write can still run
        if pending_write is not None:
            pending_write.result()
