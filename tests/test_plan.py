"""swt plan: coverage numbers against brute-force counting, valid sizes, memory, and the command's output."""

import json
import math

import numpy as np
import pytest
from clitools import invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fold_loops
from test_kernels import geometries

from swt_cli.blend import Blend
from swt_cli.blocks import block_items, plan_blocks
from swt_cli.coverage import axis_coverage, coverage_counts, coverage_picture, fold_coverage
from swt_cli.geometry import Geometry, grid_size, plan_fold
from swt_cli.pipeline import Transform

KEYS = {"grid", "output_size", "valid_output_sizes", "min_overlap", "max_overlap", "uncovered_pixels", "uncovered_fraction"}


def _brute(g):
    """Windows covering each output element, by folding ones one element at a time."""
    return fold_loops(np.ones(g["grid"] + g["kernel"]), g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])


def _geometry(g):
    return Geometry.from_args(g["kernel"], g["padding"], g["stride"], g["dilation"])


@settings(max_examples=100, deadline=None)
@given(geometries(max_grid=6))
def test_coverage_equals_brute_force_counting(g):
    counts = _brute(g)
    cov = fold_coverage(g["output"], _geometry(g), g["grid"])
    assert cov.min_overlap == counts.min()
    assert cov.max_overlap == counts.max()
    assert cov.uncovered == np.count_nonzero(counts == 0)
    assert cov.uncovered_fraction == pytest.approx(np.mean(counts == 0))
    np.testing.assert_array_equal(coverage_counts(g["output"], _geometry(g), g["grid"]), counts)
    picture = coverage_picture(g["output"], _geometry(g), g["grid"])
    nd = len(g["kernel"])
    want = counts[None, :] if nd == 1 else counts[g["output"][0] // 2] if nd == 3 else counts
    np.testing.assert_array_equal(picture, want)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7), st.integers(1, 9), st.integers(0, 6), st.integers(1, 4), st.integers(1, 80))
def test_segment_counting_equals_array_counting(k, s, p, d, size):
    """Huge axes are counted segment by segment, without an array: the same numbers as the array way."""
    if grid_size(size, k, s, p, d) < 1:
        return
    assert axis_coverage(size, k, s, p, d, method="segments") == axis_coverage(size, k, s, p, d, method="array")


def test_huge_axes_are_exact_and_fast():
    # kernel 3, stride 2: interior elements alternate between 1 and 2 windows; the last one is uncovered.
    axis = axis_coverage(10**15, 3, 2, 0, 1)
    assert (axis.least, axis.most, axis.covered) == (0, 2, 10**15 - 1)
    cov = fold_coverage((10**12, 10**12), Geometry.from_args(5, stride=7))
    g = (10**12 - 5) // 7 + 1
    assert cov.uncovered == 10**24 - (5 * g) ** 2 and cov.max_overlap == 1


@pytest.mark.parametrize("args, grid, sizes", [
    (("-o", "64", "-k", "3", "-s", "2"), [31, 31], [[63, 64], [63, 64]]),
    (("-o", "10,20,30", "-k", "3,2,1", "-p", "1,0,2", "-d", "2,1,1"), [8, 19, 34], [[10, 10], [20, 20], [30, 30]]),
    (("-o", "50", "-k", "8", "-s", "5", "--ndim", "1"), [9], [[48, 52]]),
])
def test_plan_json_against_brute_force(args, grid, sizes):
    result = invoke("plan", *args, "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert KEYS <= set(facts)
    assert facts["grid"] == grid and facts["valid_output_sizes"] == sizes
    g = dict(kernel=tuple(facts["kernel_size"]), stride=tuple(facts["stride"]), padding=tuple(facts["padding"]),
             dilation=tuple(facts["dilation"]), grid=tuple(grid), output=tuple(facts["output_size"]))
    counts = _brute(g)
    assert (facts["min_overlap"], facts["max_overlap"]) == (counts.min(), counts.max())
    assert facts["uncovered_pixels"] == np.count_nonzero(counts == 0)
    assert facts["uncovered_fraction"] == pytest.approx(np.mean(counts == 0))


def test_plan_text_and_gap_warning():
    result = invoke("plan", "-o", "100,80", "-k", "5", "-s", "7")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "geometry:    kernel 5, stride 7 (2-d)",
        "window grid: 14x11 (154 windows)",
        "output size: 100x80",
        "valid sizes: 96-102 x 75-81 (for this grid)",
        "overlap:     0 to 1 windows per element",
        "uncovered:   4150 of 8000 elements (51.9%)",
    ]
    assert result.stderr.splitlines() == [
        "swt: warning: 4150 of 8000 output elements (51.9%) are in no window: a fold leaves them 0 (or --fill)",
        "swt: warning: stride 7 exceeds the window span 5 along height, leaving gaps of 2 between windows",
        "swt: warning: stride 7 exceeds the window span 5 along width, leaving gaps of 2 between windows",
    ]
    assert invoke("plan", "-o", "100,80", "-k", "5", "-s", "7", "-q").stderr == ""
    clean = invoke("plan", "-o", "64", "-k", "4", "-s", "2", "-p", "1")
    assert clean.stderr == "" and "overlap:     1 to 4 windows per element" in clean.stdout


