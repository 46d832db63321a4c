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
    # The widths differ only in how the description's paragraphs wrap: what every width shares is stored once.
    split = [text.splitlines(keepends=True) for _, _, text in variants]
    head = next((i for i in range(min(map(len, split))) if len({lines[i] for lines in split}) > 1), 0)
    tail = next((i for i in range(1, min(map(len, split)) - head) if len({lines[-i] for lines in split}) > 1), 1) - 1
    version = next(p for p in cli.params if isinstance(p, click.Option) and "--version" in p.opts)

    def literal(lines: list[str], indent: str) -> list[str]:
        return [f"{indent}{line!r}" for line in lines] or [f"{indent}''"]

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
        f"#: The help, for terminals of {NARROWEST} columns and more: HEAD, then the MIDDLE of the text's width, then TAIL.",
        "HEAD = (",
        *literal(split[0][:head], "    "),
        ")",
        "#: (narrowest, widest text width, the lines between HEAD and TAIL at those widths).",
        "MIDDLE = (",
    ]
    for (low, high, _), text_lines in zip(variants, split):
        lines.append(f"    ({low}, {high}, (")
        lines += literal(text_lines[head:len(text_lines) - tail], "        ")
        lines.append("    )),")
    lines += [")", "TAIL = (", *literal(split[0][len(split[0]) - tail:], "    "), ")"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(TARGET.parent.parent))
    TARGET.write_text(source())
    print(f"wrote {TARGET}")
