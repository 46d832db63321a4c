"""The MegEngine cases through the command line: every input/output format pair, and pipes."""

import io
import itertools

import numpy as np
import pytest
from clitools import invoke, run_swt
from golden import golden_cases, tolerance

from swt_cli.formats import create_writer, open_reader

CASES = golden_cases()
FORMATS = [".npy", ".h5", ".zarr"]


def _flag(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _geometry_flags(params):
    flags = ["-k", _flag(params["kernel_size"]), "-s", _flag(params["stride"]),
             "-p", _flag(params["padding"]), "-d", _flag(params["dilation"])]
    if params["op"] == "fold":
        flags += ["-o", _flag(params["output_size"])]
    return flags


def _save(path, array):
    writer = create_writer(path, array.shape, array.dtype)
    writer.write((slice(0, len(array)),), array)
    writer.commit()


def _load(path):
    with open_reader(path) as reader:
        return reader.read((slice(0, reader.shape[0]),))


def _check(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = tolerance(want.dtype)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.default_cases(".npy-.h5", ".h5-.zarr", ".zarr-.npy")  # each reader and writer once; all pairs slow
@pytest.mark.parametrize("src,dst", list(itertools.product(FORMATS, FORMATS)))
def test_every_case_through_every_format_pair(tmp_path, src, dst):
    for name, params, x, y in CASES:
        inp, out = str(tmp_path / f"{name}-in{src}"), str(tmp_path / f"{name}-out{dst}")
        _save(inp, x)
        result = invoke(params["op"], inp, out, *_geometry_flags(params), "--quiet")
        assert result.exit_code == 0, (name, result.stderr)
        assert result.stdout == "" and result.stderr == ""
        _check(_load(out), y)


def test_every_case_through_stdin_and_stdout():
    for name, params, x, y in CASES:
        buf = io.BytesIO()
        np.save(buf, x)
        result = invoke(params["op"], "-", "-", *_geometry_flags(params), "--quiet", input=buf.getvalue())
        assert result.exit_code == 0, (name, result.stderr)
        _check(np.load(io.BytesIO(result.stdout_bytes)), y)


def test_real_shell_pipeline_of_unfold_into_fold(tmp_path):
    name, params, x, y = next(c for c in CASES if c[1]["op"] == "unfold" and c[1]["dtype"] == "float32")
    np.save(tmp_path / "img.npy", x)
    flags = " ".join(_geometry_flags(params))
    import shlex
    import subprocess

    from clitools import SWT

    out = tmp_path / "back.npy"
    size = ",".join(map(str, x.shape[-2:]))
    cmd = (f"{shlex.quote(SWT)} unfold img.npy - {flags} | "
           f"{shlex.quote(SWT)} fold - {out.name} {flags} -o {size}")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from swt_cli import sliding_window_transpose

    want = sliding_window_transpose(y, tuple(x.shape[-2:]), params["kernel_size"], params["padding"],
                                    params["stride"], params["dilation"])
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-6)
    assert b"swt unfold:" in done.stderr and b"swt fold:" in done.stderr  # progress went to stderr


def test_subprocess_fold_of_a_golden_case_from_stdin(tmp_path):
    name, params, x, y = next(c for c in CASES if c[1]["op"] == "fold")
    buf = io.BytesIO()
    np.save(buf, x)
    done = run_swt("fold", "-", "-", *_geometry_flags(params), input=buf.getvalue())
    assert done.returncode == 0, done.stderr
    _check(np.load(io.BytesIO(done.stdout)), y)
