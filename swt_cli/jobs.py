"""Files to files from Python: what ``swt fold``, ``swt unfold``, ``swt plan`` and ``swt info`` do, as functions.

The geometry comes from the arguments, else from what ``swt unfold`` recorded in the input
(``swt_geometry``), else from the defaults; blocks are planned under a memory budget, streamed, and the
output committed atomically with its provenance, exactly as the command line does (the command line
only parses its options, calls these and prints).

>>> import numpy as np, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> np.save(os.path.join(folder, "img.npy"), np.ones((2, 3, 16, 16), np.float32))
>>> cut = unfold_file(os.path.join(folder, "img.npy"), os.path.join(folder, "tiles.zarr"), kernel=4, stride=2)
>>> cut.shape, cut.sources["stride"]
((2, 3, 7, 7, 4, 4), 'option')
>>> back = fold_file(cut.output, os.path.join(folder, "back.npy"), reduce="mean")
>>> back.shape, back.sources["kernel_size"], back.sources["output_size"]
((2, 3, 16, 16), 'record', 'record')
>>> plan(os.path.join(folder, "tiles.zarr")).to_dict()["min_overlap"]
1
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from ._version import __version__
from .choices import COMPRESSIONS, LAYOUTS
from .cover import (
    CoverUnfold,
    CroppedFold,
    check_coverable,
    cover_record,
    covered_size,
    edge_loss,
    fill_value,
    recorded_fold_sizes,
)
from .coverage import fold_coverage
from .errors import SwtError, first_line
from .geometry import Geometry, as_tuple, fmt_dims, plan_fold, plan_unfold, spatial_ndim
from .options import OptionError, RunOptions

# NumPy, the formats, the kernels and the pipeline are imported inside the functions that read or write
# arrays: the command line imports this module to start any command, and ``swt plan`` without a file,
# ``swt --help`` and ``swt --version`` need none of them.
if TYPE_CHECKING:
    import numpy as np

    from .formats import Location
    from .pipeline import Transform
    from .protocols import BlockTransform, Reader, Writer

__all__ = ["BlockTransform", "GeometryChoice", "JobResult", "OptionError", "Plan", "Reader", "RunOptions", "Writer", "fold_file",
           "info", "list_arrays", "plan", "unfold_file"]

#: Re-exported from :mod:`swt_cli.protocols` on first use (that module imports NumPy).
_PROTOCOLS = ("BlockTransform", "Reader", "Writer")


def __getattr__(name: str):
    if name in _PROTOCOLS:
        from . import protocols

        return getattr(protocols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: A path as the functions below take it: a str as on the command line, or any ``os.PathLike`` (``pathlib.Path``).
PathArg = str | os.PathLike[str]


@overload
def _spec(value: PathArg) -> str: ...
@overload
def _spec(value: None) -> None: ...
def _spec(value):
    """``value`` as a str (``os.fspath`` of a ``pathlib.Path``), None as None."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def open_input(spec: str | Location, allow_external: bool = False, storage_options: dict | None = None):
    """``open_reader``: ``allow_external`` lets it read HDF5 external storage, virtual datasets and external
    links, and Zarr symlinks leaving the store (RELIABILITY.md); ``storage_options`` reach a URL (fsspec's)."""
    from .formats import Location, open_reader

    return open_reader(Location.parse(spec, storage_options) if isinstance(spec, str) else spec,
                       allow_external=allow_external)


# ---- geometry: from the options, the input's record or the defaults --------------------------------

#: The geometry's values and the names they have in ``swt_geometry`` records and results.
_KEYS = ("kernel_size", "stride", "padding", "dilation")
_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1}


def recorded_geometry(reader: Reader) -> dict:
    """What ``swt unfold`` (or ``swt fold``) recorded in ``reader``'s ``swt_geometry`` attribute ({} if nothing)."""
    return _parse_geometry(reader.attrs.get("swt_geometry"))


def _parse_geometry(raw) -> dict:
    """An ``swt_geometry`` attribute (JSON text or a mapping) as a dict; {} where there is none or it is not one."""
    if not raw:
        return {}
    try:
        meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return meta if isinstance(meta, dict) else {}
    except (ValueError, TypeError):
        return {}


@dataclass(frozen=True)
class GeometryChoice:
    """The geometry of a job and where each value came from: ``"option"``, ``"record"`` or ``"default"``."""

    geometry: Geometry
    output_size: Any
    sources: dict


def resolve_geometry(kernel=None, stride=None, padding=None, dilation=None, ndim=None, output_size=None,
                     recorded: dict | None = None) -> GeometryChoice:
    """The geometry from the options, falling back on ``recorded`` (an ``swt_geometry`` record), then the defaults."""
    recorded = recorded or {}
    given = dict(zip(_KEYS, (kernel, stride, padding, dilation)))
    values, sources = {}, {}
    for key in _KEYS:
        if given[key] is not None:
            values[key], sources[key] = given[key], "option"
        elif recorded.get(key) is not None:
            values[key], sources[key] = recorded[key], "record"
        elif key in _DEFAULTS:
            values[key], sources[key] = _DEFAULTS[key], "default"
        else:
            raise OptionError("--kernel is required (the input records no swt geometry)")
    listed = [tuple(v) if isinstance(v, list) else v for v in (*(values[k] for k in _KEYS), output_size)]
    sources["ndim"] = "option" if ndim is not None else "default"
    if ndim is None:
        ndim = spatial_ndim(*listed)
    kernel, stride, padding, dilation, output_size = listed
    geometry = Geometry.from_args(kernel, padding=padding, stride=stride, dilation=dilation, ndim=ndim)
    return GeometryChoice(geometry, output_size, sources)


