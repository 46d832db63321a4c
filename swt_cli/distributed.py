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

import json
import math
import os
import uuid

from .errors import SwtError, first_line
from .formats import Location, create_writer, open_reader
from .pipeline import Blocks, Progress, block_items, plan_blocks, run
from .shards import SharedOutput, item_range, layout_of, shard_part

#: Times Dask retries a task that raised (a task lost with its worker is rescheduled anyway).
RETRIES = 2


def import_distributed():
    """The ``distributed`` package, or an error naming the extra that installs it."""
    try:
        import distributed
    except ImportError as err:
        raise SwtError(f"--scheduler needs Dask, which is not installed ({err}): pip install 'swt-cli[dask]'") from None
    return distributed


def connect(address: str, wait: float = 60.0):
    """``(client, cluster)`` for ``--scheduler``: an address, a scheduler file or ``local:N``."""
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
                                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
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
    return Location(os.path.abspath(loc.path), loc.fmt, loc.name)


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

        if hasattr(kernels, "set_threads"):
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
        self.gaps = None

    def write(self, index, block):
        self.output.write_block(index, block)

    def commit(self):
        self.gaps = self.output.finish()

    def abort(self):
        pass  # the blocks written so far stay, recorded, for --resume


def run_job(op: str, reader, out_loc: Location, transform, blocks: Blocks, attrs: dict, opts: dict, note,
            make_writer=None) -> None:
    """Run a fold or unfold with ``--scheduler``, ``--shard`` or ``--resume`` (the options in ``opts``).

    ``make_writer`` stands in for ``create_writer`` where the client writes (``--layout torch`` outputs).
    """
    scheduler, shard, resume = opts.get("scheduler"), opts.get("shard"), bool(opts.get("resume"))
    which = "--scheduler" if scheduler else "--shard" if shard else "--resume"
    if reader.location.fmt == "stream":
        raise SwtError(f"{which} reads the input by blocks from a file, not a pipe: save stdin to a .npy, .h5 or "
                       f".zarr file first")
    if (shard or resume) and out_loc.fmt != "zarr":
        raise SwtError(f"{'--shard' if shard else '--resume'} needs a Zarr output (OUTPUT.zarr): several processes "
                       f"write it at once and it records the finished blocks; {out_loc.fmt} outputs take one writer")
    if scheduler and not type(reader).__module__.startswith("swt_cli.formats."):
        raise SwtError(f"--scheduler: Dask workers read the input file as it is stored, and this input is read through "
                       f"a conversion ({type(reader).__name__}, e.g. --layout torch): run without --scheduler, or "
                       f"convert the input first")
    if make_writer is not None and out_loc.fmt == "zarr":
        raise SwtError(f"{which} writes Zarr outputs in swt's own layout only: drop --layout torch, or write an HDF5 "
                       f"or .npy output with --scheduler")
    in_loc = _absolute(reader.location)
    label = f"swt {op}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
    client, cluster = connect(scheduler) if scheduler else (None, None)  # before anything is written
    try:
        if out_loc.fmt != "zarr":
            _client_writes(client, in_loc, out_loc, transform, blocks, attrs, opts, label, make_writer or create_writer)
        else:
            _shared_zarr(client, op, reader, in_loc, out_loc, transform, blocks, attrs, opts, note, label)
    except Exception as err:
        if type(err).__module__.split(".")[0] != "distributed" and not isinstance(err, TimeoutError):
            raise
        hint = " (a block kept killing its workers: out of memory? lower --max-memory)" \
            if type(err).__name__ == "KilledWorker" else ""
        resume = ": rerun with --resume to do what is missing" if out_loc.fmt == "zarr" else ""
        raise SwtError(f"the Dask cluster failed{hint}: {type(err).__name__}: {first_line(err)}{resume}") from None
    finally:
        if client is not None:
            _close(client, cluster)


def _shared_zarr(client, op, reader, in_loc, out_loc, transform, blocks, attrs, opts, note, label) -> None:
    """Create or join the shared output, then do this run's blocks of it, here or on the cluster."""
    shard, resume = opts.get("shard"), bool(opts.get("resume"))
    plan = transform.plan
    lead = tuple(plan.batch)
    index, count = shard or (0, 1)
    if count > 1 and lead and len(blocks.indexes) < count and not opts.get("batch_size") and len(blocks.indexes[0]) == 1:
        # fewer blocks than shards: cut the first axis finer so every shard has work
        blocks = plan_blocks(lead, plan.output_shape, transform.out_dtype.itemsize, transform.bytes_per_item(),
                             opts["max_memory"], batch_size=max(1, math.ceil(lead[0] / count)))
    match = {"op": op, "shape": list(plan.output_shape), "dtype": str(transform.out_dtype), "lead_shape": list(lead),
             "geometry": json.loads(attrs.get("swt_geometry") or "{}"),
             "input_shape": list(reader.shape), "input_dtype": str(reader.dtype)}
    output, _ = SharedOutput.create_or_join(
        out_loc, plan.output_shape, transform.out_dtype, attrs, match, layout_of(blocks.indexes, lead), blocks.chunks,
        opts.get("compression") or "zstd", shard=bool(shard), resume=resume, overwrite=bool(opts.get("overwrite")),
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
    progress = Progress(label, total, "items", quiet=opts.get("quiet", False))
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


def _cluster_writes(client, in_loc, out_loc, transform, todo, lead, opts, progress) -> None:
    """Every block as a task that writes its own chunks; progress from the futures as they complete."""
    distributed = import_distributed()
    futures = []
    try:
        token = uuid.uuid4().hex[:8]
        for ix in todo:
            start, stop = item_range(ix, lead)
            futures.append(client.submit(write_block, in_loc, out_loc, transform, ix, opts.get("threads"),
                                         key=f"swt-write-{start}-{stop}-{token}", retries=RETRIES, pure=False))
        with progress:
            for future in distributed.as_completed(futures):
                record = future.result()  # a task that failed for good raises its error here
                progress.advance(record["stop"] - record["start"] if lead else 1)
                future.release()
    finally:
        if futures:
            client.cancel(futures)


def _client_writes(client, in_loc, out_loc, transform, blocks, attrs, opts, label, make_writer) -> None:
    """Workers compute, the client writes in order: for outputs that take one writer (HDF5, .npy, stdout)."""
    distributed = import_distributed()
    plan = transform.plan
    lead = tuple(plan.batch)
    writer = make_writer(out_loc, plan.output_shape, transform.out_dtype, attrs=attrs, chunks=blocks.chunks,
                           compression=opts.get("compression"), overwrite=bool(opts.get("overwrite")))
    indexes = blocks.indexes
    total = math.prod(lead) if lead else 1
    progress = Progress(label, total, "items", quiet=opts.get("quiet", False))
    futures = []
    try:
        window = max(2, 2 * sum(client.nthreads().values()))  # blocks computed or waiting to be written
        pending = distributed.as_completed()
        where, results = {}, {}
        token = uuid.uuid4().hex[:8]

        def submit():
            i = len(futures)
            future = client.submit(compute_block, in_loc, transform, indexes[i], opts.get("threads"),
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
