"""The ``swt`` command as installed (and ``python -m swt_cli``): ``swt --version`` and swt's top-level help
answered with the standard library alone; everything else handed to :func:`swt_cli.cli.main`, unchanged.

Those are what a user types first, to see that swt is there and what it does, and importing Click alone
takes about as long as the whole answer may (issue 13). So they print what Click would print, from
:mod:`swt_cli._help_text` (rendered by Click, and checked against Click's live output by
tests/test_entry.py); whatever that text cannot match exactly goes to Click: another terminal width than
the stored ones, shell completion, any other argument.
"""

from __future__ import annotations

import os
import sys

from . import _help_text
from ._version import __version__
from .stdio import READER_GONE, guard_standard_fds, reader_gone


def terminal_columns() -> int:
    """The terminal's width as Click takes it (``shutil.get_terminal_size().columns``): COLUMNS where that is
    a positive number, else the width of the terminal on stdout, else 80. Written out because importing
    shutil (with fnmatch, bz2 and lzma) would cost a good part of what the fast answer saves."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80
    return size.columns or 80


def fast_answer(args: list[str]) -> tuple[str, int] | None:
    """What swt prints for ``args`` when that is the version or the top-level help: ``(text, exit code)``,
    the help of a bare ``swt`` going to stderr with exit code 2 as Click's does; None for anything else."""
    if _help_text.COMPLETE_VAR in os.environ:
        return None
    if len(args) == 1 and args[0] in _help_text.VERSION_OPTIONS:
        return f"swt {__version__}\n", 0
    if args and not (len(args) == 1 and args[0] in _help_text.HELP_OPTIONS):
        return None
    width = min(terminal_columns(), _help_text.MAX_CONTENT_WIDTH) - 2  # Click's HelpFormatter, above its minimum of 50
    middle = next((text for low, high, text in _help_text.MIDDLE if low <= width <= high), None)
    if middle is None:
        return None
    return _help_text.HEAD + middle + _help_text.TAIL + "\n", 0 if args else 2


def main() -> None:
    """The ``swt`` console script."""
    guard_standard_fds()  # first, as swt_cli.cli.main does: a closed 0, 1 or 2 is /dev/null from here on
    args = sys.argv[1:]
    answer = fast_answer(args)
    if answer is None:
        from .cli import main as click_main

        click_main()
        return
    text, code = answer
    stream = sys.stdout if code == 0 else sys.stderr
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        if not reader_gone():
            raise
        code = READER_GONE
    sys.exit(code)
