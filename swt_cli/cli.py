"""The ``swt`` command: parses options and reports; the work is in geometry, kernels, formats and pipeline.

Errors from the library (``SwtError``) and the system (``OSError``) become one line on stderr and exit
code 1, in one place (``SwtGroup``); usage errors exit 2, Ctrl-C 130, SIGTERM 143.
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
from typing import TYPE_CHECKING

import click

# Only what declaring the options needs is imported here: the job layer (and through it NumPy, the formats and
# the pipeline) comes in with the command that uses it, so that --help and --version start quickly and a plan
# without a file needs no NumPy (tests/test_startup.py).
from ._version import __version__
from .choices import COMPRESSIONS, DEFAULT_MAX_MEMORY, LAYOUTS, REDUCES, WINDOWS, parse_size
from .errors import OptionError, SwtError, redact_urls
from .geometry import fmt_shape
from .stdio import READER_GONE, reader_gone

if TYPE_CHECKING:
    from . import jobs
    from .formats import Location
    from .options import RunOptions

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, after cleanup: exit 130 or 143."""

    def __init__(self, code: int, what: str):
        super().__init__(what)
        self.code = code


class ReaderGone(Exception):
    """The reader of swt's stdout or stderr went away (``swt info x | head -1``): exit quietly with
    :data:`swt_cli.stdio.READER_GONE`, as ``cat`` and ``git`` do."""


def _one_line(text: str) -> str:
    """An error as the one line swt promises, even where it quotes a value holding line breaks, and without
    the password of a URL it names."""
    return redact_urls(" ".join(text.splitlines()))


#: Signals received and not yet acted on: Python drops an exception raised inside a finalizer or a weakref
#: callback ("Exception ignored in ..."), so a Ctrl-C landing there would be lost; the command checks this
#: when it returns.
_PENDING: list[int] = []


def _on_signal(signum, frame):
    _PENDING.append(signum)
    raise KeyboardInterrupt("terminated" if signum == signal.SIGTERM else "")


def _on_sigterm(signum, frame):
    _on_signal(signum, frame)


def _unraisable(default):
    """``sys.unraisablehook`` that keeps quiet about a signal's KeyboardInterrupt dropped by Python (it is
    in ``_PENDING``, acted on when the command returns) and passes anything else on."""

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default(unraisable)

    return hook


class SwtGroup(click.Group):
    """Turns every failure into one line on stderr with the right exit code (traceback with --debug)."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        self.argv = ["swt", *args]  # recorded in outputs as provenance
        try:
            try:
                previous = signal.signal(signal.SIGTERM, _on_sigterm)
                previous_int = signal.signal(signal.SIGINT, _on_signal)
            except ValueError:  # not the main thread: leave signals alone
                previous = previous_int = None
            unraisable, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
            try:
                return super().main(args, "swt", standalone_mode=False, **extra)
            finally:
                sys.unraisablehook = unraisable
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
                    signal.signal(signal.SIGINT, previous_int)
        except click.exceptions.Exit as exit_:
            code = exit_.exit_code
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as err:  # a bare 'swt': the help, not 'Error: Usage...'
            click.echo(err.ctx.get_help(), err=True)
            code = 2
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} -h')" if err.ctx else ""
            click.echo(_one_line(f"Error: {err.format_message()}{hint}"), err=True)
            code = err.exit_code
        except click.ClickException as err:
            click.echo(_one_line(f"Error: {err.format_message()}"), err=True)
            code = err.exit_code
        except Interrupted as err:
            click.echo(_one_line(f"Error: {err}"), err=True)
            code = err.code
        except ReaderGone:
            code = READER_GONE
        except click.Abort:
            click.echo("Error: interrupted", err=True)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # where --help and --version print (Click would exit 1 on a closed pipe)
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            if reader_gone():
                raise ReaderGone() from None
            raise

    def invoke(self, ctx):
        ctx.meta["swt.argv"] = getattr(self, "argv", ["swt"])
        _PENDING.clear()
        try:
            done = super().invoke(ctx)
            if _PENDING:  # a signal whose exception Python dropped (in a finalizer): it still ends the run
                raise KeyboardInterrupt("terminated" if signal.SIGTERM in _PENDING else "")
            return done
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as err:
            _PENDING.clear()
            if ctx.meta.get("swt.debug"):
                raise
            _interrupted(ctx, err)
        except SwtError as err:
            if ctx.meta.get("swt.debug"):
                raise
            raise click.ClickException(str(err)) from None
        except OSError as err:
            if isinstance(err, BrokenPipeError) and reader_gone():
                raise ReaderGone() from None  # not an error: the reader has all it wanted (| head)
            if ctx.meta.get("swt.debug"):
                raise
            where = f"{err.filename}: " if err.filename else ""
            raise click.ClickException(f"{where}{err.strerror or err}") from None
        except MemoryError:
            if ctx.meta.get("swt.debug"):
                raise
            raise click.ClickException("out of memory: lower --max-memory or --batch-size") from None
        except Exception as err:
            if ctx.meta.get("swt.debug"):
                raise
            signalled = _signal_behind(err)
            if signalled is not None:  # Python wrapped the signal's exception (a class made as it landed)
                _PENDING.clear()
                _interrupted(ctx, signalled)
            from .storage import driver_option_error

            refused = driver_option_error(err)
            if refused is not None:
                raise click.UsageError(refused, ctx) from None
            raise click.ClickException(
                f"unexpected {type(err).__name__}: {err} (this is a bug in swt: rerun with --debug and report it)"
            ) from None


def _interrupted(ctx, err: KeyboardInterrupt):
    """Raise :class:`Interrupted` for a signal's KeyboardInterrupt (SIGTERM's says "terminated")."""
    outcome = ctx.meta.get("swt.interrupted_output", "no output was left behind")
    if str(err) == "terminated":
        raise Interrupted(143, f"terminated (SIGTERM): {outcome}") from None
    raise Interrupted(130, f"interrupted: {outcome}") from None


def _signal_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that ``err`` was raised from or while handling, if any: Python 3.11 turns
    one raised in ``__set_name__`` (a dataclass being made as a signal lands) into a RuntimeError."""
    seen = 0
    cause: BaseException | None = err
    while cause is not None and seen < 16:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


