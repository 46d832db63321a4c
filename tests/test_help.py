"""Help and consistency of the command line (issue 13 point 5): whole short helps in the command list, each
default shown once, options under headings in one order, plan's positional INPUT, usage errors that name
the option, the bar's total time, preview's words for windows files, shell completion."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clitools import SWT, invoke, run_in_process, run_swt

from swt_cli import SwtError, sliding_window_transpose
from swt_cli.cli import SECTIONS, cli
from swt_cli.errors import OptionError
from swt_cli.pipeline import Progress

COMMANDS = ("fold", "unfold", "info", "plan", "preview")
README = Path(__file__).resolve().parent.parent / "README.md"


def _help(*args: str, columns: int = 100) -> str:
    done = run_swt(*args, env={**os.environ, "COLUMNS": str(columns)})
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def test_the_command_list_gives_each_command_a_whole_sentence():
    text = _help("--help")
    listed = text[text.index("Commands:"):].splitlines()[1:]
    assert [line.strip() for line in listed if line.strip()] == [
        "fold     Fold windows back into images (sliding-window transpose).",
        "info     Show an array file's shape, dtype, chunks and swt geometry.",
        "plan     Show a fold's window grid, output sizes, coverage and memory.",
        "preview  Save one image of a file, or a fold's coverage, as a PNG.",
        "unfold   Cut images into windows (sliding window).",
    ]
    assert "..." not in text[text.index("Commands:"):]


def _option_help(command: str) -> dict[str, str]:
    """``{'--max-memory': 'its help text'}`` for every option of ``swt COMMAND``, from Click's own records."""
    import click

    cmd = cli.commands[command]
    ctx = click.Context(cmd, info_name=command, **cmd.context_settings)
    records = {}
    for param in cmd.params:  # not get_params: Click caches the help option it makes, under this context's names
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record is not None:
            records[max(param.opts, key=len)] = record[1]
    return records


@pytest.mark.parametrize("command", COMMANDS)
def test_each_default_is_shown_once(command):
    for option, text in _option_help(command).items():
        assert text.count("default") <= 1, f"swt {command} {option}: {text}"
        assert "Not given" not in text, f"swt {command} {option}: {text}"


def test_the_budgets_default_is_stated_once_in_words():
    assert _option_help("fold")["--max-memory"] == (
        "Memory budget for blocks in flight (units: KiB MiB GiB, KB MB GB); blocks aim at 128MiB within it [default: "
        "512MiB, or a third of the job's cgroup memory limit where that is less].")
    assert _option_help("fold")["--reduce"].endswith("[default: sum].")
    assert _option_help("unfold")["--device"].endswith("[default: cpu].")


HEADINGS = ("Geometry:", "Overlaps:", "Input and output:", "Run:")


@pytest.mark.parametrize("command", COMMANDS)
def test_options_are_listed_under_headings_in_one_order(command):
    text = _help(command, "-h")
    found = [h for h in HEADINGS if f"\n{h}\n" in text]
    assert found == sorted(found, key=HEADINGS.index) and "Run:" in found
    assert "Other options:" not in text
    # every option sits under the heading SECTIONS gives it
    section = None
    for line in text.splitlines():
        if line in HEADINGS:
            section = line[:-1]
        match = re.match(r"\s+(?:-\w, )?--([\w-]+)", line)
        if match and section is not None:
            name = match[1].replace("-", "_")
            name = {"json": "as_json", "input": "input_option"}.get(name, name)
            assert name in SECTIONS[section], f"swt {command}: --{match[1]} under {section}"


def test_unfolds_layout_comes_before_the_run_options():
    text = _help("unfold", "-h")
    text = text[text.index("\nGeometry:\n"):]  # the options, after the examples
    assert text.index("-k, --kernel") < text.index("\nInput and output:\n") < text.index("--layout") < \
        text.index("--dtype") < text.index("\nRun:\n") < text.index("--max-memory") < text.index("-q, --quiet") < \
        text.index("-h, --help")


@pytest.fixture
def tiles(tmp_path):
    """An unfold's windows (1, 3, 9, 9, 4, 4) in an HDF5 file that records the geometry."""
    np.save(tmp_path / "img.npy", np.random.default_rng(3).standard_normal((1, 3, 20, 20)))
    done = invoke("unfold", tmp_path / "img.npy", tmp_path / "tiles.h5", "-k", "4", "-s", "2", "-q")
    assert done.exit_code == 0, done.stderr
    return tmp_path / "tiles.h5"


def test_plan_takes_its_file_as_a_positional_input_or_with_i(tiles):
    positional = invoke("plan", tiles, "--json")
    option = invoke("plan", "-i", tiles, "--json")
    long_option = invoke("plan", "--input", tiles, "--json")
    assert positional.exit_code == option.exit_code == long_option.exit_code == 0, positional.stderr
    facts = json.loads(positional.stdout)
    assert facts == json.loads(option.stdout) == json.loads(long_option.stdout)
    assert facts["input_shape"] == [1, 3, 9, 9, 4, 4] and facts["output_size"] == [20, 20]
    assert "Usage: swt plan [OPTIONS] [INPUT]" in _help("plan", "-h")


