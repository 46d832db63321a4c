"""Beyond one process: the blocks of a fold or unfold on a Dask cluster, and shards of an array job.

- ``--scheduler tcp://HOST:PORT`` (a running ``dask scheduler``), ``--scheduler FILE.json`` (its
  scheduler file, as dask-jobqueue and ``dask scheduler --scheduler-file`` write) or ``--scheduler
  local:N`` (N local worker processes) runs each block as a Dask task. Workers read the input
  themselves (its path must be visible to them under the same name) and, for a Zarr output, write
  their block's chunks and its marker straight into the shared output (:mod:`swt_cli.shards`): no data
  flows through the client, blocks align with the chunks so no two tasks write the same chunk, a failed
  task is retried by Dask and a task lost with its worker simply runs again elsewhere.
  HDF5, .npy and stdout outputs take one writer: the workers compute and the client writes the blocks
  in order (the data does flow through the client; a few blocks per worker thread are in flight).
- ``--shard I/N`` does the I-th of N contiguous runs of blocks into a shared Zarr output; ``--resume``
  skips the blocks already recorded as done. Without ``--scheduler`` the shard runs in this process.

Dask is imported only here and only when asked for: ``pip install 'swt-cli[dask]'``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid

from .blocks import Blocks, block_items, item_range, layout_of, plan_blocks, shard_part
from .errors import SwtError, first_line
from .formats import Location, create_writer, open_reader
from .options import RunOptions
from .pipeline import run
from .protocols import BlockTransform, Reader
from .records import job_match
from .shards import SharedOutput

#: Times Dask retries a task that raised (a task lost with its worker is rescheduled anyway).
RETRIES = 2


def import_distributed():
    """The ``distributed`` package, or an error naming the extra that installs it."""
    try:
        import distributed
    except ImportError as err:
        raise SwtError(f"--scheduler needs Dask, which is not installed ({err}): pip install 'swt-cli[dask]'") from None
    return distributed


def _ignore_warnings() -> None:
    """Run on the workers of a ``local:N`` cluster, whose stderr is swt's: no Python warnings there."""
    import warnings

    warnings.simplefilter("ignore")


@contextlib.contextmanager
def _hushed_logs(hush: bool):
    """Dask's own log lines on the client (lost workers, closing clusters) silenced unless ``--debug``: the
    run's outcome is said in swt's one line."""
    import logging

    logger = logging.getLogger("distributed")
    level = logger.level
    if hush:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def connect(address: str, wait: float = 60.0, hush: bool = False):
    """``(client, cluster)`` for ``--scheduler``: an address, a scheduler file or ``local:N``.

    ``hush``: the workers of a ``local:N`` cluster (whose stderr is swt's) log nothing, not even a failed
    task's traceback (Dask retries it, and a task that fails for good is swt's one error line), and print
    no Python warnings."""
    distributed = import_distributed()
    cluster = None
    try:
        if address.startswith("local:"):
            try:
                n = int(address[len("local:"):])
            except ValueError:
                n = 0
            if n < 1:
                raise SwtError(f"--scheduler {address}: use local:N with N >= 1 worker processes, e.g. local:4")
            import logging

            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                               dashboard_address="127.0.0.1:0",
                                               silence_logs=logging.CRITICAL + 1 if hush else logging.ERROR)
            client = distributed.Client(cluster)
        elif address.endswith(".json"):
            if not os.path.isfile(address):
                raise SwtError(f"--scheduler {address}: no such scheduler file")
            client = distributed.Client(scheduler_file=address, timeout="10s")
        else:
            target = address if "://" in address else "tcp://" + address
            _probe(target)
            client = distributed.Client(target, timeout="10s")
    except SwtError:
        raise
    except (OSError, TimeoutError) as err:
        if cluster is not None:
            cluster.close()
        raise SwtError(f"cannot reach the Dask scheduler at {address} ({first_line(err)}): start one with "
                       f"'dask scheduler' and workers with 'dask worker ADDRESS', or use --scheduler local:N") from None
    try:
        client.wait_for_workers(1, timeout=wait)
    except (TimeoutError, OSError):
        client.close()
        if cluster is not None:
            cluster.close()
        raise SwtError(f"the Dask scheduler at {address} has no workers (waited {wait:.0f}s): start some with "
                       f"'dask worker {address}'") from None
    if hush and cluster is not None:
        client.run(_ignore_warnings)
    return client, cluster


def _probe(target: str) -> None:
    """Fail at once on a tcp:// address where nothing listens (Dask would retry for its whole timeout)."""
    import socket
    from urllib.parse import urlsplit

    if not target.startswith("tcp://"):
        return
    try:
        parts = urlsplit(target)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise SwtError(f"--scheduler {target}: not an address: use tcp://HOST:PORT") from None
    if not host or not port:
        raise SwtError(f"--scheduler {target}: give the port too, as in tcp://{host or 'HOST'}:8786")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err)) from None



def _absolute(loc: Location) -> Location:
    """``loc`` as workers elsewhere find it: an absolute path (a URL as it is, with its storage options)."""
    return loc if loc.remote else Location(os.path.abspath(loc.path), loc.fmt, loc.name)