#: The headings of every command's options, in this order, and the parameters under each; any other
#: parameter goes under "Other options". Within a heading, options keep the order they are declared in.
SECTIONS = {
    "Geometry": ("kernel", "stride", "padding", "dilation", "ndim", "output_size", "cover", "pad_value", "strict"),
    "Overlaps": ("reduce", "weight", "fill", "coverage"),
    "Input and output": ("input_option", "index", "channel", "layout", "dtype", "compression", "overwrite",
                         "allow_external", "storage_options", "as_json"),
    "Run": ("max_memory", "batch_size", "threads", "device", "scheduler", "shard", "resume", "quiet", "debug", "help"),
}
_SECTION_OF = {name: title for title, names in SECTIONS.items() for name in names}


class SwtCommand(click.Command):
    """A command whose options are listed under headings (:data:`SECTIONS`) and whose library errors about a
    combination of options exit 2 with the command's usage hint, naming the option to blame where there is one."""

    def format_options(self, ctx, formatter):
        groups: dict[str, list] = {title: [] for title in (*SECTIONS, "Other options")}
        help_names = set(ctx.help_option_names)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None  # arguments are in the usage
            if record is not None:
                name = "help" if help_names & set(param.opts) else param.name or ""  # click names its help option oddly
                groups[_SECTION_OF.get(name, "Other options")].append(record)
        for title, records in groups.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OptionError as err:
            if ctx.find_root().meta.get("swt.debug"):
                raise
            param = next((p for p in self.params if err.option and p.name == err.option), None)
            if param is not None:
                raise click.BadParameter(str(err), ctx, param) from None
            raise click.UsageError(str(err), ctx) from None


SwtGroup.command_class = SwtCommand


class IntList(click.ParamType):
    """One integer for every spatial axis, or a comma-separated list with one per axis: ``3`` or ``5,4``."""

    name = "N[,N...]"

    def __init__(self, minimum: int):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]  # "3," is a one-axis list
            single = False
        else:
            single = len(parts) == 1
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            self.fail(f"'{value}' is not an integer or a comma-separated list of integers", param, ctx)
        for n in numbers:
            if n < self.minimum:
                self.fail(f"{n} is too small: it must be at least {self.minimum}", param, ctx)
            if n > 2**62:
                self.fail(f"{n} is too large", param, ctx)
        if len(numbers) > 3:
            self.fail(f"'{value}' has {len(numbers)} values: swt handles 1, 2 or 3 spatial axes", param, ctx)
        return numbers[0] if single else tuple(numbers)


