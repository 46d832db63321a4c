"""The record a shared output (of a sharded or ``--scheduler`` run) keeps of its job, read back.

Below :mod:`swt_cli.formats` (whose Zarr reader names an incomplete output's missing rows) and
:mod:`swt_cli.shards` (which writes the record), so that neither imports the other.
"""

from __future__ import annotations

import os

from .blocks import fmt_items, merge, missing

#: Folder, inside the array's folder, that holds one marker file per finished block.
MARKERS = ".swt-done"
JOB_ATTR = "swt_job"
INCOMPLETE_ATTR = "swt_incomplete"


def read_markers(folder: str) -> list:
    """``[(start, stop), ...]`` from the marker files in ``folder/.swt-done``."""
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


def status(folder: str, attrs: dict) -> dict | None:
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
    done = merge(read_markers(folder))
    gaps = missing(done, total)
    incomplete = bool(attrs.get(INCOMPLETE_ATTR))
    return {"complete": not incomplete, "items": total, "lead_shape": lead,
            "done": done, "missing": gaps if incomplete else []}


def incomplete_message(where: str, folder: str, attrs: dict) -> str | None:
    """The error for reading an output that a shard or a cluster never finished; None where it is complete."""
    if not attrs.get(INCOMPLETE_ATTR):
        return None
    st = status(folder, attrs)
    if st is None:
        return f"{where} is incomplete (a sharded or distributed swt run never finished): rerun it with --resume"
    lead = tuple(st["lead_shape"])
    gaps = st["missing"]
    if not gaps:
        return (f"{where} is incomplete: every block was written but no writer marked it complete: "
                f"rerun any shard with --resume to finish it")
    return (f"{where} is incomplete: {fmt_items(gaps, st['items'], lead)} were never written "
            f"(a shard or a worker never finished): rerun the missing shards with --resume")
