"""The object-store side of a shared Zarr output (:class:`swt_cli.shards.SharedOutput` behind a URL).

An object store has no rename, so nothing can be built aside and moved into place. The output is
created at its final name instead, marked incomplete from its first byte, and flipped complete once
every block is written (the same record a local shared output keeps). Creation is made exclusive by a
claim object, ``<array>/.swt-done/created``, written with an exclusive create (on S3 a conditional PUT,
``If-None-Match: *``): of two runs creating one output, one creates it and the other joins it, or is
refused where it holds another job. A run killed anywhere leaves an output that reads as incomplete.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from .records import MARKERS
from .storage import create_exclusive, filesystem, fresh, remote_errors

#: The claim's name in the markers' folder: without a '-', so it never reads as a finished block.
CLAIM = "created"

#: Seconds a run waits for another run that claimed the output to create its array.
CREATE_WAIT = 30.0


class RemoteOutput:
    """A shared output's files on an object store: creation, markers and the completeness flag."""

    def __init__(self, location: Any):
        self.location = location
        with remote_errors(location.path):
            self.fs, self.root = filesystem(location.path, location.options)
        self.folder = f"{self.root}/{location.name}" if location.name else self.root
        self.claim = f"{self.folder}/{MARKERS}/{CLAIM}"

    def exists(self) -> bool:
        """Whether anything lies under the output's name."""
        with remote_errors(self.location.path):
            fresh(self.fs, self.root)
            return bool(self.fs.exists(self.root))

    def create(self, build: Callable[[Any], None]) -> bool:
        """Claim the name exclusively, then ``build(store)`` the array in it; False where another run got
        the claim first (nothing is written then)."""
        from .formats.zarr_store import store_of

        token = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
                            "time": time.time()}).encode()
        with remote_errors(self.location.path):
            # read back: a server that ignores If-None-Match lets the later of two creators replace the claim
            if not create_exclusive(self.fs, self.claim, token) or self.fs.cat_file(self.claim) != token:
                return False
            try:
                build(store_of(self.location, read_only=False))
            except BaseException:
                self.fs.rm_file(self.claim)  # the claim only: what is there may be another creator's
                raise
        return True

    def wait_created(self, existing: Callable[[], dict | None]) -> dict | None:
        """``existing()`` (the array's attributes), waiting while another run holds the claim but has not
        made the array yet; None where there is no array and no claim (or the claimer never made one)."""
        deadline = time.monotonic() + CREATE_WAIT
        while True:
            attrs = existing()
            if attrs is not None or time.monotonic() > deadline:
                return attrs
            with remote_errors(self.location.path):
                fresh(self.fs, self.claim)
                if not self.fs.exists(self.claim):
                    return None
            time.sleep(0.2)

    def remove(self) -> None:
        """Delete everything under the output's name (``--overwrite``: the old output goes first, as an object
        store cannot swap a new one in)."""
        with remote_errors(self.location.path):
            fresh(self.fs, self.root)
            if self.fs.exists(self.root):
                self.fs.rm(self.root, recursive=True)
            fresh(self.fs, self.root)

    def write_marker(self, start: int, stop: int, record: dict) -> None:
        """The marker of a finished block: one object, written whole by one PUT."""
        with remote_errors(self.location.path):
            self.fs.pipe_file(f"{self.folder}/{MARKERS}/{start}-{stop}", json.dumps(record).encode())

    def set_attrs(self, update: dict, drop=()) -> None:
        """Rewrite the array's ``zarr.json`` attributes (one PUT replaces the object whole)."""
        meta_path = f"{self.folder}/zarr.json"
        with remote_errors(self.location.path):
            meta = json.loads(self.fs.cat_file(meta_path))
            attrs = meta.setdefault("attributes", {})
            attrs.update(update)
            for key in drop:
                attrs.pop(key, None)
            self.fs.pipe_file(meta_path, json.dumps(meta, indent=2).encode())