class ArraySpec(click.ParamType):
    """A .npy, .h5/.hdf5 or .zarr path (``file.h5:/name`` for an array inside), or - for a pipe."""

    name = "PATH"

    def shell_complete(self, ctx, param, incomplete):
        """File names, as for click.Path: the shell completes them."""
        from click.shell_completion import CompletionItem

        return [CompletionItem(incomplete, type="file")]

    def convert(self, value, param, ctx):
        from .formats import Location

        try:
            Location.parse(value)
        except SwtError as err:
            self.fail(str(err), param, ctx)
        return value


class Size(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            size = parse_size(value)
        except SwtError as err:
            self.fail(str(err), param, ctx)
        if size < 1 << 20:
            self.fail(f"{value} is below the smallest budget, 1MiB", param, ctx)
        return size


class DType(click.ParamType):
    name = "DTYPE"

    def convert(self, value, param, ctx):
        import numpy as np

        from .backend import check_dtype

        try:
            return check_dtype(np.dtype(value), "output")
        except (TypeError, SwtError) as err:
            self.fail(f"'{value}' is not a dtype swt can write ({err}): use e.g. float32, float64, int16", param, ctx)


def _set_debug(ctx, param, value):
    if value:
        ctx.find_root().meta["swt.debug"] = True
    return value


def common_options(fn):
    """--quiet and --debug, on every command."""
    fn = click.option("-q", "--quiet", is_flag=True, help="No progress and no notes on stderr.")(fn)
    fn = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                      help="Show the full traceback on errors.")(fn)
    return fn


def geometry_options(fn):
    """--kernel, --stride, --padding, --dilation and --ndim, shared by fold and unfold."""
    for decorator in reversed([
        click.option("-k", "--kernel", type=IntList(1), help="Window size: one for all axes, or one per axis (5,4)."),
        click.option("-s", "--stride", type=IntList(1), help="Step between windows [default: 1]."),
        click.option("-p", "--padding", type=IntList(0), help="Zero padding on each side [default: 0]."),
        click.option("-d", "--dilation", type=IntList(1), help="Spacing of window elements [default: 1]."),
        click.option("--ndim", type=click.IntRange(1, 3), help="Spatial axes [default: from the lists given, else 2]."),
    ]):
        fn = decorator(fn)
    return fn


class WeightSpec(click.ParamType):
    """A window function's name, or a .npy file of weights of the kernel's shape."""

    name = "NAME|FILE.npy"

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or value in WINDOWS:
            return value
        if value.lower().endswith(".npy"):
            import numpy as np

            try:
                return np.load(value, allow_pickle=False)
            except (OSError, ValueError) as err:
                self.fail(f"cannot read weights from {value}: {err}", param, ctx)
        self.fail(f"'{value}' is neither a window ({', '.join(WINDOWS)}) nor a .npy file of weights", param, ctx)


