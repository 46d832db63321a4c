"""Shape checks: every error path of the planner, with its exact message."""

import numpy as np
import pytest

from swt_cli import Geometry, SwtError, plan_fold, sliding_window, sliding_window_transpose
from swt_cli.geometry import grid_size, output_range


def test_output_range_gives_stride_many_sizes():
    assert output_range(31, 3, 2, 0, 1) == (63, 64)
    assert output_range(10, 3, 4, 1, 2) == (39, 42)
    for o in range(39, 43):
        assert grid_size(o, 3, 4, 1, 2) == 10
    assert grid_size(38, 3, 4, 1, 2) == 9 and grid_size(43, 3, 4, 1, 2) == 11


def test_output_size_none_takes_the_smallest_fit():
    x = np.ones((1, 1, 31, 30, 3, 3), np.float32)
    assert sliding_window_transpose(x, None, 3, stride=2).shape == (1, 1, 63, 61)
    assert Geometry.from_args(3, stride=2).smallest_output((31, 30)) == (63, 61)


def test_impossible_output_size_names_the_valid_ones():
    x = np.ones((2, 3, 31, 31, 3, 3), np.float32)
    with pytest.raises(SwtError) as err:
        sliding_window_transpose(x, (65, 64), 3, stride=2)
    assert str(err.value) == (
        "fold input of shape (2, 3, 31, 31, 3, 3) with kernel 3, stride 2: "
        "output height 65 is impossible for 31 windows of kernel 3, stride 2: use 63 or 64"
    )


def test_impossible_width_with_padding_and_dilation_lists_a_range():
    x = np.ones((1, 10, 10, 3, 3))
    with pytest.raises(SwtError, match=r"output width 12 is impossible for 10 windows of kernel 3, stride 4, "
                                        r"padding 1, dilation 2: use 39 to 42"):
        sliding_window_transpose(x, (41, 12), 3, stride=4, padding=1, dilation=2)


def test_stride_one_has_exactly_one_size():
    with pytest.raises(SwtError, match="output height 7 is impossible for 5 windows of kernel 2, stride 1: use 6$"):
        sliding_window_transpose(np.ones((5, 5, 2, 2)), 7, 2)


def test_padding_larger_than_reach_has_no_output():
    with pytest.raises(SwtError, match="no output height fits 1 window of kernel 1, stride 1, padding 1"):
        sliding_window_transpose(np.ones((1, 1, 1, 1)), None, 1, padding=1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kernel_size=0), "kernel_size must be >= 1, got 0"),
        (dict(kernel_size=3, stride=0), "stride must be >= 1, got 0"),
        (dict(kernel_size=3, dilation=-1), "dilation must be >= 1, got -1"),
        (dict(kernel_size=3, padding=-1), "padding must be >= 0, got -1"),
        (dict(kernel_size=2.5), "kernel_size must be an integer or a tuple of integers, got 2.5"),
        (dict(kernel_size=True), "kernel_size must be an integer, got True"),
        (dict(kernel_size=(3, 3), stride=(1, 1, 1)), "geometry arguments disagree on the number of spatial axes: got tuples of lengths 2, 3"),
        (dict(kernel_size=(1, 1, 1, 1)), "swt handles 1, 2 or 3 spatial axes, got 4"),
        (dict(kernel_size=1099511627776 * 2**30), "kernel_size 1180591620717411303424 is too large"),
    ],
)
def test_bad_geometry_arguments(kwargs, message):
    with pytest.raises(SwtError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sliding_window(np.ones((1, 1, 4, 4)), **kwargs)


def test_rank_mismatch_for_fold():
    with pytest.raises(SwtError, match=r"fold input of shape \(3, 3, 2\) with kernel 3, stride 1: a 2-d fold needs "
                                        r"at least 4 axes \(\.\.\., IH, IW, KH, KW\), got 3"):
        sliding_window_transpose(np.ones((3, 3, 2)), 5, 3)


def test_kernel_mismatch_for_fold():
    with pytest.raises(SwtError, match=r"the last 2 axes hold windows of 3x4 but the kernel is 3x3"):
        sliding_window_transpose(np.ones((1, 2, 2, 3, 4)), 4, 3)


def test_rank_mismatch_for_unfold():
    with pytest.raises(SwtError, match=r"a 3-d unfold needs at least 3 axes, got 2"):
        sliding_window(np.ones((4, 4)), (2, 2, 2))


def test_image_too_small_for_unfold():
    with pytest.raises(SwtError, match=r"unfold input of shape \(1, 4, 9\) with kernel 3, stride 1, dilation 3: "
                                        r"image height 4 is too small for kernel 3, stride 1, dilation 3: the window spans 7"):
        sliding_window(np.ones((1, 4, 9)), 3, dilation=3)


def test_output_size_rank_mismatch():
    with pytest.raises(SwtError, match="disagree on the number of spatial axes"):
        sliding_window_transpose(np.ones((2, 2, 2, 2)), (3, 3, 3), (2, 2))
    with pytest.raises(SwtError, match="output_size must be >= 1, got 0"):
        sliding_window_transpose(np.ones((2, 2, 2, 2)), 0, 2)


def test_sizes_whose_products_overflow_are_refused_before_allocating():
    with pytest.raises(SwtError, match=r"fold input of shape \(2147483648, 2147483648, 2147483648, 1, 1\) would need "
                                        r"39614081257132168796771975168 bytes: that is too large to address"):
        plan_fold((2**31, 2**31, 2**31, 1, 1), Geometry.from_args(1), None, itemsize=4)
    with pytest.raises(SwtError, match="output_size 4611686018427387905 is too large"):
        sliding_window_transpose(np.ones((1, 1, 1, 1, 1, 1)), 2**62 + 1, 1)
    with pytest.raises(SwtError, match="fold output of shape .* would need .* bytes: that is too large to address"):
        sliding_window_transpose(np.ones((1, 1, 1, 1, 1, 1)), 2**62, 1, stride=2**62)


def test_one_and_three_spatial_axes():
    x = np.ones((2, 7, 3))
    assert sliding_window_transpose(x, (9,), (3,)).shape == (2, 9)
    v = np.ones((1, 4, 4, 4, 2, 2, 2))
    assert sliding_window_transpose(v, (5, 5, 5), 2).shape == (1, 5, 5, 5)
    assert sliding_window(np.ones((1, 5, 5, 5)), (2, 2, 2)).shape == (1, 4, 4, 4, 2, 2, 2)


def test_kept_geometries_never_skip_a_check():
    """Geometry.from_args keeps what it made from plain ints (a plan is made on every call); a float or
    a bool that hashes like a kept int is still checked, and refused, after the int was kept."""
    import numpy as np

    from swt_cli.errors import SwtError
    from swt_cli.geometry import Geometry

    first = Geometry.from_args(3, stride=(2, 1))
    assert Geometry.from_args(3, stride=(2, 1)) is first
    assert Geometry.from_args(np.int64(3), stride=[2, 1]) == first
    for bad, words in [(3.0, "must be an integer or a tuple of integers, got 3.0"), (True, "must be an integer, got True")]:
        with pytest.raises(SwtError, match=words):
            Geometry.from_args(bad, stride=(2, 1))
    with pytest.raises(SwtError, match="stride"):
        Geometry.from_args(3, stride=(2.0, 1))
    with pytest.raises(SwtError):
        Geometry.from_args(3, stride=(2, 1), padding=(1, 1, 1))  # lengths disagree: never kept