def geometry_meta(op: str, geometry: Geometry, size) -> dict:
    """The ``swt_geometry`` record of an output."""
    key = "output_size" if op == "fold" else "image_size"
    return {"op": op, "kernel_size": list(geometry.kernel), "stride": list(geometry.stride),
            "padding": list(geometry.padding), "dilation": list(geometry.dilation), key: list(size)}


@dataclass(frozen=True)
class FoldSetup:
    """A fold of the windows in ``reader``: the (possibly wrapped) reader, the transform, the layout read."""

    reader: Reader
    transform: Transform
    layout: str
    choice: GeometryChoice
    #: Whether the layout came from the input's record (not the options).
    recorded_layout: bool
    #: The fold computed: ``transform.plan`` but for a covering unfold's windows, which are folded onto the
    #: covered size (this plan) and cropped to the original one (``transform.plan.output_size``).
    compute_plan: Any = None


def fold_setup(reader: Reader, kernel=None, stride=None, padding=None, dilation=None, ndim=None, output_size=None, *,
               layout=None, dtype=None, reduce="sum", weight=None, fill=0.0, device="cpu", cover: bool = False,
               note: Callable[[str], Any] = lambda text: None) -> FoldSetup:
    """The fold of the windows in ``reader`` (for fold, plan and preview): the geometry from the options,
    else from what swt unfold recorded; a torch-layout reader is wrapped to read MegEngine's layout.

    ``transform.blend`` is None for a plain sum. The windows of ``swt unfold --cover`` (as its record says,
    or ``cover=True`` with the original ``output_size``) are folded onto the covered size and cropped.
    """
    from .blend import Blend
    from .pipeline import Transform

    _check_layout(layout)
    recorded = recorded_geometry(reader)
    recorded = recorded if recorded.get("op") == "unfold" else {}
    choice = resolve_geometry(kernel, stride, padding, dilation, ndim, output_size, recorded)
    geometry, output_size = choice.geometry, choice.output_size
    sources = dict(choice.sources)
    sources["output_size"] = "option" if output_size is not None else "default"
    output_size, crop_to = _covered_output(recorded, geometry, output_size, cover)
    if crop_to is not None and sources["output_size"] == "default":
        sources["output_size"] = "record"
    if output_size is None and recorded.get("image_size") and tuple(recorded.get("kernel_size", ())) == geometry.kernel:
        output_size, sources["output_size"] = tuple(recorded["image_size"]), "record"
    sources["layout"] = "option" if layout else "record" if recorded.get("layout") else "default"
    layout = layout or recorded.get("layout") or "megengine"
    told = crop_to if crop_to is not None else output_size
    blend = Blend(geometry.kernel, reduce, weight, fill)
    out_dtype = blend.output_dtype(reader.dtype, dtype)
    try:
        reader, fplan = _fold_plan(reader, geometry, output_size, layout, out_dtype)
    except SwtError as err:  # say where the values that do not fit came from
        raise type(err)(f"{err} ({explain_sources(geometry, told, sources, reader.location.path)})") from None
    if output_size is None:
        rng = geometry.output_ranges(fplan.grid)
        choices = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in rng)
        note(f"no --output-size given: using {fmt_dims(fplan.output_size)}, the smallest that fits "
             f"{fmt_dims(fplan.grid)} windows of {geometry.describe()} (sizes that fit: {choices}); "
             f"{explain_sources(geometry, None, sources, reader.location.path)}")
    transform: Any = Transform("fold", fplan, reader.dtype, out_dtype, device, blend=blend if blend.active else None)
    if crop_to is not None and crop_to != fplan.output_size:
        transform = CroppedFold(transform, crop_to)
    choice = GeometryChoice(geometry, transform.plan.output_size, sources)
    return FoldSetup(reader, transform, layout, choice, recorded_layout=sources["layout"] == "record", compute_plan=fplan)


#: How :func:`explain_sources` names each value and the option that gives it.
_NAMES = {"kernel_size": ("kernel", "--kernel"), "stride": ("stride", "--stride"), "padding": ("padding", "--padding"),
          "dilation": ("dilation", "--dilation"), "output_size": ("output size", "--output-size")}


def explain_sources(geometry: Geometry, output_size, sources: dict, where: str) -> str:
    """Where each value of a geometry came from, for messages: ``'kernel 64 and output size 477x720 from
    tiles.h5's record, stride 8 from --stride'``, ``'kernel 3 from --kernel, stride 1 (default)'``.

    Padding and dilation are named where given, recorded or not trivial; the output size where known."""
    values = {"kernel_size": geometry.kernel, "stride": geometry.stride, "padding": geometry.padding,
              "dilation": geometry.dilation}
    if output_size is not None:
        values["output_size"] = as_tuple(tuple(output_size) if isinstance(output_size, list) else output_size,
                                         geometry.ndim, "output_size", 1)
    recorded, parts = [], []
    for key, value in values.items():
        name, option = _NAMES[key]
        source = sources.get(key, "default")
        if key in ("padding", "dilation") and source != "option" and value == (_DEFAULTS[key],) * geometry.ndim:
            continue  # padding 0 and dilation 1, not given: nothing to explain
        text = f"{name} {value[0] if len(set(value)) == 1 and key != 'output_size' else fmt_dims(value)}"
        if source == "record":
            recorded.append(text)
        elif source == "option":
            parts.append(f"{text} from {option}")
        else:
            parts.append(f"{text} (default)")
    if recorded:
        joined = recorded[0] if len(recorded) == 1 else ", ".join(recorded[:-1]) + " and " + recorded[-1]
        parts.insert(0, f"{joined} from {where}'s record")
    return ", ".join(parts)


