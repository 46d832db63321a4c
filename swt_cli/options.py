"""The settings of one file-to-file run, resolved once: :class:`RunOptions`.

Below :mod:`swt_cli.jobs` (which runs a job with them) and :mod:`swt_cli.distributed` (which takes them
for ``--scheduler``, ``--shard`` and ``--resume``), so that neither imports the other's caller.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .choices import DEFAULT_MAX_MEMORY, parse_size
from .errors import OptionError, redact_urls

if TYPE_CHECKING:
    from .pipeline import Progress

__all__ = ["OptionError", "RunOptions"]


def _stderr_note(text: str) -> None:
    print(f"swt: {redact_urls(text)}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunOptions:
    """How a fold or unfold of files runs (not what it computes): memory, threads, device, output, cluster.

    Build it with :meth:`resolve`, which takes the memory budget from this job's cgroup when none is
    given and checks every value; nothing changes it afterwards. Pass it as ``options=`` to
    :func:`~swt_cli.jobs.fold_file` or :func:`~swt_cli.jobs.unfold_file` to run several jobs alike.

    Parameters
    ----------
    max_memory : int
        Bytes for blocks in flight (:meth:`resolve` also takes ``"2GiB"`` or None for the default).
    batch_size : int, optional
        Items of the first axis per block (overrides ``max_memory``).
    threads : int, optional
        CPU threads for the kernel [default: all cores].
    device : {"cpu", "gpu"}, default "cpu"
        Where to compute; ``"gpu"`` needs CuPy.
    compression : str, optional
        The output's compression: HDF5 ``none``, ``gzip``, ``lzf``; Zarr ``zstd``, ``blosc``, ``gzip``,
        ``none`` [default: none for HDF5, zstd for Zarr].
    overwrite : bool, default False
        Replace an existing output (only once the new one is complete).
    quiet : bool, default True
        No notes on stderr (where ``note`` is None).
    progress : bool or callable, optional
        True for swt's display on stderr, or a callable ``(done, total)`` told after each block.
    scheduler, shard, resume
        ``--scheduler`` (a Dask address, a scheduler file or ``local:N``), ``--shard`` (``(i, n)``; :meth:`resolve`
        also takes ``"I/N"`` or ``"auto"``) and ``--resume`` of the command line.
    allow_external : bool, default False
        Let the readers follow HDF5 external storage, virtual datasets and external links, and Zarr
        symlinks leaving the store.
    storage_options : dict, optional
        fsspec options for inputs and outputs named by URL (``s3://...``): endpoint, credentials, anything the
        driver takes, on top of the provider's own configuration and ``FSSPEC_<PROTOCOL>_<OPTION>`` variables.
    debug : bool, default False
        Let Python warnings and Dask's worker logs through as they are (``--debug``), instead of one note
        per warning (none with ``quiet``).
    note, on_output : callable, optional
        Told the run's notes, and what an interrupt would leave of the output.
    command : str
        Recorded in the output's ``swt_command`` attribute.

    Raises
    ------
    OptionError
        From :meth:`resolve`, for a budget below 1 MiB, an unknown device, or a batch size or thread
        count that is not a positive integer (a ``SwtError``; a bad size string raises ``SwtError``).

    Examples
    --------
    >>> opts = RunOptions.resolve(max_memory="1GiB", threads=2)
    >>> opts.max_memory, opts.threads, opts.device
    (1073741824, 2, 'cpu')
    """

    #: Bytes for blocks in flight (resolved: never None).
    max_memory: int
    batch_size: int | None = None
    threads: int | None = None
    device: str = "cpu"
    compression: str | None = None
    overwrite: bool = False
    quiet: bool = True
    progress: bool | Callable[[int, int], Any] | None = None
    scheduler: str | None = None
    shard: tuple[int, int] | None = None
    resume: bool = False
    #: Let the readers follow HDF5 external storage, virtual datasets and external links, and Zarr symlinks
    #: leaving the store (see RELIABILITY.md).
    allow_external: bool = False
    #: Where notes go (``"no --output-size given: ..."``); None: stderr unless ``quiet``.
    note: Callable[[str], Any] | None = None
    #: Told, as the run goes, what an interrupt would leave of the output (the command line says it on Ctrl-C).
    on_output: Callable[[str], Any] | None = None
    #: Recorded in the output's ``swt_command`` attribute.
    command: str = "swt_cli"
    #: Let Python warnings (NumPy's, zarr's, Dask's) and Dask's worker logs through as they come; else
    #: warnings become one note each (none with ``quiet``) and worker logs are silenced (``swt --debug``).
    debug: bool = False
    #: fsspec options for URLs (credentials may be among them: never shown in repr).
    storage_options: dict | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, *, max_memory: int | str | None = None, shard: str | tuple[int, int] | None = None,
                **fields: Any) -> RunOptions:
        """The options of a run: ``max_memory`` None takes 512MiB, or a third of this job's cgroup memory
        limit where that is less; a string is a size such as ``"2GiB"``; ``shard`` may be ``"I/N"`` or ``"auto"``."""
        if max_memory is None:
            from .pipeline import default_budget  # the pipeline brings in NumPy: only where a budget is read

            budget = default_budget(parse_size(DEFAULT_MAX_MEMORY))
        elif isinstance(max_memory, str):
            budget = parse_size(max_memory)
        else:
            budget = int(max_memory)
        if budget < 1 << 20:
            raise OptionError(f"max_memory {budget:,} bytes is below the smallest budget, 1MiB")
        if isinstance(shard, str):
            from .shards import parse_shard

            shard = parse_shard(shard)
        device = fields.get("device", "cpu")
        if device not in ("cpu", "gpu"):
            raise OptionError(f"device '{device}' is not cpu or gpu")
        for name in ("batch_size", "threads"):
            value = fields.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"{name} must be a positive integer, not {value!r}")
        return cls(max_memory=budget, shard=(int(shard[0]), int(shard[1])) if shard is not None else None, **fields)

    @property
    def distributed(self) -> bool:
        """Whether the run goes through :mod:`swt_cli.distributed` (a cluster, a shard or a resume)."""
        return bool(self.scheduler or self.shard or self.resume)

    def say(self, text: str) -> None:
        """A note about the run: to ``note``, else to stderr unless ``quiet``."""
        if self.note is not None:
            self.note(text)
        elif not self.quiet:
            _stderr_note(text)

    def output_stays(self, text: str) -> None:
        if self.on_output is not None:
            self.on_output(text)

    def make_progress(self, label: str, total: int) -> Progress:
        """The progress display for ``total`` items, as ``progress`` asks."""
        from .pipeline import CallbackProgress, Progress

        if callable(self.progress):
            return CallbackProgress(label, total, self.progress)
        return Progress(label, total, "items", quiet=not self.progress)
