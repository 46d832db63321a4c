"""The job layer: fold_file, unfold_file, plan and info from Python give what the command line gives."""

import dataclasses
import json

import numpy as np
import pytest
from clitools import invoke

import swt_cli
from swt_cli import RunOptions, SwtError, fold_file, plan, unfold_file
from swt_cli.formats import open_reader

SUFFIXES = [".npy", ".h5", ".zarr"]


def _load(path):
    """The array and its attributes, as stored (bits included)."""
    with open_reader(str(path)) as reader:
        return np.asarray(reader.read(())).copy(), dict(reader.attrs)


def _same_file(a, b):
    """Equal to the bit, with equal attributes apart from the command that wrote them."""
    x, ax = _load(a)
    y, ay = _load(b)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()
    ax.pop("swt_command", None)
    ay.pop("swt_command", None)
    assert ax == ay


@pytest.fixture
def image(tmp_path):
    """Fresh random images with large values that cancel, so that a change of summation order shows."""
    rng = np.random.default_rng()
    x = rng.standard_normal((3, 2, 23, 19)).astype(np.float32)
    x[..., ::3, ::2] *= 1e7
    np.save(tmp_path / "img.npy", x)
    return tmp_path / "img.npy"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_unfold_then_fold_from_python_equals_the_cli_byte_for_byte(tmp_path, image, suffix):
    cli_w, py_w = tmp_path / f"cli_w{suffix}", tmp_path / f"py_w{suffix}"
    assert invoke("unfold", image, cli_w, "-k", "4,3", "-s", "2", "-p", "1", "-q").exit_code == 0
    cut = unfold_file(str(image), str(py_w), kernel=(4, 3), stride=2, padding=1)
    _same_file(cli_w, py_w)
    assert cut.shape == _load(py_w)[0].shape

    cli_f, py_f = tmp_path / f"cli_f{suffix}", tmp_path / f"py_f{suffix}"
    geometry = ("-k", "4,3", "-s", "2", "-p", "1", "-o", "23,19")  # .npy records none
    assert invoke("fold", cli_w, cli_f, *geometry, "--reduce", "mean", "--weight", "hann", "-q").exit_code == 0
    back = fold_file(str(py_w), str(py_f), kernel=(4, 3), stride=2, padding=1, output_size=(23, 19), reduce="mean",
                     weight="hann")
    _same_file(cli_f, py_f)
    x = np.load(image)
    assert back.shape == x.shape and back.dtype == x.dtype

    cli_s, py_s = tmp_path / f"cli_s{suffix}", tmp_path / f"py_s{suffix}"
    assert invoke("fold", cli_w, cli_s, "-k", "4,3", "-s", "2", "-p", "1", "--dtype", "float64", "--batch-size", "1",
                  "-q").exit_code == 0
    fold_file(str(py_w), str(py_s), kernel=(4, 3), stride=2, padding=1, dtype="float64", batch_size=1)
    _same_file(cli_s, py_s)


def test_the_result_says_what_was_done_and_where_the_geometry_came_from(tmp_path, image):
    cut = unfold_file(str(image), str(tmp_path / "w.zarr"), kernel=4, stride=(2, 3))
    assert dataclasses.is_dataclass(cut) and cut.op == "unfold" and cut.output == str(tmp_path / "w.zarr")
    assert cut.shape == (3, 2, 10, 6, 4, 4) and cut.dtype == np.float32
    assert cut.geometry == {"kernel_size": [4, 4], "stride": [2, 3], "padding": [0, 0], "dilation": [1, 1],
                            "image_size": [23, 19]}
    assert cut.sources == {"kernel_size": "option", "stride": "option", "padding": "default", "dilation": "default",
                           "ndim": "default", "layout": "default"}
    assert cut.bytes_read == 3 * 2 * 23 * 19 * 4 and cut.bytes_written == 3 * 2 * 10 * 6 * 16 * 4
    assert cut.seconds > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cut.seconds = 0

    back = fold_file(cut.output, str(tmp_path / "back.h5"), stride=(2, 3), dtype="float64")
    assert back.sources["kernel_size"] == "record" and back.sources["stride"] == "option"
    assert back.sources["padding"] == "record" and back.sources["output_size"] == "record"
    assert back.geometry["output_size"] == [23, 19] and back.dtype == np.float64
    assert back.bytes_read == cut.bytes_written and back.bytes_written == 3 * 2 * 23 * 19 * 8


def test_progress_callable_and_notes(tmp_path, image):
    calls, notes = [], []
    unfold_file(str(image), str(tmp_path / "w.npy"), kernel=3, batch_size=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 6), (4, 6), (6, 6)]  # items of the leading axes (3, 2), a batch row a block
    fold_file(str(tmp_path / "w.npy"), str(tmp_path / "f.npy"), kernel=3, note=notes.append)
    assert len(notes) == 1 and notes[0].startswith("no --output-size given: using 23x19")