def _fold_plan(reader: Reader, geometry: Geometry, output_size, layout: str, out_dtype: np.dtype) -> tuple[Reader, Any]:
    """The fold's plan (checked against the windows' shape) and the reader, wrapped for torch's layout."""
    from .layouts import TorchFoldReader

    if layout == "torch":
        if output_size is None:
            raise OptionError("--layout torch needs --output-size: torch's layout flattens the window grid into one axis")
        size = as_tuple(output_size, geometry.ndim, "output_size", 1)
        try:
            grid = tuple(geometry.check_unfold_axis(i, o) for i, o in enumerate(size))
        except SwtError as err:
            raise SwtError(f"--layout torch with output size {fmt_dims(size)}: {err}") from None
        reader = TorchFoldReader(reader, geometry.kernel, grid)
    return reader, plan_fold(reader.shape, geometry, output_size, itemsize=out_dtype.itemsize)


def _covered_output(recorded: dict, geometry: Geometry, output_size, cover: bool = False) -> tuple[Any, tuple | None]:
    """For the windows of ``swt unfold --cover`` (the record says ``cover``) folded with the recorded geometry:
    the size to fold onto (the covered one) and the original size to crop to, where ``output_size`` is not
    given or is the original size. Else ``(output_size, None)``: the fold is a plain one.

    ``cover`` (``swt fold --cover``, for windows whose file keeps no record, such as .npy): ``output_size``,
    else the recorded image size, is the original size, whatever the record says."""
    if cover:
        if output_size is None:
            output_size = recorded.get("image_size")
        if output_size is None:
            raise OptionError("--cover needs --output-size: the size of the images before swt unfold --cover padded them")
        image = as_tuple(tuple(output_size) if isinstance(output_size, list) else output_size, geometry.ndim,
                         "output_size", 1)
        try:
            check_coverable(geometry)
        except SwtError as err:
            raise OptionError(f"--cover: {err}") from None
        return covered_size(image, geometry), image
    if not recorded.get("cover"):
        return output_size, None
    same = all(tuple(recorded.get(key) or ()) == getattr(geometry, attr) for key, attr in
               (("kernel_size", "kernel"), ("stride", "stride"), ("padding", "padding"), ("dilation", "dilation")))
    sizes = recorded_fold_sizes(recorded)
    if not same or sizes is None:
        return output_size, None
    compute, image = sizes
    if output_size is not None and as_tuple(output_size, geometry.ndim, "output_size", 1) != image:
        return output_size, None
    return compute, image


# ---- fold and unfold of files -----------------------------------------------------------------------

@dataclass(frozen=True)
class JobResult:
    """What a :func:`fold_file` or :func:`unfold_file` did."""

    op: str
    output: str
    shape: tuple
    dtype: np.dtype
    #: ``kernel_size``, ``stride``, ``padding``, ``dilation`` and ``output_size`` (fold) or ``image_size`` (unfold).
    geometry: dict
    #: Where each value came from: ``"option"``, ``"record"`` (the input's ``swt_geometry``) or ``"default"``.
    sources: dict
    layout: str
    seconds: float
    #: Bytes of the input's and the output's arrays that this run read and wrote (its blocks, for a shard
    #: or a resume), before compression.
    bytes_read: int
    bytes_written: int


@contextlib.contextmanager
def warnings_as_notes(opts: RunOptions):
    """Python warnings raised during a run (NumPy's RuntimeWarnings, zarr's and Dask's, from any thread)
    become one note each, after the run or its failure: none with ``quiet``, so that ``-q`` prints at most
    the one line of an error. ``debug`` lets them through as Python prints them, with their source lines."""
    if opts.debug:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # once per place that warns: a warning of every block stays one entry
        try:
            yield
        finally:
            seen = set()
            for found in caught:
                message = found.message if isinstance(found.message, Warning) else Warning(found.message)
                text = f"warning: {first_line(message)} ({found.category.__name__})"
                if text not in seen:
                    seen.add(text)
                    opts.say(text)


def _check_layout(layout: str | None) -> None:
    if layout is not None and layout not in LAYOUTS:
        raise OptionError(f"layout '{layout}' is not one of {', '.join(LAYOUTS)}")


def check_compression(output: str | Location, compression: str | None, storage_options: dict | None = None) -> Location:
    """The output's location, checked against the compression asked for (and, for a URL, against what an
    object store can take) before any work starts."""
    from .formats import Location, check_output

    out_loc = output if isinstance(output, Location) else Location.parse(output, storage_options)
    check_output(out_loc)
    if compression and compression not in COMPRESSIONS[out_loc.fmt]:
        raise OptionError(f"{out_loc.fmt} outputs take {', '.join(COMPRESSIONS[out_loc.fmt])}, not {compression}")
    return out_loc