class FillValue(click.ParamType):
    """A number for --fill: an int where the text is an integer literal (exact beyond 2**53), else a float."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return value
        from .blend import check_fill  # the library's reading of a fill, here for the text of an option

        try:
            return check_fill(value)
        except SwtError as err:
            self.fail(str(err), param, ctx)


def blend_options(fn):
    """--reduce, --weight and --fill: how a fold combines overlapping windows (swt_cli.blend)."""
    for decorator in reversed([
        click.option("--reduce", type=click.Choice(REDUCES), default="sum",
                     help="sum: add overlapping windows (MegEngine); mean: divide by the windows (or weights) covering "
                          "each element [default: sum]."),
        click.option("--weight", type=WeightSpec(),
                     help="Multiply window elements by a window function before summing: uniform, hann, triangle, "
                          "gaussian (see the README), or a .npy of the kernel's shape [default: uniform]."),
        click.option("--fill", type=FillValue(), default=0.0,
                     help="Value of output elements no window covers [default: 0]."),
    ]):
        fn = decorator(fn)
    return fn


def layout_option(text):
    return click.option("--layout", type=click.Choice(LAYOUTS), help=text)


def _parse_storage_options(ctx, param, value):
    from .storage import parse_options

    try:
        return parse_options(value)
    except SwtError as err:
        raise click.BadParameter(str(err), ctx, param) from None


def allow_external_option(fn):
    """--allow-external: the security boundary of RELIABILITY.md (swt reads only what the user named); and
    --storage-options, for files named by URL (s3://...), on the same commands."""
    fn = click.option("--storage-options", metavar="JSON|@FILE", callback=_parse_storage_options,
                      help="fsspec options for s3://, gs://, az://, https:// paths, as a JSON object or @file.json (e.g. "
                           "'{\"endpoint_url\": \"http://127.0.0.1:9000\"}'); on top of the provider's own credentials "
                           "and FSSPEC_<PROTOCOL>_<OPTION> variables. Never recorded in the output.")(fn)
    return click.option("--allow-external", is_flag=True,
                        help="Also read data an input keeps in other files: HDF5 external storage, virtual datasets and "
                             "external links, and symbolic links out of a Zarr store (refused by default).")(fn)


def io_options(fn):
    """Options of every command that streams one file into another."""
    fn = allow_external_option(fn)
    for decorator in reversed([
        click.option("--dtype", type=DType(), help="Output dtype [default: the input's]."),
        click.option("--compression", type=click.Choice(sorted({c for v in COMPRESSIONS.values() for c in v})),
                     help="HDF5: none, gzip, lzf. Zarr: zstd, blosc, gzip, none [default: none for HDF5, zstd for Zarr]."),
        click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (only once the new one is complete; on an "
                                                     "object store, when the run starts)."),
        click.option("--max-memory", type=Size(), default=DEFAULT_MAX_MEMORY,
                     help="Memory budget for blocks in flight (units: KiB MiB GiB, KB MB GB); blocks aim at 128MiB within "
                          f"it [default: {DEFAULT_MAX_MEMORY}, or a third of the job's cgroup memory limit where that is "
                          "less]."),
        click.option("--batch-size", type=click.IntRange(1), help="Items of the first axis per block (overrides --max-memory)."),
        click.option("--threads", type=click.IntRange(1), help="CPU threads for the kernel [default: all cores]."),
        click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu",
                     help="Compute on the CPU, or on a GPU through CuPy (pip install 'swt-cli[gpu]') [default: cpu]."),
    ]):
        fn = decorator(fn)
    return fn


def _parse_shard(ctx, param, value):
    if value is None:
        return None
    from .shards import parse_shard

    try:
        return parse_shard(value)
    except SwtError as err:
        raise click.BadParameter(str(err), ctx, param) from None


def cluster_options(fn):
    """--scheduler, --shard and --resume: beyond one process (swt_cli.distributed, swt_cli.shards)."""
    for decorator in reversed([
        click.option("--scheduler", metavar="ADDRESS",
                     help="Run the blocks on a Dask cluster: tcp://HOST:PORT of a running 'dask scheduler', its "
                          "scheduler file (.json), or local:N for N local worker processes (pip install 'swt-cli[dask]')."),
        click.option("--shard", metavar="I/N|auto", callback=_parse_shard,
                     help="Do only part I of N (0 to N-1) of the first axis into a shared Zarr OUTPUT (array jobs); "
                          "auto takes it from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT."),
        click.option("--resume", is_flag=True,
                     help="Finish an incomplete Zarr OUTPUT of a sharded or --scheduler run: do only the blocks not "
                          "recorded as done."),
    ]):
        fn = decorator(fn)
    return fn


@click.group(cls=SwtGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="swt", message="%(prog)s %(version)s")
def cli():
    """swt: fold windows back into images (sliding-window transpose) and cut images into windows.

    Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as file.h5:/group/name;
    - is a .npy stream on stdin or stdout; s3://, gs://, az://, https:// URLs go through fsspec.

    \b
    Example:
      swt unfold img.npy - -k 3 -s 2 | swt fold - out.h5 -k 3 -s 2 --output-size 64
    """


