"""The ``swt`` command: parses options and reports; the work is in geometry, kernels, formats and pipeline.

Errors from the library (``SwtError``) and the system (``OSError``) become one line on stderr and exit
code 1, in one place (``SwtGroup``); usage errors exit 2, Ctrl-C 130, SIGTERM 143.
"""

from __future__ import annotations

import functools
import json
import math
import shlex
import signal
import sys

import click
import numpy as np

from . import __version__
from .backend import check_dtype, result_dtype
from .errors import SwtError
from .formats import COMPRESSIONS, Location, create_writer, open_reader
from .geometry import Geometry, fmt_dims, fmt_shape, plan_fold, plan_unfold, spatial_ndim
from .pipeline import Progress, Transform, parse_size, plan_blocks, run

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, after cleanup: exit 130 or 143."""

    def __init__(self, code: int, what: str):
        super().__init__(what)
        self.code = code


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("terminated")


class SwtGroup(click.Group):
    """Turns every failure into one line on stderr with the right exit code (traceback with --debug)."""

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        self.argv = ["swt", *args]  # recorded in outputs as provenance
        try:
            try:
                previous = signal.signal(signal.SIGTERM, _on_sigterm)
            except ValueError:  # not the main thread: leave signals alone
                previous = None
            try:
                return super().main(args, "swt", standalone_mode=False, **extra)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        except click.exceptions.Exit as exit_:
            code = exit_.exit_code
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} -h')" if err.ctx else ""
            click.echo(f"Error: {err.format_message()}{hint}", err=True)
            code = err.exit_code
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            code = err.exit_code
        except Interrupted as err:
            click.echo(f"Error: {err}", err=True)
            code = err.code
        except click.Abort:
            click.echo("Error: interrupted", err=True)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        ctx.meta["swt.argv"] = getattr(self, "argv", ["swt"])
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as err:
            if ctx.meta.get("swt.debug"):
                raise
            if str(err) == "terminated":
                raise Interrupted(143, "terminated (SIGTERM): no output was left behind") from None
            raise Interrupted(130, "interrupted: no output was left behind") from None
        except SwtError as err:
            if ctx.meta.get("swt.debug"):
                raise
            raise click.ClickException(str(err)) from None
        except OSError as err:
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
            raise click.ClickException(
                f"unexpected {type(err).__name__}: {err} (this is a bug in swt: rerun with --debug and report it)"
            ) from None


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

    def convert(self, value, param, ctx):
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
        click.option("--ndim", type=click.IntRange(1, 3), help="Spatial axes (1-3) [default: from the lists given, else 2]."),
    ]):
        fn = decorator(fn)
    return fn


def io_options(fn):
    """Options of every command that streams one file into another."""
    for decorator in reversed([
        click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (only once the new one is complete)."),
        click.option("--max-memory", type=Size(), default="512MiB", show_default=True,
                     help="Memory budget for blocks in flight (units: KiB MiB GiB, KB MB GB)."),
        click.option("--batch-size", type=click.IntRange(1), help="Items of the first axis per block (overrides --max-memory)."),
        click.option("--compression", type=click.Choice(sorted({c for v in COMPRESSIONS.values() for c in v})),
                     help="HDF5: none (default), gzip, lzf. Zarr: zstd (default), blosc, gzip, none."),
        click.option("--dtype", type=DType(), help="Output dtype [default: the input's]."),
        click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
                     help="Compute on the CPU, or on a GPU through CuPy (pip install 'swt-cli[gpu]')."),
        click.option("--threads", type=click.IntRange(1), help="CPU threads for the kernel [default: all cores]."),
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
    - is a .npy stream on stdin or stdout.

    \b
    Example:
      swt unfold img.npy - -k 3 -s 2 | swt fold - out.h5 -k 3 -s 2 --output-size 64
    """