def _torch_layout_alone(layout: str, opts: RunOptions, recorded: bool = False) -> None:
    """Refuse the torch layout with distributed runs; ``recorded``: the layout came from the input's record."""
    if layout == "torch" and opts.distributed:
        what = "input in torch's layout (as recorded by swt unfold --layout torch)" if recorded else "--layout torch"
        raise OptionError(f"{what} does not combine with --scheduler, --shard or --resume: convert with a plain run first")


def _stream(op: str, reader: Reader, out_loc: Location, transform: Transform, meta: dict, opts: RunOptions,
            make_writer=None) -> int:
    """Plan blocks, create the output, run the pipeline: everything after the shape checks.

    ``make_writer`` replaces ``create_writer`` (the torch layout writes through ``layouts.create_torch_writer``).
    Returns the items of the leading axes this run did.
    """
    from .blocks import plan_blocks
    from .formats import create_writer
    from .formats.base import check_not_input, describe_leftovers
    from .pipeline import run

    if opts.threads:
        from . import kernels

        kernels.set_threads(opts.threads)
    if transform.device == "gpu":
        from .backend import import_cupy

        import_cupy()
    # a shared Zarr output is written where it lies while the input is read: never onto the input
    check_not_input(reader, out_loc, in_place=not (opts.distributed and out_loc.fmt == "zarr"))  # type: ignore[arg-type]
    if out_loc.fmt != "stream":
        leftovers = describe_leftovers(out_loc.path)
        if leftovers:
            opts.say(leftovers)
    tplan = transform.plan
    lead_shape = tplan.batch
    blocks = plan_blocks(lead_shape, tplan.output_shape, transform.out_dtype.itemsize, transform.bytes_per_item(),
                         opts.max_memory, opts.batch_size)
    if blocks.over_budget:
        opts.say(f"one item needs more than the memory budget ({opts.max_memory:,} bytes, --max-memory): "
                 "going on one at a time")
    attrs = {"swt_version": __version__, "swt_command": opts.command, "swt_geometry": json.dumps(meta)}
    # an object store has no rename: a Zarr output there is always a shared output, created where it lies
    if opts.distributed or (out_loc.remote and out_loc.fmt == "zarr"):
        from . import distributed

        if out_loc.fmt == "zarr":
            opts.output_stays(f"{out_loc.path} keeps the finished blocks: rerun with --resume to do the rest")
        return distributed.run_job(op, reader, out_loc, transform, blocks, attrs, opts, make_writer)
    if out_loc.fmt == "stream":
        opts.output_stays("the .npy stream on stdout is incomplete")
    total = math.prod(lead_shape) if lead_shape else 1
    progress = opts.make_progress(f"swt {op}", total)
    # created inside run, interrupts held, so that an interrupt never leaves a temporary output behind
    make = functools.partial(make_writer or create_writer, out_loc, tplan.output_shape, transform.out_dtype, attrs=attrs,
                             chunks=blocks.chunks, compression=opts.compression, overwrite=opts.overwrite)
    run(reader, None, transform, blocks, progress, make_writer=make,
        on_commit=lambda: opts.output_stays(f"{out_loc} was complete and in place before the interrupt"))
    return total


def _result(op: str, out_loc: Location, transform: Transform, choice: GeometryChoice, layout: str, items: int,
            start: float) -> JobResult:
    p = transform.plan
    lead_items = math.prod(p.batch) if p.batch else 1
    share = items / lead_items if lead_items else 1.0
    in_bytes = math.prod(p.input_shape) * transform.in_dtype.itemsize
    out_bytes = math.prod(p.output_shape) * transform.out_dtype.itemsize
    size_key = "output_size" if op == "fold" else "image_size"
    size = p.output_size if op == "fold" else p.size
    geometry = {"kernel_size": list(p.geometry.kernel), "stride": list(p.geometry.stride),
                "padding": list(p.geometry.padding), "dilation": list(p.geometry.dilation), size_key: list(size)}
    return JobResult(op, str(out_loc), tuple(p.output_shape), transform.out_dtype, geometry, dict(choice.sources), layout,
                     time.monotonic() - start, round(in_bytes * share), round(out_bytes * share))


def _options(opts: RunOptions | None, quiet: bool, note, **run: Any) -> RunOptions:
    if opts is not None:
        return opts
    return RunOptions.resolve(quiet=quiet, note=note, **run)


def _output_dtype(dtype):
    if dtype is None:
        return None
    import numpy as np

    from .backend import check_dtype

    return check_dtype(np.dtype(dtype), "output")