def test_plan_refuses_its_file_twice_and_asks_for_one_when_there_is_none(tiles):
    both = run_in_process("plan", tiles, "-i", tiles)
    assert both.returncode == 2
    assert both.stderr.decode() == ("Error: give the windows file once: as INPUT or with -i/--input, not both "
                                    "(see 'swt plan -h')\n")
    assert both.stdout == b""
    neither = run_in_process("plan", "-k", "3")
    assert neither.returncode == 2
    assert neither.stderr.decode() == ("Error: swt plan needs --output-size and --kernel, or a windows file (INPUT) "
                                       "(see 'swt plan -h')\n")


@pytest.mark.parametrize("args, what", [
    (("--reduce", "mean", "--dtype", "int8"), "a mean fold has fractional results: use a float dtype, not int8"),
    (("--weight", "hann", "--dtype", "uint16"), "a weighted sum fold has fractional results: use a float dtype, not uint16"),
])
def test_an_integer_dtype_for_fractional_results_is_a_usage_error_naming_dtype(tiles, args, what):
    for command in (("fold", tiles, tiles.parent / "out.npy"), ("plan", tiles)):
        done = run_in_process(*command, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.decode() == f"Error: Invalid value for '--dtype': {what} (see 'swt {command[0]} -h')\n"
    assert not (tiles.parent / "out.npy").exists()


def test_the_library_raises_an_option_error_naming_dtype():
    with pytest.raises(OptionError) as caught:
        sliding_window_transpose(np.ones((1, 3, 3, 2, 2)), 4, 2, reduce="mean", dtype=np.int32)
    assert caught.value.option == "dtype" and isinstance(caught.value, SwtError)


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, so that Progress draws rich's live bar into it."""

    def isatty(self) -> bool:
        return True


def test_the_live_bar_ends_with_the_total_time():
    stream = _Terminal()
    with Progress("swt fold", 3, "items", stream=stream) as progress:
        progress.advance(1)
        progress.advance(2)
    frames = [f for f in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())) if f.strip()]
    last = frames[-1]  # what stays on the terminal
    assert re.fullmatch(r"swt fold \S+ 3/3 [\d,]+ items/s done in 0:00:\d\d\s*", last), repr(last)
    assert "ETA" not in last


def test_an_interrupted_bar_does_not_claim_to_be_done():
    stream = _Terminal()
    with pytest.raises(KeyboardInterrupt), Progress("swt fold", 3, "items", stream=stream) as progress:
        progress.advance(1)
        raise KeyboardInterrupt
    assert "done in" not in stream.getvalue()


def test_preview_of_a_windows_file_names_the_windows_axes(tiles):
    pytest.importorskip("PIL.Image")
    png = tiles.parent / "w.png"
    done = run_in_process("preview", tiles, png, "--index", "50")
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode() == (
        f"swt: wrote {png}: window 50 of 243 (item 0, channel 0, window row 5, window column 5; --index counts windows "
        "row-major over item, channel, window row, window column), 4x4 pixels\n")
    from PIL import Image

    with Image.open(png) as im:
        assert im.mode == "L" and im.size == (4, 4)
    channel = run_in_process("preview", tiles, png, "--channel", "1", "--overwrite")
    assert channel.returncode == 1
    assert channel.stderr.decode() == (
        f"Error: {tiles} holds windows (1, 3, 9, 9, 4, 4): each picture is one window in grey, so --channel does not "
        "apply; --index counts windows over item, channel, window row, window column\n")
    beyond = run_in_process("preview", tiles, png, "--index", "243", "--overwrite")
    assert beyond.returncode == 1
    assert beyond.stderr.decode() == f"Error: {tiles} holds 243 windows of shape (4, 4): no index 243\n"


def test_preview_shows_the_window_index_picks():
    pytest.importorskip("PIL.Image")
    from swt_cli.preview import window_axis_names

    assert window_axis_names(3, 1) == ("item", "channel", "window")
    assert window_axis_names(5, 3) == ("item", "channel", "window depth", "window row", "window column")
    assert window_axis_names(6, 2) == ("batch axis 0", "batch axis 1", "item", "channel", "window row", "window column")
    assert window_axis_names(2, 2) == ("window row", "window column")


def test_the_readme_documents_shell_completion_and_it_works():
    text = README.read_text()
    assert 'eval "$(_SWT_COMPLETE=bash_source swt)"' in text
    assert 'eval "$(_SWT_COMPLETE=zsh_source swt)"' in text
    env = {**os.environ, "_SWT_COMPLETE": "bash_source"}
    script = subprocess.run([SWT], env=env, capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_swt_completion()" in script.stdout
    env = {**os.environ, "_SWT_COMPLETE": "bash_complete", "COMP_WORDS": "swt pl", "COMP_CWORD": "1"}
    words = subprocess.run([SWT], env=env, capture_output=True, text=True, timeout=60)
    assert words.stdout.split() == ["plain,plan"]
    env.update(COMP_WORDS="swt fold tiles.h5 out.h5 --red", COMP_CWORD="4")
    assert subprocess.run([SWT], env=env, capture_output=True, text=True, timeout=60).stdout.split() == ["plain,--reduce"]
    env.update(COMP_WORDS="swt fold til", COMP_CWORD="2")
    assert subprocess.run([SWT], env=env, capture_output=True, text=True, timeout=60).stdout.split() == ["file,til"]


def test_the_python_module_entry_point_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "swt_cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("swt ")
