"""The standard descriptors as swt found them, with the standard library only (the command line runs this
first, before any heavy import)."""

from __future__ import annotations

import os
import sys

#: Standard descriptors (0, 1, 2) that were closed when swt started (``<&-``, ``>&-``, ``2>&-``); see
#: :func:`guard_standard_fds`.
CLOSED_AT_START: set[int] = set()


def guard_standard_fds() -> None:
    """Point closed standard descriptors at /dev/null, before swt opens any file.

    A closed descriptor 0, 1 or 2 would otherwise be the number the next opened file gets: the input or
    the output file would then receive progress lines, library messages on stderr or a stream meant for
    stdout. Which were closed is kept in :data:`CLOSED_AT_START`, so ``-`` on a closed stdin or stdout
    is refused with one line rather than read from or written to /dev/null.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            except OSError:
                continue
            if null != fd:  # the lowest free number: fd itself unless a lower one was closed too
                os.dup2(null, fd)
                os.close(null)
            CLOSED_AT_START.add(fd)
            if fd and getattr(sys, ("stdout", "stderr")[fd - 1]) is None:  # Python leaves closed ones None
                setattr(sys, ("stdout", "stderr")[fd - 1], open(fd, "w", closefd=False))