def fold_file(input: PathArg, output: PathArg, *, kernel=None, stride=None, padding=None, dilation=None, output_size=None,
              ndim: int | None = None, reduce: str = "sum", weight=None, fill: float = 0, dtype=None,
              layout: str | None = None, cover: bool = False, max_memory: int | str | None = None, batch_size: int | None = None,
              threads: int | None = None, device: str = "cpu", compression: str | None = None, overwrite: bool = False,
              progress: bool | Callable[[int, int], Any] | None = None, scheduler: str | None = None,
              shard: str | tuple[int, int] | None = None, resume: bool = False, quiet: bool = True,
              allow_external: bool = False, storage_options: dict | None = None,
              note: Callable[[str], Any] | None = None, options: RunOptions | None = None) -> JobResult:
    """``swt fold INPUT OUTPUT``: sum the windows in file ``input`` back into images in file ``output``.

    Windows ``(..., I1..ID, K1..KD)`` become images ``(..., O1..OD)``, block by block within the memory
    budget, so files larger than memory fold; the output appears only once complete, with its
    provenance (``swt_version``, ``swt_command``, ``swt_geometry``) where the format has attributes.

    Parameters
    ----------
    input, output : str or os.PathLike
        Paths: .npy, .h5/.hdf5 (``file.h5:/name`` for an array inside) or .zarr, as on the command line.
    kernel, stride, padding, dilation : int or tuple of int, optional
        The geometry, as :func:`~swt_cli.api.sliding_window_transpose` takes it. Left out: what
        ``swt unfold`` recorded in the input, else the defaults (stride 1, padding 0, dilation 1); the
        kernel is required where the input records none.
    output_size : int or tuple of int, optional
        The image size [default: recorded by ``swt unfold``, else the smallest that fits the grid].
    ndim : int, optional
        Spatial axes (1-3) [default: the length of any tuple argument, else 2].
    reduce, weight, fill, dtype
        As :func:`~swt_cli.api.sliding_window_transpose` takes them.
    layout : {"megengine", "torch"}, optional
        The input's layout [default: recorded by ``swt unfold``, else megengine]; ``"torch"`` reads
        ``torch.nn.functional.unfold``'s ``(N, C*K1*..*KD, L)`` and needs ``output_size``.
    max_memory, batch_size, threads, device, compression, overwrite
        The run settings, as :class:`RunOptions` takes them (``max_memory`` None: 512MiB, or a third of the
        job's cgroup memory limit where that is less; also a size such as ``"2GiB"``).
    progress, quiet, note
        ``progress`` True for swt's display on stderr, or a callable ``(done, total)``; ``note`` a callable
        for swt's notes, default stderr unless ``quiet``.
    scheduler, shard, resume, allow_external, storage_options
        As :class:`RunOptions` takes them: a Dask cluster, a part ``"I/N"`` of a shared Zarr output, the
        rest of an incomplete one; reading external storage; fsspec options for URLs (``s3://...``).
    cover : bool, default False
        Windows of :func:`unfold_file` with ``cover=True`` are cropped back to the recorded image size
        anyway; ``cover=True`` does the same for windows without a record (.npy), ``output_size`` then
        being the original size.
    options : RunOptions, optional
        Replaces every run setting above.

    Returns
    -------
    JobResult
        The output's path, ``shape`` and ``dtype``, the geometry used and where each value came from
        (``sources``: ``"option"``, ``"record"`` or ``"default"``), the time and the bytes read and written.

    Raises
    ------
    SwtError
        For an input that cannot be read or does not fit the geometry (the message names the shapes and
        the valid sizes), an existing output without ``overwrite``, a full disk. ``OptionError`` (a
        ``SwtError``) for arguments that do not combine.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "w.npy"), np.ones((2, 3, 31, 31, 3, 3), np.float32))
    >>> done = fold_file(os.path.join(folder, "w.npy"), os.path.join(folder, "img.h5"), kernel=3, stride=2,
    ...                  output_size=64)
    >>> done.shape, str(done.dtype), done.sources["padding"]
    ((2, 3, 64, 64), 'float32', 'default')
    """
    start = time.monotonic()
    input, output = _spec(input), _spec(output)
    opts = _options(options, quiet, note, max_memory=max_memory, batch_size=batch_size, threads=threads, device=device,
                    compression=compression, overwrite=overwrite, progress=progress, scheduler=scheduler, shard=shard,
                    resume=resume, allow_external=allow_external, storage_options=storage_options,
                    command=_command("fold_file", input, output))
    out_loc = check_compression(output, opts.compression, opts.storage_options)
    with warnings_as_notes(opts), open_input(input, opts.allow_external, opts.storage_options) as reader:
        setup = fold_setup(reader, kernel, stride, padding, dilation, ndim, output_size, layout=layout,
                           dtype=_output_dtype(dtype), reduce=reduce, weight=weight, fill=fill, device=opts.device,
                           cover=cover, note=opts.say)
        _torch_layout_alone(setup.layout, opts, recorded=layout is None)
        transform = setup.transform
        if transform.blend is not None:
            transform.blend.prepare(setup.compute_plan)  # the divisor of one image: once per run, not per block
        meta = geometry_meta("fold", transform.plan.geometry, transform.plan.output_size)
        items = _stream("fold", setup.reader, out_loc, transform, meta, opts)
    return _result("fold", out_loc, transform, setup.choice, setup.layout, items, start)