def _note(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(f"swt: {redact_urls(text)}", err=True)


def _output_location(output: str, compression) -> Location:
    """The output's location, checked against the compression asked for before any work starts."""
    from .formats import Location

    out_loc = Location.parse(output)
    if compression and compression not in COMPRESSIONS[out_loc.fmt]:
        raise click.BadParameter(
            f"{out_loc.fmt} outputs take {', '.join(COMPRESSIONS[out_loc.fmt])}, not {compression}", param_hint="--compression"
        )
    return out_loc


def _budget(ctx, max_memory: int) -> int | None:
    """--max-memory as given, or None where it was not (the job then takes the cgroup's share into account)."""
    return None if ctx.get_parameter_source("max_memory") == click.core.ParameterSource.DEFAULT else max_memory


def _run_options(ctx, quiet: bool, opts: dict) -> RunOptions:
    """The run settings of fold and unfold from their options, resolved once."""
    from .options import RunOptions
    from .pipeline import return_freed_blocks_to_the_system
    from .storage import redact_argv

    return_freed_blocks_to_the_system()  # before the run's first block: how freed blocks go back to the system
    root = ctx.find_root()
    argv = root.meta.get("swt.argv") or ["swt"]
    return RunOptions.resolve(
        max_memory=_budget(ctx, opts["max_memory"]), batch_size=opts["batch_size"], threads=opts["threads"],
        device=opts["device"], compression=opts["compression"], overwrite=opts["overwrite"], quiet=quiet,
        progress=not quiet, scheduler=opts["scheduler"], shard=opts["shard"], resume=opts["resume"],
        allow_external=opts["allow_external"], note=lambda text: _note(quiet, text),
        on_output=lambda text: root.meta.__setitem__("swt.interrupted_output", text),
        command=shlex.join(redact_argv(argv)), debug=bool(root.meta.get("swt.debug")),
        storage_options=opts["storage_options"],
    )


def _done(quiet: bool, result: jobs.JobResult, options: RunOptions) -> None:
    """The last line of a fold (stderr, not with --quiet): where the output is, and what it holds."""
    what = f"shape {fmt_shape(result.shape)} {result.dtype}"
    if result.output == "-":
        _note(quiet, f"wrote a .npy stream to stdout: {what}")
    elif options.shard:
        _note(quiet, f"wrote shard {options.shard[0]}/{options.shard[1]} of {result.output}: {what} in all")
    else:
        _note(quiet, f"wrote {result.output}: {what}")


@cli.command(context_settings=CONTEXT, short_help="Fold windows back into images (sliding-window transpose).")
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.argument("output", metavar="OUTPUT", type=ArraySpec())
@geometry_options
@click.option("-o", "--output-size", type=IntList(1),
              help="Image size [default: recorded by swt unfold, else the smallest that fits].")
@blend_options
@layout_option("Input layout: megengine (..., IH, IW, KH, KW) or torch (N, C*KH*KW, L), which needs --output-size "
               "[default: recorded by swt unfold, else megengine].")
@click.option("--cover", is_flag=True,
              help="The windows of swt unfold --cover from images of --output-size: fold onto the padded size, crop "
                   "back [default: as recorded by swt unfold].")
@io_options
@cluster_options
@common_options
@click.pass_context
def fold(ctx, input, output, kernel, stride, padding, dilation, ndim, output_size, reduce, weight, fill, layout, cover,
         quiet, **opts):
    """Sum windows (..., IH, IW, KH, KW) back into images (..., H, W): MegEngine's SlidingWindowTranspose.

    \b
    Examples:
      swt fold windows.h5 images.h5 --kernel 3 --stride 2 --output-size 64
      swt fold tiles.zarr:/windows out.npy        # geometry recorded by swt unfold
      swt unfold img.npy - -k 3 -s 2 | swt fold - out.npy -k 3 -s 2 -o 64
      swt fold tiles.h5 stitched.npy --reduce mean --weight hann    # blend overlapping tiles
      swt fold torch_cols.npy out.npy --layout torch -k 3 -s 2 -o 64   # torch.nn.functional.fold input
    """
    from . import jobs

    _output_location(output, opts["compression"])
    options = _run_options(ctx, quiet, opts)
    result = jobs.fold_file(input, output, kernel=kernel, stride=stride, padding=padding, dilation=dilation, ndim=ndim,
                   output_size=output_size, reduce=reduce, weight=weight, fill=fill, dtype=opts["dtype"], layout=layout,
                   cover=cover, options=options)
    _done(quiet, result, options)


@cli.command(context_settings=CONTEXT, short_help="Cut images into windows (sliding window).")
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.argument("output", metavar="OUTPUT", type=ArraySpec())
@geometry_options
@layout_option("Output layout: megengine (..., IH, IW, KH, KW) or torch (N, C*KH*KW, L) as torch.nn.functional.unfold "
               "[default: megengine].")
@io_options
@cluster_options
@common_options
@click.pass_context
@click.option("--cover", is_flag=True,
              help="Pad the images' far edges (bottom, right, back) just enough for the windows to reach every element; "
                   "swt fold of the output crops back to the original size.")
@click.option("--pad-value", type=FillValue(), default=0, help="With --cover: the value padded [default: 0].")
@click.option("--strict", is_flag=True, help="Fail (exit 1) where the windows leave image elements out, instead of warning.")
def unfold(ctx, input, output, kernel, stride, padding, dilation, ndim, layout, cover, pad_value, strict, quiet, **opts):
    """Cut images (..., H, W) into windows (..., IH, IW, KH, KW): MegEngine's SlidingWindow.

    The output records the geometry, so a later swt fold of it needs no options. Where the windows leave
    image elements out (at the far edges, or in gaps), a warning says so and what would lose nothing.

    \b
    Examples:
      swt unfold image.npy tiles.zarr --kernel 64 --stride 48 --padding 8
      swt unfold photo.npy tiles.h5 -k 64 -s 64 --cover   # any size: swt fold tiles.h5 x.npy --reduce mean gives it back
      swt unfold volume.h5:/scan windows.h5 -k 3,3,3 -s 2
      swt unfold image.npy cols.npy -k 3 -s 2 --layout torch   # as torch.nn.functional.unfold
    """
    from . import jobs

    _output_location(output, opts["compression"])
    options = _run_options(ctx, quiet, opts)
    jobs.unfold_file(input, output, kernel=kernel, stride=stride, padding=padding, dilation=dilation, ndim=ndim,
                     dtype=opts["dtype"], layout=layout, cover=cover, pad_value=pad_value, strict=strict, options=options)


@cli.command(context_settings=CONTEXT, short_help="Show an array file's shape, dtype, chunks and swt geometry.")
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text (strict JSON: NaN and "
                                                    "infinities are the strings \"NaN\", \"Infinity\", \"-Infinity\").")
@allow_external_option
@common_options
def info(input, as_json, allow_external, storage_options, quiet):
    """Show an array file's shape, dtype, chunks, compression, arrays and recorded swt geometry.

    \b
    Examples:
      swt info tiles.zarr
      swt info images.h5:/group/images --json
    """
    from . import jobs
    from .geometry import fmt_shape

    facts = jobs.info(input, allow_external=allow_external, storage_options=storage_options)
    if as_json:
        click.echo(json.dumps(facts, indent=2, allow_nan=False))
        return
    if "shape" not in facts:  # a file of several arrays: one line each, like h5ls -r
        _list_arrays(facts)
        return
    lines = [
        ("path", facts["path"]),
        ("format", facts["format"]),
        ("shape", fmt_shape(facts["shape"])),
        ("dtype", facts["dtype"]),
    ]
    if facts.get("chunks"):
        lines.append(("chunks", fmt_shape(facts["chunks"])))
    if facts.get("compression") not in (None, "none"):
        lines.append(("compression", str(facts["compression"])))
    if len(facts.get("arrays") or []) > 1:
        lines.append(("arrays", "; ".join(f"{a['name']} {fmt_shape(a['shape'])} {a['dtype']}" for a in facts["arrays"])))
    geo = facts["geometry"]
    if geo:
        lines.append(("geometry", _fmt_geometry(geo)))
        if geo.get("layout", "megengine") != "megengine":
            lines.append(("layout", f"{geo['layout']} (swt fold reads it as such without --layout)"))
    job = facts["job"]
    if job:
        lines.append(("status", "complete" if job["complete"] else f"INCOMPLETE: {job['missing_text']} were never written "
                                                                    f"(rerun the missing shards with --resume)"))
    if facts["attrs"].get("swt_command"):
        lines.append(("written by", f"swt {facts['attrs'].get('swt_version')}: {facts['attrs']['swt_command']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def _fmt_geometry(geo: dict) -> str:
    """An ``swt_geometry`` record in words; a covering unfold's also says the size it padded to."""
    size_key = "image_size" if geo.get("op") == "unfold" else "output_size"
    text = (f"{geo.get('op')}: kernel {geo.get('kernel_size')}, stride {geo.get('stride')}, padding {geo.get('padding')}, "
            f"dilation {geo.get('dilation')}, {size_key.replace('_', ' ')} {geo.get(size_key)}")
    if geo.get("cover"):
        text += f" (--cover: padded to {geo.get('covered_size')}, swt fold crops back)"
    return text


def _list_arrays(facts: dict) -> None:
    """``swt info`` of a file of several arrays: a header, then per array its name, shape, dtype, chunks,
    compression and recorded geometry, in aligned columns."""
    arrays = facts["arrays"]
    click.echo(f"{facts['path']}: {facts['format']}, {len(arrays)} arrays")
    rows = [(a["name"], fmt_shape(a["shape"]), a["dtype"], f"chunks {fmt_shape(a['chunks'])}" if a["chunks"] else "contiguous",
             a["compression"], _fmt_geometry(a["geometry"]) if a["geometry"] else "") for a in arrays]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo(("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5]).rstrip())


def _fmt_bytes(n) -> str:
    """``'1.5 MiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")


@cli.command(context_settings=CONTEXT, short_help="Show a fold's window grid, output sizes, coverage and memory.")
@click.argument("input", required=False, type=ArraySpec())
@geometry_options
@click.option("-o", "--output-size", type=IntList(1),
              help="Output size [with INPUT: recorded by swt unfold, else the smallest that fits].")
@click.option("--reduce", type=click.Choice(REDUCES), default="sum",
              help="As fold's (mean and weights change the memory and the dtype) [default: sum].")
@click.option("--weight", type=WeightSpec(), help="As fold's.")
@click.option("-i", "--input", "input_option", metavar="FILE", type=ArraySpec(),
              help="The same as INPUT (the older spelling).")
@layout_option("Layout of INPUT: megengine or torch [default: recorded by swt unfold, else megengine].")
@click.option("--dtype", type=DType(), help="Output dtype of the fold [default: the input's].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@allow_external_option
@click.option("--max-memory", type=Size(), default=DEFAULT_MAX_MEMORY,
              help=f"Memory budget the fold would run with [default: {DEFAULT_MAX_MEMORY}, or a third of the job's cgroup "
                   "memory limit where that is less].")
@click.option("--batch-size", type=click.IntRange(1), help="Items of the first axis per block (overrides --max-memory).")
@common_options
def plan(input, input_option, kernel, stride, padding, dilation, ndim, output_size, reduce, weight, layout, dtype, max_memory,
         batch_size, as_json, allow_external, storage_options, quiet):
    """Show a fold's window grid, the output sizes it fits, how windows cover the output and the memory it needs.

    Coverage counts, per output element, the windows that land on it: the least and the most, and the
    elements no window covers (a warning says why). With INPUT, a windows file, also the shapes and the
    memory a fold of that file needs under --max-memory.

    \b
    Examples:
      swt plan --output-size 512 --kernel 64 --stride 48
      swt plan tiles.h5 --reduce mean --weight hann --json
      swt plan -o 100,80 -k 5 -s 7        # warns: stride 7 leaves gaps
    """
    from . import jobs
    from .geometry import fmt_dims, fmt_shape

    if input is not None and input_option is not None:
        raise click.UsageError("give the windows file once: as INPUT or with -i/--input, not both")
    input_ = input if input is not None else input_option
    result = jobs.plan(input_, kernel=kernel, stride=stride, padding=padding, dilation=dilation, ndim=ndim,
                       output_size=output_size, reduce=reduce, weight=weight, layout=layout, dtype=dtype,
                       max_memory=_budget(click.get_current_context(), max_memory), batch_size=batch_size,
                       allow_external=allow_external, storage_options=storage_options, note=lambda text: _note(quiet, text))
    facts = result.to_dict()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    geometry, grid, size, ranges = result.geometry, result.grid, result.output_size, result.valid_output_sizes
    lines = [("geometry", f"{geometry.describe()} ({geometry.ndim}-d)")]
    if input_ is not None:
        lines.append(("input", f"{input_}: {fmt_shape(facts['input_shape'])} {facts['input_dtype']}"
                               + (" (read from torch's layout)" if facts["layout"] == "torch" else "")))
    lines += [
        ("window grid", f"{fmt_dims(grid)} ({math.prod(grid)} window{'s' if math.prod(grid) != 1 else ''})"),
        ("output size", fmt_dims(size) if "cropped_to" not in facts else  # as --json: output_size and cropped_to
         f"{fmt_dims(facts['cropped_to'])} (folded at {fmt_dims(size)}, the size swt unfold --cover padded to, then cropped)"),
        ("valid sizes", " x ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) + " (for this grid)"),
        ("overlap", f"{result.min_overlap} to {result.max_overlap} windows per element"),
        ("uncovered", f"{result.uncovered_pixels} of {result.total_pixels} elements "
                      f"({100 * result.uncovered_fraction:.3g}%)"),
    ]
    if input_ is not None:
        mem = facts["memory"]
        lines.append(("output", f"{fmt_shape(facts['output_shape'])} {facts['output_dtype']}, {_fmt_bytes(mem['output_bytes'])}"))
        lines.append(("memory", f"{_fmt_bytes(mem['bytes_per_item'])} per item; {mem['blocks']} block"
                                f"{'s' if mem['blocks'] != 1 else ''} of up to {mem['block_items']} items, about "
                                f"{_fmt_bytes(mem['peak_bytes'])} at --max-memory {_fmt_bytes(mem['max_memory'])}"
                                + (" (over budget: one item at a time)" if mem["over_budget"] else "")))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key + ':':<{width + 1}} {value}")


@cli.command(context_settings=CONTEXT, short_help="Save one image of a file, or a fold's coverage, as a PNG.")
@click.argument("input", metavar="FILE", type=ArraySpec())
@click.argument("output", metavar="OUT.png")
@click.option("-n", "--index", type=click.IntRange(0),
              help="Image of the batch to show, counting row-major over the batch axes; in a windows file written by "
                   "swt unfold, the window, counting over item, channel, window row and window column [default: 0].")
@click.option("-c", "--channel", type=click.IntRange(0),
              help="Show this channel in grey [default: RGB for 3 channels, else channel 0].")
@click.option("--coverage", is_flag=True,
              help="Instead, a heat map of how many windows cover each element of the fold of FILE (a windows "
                   "file): black none, pale yellow the most.")
@geometry_options
@click.option("-o", "--output-size", type=IntList(1),
              help="With --coverage: the fold's output size [default: recorded by swt unfold, else the smallest that fits].")
@layout_option("With --coverage: layout of FILE [default: recorded by swt unfold, else megengine].")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.png.")
@allow_external_option
@common_options
def preview(input, output, index, channel, coverage, kernel, stride, padding, dilation, ndim, output_size, layout,
            overwrite, allow_external, storage_options, quiet):
    """Save one image of FILE as a PNG, scaled from its own minimum (black) to maximum (white).

    FILE holds images (..., C, H, W): the axis before the image is the channels, all before it the batch
    (--index). 1 channel is grey, 3 are RGB, any other number shows --channel in grey. With --ndim 3 the
    images are volumes (..., C, D, H, W) and the middle D slice is shown; with --ndim 1 a signal is one row.
    A windows file written by swt unfold (..., C, IH, IW, KH, KW) shows one window in grey; so does an
    array of 2*ndim+2 axes without a swt record (a .npy), unless --channel is given.
    Needs Pillow (pip install 'swt-cli[preview]').

    \b
    Examples:
      swt preview restored.h5 restored.png
      swt preview batch.zarr img7.png --index 7 --channel 2
      swt preview tiles.h5 coverage.png --coverage          # geometry recorded by swt unfold
    """
    from . import jobs
    from . import preview as pv
    from .formats import Location

    pv.pillow()
    source = Location.parse(input, storage_options)
    pv.check_png(output, overwrite)
    if coverage:
        if index is not None or channel is not None:
            raise click.UsageError("--index and --channel do not apply with --coverage: coverage is the same for every image")
        from .coverage import coverage_picture

        with jobs.open_input(source, allow_external) as reader:
            p = jobs.fold_setup(reader, kernel, stride, padding, dilation, ndim, output_size, layout=layout).transform.plan
        what = pv.preview_coverage(coverage_picture(p.output_size, p.geometry, p.grid), output, overwrite)
    else:
        given = [name for name, value in (("--kernel", kernel), ("--stride", stride), ("--padding", padding),
                                          ("--dilation", dilation), ("--output-size", output_size), ("--layout", layout))
                 if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with --coverage")
        what = pv.preview_image(source, output, index or 0, channel, ndim or 2, overwrite, allow_external)
    _note(quiet, f"wrote {output}: {what}")


def main():
    from .stdio import guard_standard_fds

    guard_standard_fds()  # first: a closed 0, 1 or 2 must not become the number of a file swt opens
    try:
        cli.main(prog_name="swt")
    except BrokenPipeError:  # a message for a stderr whose reader has gone
        if reader_gone():
            sys.exit(READER_GONE)
        raise


if __name__ == "__main__":
    main()
