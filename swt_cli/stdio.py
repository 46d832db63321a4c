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


#: The exit status when the reader of swt's output has gone (``swt info x | head -1``): 128 + SIGPIPE, what a
#: shell reports for ``cat`` or ``git`` there, which SIGPIPE ends. Python ignores SIGPIPE (a write fails with
#: BrokenPipeError instead), so swt exits with that status itself, quietly, after its cleanup has run: a
#: ``set -o pipefail`` script sees what it sees with those tools, and nothing is said on stderr, which is
#: often the same closed pipe.
READER_GONE = 141


def reader_gone() -> bool:
    """Whether the reader of stdout or stderr has gone (a pipe's reading end closed); if so, point those at
    /dev/null, so that the interpreter's last flush of what is still buffered for them is not another error.

    Called on a BrokenPipeError: it tells a closed pipe on swt's own output, which ends swt quietly with
    :data:`READER_GONE`, from one on a file or socket swt was writing, which is an error to report.
    """
    import select

    if not hasattr(select, "poll"):  # Windows: no way to ask; the broken pipe stays an error
        return False
    poll = select.poll()
    for fd in (1, 2):
        poll.register(fd, select.POLLOUT)
    gone = [fd for fd, events in poll.poll(0) if events & (select.POLLERR | select.POLLHUP)]
    if gone:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in gone:
            os.dup2(null, fd)
        os.close(null)
    return bool(gone)