def _worker_address():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


# ---- the tasks: plain functions of this module, so that workers can unpickle them ----

def compute_block(in_loc: Location, transform, index, threads=None):
    """Read one block of the input and transform it (on a worker)."""
    if threads:
        from . import kernels

        kernels.set_threads(threads)
    with open_reader(in_loc, allow_external=True) as reader:  # checked once, by the client, under --allow-external
        block = reader.read(index)
    return transform(block)


def write_block(in_loc: Location, out_loc: Location, transform, index, threads=None) -> dict:
    """Read, transform and write one block into the shared Zarr output, then mark it done (on a worker)."""
    result = compute_block(in_loc, transform, index, threads)
    return SharedOutput.attach(out_loc).write_block(index, result, worker=_worker_address())


# ---- the client side ----

class _SharedWriter:
    """``pipeline.run``'s writer for a shared output: blocks and markers, no commit but a completeness check."""

    def __init__(self, output: SharedOutput):
        self.output = output
        self.gaps: list | None = None

    def write(self, index, block):
        self.output.write_block(index, block)

    def commit(self):
        self.gaps = self.output.finish()

    def abort(self):
        pass  # the blocks written so far stay, recorded, for --resume


def _cluster_errors(distributed) -> tuple:
    """The exceptions by which a Dask cluster (not a task) fails: lost workers, closed connections, cancelled futures."""
    names = [(distributed, "KilledWorker"), (distributed, "CancelledError"), (distributed.comm, "CommClosedError"),
             (distributed.client, "FutureCancelledError"), (distributed.client, "FuturesCancelledError"),
             (distributed.client, "ClosedClientError"), (distributed.client, "WorkerStartTimeoutError"),
             (distributed.scheduler, "NoValidWorkerError"), (distributed.scheduler, "NoWorkerError")]
    return (TimeoutError, *(getattr(module, name) for module, name in names if hasattr(module, name)))


def run_job(op: str, reader: Reader, out_loc: Location, transform: BlockTransform, blocks: Blocks, attrs: dict, opts: RunOptions,
            make_writer=None) -> int:
    """Run a fold or unfold with ``--scheduler``, ``--shard`` or ``--resume`` (as ``opts`` say); returns the
    items of the leading axes this run did.

    ``make_writer`` stands in for ``create_writer`` where the client writes (``--layout torch`` outputs).
    """
    scheduler, shard, resume = opts.scheduler, opts.shard, opts.resume
    which = "--scheduler" if scheduler else "--shard" if shard else "--resume" if resume else "an object-store output"
    if reader.location.fmt == "stream":
        raise SwtError(f"{which} reads the input by blocks from a file, not a pipe: save stdin to a .npy, .h5 or "
                       f".zarr file first")
    if (shard or resume) and out_loc.fmt != "zarr":
        raise SwtError(f"{'--shard' if shard else '--resume'} needs a Zarr output (OUTPUT.zarr): several processes "
                       f"write it at once and it records the finished blocks; {out_loc.fmt} outputs take one writer")
    if scheduler and getattr(reader, "converts", False):
        raise SwtError(f"--scheduler: Dask workers read the input file as it is stored, and this input is read through "
                       f"a conversion ({type(reader).__name__}, e.g. --layout torch): run without --scheduler, or "
                       f"convert the input first")
    if make_writer is not None and out_loc.fmt == "zarr":
        raise SwtError(f"{which} writes Zarr outputs in swt's own layout only: drop --layout torch, or write an HDF5 "
                       f"or .npy output with --scheduler")
    with _hushed_logs(not opts.debug):
        return _run_job(op, reader, out_loc, transform, blocks, attrs, opts, make_writer, which)


def _run_job(op, reader, out_loc, transform, blocks, attrs, opts: RunOptions, make_writer, which) -> int:
    scheduler, shard = opts.scheduler, opts.shard
    in_loc = _absolute(reader.location)
    label = f"swt {op}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
    client, cluster = connect(scheduler, hush=not opts.debug) if scheduler else (None, None)  # before anything is written
    dask = import_distributed() if client is not None else None
    cluster_errors = _cluster_errors(dask) if dask is not None else (TimeoutError,)
    try:
        if out_loc.fmt != "zarr":
            return _client_writes(client, in_loc, out_loc, transform, blocks, attrs, opts, label,
                                  make_writer or create_writer)
        return _shared_zarr(client, op, reader, in_loc, out_loc, transform, blocks, attrs, opts, label)
    except cluster_errors as err:
        killed = dask is not None and isinstance(err, dask.KilledWorker)
        hint = " (a block kept killing its workers: out of memory? lower --max-memory)" if killed else ""
        again = ": rerun with --resume to do what is missing" if out_loc.fmt == "zarr" else ""
        raise SwtError(f"the Dask cluster failed{hint}: {type(err).__name__}: {first_line(err)}{again}") from None
    finally:
        if client is not None:
            _close(client, cluster)


