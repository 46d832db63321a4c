"""swt with every block read slowed down, so that a test can signal or kill a run mid-job.

- As a launcher: ``python slow_swt.py SECONDS fold IN OUT ...`` runs ``swt fold IN OUT ...`` (as the
  console script does) with each block read from a file taking SECONDS more.
- As a Dask worker preload: ``dask worker ADDRESS --preload slow_swt`` with ``SLOW_SWT_SECONDS`` in the
  worker's environment (the tests set it; the package reads no such variable).
"""

import functools
import os
import sys
import time

from swt_cli.formats.hdf5 import H5Reader
from swt_cli.formats.npy import NpyReader, RemoteNpyReader
from swt_cli.formats.zarr_store import ZarrReader


def slow_down(seconds: float) -> None:
    """Sleep ``seconds`` before each block is read from a .npy, HDF5 or Zarr file (local or behind a URL)."""
    for cls in (NpyReader, RemoteNpyReader, H5Reader, ZarrReader):
        original = cls.read

        @functools.wraps(original)
        def read(self, *args, _original=original, **kwargs):
            time.sleep(seconds)
            return _original(self, *args, **kwargs)

        cls.read = read


def dask_setup(worker=None) -> None:
    """Called by ``dask worker --preload slow_swt`` in the worker's process."""
    slow_down(float(os.environ.get("SLOW_SWT_SECONDS", "0.05")))


if __name__ == "__main__":
    slow_down(float(sys.argv[1]))
    sys.argv = ["swt", *sys.argv[2:]]
    from swt_cli.cli import main

    main()
