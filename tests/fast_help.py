"""Writes ``swt_cli/_help_text.py``, swt's top-level help as Click renders it, for the fast ``swt --help`` of
``swt_cli._entry``. Run it after changing the group's options, its help, or a command's short help::

    python tests/fast_help.py

tests/test_entry.py fails while the stored text differs from what this renders.
"""

from __future__ import annotations

import os
import pathlib
import sys

#: Terminals this wide and wider get the stored help; narrower ones get Click's (a terminal this narrow is rare).
NARROWEST = 80

TARGET = pathlib.Path(__file__).resolve().parent.parent / "swt_cli" / "_help_text.py"


def help_text(columns: int) -> str:
    """The group's help, as Click prints it on a terminal ``columns`` wide (without the final newline)."""
    from swt_cli.cli import cli

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)  # what Click's HelpFormatter reads, through shutil.get_terminal_size
    try:
        with cli.make_context("swt", ["--help"], resilient_parsing=True) as ctx:
            return ctx.get_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def source() -> str:
    """The text of ``swt_cli/_help_text.py``."""
    import click

    from swt_cli.cli import CONTEXT, cli

    top = CONTEXT["max_content_width"]
    variants: list[list] = []  # [narrowest width, widest width, text]
    for columns in range(NARROWEST, top + 1):
        width = min(columns, top) - 2
        text = help_text(columns)
        if variants and variants[-1][2] == text:
            variants[-1][1] = width
        else:
            variants.append([width, width, text])
    version = next(p for p in cli.params if isinstance(p, click.Option) and "--version" in p.opts)
    lines = [
        '"""swt\'s top-level help as Click prints it, for the fast ``swt --help`` of :mod:`swt_cli._entry`.',
        "",
        "Written by tests/fast_help.py (run it after changing the group's options or help, or a command's short",
        'help); tests/test_entry.py fails while this differs from what Click prints."""',
        "",
        "#: Click's ``max_content_width`` for swt: help wraps at ``min(terminal columns, this) - 2`` characters.",
        f"MAX_CONTENT_WIDTH = {top!r}",
        f"HELP_OPTIONS = {tuple(CONTEXT['help_option_names'])!r}",
        f"VERSION_OPTIONS = {tuple(version.opts + version.secondary_opts)!r}",
        "#: Set by a shell asking Click for completions.",
        f"COMPLETE_VAR = {'_SWT_COMPLETE'!r}",
        f"#: (narrowest, widest text width, the help): for terminals of {NARROWEST} columns and more.",
        "HELP = (",
    ]
    for low, high, text in variants:
        lines.append(f"    ({low}, {high}, (")
        lines += [f"        {line + chr(10)!r}" for line in text.split("\n")[:-1]]
        lines.append(f"        {text.split(chr(10))[-1]!r}")
        lines.append("    )),")
    lines.append(")")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(TARGET.parent.parent))
    TARGET.write_text(source())
    print(f"wrote {TARGET}")