def _note(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(f"swt: {text}", err=True)


def _recorded_geometry(reader) -> dict:
    raw = reader.attrs.get("swt_geometry")
    if not raw:
        return {}
    try:
        meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return meta if isinstance(meta, dict) else {}
    except (ValueError, TypeError):
        return {}


def _geometry(kernel, stride, padding, dilation, ndim, output_size=None, recorded=None):
    """Geometry from the options, falling back on what ``swt unfold`` recorded in the input."""
    recorded = recorded or {}
    kernel = kernel if kernel is not None else recorded.get("kernel_size")
    if kernel is None:
        raise click.UsageError("--kernel is required (the input records no swt geometry)")
    stride = stride if stride is not None else recorded.get("stride", 1)
    padding = padding if padding is not None else recorded.get("padding", 0)
    dilation = dilation if dilation is not None else recorded.get("dilation", 1)
    values = [tuple(v) if isinstance(v, list) else v for v in (kernel, stride, padding, dilation, output_size)]
    if ndim is None:
        ndim = spatial_ndim(*values)
    kernel, stride, padding, dilation, output_size = values
    return Geometry.from_args(kernel, padding=padding, stride=stride, dilation=dilation, ndim=ndim), output_size


def _provenance(ctx, geometry_meta: dict) -> dict:
    argv = ctx.find_root().meta.get("swt.argv") or ["swt"]
    return {"swt_version": __version__, "swt_command": shlex.join(argv), "swt_geometry": json.dumps(geometry_meta)}


def _output_location(output: str, compression) -> Location:
    """The output's location, checked against the compression asked for before any work starts."""
    out_loc = Location.parse(output)
    if compression and compression not in COMPRESSIONS[out_loc.fmt]:
        raise click.BadParameter(
            f"{out_loc.fmt} outputs take {', '.join(COMPRESSIONS[out_loc.fmt])}, not {compression}", param_hint="--compression"
        )
    return out_loc


def _stream(ctx, op, reader, output, transform, geometry_meta, opts) -> None:
    """Plan blocks, create the output, run the pipeline: everything after the shape checks."""
    if opts["threads"]:
        from . import kernels

        if hasattr(kernels, "set_threads"):
            kernels.set_threads(opts["threads"])
    if transform.device == "gpu":
        from .backend import import_cupy

        import_cupy()
    out_loc = _output_location(output, opts["compression"])
    compression = opts["compression"]
    plan = transform.plan
    lead_shape = plan.batch
    blocks = plan_blocks(lead_shape, plan.output_shape, transform.out_dtype.itemsize, transform.bytes_per_item(),
                         opts["max_memory"], opts["batch_size"])
    if blocks.over_budget:
        _note(opts["quiet"], f"one item needs more than --max-memory ({opts['max_memory']} bytes): going on one at a time")
    if opts.get("scheduler") or opts.get("shard") or opts.get("resume"):
        from . import distributed

        distributed.run_job(op, reader, out_loc, transform, blocks, _provenance(ctx, geometry_meta), opts,
                            lambda text: _note(opts["quiet"], text))
        return
    writer = create_writer(out_loc, plan.output_shape, transform.out_dtype, attrs=_provenance(ctx, geometry_meta),
                           chunks=blocks.chunks, compression=compression, overwrite=opts["overwrite"])
    total = math.prod(lead_shape) if lead_shape else 1
    progress = Progress(f"swt {op}", total, "items", quiet=opts["quiet"])
    run(reader, writer, transform, blocks, progress)


def _geometry_meta(op: str, geometry: Geometry, size) -> dict:
    key = "output_size" if op == "fold" else "image_size"
    return {"op": op, "kernel_size": list(geometry.kernel), "stride": list(geometry.stride),
            "padding": list(geometry.padding), "dilation": list(geometry.dilation), key: list(size)}


@cli.command(context_settings=CONTEXT)
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.argument("output", metavar="OUTPUT", type=ArraySpec())
@geometry_options
@click.option("-o", "--output-size", type=IntList(1), help="Image size [default: recorded by swt unfold, else the smallest that fits].")
@io_options
@cluster_options
@common_options
@click.pass_context
def fold(ctx, input, output, kernel, stride, padding, dilation, ndim, output_size, quiet, **opts):
    """Sum windows (..., IH, IW, KH, KW) back into images (..., H, W): MegEngine's SlidingWindowTranspose.

    \b
    Examples:
      swt fold windows.h5 images.h5 --kernel 3 --stride 2 --output-size 64
      swt fold tiles.zarr:/windows out.npy        # geometry recorded by swt unfold
      swt unfold img.npy - -k 3 -s 2 | swt fold - out.npy -k 3 -s 2 -o 64
    """
    opts["quiet"] = quiet
    _output_location(output, opts["compression"])
    with open_reader(input) as reader:
        recorded = _recorded_geometry(reader)
        recorded = recorded if recorded.get("op") == "unfold" else {}
        geometry, output_size = _geometry(kernel, stride, padding, dilation, ndim, output_size, recorded)
        if output_size is None and recorded.get("image_size") and tuple(recorded.get("kernel_size", ())) == geometry.kernel:
            output_size = tuple(recorded["image_size"])
        out_dtype = result_dtype(reader.dtype, opts["dtype"])
        plan = plan_fold(reader.shape, geometry, output_size, itemsize=out_dtype.itemsize)
        if output_size is None:
            rng = geometry.output_ranges(plan.grid)
            choices = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in rng)
            _note(quiet, f"no --output-size given: using {fmt_dims(plan.output_size)}, the smallest that fits "
                         f"{fmt_dims(plan.grid)} windows of {geometry.describe()} (sizes that fit: {choices})")
        transform = Transform("fold", plan, reader.dtype, out_dtype, opts["device"])
        _stream(ctx, "fold", reader, output, transform, _geometry_meta("fold", geometry, plan.output_size), opts)


