"""The record a shared output (of a sharded or ``--scheduler`` run) keeps of its job, read back.

Below :mod:`swt_cli.formats` (whose Zarr reader names an incomplete output's missing rows) and
:mod:`swt_cli.shards` (which writes the record), so that neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from .blocks import fmt_items, merge, missing

#: Folder, inside the array's folder, that holds one marker file per finished block.
MARKERS = ".swt-done"
JOB_ATTR = "swt_job"
INCOMPLETE_ATTR = "swt_incomplete"


def read_markers(folder: str, fs: Any = None) -> list:
    """``[(start, stop), ...]`` from the marker files in ``folder/.swt-done`` (``folder`` a path in the fsspec
    filesystem ``fs`` where given: a store behind a URL)."""
    if fs is not None:
        from .storage import listdir

        names = listdir(fs, f"{folder}/{MARKERS}")
    else:
        try:
            names = os.listdir(os.path.join(folder, MARKERS))
        except (FileNotFoundError, NotADirectoryError):
            return []
    out = []
    for name in names:
        start, sep, stop = name.partition("-")
        if sep and start.isdigit() and stop.isdigit():
            out.append((int(start), int(stop)))
    return out


def status(folder: str, attrs: dict, fs: Any = None) -> dict | None:
    """For an output of a shared job: ``{"complete", "items", "done", "missing"}``; None for any other array."""
    job = attrs.get(JOB_ATTR)
    if not isinstance(job, dict) or "items" not in job:
        return None
    try:  # a damaged or hand-edited record describes nothing
        total = int(job["items"])
        lead = [int(v) for v in job.get("lead_shape", [])]
    except (TypeError, ValueError):
        return None
    if total < 0:
        return None
    done = merge(read_markers(folder, fs))
    gaps = missing(done, total)
    incomplete = bool(attrs.get(INCOMPLETE_ATTR))
    return {"complete": not incomplete, "items": total, "lead_shape": lead,
            "done": done, "missing": gaps if incomplete else []}


def incomplete_message(where: str, folder: str, attrs: dict, fs: Any = None) -> str | None:
    """The error for reading an output that a shard or a cluster never finished; None where it is complete."""
    if not attrs.get(INCOMPLETE_ATTR):
        return None
    st = status(folder, attrs, fs)
    if st is None:
        return f"{where} is incomplete (a sharded or distributed swt run never finished): rerun it with --resume"
    lead = tuple(st["lead_shape"])
    gaps = st["missing"]
    if not gaps:
        return (f"{where} is incomplete: every block was written but no writer marked it complete: "
                f"rerun any shard with --resume to finish it")
    return (f"{where} is incomplete: {fmt_items(gaps, st['items'], lead)} were never written "
            f"(a shard or a worker never finished): rerun the missing shards with --resume")


# ---- what makes two runs the same job -----------------------------------------------------------------

#: The job record's entries, as the options and facts a user knows them by (in the order they are named).
JOB_KEYS = {
    "op": "the command",
    "geometry": "the geometry (--kernel, --stride, --padding, --dilation, --output-size)",
    "reduce": "--reduce",
    "weight": "--weight (a SHA-256 of its values)",
    "fill": "--fill",
    "dtype": "--dtype (the output's dtype)",
    "layout": "--layout",
    "shape": "the output shape",
    "lead_shape": "the leading axes",
    "input": "the input",
    "input_shape": "the input's shape",
    "input_dtype": "the input's dtype",
    "input_signal": "the input's data (its files' sizes and modification times)",
}


def weight_digest(weight: Any) -> str | None:
    """A SHA-256 of a weight array's dtype, shape and values (None for no weight): a weight file rewritten
    with other values is another job, whatever its name."""
    if weight is None:
        return None
    array = np.ascontiguousarray(weight)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _remote_signal(fmt: str, path: str, options: Any, array_folder: str | None) -> str:
    """:func:`input_signal` of an input behind a URL: the objects' sizes and ETags (or modification times)."""
    from .storage import filesystem, fresh, remote_errors

    with remote_errors(path):
        fs, inner = filesystem(path, options)
        top = array_folder if fmt == "zarr" and array_folder else inner
        fresh(fs, top)
        found = fs.find(top, detail=True) if fmt == "zarr" else {inner: fs.info(inner)}
    digest = hashlib.sha256()
    count = 0
    for name in sorted(found):
        if f"/{MARKERS}/" in f"/{name}/":
            continue
        info = found[name]
        tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or info.get("created")
        digest.update(f"{name}\0{info.get('size')}\0{tag}\n".encode())
        count += 1
    return f"{count} objects, sha256 {digest.hexdigest()[:32]}"