def test_quiet_library_prints_nothing(tmp_path, image, capfd):
    unfold_file(str(image), str(tmp_path / "w.npy"), kernel=3)
    fold_file(str(tmp_path / "w.npy"), str(tmp_path / "f.npy"), kernel=3)  # a note, silenced
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_errors_raise_swt_error(tmp_path, image):
    np.save(tmp_path / "plain.npy", np.ones((2, 4, 4, 2, 2), np.float32))
    with pytest.raises(SwtError, match="--kernel is required"):
        fold_file(str(tmp_path / "plain.npy"), str(tmp_path / "o.npy"))
    with pytest.raises(SwtError, match="exists"):
        unfold_file(str(image), str(image), kernel=3)
    with pytest.raises(SwtError):
        unfold_file(str(tmp_path / "missing.npy"), str(tmp_path / "o.npy"), kernel=3)
    with pytest.raises(SwtError, match="zstd"):
        unfold_file(str(image), str(tmp_path / "o.h5"), kernel=3, compression="zstd")
    with pytest.raises(SwtError, match="shard"):
        unfold_file(str(image), str(tmp_path / "o.zarr"), kernel=3, shard="3/2")
    with pytest.raises(SwtError, match="layout 'tf' is not one of megengine, torch"):
        unfold_file(str(image), str(tmp_path / "o.npy"), kernel=3, layout="tf")
    with pytest.raises(SwtError, match="1MiB"):
        RunOptions.resolve(max_memory="10KiB")


def test_run_options_are_resolved_once_and_frozen():
    opts = RunOptions.resolve(max_memory="64MiB", shard="1/4")
    assert opts.max_memory == 64 << 20 and opts.shard == (1, 4) and opts.distributed
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.quiet = False
    default = RunOptions.resolve()
    assert 1 << 20 <= default.max_memory <= 512 << 20 and not default.distributed


@pytest.mark.parametrize("args, kwargs", [
    (("-o", "100,80", "-k", "5", "-s", "7"), dict(output_size=(100, 80), kernel=5, stride=7)),
    (("-o", "64", "-k", "3", "-s", "2", "-p", "1"), dict(output_size=64, kernel=3, stride=2, padding=1)),
])
def test_plan_equals_swt_plan_json(args, kwargs):
    cli = invoke("plan", *args, "--json", "-q")
    assert cli.exit_code == 0
    assert cli.stdout == json.dumps(plan(**kwargs).to_dict(), indent=2) + "\n"


def test_plan_of_a_file_equals_swt_plan_json(tmp_path, image):
    unfold_file(str(image), str(tmp_path / "w.h5"), kernel=4, stride=3)
    cli = invoke("plan", "--input", tmp_path / "w.h5", "--reduce", "mean", "--weight", "hann", "--max-memory", "2MiB",
                 "--json", "-q")
    assert cli.exit_code == 0
    result = plan(str(tmp_path / "w.h5"), reduce="mean", weight="hann", max_memory="2MiB")
    assert cli.stdout == json.dumps(result.to_dict(), indent=2) + "\n"
    assert result.to_dict()["memory"]["max_memory"] == 2 << 20 and result.windows == 7 * 6


def test_info_is_strict_json(tmp_path):
    import h5py

    with h5py.File(tmp_path / "nan.h5", "w") as f:
        d = f.create_dataset("data", data=np.zeros((2, 3), np.float32))
        d.attrs["bad"] = np.nan
        d.attrs["big"] = np.array([np.inf, -np.inf, 1.5])
    facts = swt_cli.info(str(tmp_path / "nan.h5"))
    text = json.dumps(facts, allow_nan=False)
    assert facts["attrs"]["bad"] == "NaN"
    cli = invoke("info", tmp_path / "nan.h5", "--json")
    assert cli.exit_code == 0
    parsed = json.loads(cli.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert parsed == json.loads(text)


def test_allow_external_is_an_option_of_every_reading_command(tmp_path, image):
    for command in ("fold", "unfold", "plan", "info", "preview"):
        assert "--allow-external" in invoke(command, "-h").stdout
    assert invoke("unfold", image, tmp_path / "w.h5", "-k", "3", "--allow-external", "-q").exit_code == 0
    assert invoke("fold", tmp_path / "w.h5", tmp_path / "f.npy", "--allow-external", "-q").exit_code == 0
    assert invoke("info", tmp_path / "w.h5", "--allow-external").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy").shape, np.load(image).shape)


def test_option_errors_exit_2_with_the_commands_hint(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 4, 4, 2, 2), np.float32))
    result = invoke("fold", tmp_path / "w.npy", tmp_path / "o.npy", "--layout", "torch", "-k", "2")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --layout torch needs --output-size") and "(see 'swt fold -h')" in result.stderr
    with pytest.raises(swt_cli.jobs.OptionError):
        fold_file(str(tmp_path / "w.npy"), str(tmp_path / "o.npy"), kernel=2, layout="torch")


def test_shards_from_python_make_the_clis_output(tmp_path, image):
    unfold_file(str(image), str(tmp_path / "w.zarr"), kernel=3, stride=2)
    notes = []
    first = fold_file(str(tmp_path / "w.zarr"), str(tmp_path / "py.zarr"), shard="0/2", batch_size=1, note=notes.append)
    assert first.bytes_written < 3 * 2 * 23 * 19 * 4 and any("not complete yet" in n for n in notes)
    with pytest.raises(SwtError, match="incomplete"):
        open_reader(str(tmp_path / "py.zarr"))
    fold_file(str(tmp_path / "w.zarr"), str(tmp_path / "py.zarr"), shard=(1, 2), batch_size=1)
    assert invoke("fold", tmp_path / "w.zarr", tmp_path / "cli.npy", "-q").exit_code == 0
    got, attrs = _load(tmp_path / "py.zarr")
    assert got.tobytes() == np.load(tmp_path / "cli.npy").tobytes() and "swt_incomplete" not in attrs
