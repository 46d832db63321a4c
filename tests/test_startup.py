"""swt starts without the heavy libraries: NumPy, the formats' libraries, rich, numba and Dask come in only
with a command that needs them (issue 13: ``swt --help`` and ``--version`` in at most 0.1 s, a plan without a
file in 0.2 s; benchmarks/bench_startup.py times them). These tests check what is imported, not timings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import swt_cli
from swt_cli.coverage import SEGMENTS_KERNEL_LIMIT, axis_coverage

HEAVY = ("numpy", "zarr", "h5py", "rich", "numba", "dask", "distributed", "PIL", "cupy")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_command_line_imports_no_heavy_library():
    assert heavy_modules_after("import swt_cli.cli") == []


def test_the_entry_point_imports_no_heavy_library():
    """Nor Click: swt_cli._entry answers --help and --version with the standard library (tests/test_entry.py)."""
    assert heavy_modules_after("import swt_cli._entry\nimport sys\nassert 'click' not in sys.modules") == []


def test_importing_the_package_imports_no_heavy_library():
    assert heavy_modules_after("import swt_cli; swt_cli.__version__; swt_cli.Geometry; swt_cli.SwtError") == []


@pytest.mark.parametrize("args", [
    ["--version"],
    ["--help"],
    ["plan", "--help"],
    ["fold", "--help"],
    ["plan", "--output-size", "64", "--kernel", "3", "--stride", "2"],
    ["plan", "-o", "100,80", "-k", "5", "-s", "7", "--json"],
    ["plan", "-o", "10,20,30", "-k", "3,2,1", "-p", "1,0,2", "-d", "2,1,1", "--max-memory", "1GiB"],
])
def test_quick_commands_run_without_numpy(args):
    code = ("import contextlib, io\nfrom swt_cli.cli import cli\nwith contextlib.redirect_stdout(io.StringIO()), "
            f"contextlib.redirect_stderr(io.StringIO()):\n    code = cli.main({args!r}, standalone_mode=False)\n"
            "assert code in (0, None), code")
    assert heavy_modules_after(code) == []


def test_a_fold_still_brings_numpy_in():
    """The check above can fail: a command that computes does import NumPy."""
    code = ("import numpy\nfrom swt_cli import sliding_window_transpose\n"
            "sliding_window_transpose(numpy.ones((1, 1, 3, 3, 2, 2)), 4, 2)")
    assert "numpy" in heavy_modules_after(code)


def test_every_public_name_resolves_to_its_modules_object():
    import importlib

    for name in swt_cli.__all__:
        value = getattr(swt_cli, name)
        if name == "__version__":
            continue
        assert value is getattr(importlib.import_module(f"swt_cli.{swt_cli._SOURCES[name]}"), name)
    assert set(swt_cli.__all__) <= set(dir(swt_cli))
    with pytest.raises(AttributeError, match="module 'swt_cli' has no attribute 'fold'"):
        swt_cli.fold  # noqa: B018


def test_jobs_still_exports_the_protocols():
    from swt_cli import jobs, protocols

    assert (jobs.Reader, jobs.Writer, jobs.BlockTransform) == (protocols.Reader, protocols.Writer, protocols.BlockTransform)
    with pytest.raises(AttributeError):
        jobs.no_such_name  # noqa: B018


@pytest.mark.parametrize("kernel", [SEGMENTS_KERNEL_LIMIT - 1, SEGMENTS_KERNEL_LIMIT, SEGMENTS_KERNEL_LIMIT + 1, 97])
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (3, 5, 1), (7, 2, 2), (40, 0, 1), (200, 9, 3)])
def test_the_plans_pure_python_coverage_equals_the_array_count(kernel, stride, padding, dilation):
    """``swt plan`` counts coverage segment by segment (no NumPy) for kernels up to SEGMENTS_KERNEL_LIMIT: the
    same numbers as counting with an array, on both sides of that limit."""
    for size in (dilation * (kernel - 1) + 1, 1000, 4321):
        auto = axis_coverage(size, kernel, stride, padding, dilation)
        assert auto == axis_coverage(size, kernel, stride, padding, dilation, method="array")
        assert auto == axis_coverage(size, kernel, stride, padding, dilation, method="segments")
