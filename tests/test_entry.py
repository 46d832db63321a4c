"""The ``swt`` entry point (swt_cli._entry): ``swt --version`` and the top-level help without Click print the
same bytes, on the same stream, with the same exit code as Click does; everything else goes to Click. And
swt's output into a pipe whose reader has gone ends quietly with 141, as cat and git do (issue 13)."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import pathlib
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from fast_help import TARGET, source

import swt_cli
from swt_cli import _entry

ROOT = pathlib.Path(swt_cli.__file__).resolve().parent.parent
QUICK = (["--version"], ["-V"], ["--help"], ["-h"], [])


def _env(columns: str | None = None, **more: str) -> dict:
    """The environment of a child swt: this swt_cli first on the path; COLUMNS as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "_SWT_COMPLETE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if columns is not None:
        env["COLUMNS"] = columns
    return {**env, **more}


def _code(entry: str, flag: pathlib.Path | None) -> str:
    """A child's program: ``swt_cli._entry.main`` (the console script) or ``swt_cli.cli.main`` (Click's path,
    the console script before issue 13); with ``flag``, it records there whether Click was imported."""
    record = "" if flag is None else (
        f"import atexit, sys\natexit.register(lambda: open({str(flag)!r}, 'w').write(str('click' in sys.modules)))\n")
    return f"{record}from swt_cli.{entry} import main\nmain()"


def run(entry: str, args, columns: str | None = None, flag: pathlib.Path | None = None, **popen) -> tuple:
    """(exit code, stdout, stderr) of ``swt ARGS`` through ``entry`` ("_entry" or "cli")."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    done = subprocess.run([sys.executable, "-c", _code(entry, flag), *args], env=_env(columns), timeout=120, **popen)
    return done.returncode, done.stdout, done.stderr


def test_the_stored_help_is_what_click_renders_now():
    """Change the group's help, options or a command's short help and this fails until `python tests/fast_help.py`
    writes swt_cli/_help_text.py again."""
    assert TARGET.read_text() == source(), "swt_cli/_help_text.py is out of date: run python tests/fast_help.py"


@pytest.mark.parametrize("args", QUICK, ids=" ".join)
def test_fast_answers_are_clicks_bytes_without_click(tmp_path, args):
    """stdout piped, COLUMNS unset: Click wraps for 80 columns, and the fast path never imports Click."""
    flag = tmp_path / "click-imported"
    fast, click = run("_entry", args, flag=flag), run("cli", args)
    assert fast == click
    version = args in (["--version"], ["-V"])
    assert fast[0] == (2 if not args else 0)
    assert (fast[1] or fast[2]).startswith(f"swt {swt_cli.__version__}\n".encode() if version else b"Usage: swt [OPTIONS]")
    assert flag.read_text() == "False"


@pytest.mark.parametrize("columns", ["100", "79", pytest.param("x", marks=pytest.mark.slow)])
def test_fast_help_at_other_widths(columns):
    """The help wraps where Click's does, for each COLUMNS; below 80 columns (and COLUMNS that is not a
    positive number) the same bytes come from Click (or, for "x", as for 80)."""
    for args in (["--help"], []):
        assert run("_entry", args, columns) == run("cli", args, columns)
    expected_fast = columns != "79"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", columns)
        assert (_entry.fast_answer(["--help"]) is not None) == expected_fast


@pytest.mark.slow
@pytest.mark.parametrize("columns", ["0", "-5", "30", "52", "53", "77", "80", "82", "83", "84", "85", "91", "92", "93",
                                     "94", "99", "101", "300"])
def test_fast_help_at_every_kind_of_width(columns):
    for args in (["--help"], ["-h"], []):
        assert run("_entry", args, columns) == run("cli", args, columns)


def _in_terminal(entry: str, args, columns: int) -> tuple[int, bytes]:
    """(exit code, what the terminal showed) of ``swt ARGS`` in a pseudo-terminal ``columns`` wide, COLUMNS unset."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-c", _code(entry, None), *args], env=_env(), stdin=follower,
                                stdout=follower, stderr=follower)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child has gone and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        return proc.wait(timeout=120), shown
    finally:
        os.close(leader)


@pytest.mark.parametrize("columns", [120, pytest.param(88, marks=pytest.mark.slow)])
def test_fast_help_in_a_terminal(columns):
    """The terminal's own width (no COLUMNS), as Click reads it from stdout."""
    fast = _in_terminal("_entry", ["--help"], columns)
    assert fast == _in_terminal("cli", ["--help"], columns)
    assert fast[0] == 0 and b"Commands:" in fast[1]


@pytest.mark.slow
@pytest.mark.parametrize("columns", [70, 80, 95, 200])
@pytest.mark.parametrize("args", [["--help"], []])
def test_fast_help_in_terminals_of_every_width(columns, args):
    assert _in_terminal("_entry", args, columns) == _in_terminal("cli", args, columns)