@cli.command(context_settings=CONTEXT)
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.argument("output", metavar="OUTPUT", type=ArraySpec())
@geometry_options
@io_options
@cluster_options
@common_options
@click.pass_context
def unfold(ctx, input, output, kernel, stride, padding, dilation, ndim, quiet, **opts):
    """Cut images (..., H, W) into windows (..., IH, IW, KH, KW): MegEngine's SlidingWindow.

    The output records the geometry, so a later swt fold of it needs no options.

    \b
    Examples:
      swt unfold image.npy tiles.zarr --kernel 64 --stride 48 --padding 8
      swt unfold volume.h5:/scan windows.h5 -k 3,3,3 -s 2
    """
    opts["quiet"] = quiet
    _output_location(output, opts["compression"])
    with open_reader(input) as reader:
        geometry, _ = _geometry(kernel, stride, padding, dilation, ndim)
        out_dtype = result_dtype(reader.dtype, opts["dtype"])
        plan = plan_unfold(reader.shape, geometry, itemsize=out_dtype.itemsize)
        transform = Transform("unfold", plan, reader.dtype, out_dtype, opts["device"])
        _stream(ctx, "unfold", reader, output, transform, _geometry_meta("unfold", geometry, plan.size), opts)


def _job_status(reader):
    """Completeness of a shared output of a sharded or --scheduler run (None for any other array)."""
    if not hasattr(reader, "array_folder"):
        return None
    from .shards import fmt_items, status

    job = status(reader.array_folder(), reader.attrs)
    if job is not None:
        job["missing_text"] = fmt_items(job["missing"], job["items"], job["lead_shape"]) if job["missing"] else ""
    return job


@cli.command(context_settings=CONTEXT)
@click.argument("input", metavar="INPUT", type=ArraySpec())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@common_options
def info(input, as_json, quiet):
    """Show an array file's shape, dtype, chunks, compression, arrays and recorded swt geometry.

    \b
    Examples:
      swt info tiles.zarr
      swt info images.h5:/group/images --json
    """
    loc = Location.parse(input)
    if loc.fmt == "zarr":  # an incomplete output of a sharded run can still be described
        from .formats.zarr_store import ZarrReader

        opened = ZarrReader(loc, allow_incomplete=True)
    else:
        opened = open_reader(loc)
    with opened as reader:
        facts = reader.describe()
        facts["geometry"] = _recorded_geometry(reader) or None
        facts["job"] = _job_status(reader)
    facts["attrs"] = {k: (v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v)) for k, v in facts["attrs"].items()}
    if as_json:
        click.echo(json.dumps(facts, indent=2, default=str))
        return
    lines = [
        ("path", facts["path"]),
        ("format", facts["format"]),
        ("shape", fmt_shape(facts["shape"])),
        ("dtype", facts["dtype"]),
    ]
    if facts.get("chunks"):
        lines.append(("chunks", fmt_shape(facts["chunks"])))
    if facts.get("compression"):
        comp = facts["compression"]
        lines.append(("compression", ", ".join(comp) if isinstance(comp, list) else str(comp)))
    if len(facts.get("arrays") or []) > 1:
        lines.append(("arrays", "; ".join(f"{a['name']} {fmt_shape(a['shape'])} {a['dtype']}" for a in facts["arrays"])))
    geo = facts["geometry"]
    if geo:
        size_key = "image_size" if geo.get("op") == "unfold" else "output_size"
        lines.append(("geometry", f"{geo.get('op')}: kernel {geo.get('kernel_size')}, stride {geo.get('stride')}, "
                                  f"padding {geo.get('padding')}, dilation {geo.get('dilation')}, "
                                  f"{size_key.replace('_', ' ')} {geo.get(size_key)}"))
    job = facts["job"]
    if job:
        lines.append(("status", "complete" if job["complete"] else f"INCOMPLETE: {job['missing_text']} were never written "
                                                                    f"(rerun the missing shards with --resume)"))
    if facts["attrs"].get("swt_command"):
        lines.append(("written by", f"swt {facts['attrs'].get('swt_version')}: {facts['attrs']['swt_command']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def main():
    cli.main(prog_name="swt")


if __name__ == "__main__":
    main()
