"""Running swt the two ways a user does: in-process through Click's CliRunner, and as a real process."""

import os
import subprocess
import sys

from click.testing import CliRunner

from swt_cli.cli import cli

#: The installed console script beside this interpreter (the README installs it into the venv).
SWT = os.path.join(os.path.dirname(sys.executable), "swt")


def invoke(*args, input=None):
    """Run ``swt ARGS`` through CliRunner; returns the Result (``exit_code``, ``stdout``, ``stderr``)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def run_in_process(*args, input=None, cwd=None):
    """``swt ARGS`` through CliRunner in ``cwd``, answered as :func:`run_swt` answers (``returncode``, bytes
    ``stdout`` and ``stderr``): for tests of what swt does with files and names rather than of the process
    (signals, file descriptors, environment, the console script), at a fraction of a process's start-up."""
    before = os.getcwd()
    os.chdir(cwd or before)
    try:
        result = invoke(*args, input=input)
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["swt", *map(str, args)], result.exit_code, result.stdout_bytes,
                                       result.stderr_bytes)


def run_swt(*args, input=None, cwd=None, timeout=120, env=None):
    """Run the installed ``swt`` in a subprocess; bytes in, bytes out."""
    return subprocess.run([SWT, *map(str, args)], input=input, capture_output=True, cwd=cwd, timeout=timeout, env=env)


def write_array(path, fmt: str, array, name: str = "data", chunks=None) -> None:
    """Write ``array`` at ``path`` as ``fmt`` (``npy``, ``h5`` with the dataset ``name``, or ``zarr``): a file
    that a test puts where swt will write, before or during a run."""
    import numpy as np

    if fmt == "npy":
        np.save(path, array)
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as f:
            f[name] = array
    else:
        import zarr

        zarr.create_array(str(path), shape=array.shape, dtype=array.dtype, chunks=chunks or array.shape)[...] = array