def test_everything_else_is_clicks():
    assert _entry.fast_answer(["plan", "--help"]) is None
    assert _entry.fast_answer(["--version", "--help"]) is None
    assert _entry.fast_answer(["--help", "-q"]) is None
    assert _entry.fast_answer(["--vers"]) is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_SWT_COMPLETE", "bash_source")  # a shell asking for its completion script: Click's business
        assert _entry.fast_answer(["--help"]) is None and _entry.fast_answer([]) is None
    args = ["plan", "-o", "64", "-k", "3", "-s", "2"]
    fast = run("_entry", args)
    assert fast == run("cli", args)
    assert fast[0] == 0 and b"window grid: 31x31" in fast[1]
    bad = run("_entry", ["--versio"])
    assert bad == run("cli", ["--versio"]) and bad[0] == 2 and bad[2].startswith(b"Error: No such option")


def test_the_console_script_and_python_m_use_the_entry():
    # The installed console script's entry point (an installed package has no pyproject.toml beside it).
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="swt")
    assert script.value == "swt_cli._entry:main"
    done = subprocess.run([sys.executable, "-m", "swt_cli", "--version"], capture_output=True, env=_env(), timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"swt {swt_cli.__version__}\n".encode(), b"")


@pytest.mark.parametrize("args", [["--help"], [],
                                  *(pytest.param(a, marks=pytest.mark.slow) for a in (["--version"], ["-V"], ["-h"]))],
                         ids=" ".join)
def test_closed_standard_descriptors(args):
    """``swt --help >&-`` and ``swt 2>&-``: as Click does (guard_standard_fds points them at /dev/null first)."""
    for closed in ("stdout", "stderr"):
        fast = run("_entry", args, **{closed: subprocess.DEVNULL}, pass_fds=(), close_fds=True,
                   preexec_fn=lambda fd=1 if closed == "stdout" else 2: os.close(fd))
        click = run("cli", args, **{closed: subprocess.DEVNULL}, pass_fds=(), close_fds=True,
                    preexec_fn=lambda fd=1 if closed == "stdout" else 2: os.close(fd))
        assert fast == click
        assert fast[0] == (2 if not args else 0)


def _into_a_closed_pipe(entry: str, args, cwd=None) -> tuple:
    """``swt ARGS`` writing into a pipe whose reading end is already closed (what ``| head -1`` leaves once head
    has its line): (exit code, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-c", _code(entry, None), *args], env=_env(), stdout=write,
                              stderr=subprocess.PIPE, cwd=cwd, timeout=120)
    finally:
        os.close(write)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args", [pytest.param(["--version"], marks=pytest.mark.slow), ["--help"],
                                  ["plan", "-o", "64", "-k", "3"], ["plan", "--help"]], ids=" ".join)
def test_a_reader_that_has_gone_ends_swt_quietly(args):
    """141 (128 + SIGPIPE, what a shell reports for cat or git there) and nothing on stderr, on either path."""
    assert _into_a_closed_pipe("_entry", args) == (141, b"")
    assert _into_a_closed_pipe("cli", args) == (141, b"")


@pytest.mark.parametrize("args", [["info", "w.npy"], ["plan", "w.npy", "-k", "3", "--json"],
                                  pytest.param(["info", "w.npy", "--debug"], marks=pytest.mark.slow)], ids=" ".join)
def test_info_and_plan_of_a_file_into_a_closed_pipe(tmp_path, args):
    np.save(tmp_path / "w.npy", np.zeros((1, 1, 4, 4, 3, 3), np.float32))
    assert _into_a_closed_pipe("_entry", args, cwd=tmp_path) == (141, b"")


def test_a_real_head(tmp_path):
    """``swt info X | head -1``: head takes the first line and exits; whether swt was still writing then
    (141) or done (0) is a race, but nothing reaches stderr and the line is the first of the text."""
    np.save(tmp_path / "w.npy", np.zeros((1, 1, 4, 4, 3, 3), np.float32))
    code = _code("_entry", None).replace("\n", "; ")
    proc = subprocess.run(["bash", "-c", f'"$0" -c "{code}" info w.npy 2>err.txt | head -1; echo "${{PIPESTATUS[0]}}"',
                           sys.executable], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    first, status = proc.stdout.splitlines()
    assert first.startswith("path:") and "w.npy" in first
    assert status in ("0", "141") and (tmp_path / "err.txt").read_text() == ""


def test_only_a_closed_pipe_on_stdout_or_stderr_counts_as_the_reader_gone(tmp_path):
    """The check behind the quiet exit: a BrokenPipeError from any other pipe or socket (a named pipe as the
    output, a connection) stays an error with its line, as long as swt's own stdout and stderr have readers."""
    code = ("import os, sys\nfrom swt_cli.stdio import reader_gone\ngone = reader_gone()\n"
            "os.write(2, f'{gone} {os.path.realpath(\"/proc/self/fd/1\")}'.encode())")
    with open(tmp_path / "out.txt", "wb") as file:
        done = subprocess.run([sys.executable, "-c", code], env=_env(), stdout=file, stderr=subprocess.PIPE, timeout=120)
    assert done.stderr.decode() == f"False {tmp_path / 'out.txt'}"
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run([sys.executable, "-c", code], env=_env(), stdout=write, stderr=subprocess.PIPE, timeout=120)
    os.close(write)
    assert done.stderr.decode() == f"True {os.devnull}"  # and stdout is /dev/null now: the last flush is quiet