def unfold_file(input: PathArg, output: PathArg, *, kernel=None, stride=None, padding=None, dilation=None,
                ndim: int | None = None, dtype=None, layout: str | None = None, cover: bool = False, pad_value=0,
                strict: bool = False, max_memory: int | str | None = None,
                batch_size: int | None = None, threads: int | None = None, device: str = "cpu",
                compression: str | None = None, overwrite: bool = False,
                progress: bool | Callable[[int, int], Any] | None = None, scheduler: str | None = None,
                shard: str | tuple[int, int] | None = None, resume: bool = False, quiet: bool = True,
                allow_external: bool = False, storage_options: dict | None = None,
                note: Callable[[str], Any] | None = None, options: RunOptions | None = None) -> JobResult:
    """``swt unfold INPUT OUTPUT``: cut the images in file ``input`` into windows in file ``output``, which
    records the geometry so that a later :func:`fold_file` of it needs no geometry arguments.

    Images ``(..., S1..SD)`` become windows ``(..., I1..ID, K1..KD)``, zero-padded at the borders, block by
    block within the memory budget.

    Parameters
    ----------
    input, output : str or os.PathLike
        Paths: .npy, .h5/.hdf5 (``file.h5:/name`` for an array inside) or .zarr.
    kernel : int or tuple of int
        Window size (required).
    stride, padding, dilation : int or tuple of int, optional
        As :func:`~swt_cli.api.sliding_window` takes them [default: 1, 0, 1].
    ndim : int, optional
        Spatial axes (1-3) [default: the length of any tuple argument, else 2].
    dtype : dtype, optional
        Output dtype [default: the input's].
    layout : {"megengine", "torch"}, optional
        ``"torch"`` writes ``torch.nn.functional.unfold``'s ``(N, C*K1*..*KD, L)`` [default: megengine].
    max_memory, batch_size, threads, device, compression, overwrite
        The run settings, as :class:`RunOptions` takes them (``max_memory`` None: 512MiB, or a third of the
        job's cgroup memory limit where that is less; also a size such as ``"2GiB"``).
    progress, quiet, note
        ``progress`` True for swt's display on stderr, or a callable ``(done, total)``; ``note`` a callable
        for swt's notes, default stderr unless ``quiet``.
    scheduler, shard, resume, allow_external, storage_options
        As :class:`RunOptions` takes them: a Dask cluster, a part ``"I/N"`` of a shared Zarr output, the
        rest of an incomplete one; reading external storage; fsspec options for URLs (``s3://...``).
    cover : bool, default False
        Pad the far edges with ``pad_value`` just enough for the windows to reach every element, and record
        the original size, which :func:`fold_file` crops back to. Without it, where the windows leave image
        elements out (the grid stops short of the far edges, or leaves gaps), a warning goes to ``note``.
    pad_value : number, default 0
        The value padded in with ``cover=True``.
    strict : bool, default False
        Make the warning about image elements left out an error.
    options : RunOptions, optional
        Replaces every run setting above.

    Returns
    -------
    JobResult
        As :func:`fold_file`'s, with ``image_size`` in its ``geometry``.

    Raises
    ------
    SwtError
        For an input that cannot be read, an image smaller than one window, an existing output without
        ``overwrite``. ``OptionError`` (a ``SwtError``) for arguments that do not combine.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "img.npy"), np.ones((2, 3, 64, 64), np.float32))
    >>> cut = unfold_file(os.path.join(folder, "img.npy"), os.path.join(folder, "tiles.zarr"), kernel=3, stride=2)
    >>> cut.shape, cut.geometry["image_size"]
    ((2, 3, 31, 31, 3, 3), [64, 64])
    """
    from .backend import result_dtype
    from .layouts import create_torch_writer, torch_shape

    start = time.monotonic()
    input, output = _spec(input), _spec(output)
    _check_layout(layout)
    opts = _options(options, quiet, note, max_memory=max_memory, batch_size=batch_size, threads=threads, device=device,
                    compression=compression, overwrite=overwrite, progress=progress, scheduler=scheduler, shard=shard,
                    resume=resume, allow_external=allow_external, storage_options=storage_options,
                    command=_command("unfold_file", input, output))
    out_loc = check_compression(output, opts.compression, opts.storage_options)
    with warnings_as_notes(opts), open_input(input, opts.allow_external, opts.storage_options) as reader:
        choice = resolve_geometry(kernel, stride, padding, dilation, ndim)
        geometry = choice.geometry
        out_dtype = result_dtype(reader.dtype, _output_dtype(dtype))
        explain = explain_sources(geometry, None, choice.sources, reader.location.path)
        transform = _unfold_transform(reader, geometry, out_dtype, opts, cover, pad_value, strict, explain)
        uplan = transform.plan
        meta, make_writer = geometry_meta("unfold", geometry, uplan.size), None
        if cover:
            meta.update(cover_record(uplan.size, geometry))
        sources = {**choice.sources, "layout": "option" if layout else "default"}
        if layout == "torch":
            torch_shape(uplan.output_shape, geometry.ndim)  # an error up front where there is no channel axis
            _torch_layout_alone(layout, opts)
            make_writer = functools.partial(create_torch_writer, ndim=geometry.ndim)
            meta["layout"] = "torch"
        items = _stream("unfold", reader, out_loc, transform, meta, opts, make_writer)
    choice = GeometryChoice(geometry, None, sources)
    return _result("unfold", out_loc, transform, choice, layout or "megengine", items, start)


def _unfold_transform(reader: Reader, geometry: Geometry, out_dtype: np.dtype, opts: RunOptions, cover: bool, pad_value,
                      strict: bool, explain: str) -> Any:
    """The unfold of ``reader``'s images: warned about (or, ``strict``, refused) where its windows leave
    elements out; with ``cover``, of the images padded at their far edges to the covered size. ``explain``
    (:func:`explain_sources`) ends the errors about the geometry."""
    from .pipeline import Transform

    def planned(shape):
        try:
            return plan_unfold(shape, geometry, itemsize=out_dtype.itemsize)
        except SwtError as err:
            raise SwtError(f"{err} ({explain})") from None

    if not cover:
        if not pad_value == 0:
            raise OptionError("--pad-value pads only with --cover: add --cover, or leave --pad-value out")
        uplan = planned(reader.shape)
        loss = edge_loss(uplan.size, geometry)
        if loss is not None:
            if strict:
                raise SwtError(f"--strict: {loss.message()}")
            opts.say(f"warning: {loss.message()}")
        return Transform("unfold", uplan, reader.dtype, out_dtype, opts.device)
    try:
        check_coverable(geometry)
    except SwtError as err:
        raise OptionError(f"--cover: {err}") from None
    fill_value(pad_value, reader.dtype)  # an error before any work where the images' dtype cannot hold it
    nd = geometry.ndim
    if len(reader.shape) < nd:
        planned(reader.shape)  # the error for too few axes
    lead, size = tuple(reader.shape[: len(reader.shape) - nd]), tuple(reader.shape[len(reader.shape) - nd:])
    uplan = planned(lead + covered_size(size, geometry))
    return CoverUnfold(Transform("unfold", uplan, reader.dtype, out_dtype, opts.device), size, pad_value)