def test_plan_of_a_file_reports_memory_from_the_pipeline(tmp_path):
    x = np.random.default_rng(0).standard_normal((10, 3, 15, 15, 4, 4)).astype(np.float32)
    np.save(tmp_path / "w.npy", x)
    result = invoke("plan", "--input", tmp_path / "w.npy", "-k", "4", "-s", "2", "-o", "32", "--reduce", "mean",
                    "--weight", "hann", "--max-memory", "1MiB", "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    plan = plan_fold(x.shape, Geometry.from_args(4, stride=2), 32)
    blend = Blend((4, 4), "mean", "hann")
    per_item = Transform("fold", plan, x.dtype, x.dtype, blend=blend).bytes_per_item()
    blocks = plan_blocks(plan.batch, plan.output_shape, 4, per_item, 1 << 20)
    items = block_items(blocks.indexes[0], plan.batch)
    assert facts["memory"] == {
        "bytes_per_item": per_item, "block_items": items, "blocks": len(blocks.indexes),
        "peak_bytes": items * per_item + 32 * 32 * 9, "max_memory": 1 << 20, "over_budget": False,
        "input_bytes": x.nbytes, "output_bytes": 10 * 3 * 32 * 32 * 4,
    }
    assert facts["input_shape"] == list(x.shape) and facts["output_shape"] == [10, 3, 32, 32]
    assert facts["grid"] == [15, 15] and facts["min_overlap"] == 1 and facts["max_overlap"] == 4
    text = invoke("plan", "--input", tmp_path / "w.npy", "-k", "4", "-s", "2", "-o", "32", "-q").stdout
    assert f"input:       {tmp_path / 'w.npy'}: (10, 3, 15, 15, 4, 4) float32" in text
    assert "output:      (10, 3, 32, 32) float32, 120.0 KiB" in text


def test_plan_of_recorded_and_torch_files(tmp_path):
    image = np.random.default_rng(1).standard_normal((2, 3, 20, 17)).astype(np.float32)
    np.save(tmp_path / "img.npy", image)
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "t.h5", "-k", "4", "-s", "3", "--layout", "torch", "-q").exit_code == 0
    facts = json.loads(invoke("plan", "-i", tmp_path / "t.h5", "--json", "-q").stdout)
    assert facts["layout"] == "torch" and facts["input_shape"] == [2, 3, 6, 5, 4, 4]
    assert facts["grid"] == [6, 5] and facts["output_size"] == [20, 17] and facts["uncovered_pixels"] == 20 * 17 - 19 * 16


@pytest.mark.parametrize("args, code, message", [
    (("-k", "3"), 2, "Error: swt plan needs --output-size and --kernel, or a windows file (INPUT) (see 'swt plan -h')\n"),
    (("-o", "2", "-k", "3"), 1, "Error: image height 2 is too small for kernel 3, stride 1: the window spans 3\n"),
    (("-o", "8", "-k", "3", "--reduce", "max"), 2, None),
])
def test_plan_errors(args, code, message):
    result = invoke("plan", *args)
    assert result.exit_code == code
    if message:
        assert result.stderr == message
    else:
        assert "Invalid value for '--reduce'" in result.stderr


def test_plan_help_has_an_example():
    result = invoke("plan", "-h")
    assert result.exit_code == 0 and "Example" in result.stdout


def test_windows_count_and_total():
    cov = fold_coverage((9, 9), Geometry.from_args(3, stride=3))
    assert cov.total == 81 and cov.uncovered == 0 and cov.warnings() == []
    assert math.prod(cov.grid) == 9