def input_signal(fmt: str, path: str, array_folder: str | None = None, options: Any = None) -> str:
    """A signal that changes when the input's data changes.

    ``.npy`` and HDF5 files: their size and modification time in nanoseconds (any write through the file
    system changes the time). A Zarr store's root and metadata do not change when chunks are rewritten, so
    for Zarr: a SHA-256 over (name, size, mtime_ns) of every file in the array's folder (its chunks and
    metadata, not a shared output's markers), one ``stat`` per chunk file. Limits: RELIABILITY.md.
    Behind a URL (``options`` its storage options): the objects' sizes and ETags, from one listing.
    """
    from .storage import is_url

    if is_url(path):
        return _remote_signal(fmt, path, options, array_folder)
    if fmt != "zarr" or not array_folder:
        st = os.stat(path)
        return f"size {st.st_size}, mtime_ns {st.st_mtime_ns}"
    digest = hashlib.sha256()
    files = 0
    stack = [(array_folder, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)  # one order on every host: the digest is comparable
        lines = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != MARKERS:
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
                continue
            st = entry.stat(follow_symlinks=False)
            lines.append(f"{prefix}{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n")
        digest.update("".join(lines).encode())
        files += len(lines)
    return f"{files} files, sha256 {digest.hexdigest()[:32]}"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def job_match(op: str, reader: Any, transform: Any, geometry: dict, layout: str = "megengine") -> dict:
    """What an output of this job holds and is computed from: every option that changes the values written
    and the input's identity, kept in a shared output's record and compared before a shard or --resume joins it.

    Not the kernel, threads, block size or scheduler: every path gives the same bits (test_exact.py).
    """
    plan = transform.plan
    blend = getattr(transform, "blend", None)
    loc = reader.location
    folder = reader.array_folder() if hasattr(reader, "array_folder") else None
    return _plain({
        "op": op, "shape": list(plan.output_shape), "dtype": str(transform.out_dtype), "lead_shape": list(plan.batch),
        "geometry": geometry, "input_shape": list(reader.shape), "input_dtype": str(reader.dtype),
        "reduce": blend.reduce if blend is not None else "sum",
        "weight": weight_digest(blend.weight) if blend is not None else None,
        "fill": _number(blend.fill if blend is not None else 0),
        "layout": layout,
        "input": (loc.path if getattr(loc, "remote", False) else os.path.realpath(loc.path))
        + (f":/{loc.name}" if loc.name else ""),
        "input_signal": input_signal(loc.fmt, loc.path, folder, getattr(loc, "options", None)),
    })


def _number(value: Any) -> str:
    """A fill value as text, one spelling for one value (0 and 0.0 alike; large integers exact)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)


def describe_mismatch(recorded: dict, wanted: dict) -> str:
    """What differs between an output's job record and this run's, each as
    ``--fill: 0 in the output's record, 1 given``; '' where nothing does."""
    keys = [*JOB_KEYS, *sorted((set(recorded) | set(wanted)) - set(JOB_KEYS))]
    parts = []
    for key in keys:
        have, want = _plain(recorded.get(key)), _plain(wanted.get(key))
        if have != want:
            parts.append(f"{JOB_KEYS.get(key, key)}: {_shown(have)} in the output's record, {_shown(want)} given")
    return "; ".join(parts)