def _command(name: str, input: str, output: str) -> str:
    """The provenance of a run from Python (the command line records its own command instead)."""
    return f"swt_cli.{name}({str(input)!r}, {str(output)!r})"


# ---- plan -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """A fold's window grid, the output sizes it fits, its coverage and, for an input file, its memory.

    :meth:`to_dict` is the object ``swt plan --json`` prints.
    """

    geometry: Geometry
    grid: tuple
    output_size: tuple
    valid_output_sizes: list
    min_overlap: int
    max_overlap: int
    uncovered_pixels: int
    uncovered_fraction: float
    total_pixels: int
    warnings: list
    #: With an input file: input, layout, input_shape, input_dtype, output_shape, output_dtype, memory.
    input_facts: dict = field(default_factory=dict)

    @property
    def windows(self) -> int:
        return math.prod(self.grid)

    def to_dict(self) -> dict:
        g = self.geometry
        return {
            "grid": list(self.grid), "output_size": list(self.output_size),
            "valid_output_sizes": [list(r) for r in self.valid_output_sizes],
            "min_overlap": self.min_overlap, "max_overlap": self.max_overlap, "uncovered_pixels": self.uncovered_pixels,
            "uncovered_fraction": self.uncovered_fraction, "total_pixels": self.total_pixels, "windows": self.windows,
            "kernel_size": list(g.kernel), "stride": list(g.stride), "padding": list(g.padding),
            "dilation": list(g.dilation), **self.input_facts, "warnings": list(self.warnings),
        }


def plan(input: PathArg | None = None, *, kernel=None, stride=None, padding=None, dilation=None, ndim: int | None = None,
         output_size=None, reduce: str = "sum", weight=None, layout: str | None = None, dtype=None,
         max_memory: int | str | None = None, batch_size: int | None = None, allow_external: bool = False,
         storage_options: dict | None = None, note: Callable[[str], Any] | None = None) -> Plan:
    """``swt plan``: the plan of a fold of ``output_size`` with ``kernel`` (...), or of folding the file ``input``
    (its shape gives the grid, its record the geometry), with the memory it needs under ``max_memory``.

    Warnings (gaps no window covers) are in ``.warnings`` and also go to ``note``. Nothing is read but
    the input's shape and record, and nothing written.

    Parameters
    ----------
    input : str or os.PathLike, optional
        A windows file; without it, ``output_size`` and ``kernel`` are required.
    kernel, stride, padding, dilation, ndim, output_size, layout
        As :func:`fold_file` takes them.
    reduce, weight, dtype
        As :func:`fold_file` takes them: they change the memory and the output dtype.
    max_memory, batch_size : optional
        The budget the fold would run with (only used with ``input``; checked where given).
    allow_external : bool, default False
        As :class:`RunOptions`.
    storage_options : dict, optional
        fsspec options for an ``input`` URL, as :class:`RunOptions` takes them.
    note : callable, optional
        Told each warning.

    Returns
    -------
    Plan
        ``grid``, ``output_size``, ``valid_output_sizes`` (per axis ``(lo, hi)``), ``min_overlap``,
        ``max_overlap``, ``uncovered_pixels`` and ``uncovered_fraction``, ``warnings``; with ``input``, its
        shapes, dtypes and memory in ``input_facts``. ``to_dict()`` is what ``swt plan --json`` prints.

    Raises
    ------
    SwtError
        For a geometry no output fits, an input that cannot be read. ``OptionError`` (a ``SwtError``)
        where neither ``input`` nor ``output_size`` and ``kernel`` are given.

    Examples
    --------
    >>> p = plan(output_size=64, kernel=3, stride=2)
    >>> p.grid, p.valid_output_sizes, p.max_overlap, p.uncovered_pixels
    ((31, 31), [(63, 64), (63, 64)], 4, 127)
    """
    facts: dict = {}
    input = _spec(input)
    if input is not None or max_memory is not None or batch_size is not None:
        # Without a file there is no memory to plan and no default budget to read (from the cgroup, through the
        # pipeline and NumPy): a budget given is still checked.
        opts = RunOptions.resolve(max_memory=max_memory, batch_size=batch_size, allow_external=allow_external)
    if input is None:
        if kernel is None or output_size is None:
            raise OptionError("swt plan needs --output-size and --kernel, or a windows file (INPUT)")
        choice = resolve_geometry(kernel, stride, padding, dilation, ndim, output_size)
        geometry = choice.geometry
        size = as_tuple(choice.output_size, geometry.ndim, "output_size", 1)
        grid = tuple(geometry.check_unfold_axis(i, o) for i, o in enumerate(size))
    else:
        from .blocks import block_items, plan_blocks

        with open_input(input, allow_external, storage_options) as reader:
            setup = fold_setup(reader, kernel, stride, padding, dilation, ndim, output_size, layout=layout,
                               dtype=_output_dtype(dtype), reduce=reduce, weight=weight)
            transform, reader = setup.transform, setup.reader
            p = transform.plan
            computed = setup.compute_plan  # the covered size, for the windows of swt unfold --cover
            geometry, size, grid = computed.geometry, computed.output_size, computed.grid
            per_item = transform.bytes_per_item()
            blocks = plan_blocks(p.batch, p.output_shape, transform.out_dtype.itemsize, per_item, opts.max_memory,
                                 batch_size)
            items = block_items(blocks.indexes[0], p.batch) if blocks.indexes else 0
            fixed = transform.blend.fixed_bytes(computed) if transform.blend is not None else 0
            if p.output_size != computed.output_size:
                facts["cropped_to"] = list(p.output_size)
            facts.update(
                input=str(input), layout=setup.layout, input_shape=list(reader.shape), input_dtype=str(reader.dtype),
                output_shape=list(p.output_shape), output_dtype=str(transform.out_dtype),
                memory={"bytes_per_item": per_item, "block_items": items, "blocks": len(blocks.indexes),
                        "peak_bytes": items * per_item + fixed, "max_memory": opts.max_memory,
                        "over_budget": blocks.over_budget,
                        "input_bytes": math.prod(reader.shape) * reader.dtype.itemsize,
                        "output_bytes": math.prod(p.output_shape) * transform.out_dtype.itemsize},
            )
    cov = fold_coverage(size, geometry, grid)
    warnings = cov.warnings()
    for text in warnings:
        if note is not None:
            note(f"warning: {text}")
    return Plan(geometry, tuple(grid), tuple(size), [tuple(r) for r in geometry.output_ranges(grid)], cov.min_overlap,
                cov.max_overlap, cov.uncovered, cov.uncovered_fraction, cov.total, list(warnings), facts)


# ---- info -------------------------------------------------------------------------------------------

def strict_json(value: Any) -> Any:
    """``value`` made strict JSON (``json.dumps(..., allow_nan=False)`` works): NaN and infinities become the
    strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, NumPy scalars and arrays plain numbers and lists,
    bytes text, and anything else its ``str``."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _job_status(reader) -> dict | None:
    """Completeness of a shared output of a sharded or --scheduler run (None for any other array)."""
    if not hasattr(reader, "array_folder"):
        return None
    from .blocks import fmt_items
    from .records import status

    job = status(reader.array_folder(), reader.attrs, getattr(reader, "fs", None))
    if job is not None:
        job["missing_text"] = fmt_items(job["missing"], job["items"], job["lead_shape"]) if job["missing"] else ""
    return job


