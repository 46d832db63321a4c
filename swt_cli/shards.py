"""A Zarr output shared by several writers: shards of an array job, or the workers of a Dask cluster.

The normal writers build a temporary sibling and rename it into place at the end. A shared output
cannot: several processes write it at once and a preempted job must be able to finish it later. So:

- The array is created at its final name, race-free: built in a temporary sibling, then renamed onto
  the name (renaming a folder onto a name that does not exist is atomic; a loser of the race finds
  the winner's array, checks that it describes the same job and joins it).
- Its attributes say ``swt_incomplete: true`` and describe the job (``swt_job``): what the output
  must hold (shape, dtype, geometry, input), how the leading axes are cut into blocks (aligned with
  the chunks, so no two blocks share a chunk) and how many items there are.
- After a block's chunks are written, its writer drops a small marker file
  ``<array>/.swt-done/<start>-<stop>`` (items of the flattened leading axes). No process ever
  read-modify-writes a shared record.
- Whoever finds every item covered flips the attributes to complete (idempotent: all write the same).

Readers refuse an incomplete output and name the missing rows; ``swt info`` reports them;
``--resume`` redoes only the blocks without a marker.

>>> parse_shard("1/3")
(1, 3)
>>> parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_COUNT": "3"})
(2, 3)
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from typing import Any

import numpy as np

from .blocks import covered, fmt_items, item_range, layout_indexes, merge, missing
from .errors import SwtError
from .records import INCOMPLETE_ATTR, JOB_ATTR, MARKERS, describe_mismatch, read_markers, status

# ---- shards -----------------------------------------------------------------------------------------

def parse_shard(text: str, environ=None) -> tuple[int, int]:
    """``'I/N'`` (0 <= I < N) as ``(I, N)``; ``'auto'`` from the SLURM array job's environment.

    Under SLURM the shard is ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP``
    of ``SLURM_ARRAY_TASK_COUNT``, so ``--array=0-7`` and ``--array=1-8`` both make shards 0 to 7 of 8.
    """
    text = str(text).strip()
    if text.lower() == "auto":
        env = os.environ if environ is None else environ
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            raise SwtError("--shard auto reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, which are not set "
                           "(is this an sbatch --array job?): give --shard I/N instead")
        try:
            task = int(env["SLURM_ARRAY_TASK_ID"])
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
            low = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            step = int(env.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
        except ValueError:
            raise SwtError("--shard auto: the SLURM_ARRAY_TASK_* variables are not integers") from None
        index = (task - low) // step
        if count < 1 or not 0 <= index < count:
            raise SwtError(f"--shard auto: SLURM_ARRAY_TASK_ID {task} (min {low}, step {step}) is not one of "
                           f"{count} tasks")
        return index, count
    parts = text.split("/")
    try:
        parsed = (int(parts[0]), int(parts[1])) if len(parts) == 2 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise SwtError(f"'{text}' is not a shard: use I/N (0 <= I < N), e.g. 0/4, or auto under SLURM")
    index, count = parsed
    if count < 1 or not 0 <= index < count:
        raise SwtError(f"shard {text}: I must be 0 to N-1 (shards count from 0), e.g. 0/{max(count, 1)}")
    return index, count


# ---- the shared output ------------------------------------------------------------------------------

def _zarr():
    import zarr

    return zarr


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def array_dir(path: str, name: str | None) -> str:
    return os.path.join(path, name) if name else path


def _set_attrs(folder: str, update: dict, drop=()) -> None:
    """Rewrite the array's ``zarr.json`` attributes atomically (a temporary file renamed over it)."""
    meta_path = os.path.join(folder, "zarr.json")
    with open(meta_path) as f:
        meta = json.load(f)
    attrs = meta.setdefault("attributes", {})
    attrs.update(update)
    for key in drop:
        attrs.pop(key, None)
    temp = os.path.join(folder, f".zarr.json.{uuid.uuid4().hex[:8]}.tmp")
    with open(temp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(temp, meta_path)


def _remote(location):
    """The object-store side of a shared output behind a URL (:mod:`swt_cli.remote_output`); None for a local one."""
    if not getattr(location, "remote", False):
        return None
    from .remote_output import RemoteOutput

    return RemoteOutput(location)


def _same(a, b) -> bool:
    return _jsonable(a) == _jsonable(b)


def _difference(want: dict, have: dict) -> str:
    """What differs between this run's job (``want``) and the output's record (``have``), named as options."""
    return describe_mismatch(have, want) or "it was written by another kind of job"


class SharedOutput:
    """A Zarr array at its final name that several processes write block by block."""

    def __init__(self, location, job: dict):
        self.location = location
        self.job = job
        self._remote = _remote(location)
        self.folder = array_dir(location.path, location.name) if self._remote is None else self._remote.folder
        self.lead_shape = tuple(job["lead_shape"])
        self._array: Any = None

    # -- creating or joining --

    @classmethod
    def create_or_join(cls, location, shape, dtype, attrs, match: dict, layout: dict, chunks, compression,
                       *, shard: bool, resume: bool, overwrite: bool, note=lambda text: None):
        """The output for this run: new, or an existing one of the same job to join.

        ``match`` says what the output holds (shape, dtype, geometry, input); an existing output must
        match it exactly to be joined, and its block layout and chunks are then used as they are.
        Returns ``(output, joined)``.
        """
        from .formats.base import check_destination, move_no_replace, remove_path

        path = location.path
        lead_shape = tuple(match["lead_shape"])
        remote = _remote(location)
        new = (location, shape, dtype, attrs, match, layout, chunks, compression)
        for _ in range(50):
            if remote is not None and not remote.exists():
                if not remote.create(lambda store: cls._create_array(store, *new)):
                    continue  # another run claimed the name first: join it (or be refused) below
                return cls._open(location), False
            if remote is None and not os.path.lexists(path):
                check_destination(path, overwrite=False)
                temp = cls._build(*new)
                try:
                    move_no_replace(temp, path)  # fails where another process got there first (os.rename
                    # would silently replace an empty folder made meanwhile)
                except OSError:
                    remove_path(temp)
                    time.sleep(0.05)
                    continue
                return cls._open(location), False
            # None: not a readable array (a local rename makes ours whole; remotely a claimer may still be creating it)
            attrs_now = cls._existing(location) if remote is None else remote.wait_created(lambda: cls._existing(location))
            job = (attrs_now or {}).get(JOB_ATTR)
            same = isinstance(job, dict) and _same(job.get("match"), match)
            if same:
                complete = not attrs_now.get(INCOMPLETE_ATTR)
                empty = not math.prod(lead_shape)  # nothing to write: every shard finds it complete
                if resume or (shard and (overwrite or not complete or empty)):
                    return cls._open(location), True
                if overwrite:  # one client, no other writers: start afresh
                    cls._replace(remote, *new)
                    return cls._open(location), False
                if complete:
                    raise SwtError(f"{path} exists and is complete: pass --overwrite to compute it again "
                                   f"(--resume would find nothing to do)")
                st = (status(array_dir(path, location.name), attrs_now) if remote is None
                      else status(remote.folder, attrs_now, remote.fs))
                gaps = fmt_items(st["missing"], st["items"], lead_shape) if st and st["missing"] else "no rows"
                raise SwtError(f"{path} is an incomplete output ({gaps} missing) of another run, still writing it or "
                               f"stopped: once none is writing it, pass --resume to finish it, or --overwrite to "
                               f"start again")
            why = (f"it holds another job's output ({_difference(match, job.get('match') or {})})"
                   if isinstance(job, dict) else "it is not the output of a sharded or distributed swt run")
            if shard:
                raise SwtError(f"{path} exists and {why}: shards only join an output of the same job and never "
                               f"delete one another shard may be writing: remove it before starting the job")
            if resume and not overwrite:
                raise SwtError(f"cannot resume {path}: {why}")
            if not overwrite:
                raise SwtError(f"{path} exists: pass --overwrite to replace it")
            cls._replace(remote, *new)
            return cls._open(location), False
        raise SwtError(f"{path} keeps changing under this run: is another job writing it?")

    @staticmethod
    def _existing(location):
        """The existing array's attributes, or None where there is no readable array (yet)."""
        from .formats.zarr_store import store_of

        zarr = _zarr()
        try:
            arr = zarr.open_array(store=store_of(location), path=location.name or "", mode="r")
        except Exception:
            return None
        return dict(arr.attrs)

    @staticmethod
    def _create_array(store, location, shape, dtype, attrs, match, layout, chunks, compression) -> None:
        """The new array in ``store`` (a path or an fsspec store), marked incomplete, with its job description."""
        from .formats.zarr_store import compressors

        items = math.prod(match["lead_shape"]) if match["lead_shape"] else 1
        job = {"match": match, "layout": layout, "lead_shape": list(match["lead_shape"]), "items": items}
        _zarr().create_array(
            store=store, name=location.name, shape=tuple(shape), dtype=np.dtype(dtype), chunks=tuple(chunks),
            compressors=compressors(compression), fill_value=0, zarr_format=3,
            attributes={**dict(attrs or {}), JOB_ATTR: _jsonable(job), INCOMPLETE_ATTR: True},
        )

    @classmethod
    def _replace(cls, remote, *new) -> None:
        """``--overwrite``: a new array in place of what is under the name. Locally built aside and swapped in;
        on an object store (no rename) the old output is deleted first, then the new one created."""
        from .formats.base import commit_path

        if remote is None:
            commit_path(cls._build(*new), new[0].path, overwrite=True)
            return
        remote.remove()
        if not remote.create(lambda store: cls._create_array(store, *new)):
            raise SwtError(f"{new[0].path} was created by another run while this one replaced it: rerun once it is done")

    @classmethod
    def _build(cls, location, shape, dtype, attrs, match, layout, chunks, compression) -> str:
        """The new array, complete with its job description, in a temporary sibling; returns its path."""
        from .formats.base import remove_path, temp_sibling

        temp = temp_sibling(location.path)
        try:
            cls._create_array(temp, location, shape, dtype, attrs, match, layout, chunks, compression)
            os.makedirs(os.path.join(array_dir(temp, location.name), MARKERS), exist_ok=True)
        except BaseException as err:
            remove_path(temp)
            if isinstance(err, OSError):
                raise SwtError(f"cannot write {location.path} ({err})") from None
            raise
        return temp

    @classmethod
    def _open(cls, location) -> "SharedOutput":
        attrs = cls._existing(location)
        if attrs is None or not isinstance(attrs.get(JOB_ATTR), dict):
            raise SwtError(f"{location.path} is not a readable shared Zarr output")
        return cls(location, attrs[JOB_ATTR])

    @classmethod
    def attach(cls, location) -> "SharedOutput":
        """The output as a worker sees it (it exists: the client made it)."""
        return cls._open(location)

    # -- blocks --

    def indexes(self) -> list:
        return layout_indexes(self.lead_shape, self.job["layout"])

    def done(self) -> list:
        return merge(read_markers(self.folder, self._remote.fs if self._remote is not None else None))

    def todo(self, indexes, resume: bool) -> list:
        if not resume:
            return list(indexes)
        done = self.done()
        return [ix for ix in indexes if not covered(ix, self.lead_shape, done)]

    def write_block(self, index, block, worker: str | None = None) -> dict:
        """Write one block's chunks, then its marker; returns what the marker records."""
        if self._array is None:
            from .formats.zarr_store import store_of

            self._array = _zarr().open_array(store=store_of(self.location, read_only=False), path=self.location.name or "",
                                             mode="r+")
        if index:
            self._array[index] = block
        else:
            self._array[...] = block
        start, stop = item_range(index, self.lead_shape)
        record = {"start": start, "stop": stop, "host": socket.gethostname(), "pid": os.getpid(),
                  "worker": worker, "time": time.time()}
        if self._remote is not None:
            self._remote.write_marker(start, stop, record)
            return record
        folder = os.path.join(self.folder, MARKERS)
        os.makedirs(folder, exist_ok=True)
        temp = os.path.join(folder, f".{start}-{stop}.{uuid.uuid4().hex[:8]}.tmp")
        with open(temp, "w") as f:
            json.dump(record, f)
        os.replace(temp, os.path.join(folder, f"{start}-{stop}"))
        return record

    def finish(self) -> list:
        """Mark the output complete if every item is written; returns the ranges still missing."""
        gaps = missing(self.done(), int(self.job["items"]))
        if not gaps:
            attrs = self._existing(self.location) or {}
            if attrs.get(INCOMPLETE_ATTR) and self._remote is not None:
                self._remote.set_attrs({}, drop=(INCOMPLETE_ATTR,))
            elif attrs.get(INCOMPLETE_ATTR):
                _set_attrs(self.folder, {}, drop=(INCOMPLETE_ATTR,))
        return gaps

    def describe_gaps(self, gaps) -> str:
        return fmt_items(gaps, int(self.job["items"]), self.lead_shape)