def _shared_zarr(client, op, reader, in_loc, out_loc, transform, blocks, attrs, opts: RunOptions, label) -> int:
    """Create or join the shared output, then do this run's blocks of it, here or on the cluster."""
    shard, resume, note = opts.shard, opts.resume, opts.say
    plan = transform.plan
    lead = tuple(plan.batch)
    index, count = shard or (0, 1)
    if (count > 1 and lead and blocks.indexes and len(blocks.indexes) < count and not opts.batch_size
            and len(blocks.indexes[0]) == 1):
        # fewer blocks than shards: cut the first axis finer so every shard has work
        blocks = plan_blocks(lead, plan.output_shape, transform.out_dtype.itemsize, transform.bytes_per_item(),
                             opts.max_memory, batch_size=max(1, math.ceil(lead[0] / count)))
    geometry = json.loads(attrs.get("swt_geometry") or "{}")
    match = job_match(op, reader, transform, geometry, geometry.get("layout", "megengine"))
    output, _ = SharedOutput.create_or_join(
        out_loc, plan.output_shape, transform.out_dtype, attrs, match, layout_of(blocks.indexes, lead), blocks.chunks,
        opts.compression or "zstd", shard=bool(shard), resume=resume, overwrite=opts.overwrite,
    )
    indexes = output.indexes()  # the layout of the output, which an output we joined brings along
    mine = [indexes[i] for i in shard_part(len(indexes), index, count)]
    todo = output.todo(mine, resume)
    if shard and not mine:
        note(f"shard {index}/{count} has no blocks: the first axis makes only {len(indexes)} "
             f"(use fewer shards or a smaller --batch-size)")
    elif resume and len(todo) < len(mine):
        note(f"resuming: {len(mine) - len(todo)} of {len(mine)} blocks are already done")
    total = sum(block_items(ix, lead) if lead else 1 for ix in todo)
    progress = opts.make_progress(label, total)
    try:
        if client is not None:
            _cluster_writes(client, in_loc, _absolute(out_loc), transform, todo, lead, opts, progress)
        else:
            run(reader, _SharedWriter(output), transform, Blocks(todo, blocks.chunks), progress)
    except KeyboardInterrupt:
        raise  # the CLI's one line says what stays
    except BaseException:
        note(f"{out_loc.path} stays incomplete with what was finished: rerun with --resume to do the rest")
        raise
    gaps = output.finish()
    if gaps:
        note(f"{out_loc.path} is not complete yet: {output.describe_gaps(gaps)} are left to other shards "
             f"(or to --resume)")
    return total


def _cluster_writes(client, in_loc, out_loc, transform, todo, lead, opts: RunOptions, progress) -> None:
    """Every block as a task that writes its own chunks; progress from the futures as they complete."""
    distributed = import_distributed()
    futures = []
    try:
        token = uuid.uuid4().hex[:8]
        for ix in todo:
            start, stop = item_range(ix, lead)
            futures.append(client.submit(write_block, in_loc, out_loc, transform, ix, opts.threads,
                                         key=f"swt-write-{start}-{stop}-{token}", retries=RETRIES, pure=False))
        with progress:
            for future in distributed.as_completed(futures):
                record = future.result()  # a task that failed for good raises its error here
                progress.advance(record["stop"] - record["start"] if lead else 1)
                future.release()
    finally:
        if futures:
            client.cancel(futures)


def _client_writes(client, in_loc, out_loc, transform, blocks, attrs, opts: RunOptions, label, make_writer) -> int:
    """Workers compute, the client writes in order: for outputs that take one writer (HDF5, .npy, stdout)."""
    distributed = import_distributed()
    plan = transform.plan
    lead = tuple(plan.batch)
    writer = make_writer(out_loc, plan.output_shape, transform.out_dtype, attrs=attrs, chunks=blocks.chunks,
                           compression=opts.compression, overwrite=opts.overwrite)
    indexes = blocks.indexes
    total = math.prod(lead) if lead else 1
    progress = opts.make_progress(label, total)
    futures: list = []
    try:
        window = max(2, 2 * sum(client.nthreads().values()))  # blocks computed or waiting to be written
        pending = distributed.as_completed()
        where, results = {}, {}
        token = uuid.uuid4().hex[:8]

        def submit():
            i = len(futures)
            future = client.submit(compute_block, in_loc, transform, indexes[i], opts.threads,
                                   key=f"swt-compute-{i}-{token}", retries=RETRIES, pure=False)
            where[future.key] = i
            futures.append(future)
            pending.add(future)

        while len(futures) < min(window, len(indexes)):
            submit()
        next_write = 0
        with progress:
            for future in pending:
                results[where.pop(future.key)] = future.result()
                future.release()
                while next_write in results:
                    writer.write(indexes[next_write], results.pop(next_write))
                    progress.advance(block_items(indexes[next_write], lead) if lead else 1)
                    next_write += 1
                    if len(futures) < len(indexes):
                        submit()
        writer.commit()
        return total
    except BaseException:
        client.cancel(futures)
        writer.abort()
        raise


def _close(client, cluster) -> None:
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()