def list_arrays(input: str | Location, allow_external: bool = False, storage_options: dict | None = None) -> list[dict] | None:
    """Every array of an HDF5 file or Zarr store (None for .npy and streams): ``name``, ``path``, ``shape``,
    ``dtype``, ``chunks``, ``compression`` (named alike in every format: ``zstd``, ``gzip``, ``blosc``,
    ``lzf``, ``none``) and ``geometry`` (the ``swt_geometry`` record, or None). Metadata only.
    ``storage_options``: fsspec's, for a URL."""
    from . import formats

    found = formats.list_arrays(formats.Location.parse(input, storage_options) if isinstance(input, str) else input,
                                allow_external=allow_external)
    if found is None:
        return None
    arrays = []
    for facts in sorted(found, key=lambda a: a["name"]):  # Zarr lists its members in no fixed order
        attrs = facts.pop("attrs")
        facts["geometry"] = _parse_geometry(attrs.get("swt_geometry")) or None
        arrays.append(facts)
    return arrays


def info(input: PathArg, *, allow_external: bool = False, storage_options: dict | None = None) -> dict:
    """``swt info --json``: an array file's path, format, shape, dtype, chunks, compression, arrays, attributes,
    recorded swt ``geometry`` and, for a shared output, its ``job`` status, as strict JSON (see :func:`strict_json`).
    An incomplete output of a sharded run can still be described.

    An HDF5 file or Zarr store of several arrays, not naming one, gives ``{"path", "format", "arrays"}``
    instead: every array's ``name``, ``path``, ``shape``, ``dtype``, ``chunks``, ``compression`` and
    recorded swt ``geometry`` (see :func:`list_arrays`). ``input`` is a path (str or ``os.PathLike``) as on the
    command line; ``storage_options``: fsspec's, for a URL."""
    from .formats import Location

    loc = Location.parse(_spec(input), storage_options)
    if loc.name is None:
        arrays = list_arrays(loc, allow_external)
        if arrays is not None and len(arrays) > 1:
            return strict_json({"path": loc.path, "format": loc.fmt, "arrays": arrays})
    if loc.fmt == "zarr":
        from .formats.zarr_store import ZarrReader

        opened = ZarrReader(loc, allow_incomplete=True, allow_external=allow_external)
    else:
        opened = open_input(loc, allow_external)
    with opened as reader:
        facts = reader.describe()
        facts["geometry"] = recorded_geometry(reader) or None
        facts["job"] = _job_status(reader)
    simple = (str, int, float, bool, list, type(None))
    facts["attrs"] = {k: (v if isinstance(v, simple) else str(v)) for k, v in facts["attrs"].items()}
    return strict_json(facts)
