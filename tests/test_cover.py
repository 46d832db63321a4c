"""Covering unfolds (issue 13): what an unfold leaves out, the far padding that covers, and the round trip.

Every number is checked against plain loops over the windows: which image positions some window reaches,
and the plain-loop fold and unfold of tests/reference.py.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reference import fold_loops, unfold_loops

from swt_cli import Geometry, SwtError, sliding_window
from swt_cli.api import fold_cover, unfold_cover
from swt_cli.cover import (
    check_coverable,
    cover_padding,
    cover_record,
    covered_size,
    covering_stride,
    crop,
    edge_loss,
    pad_to_cover,
    recorded_fold_sizes,
)


def reached(size, kernel, stride, padding, dilation, image=None):
    """Positions ``0 <= x < image`` (default ``size``) that a window of an unfold of ``size`` reaches."""
    image = size if image is None else image
    n = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    hit = [False] * image
    for i in range(max(n, 0)):
        for w in range(kernel):
            x = i * stride - padding + w * dilation
            if 0 <= x < image:
                hit[x] = True
    return hit


def covers(size, geometry, extra=None):
    """Whether the unfold of ``size`` (plus ``extra`` at the far edges) reaches every original position."""
    extra = extra or (0,) * geometry.ndim
    return all(all(reached(o + e, k, s, p, d, image=o))
               for o, e, k, s, p, d in zip(size, extra, geometry.kernel, geometry.stride, geometry.padding,
                                           geometry.dilation))


def geometry_of(k, s, p, d):
    return Geometry.from_args(k, padding=p, stride=s, dilation=d, ndim=len(k))


axes = st.integers(1, 3)


def assert_nearest(size, g, name, suggested, nearer):
    """No value in ``nearer`` (per axis) covers: per axis, or for all axes at once where one value is suggested."""
    def with_value(a, v):
        values = {"padding": list(g.padding), "stride": list(g.stride)}
        values[name][a] = v
        return g.kernel[a], values["stride"][a], values["padding"][a], g.dilation[a]

    if len(set(suggested)) == 1 and len(set(getattr(g, name))) == 1:
        for v in nearer[0]:
            assert not all(all(reached(size[a], *with_value(a, v))) for a in range(g.ndim))
        return
    for a, values in enumerate(nearer):
        for v in values:
            assert not all(reached(size[a], *with_value(a, v)))


@st.composite
def problems(draw, max_size=40):
    nd = draw(axes)
    size = tuple(draw(st.integers(1, max_size)) for _ in range(nd))
    k = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 8)) for _ in range(nd))
    p = tuple(draw(st.integers(0, 4)) for _ in range(nd))
    d = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(nd))
    return size, geometry_of(k, s, p, d)


# ------------------------------------------------------------------------------ the issue's examples


def test_issue_example_stride_equal_to_kernel_loses_8_2_percent():
    loss = edge_loss((477, 720), Geometry.from_args(64, stride=64))
    assert loss.lost_per_axis == (29, 16)
    assert [(a.near, a.far) for a in loss.axes] == [(0, 29), (0, 16)]
    assert loss.lost == 477 * 720 - 448 * 704
    assert f"{100 * loss.fraction:.1f}" == "8.2"
    assert loss.message() == (
        "unfold of 477x720 with kernel 64, stride 64 leaves 29 rows and 16 columns (8.2% of the pixels) outside "
        "every window: use --cover, or e.g. --padding 24 or --stride 59,41"
    )
    assert loss.cover == (35, 48) == cover_padding((477, 720), Geometry.from_args(64, stride=64))
    assert covered_size((477, 720), Geometry.from_args(64, stride=64)) == (512, 768)


def test_issue_example_with_padding_loses_7_8_percent():
    g = Geometry.from_args(64, stride=48, padding=8)
    loss = edge_loss((477, 720), g)
    assert loss.lost_per_axis == (37, 0)
    assert f"{100 * loss.fraction:.1f}" == "7.8"
    assert "leaves 37 rows (7.8% of the pixels) outside every window: use --cover" in loss.message()
    assert loss.cover == (3, 0)
    assert covers((477, 720), g, loss.cover) and not covers((477, 720), g, (2, 0))


def test_issue_example_stride_beyond_kernel_has_gaps_and_is_refused():
    g = Geometry.from_args(5, stride=7)
    loss = edge_loss((477, 720), g)
    assert loss.gaps and loss.cover is None and loss.padding is None
    assert loss.lost_per_axis == (477 - 68 * 5, 720 - 103 * 5)
    assert "in gaps that padding cannot fill: use --cover with --stride 5" in loss.message()
    with pytest.raises(SwtError) as err:
        check_coverable(g)
    assert str(err.value) == (
        "kernel 5, stride 7 cannot cover an image by padding its far edges: along height and width, stride 7 "
        "exceeds the window span 5, leaving gaps of 2 between windows: use stride 5"
    )
    with pytest.raises(SwtError, match="use stride 5"):
        unfold_cover(np.ones((477, 720)), 5, stride=7)
    with pytest.raises(SwtError, match="use stride 5"):
        cover_padding((477, 720), g)


def test_plain_unfold_still_drops_the_edges_the_loss_reports():
    """The loss is what sliding_window really drops: the fold of its windows is zero exactly there."""
    x = np.random.default_rng(0).random((47, 72)) + 1
    g = Geometry.from_args(6, stride=6)
    back = fold_loops(sliding_window(x, 6, stride=6), (47, 72), g.kernel, g.stride, g.padding, g.dilation)
    loss = edge_loss((47, 72), g)
    assert np.count_nonzero(back == 0) == loss.lost == 47 * 72 - 42 * 72
    assert loss.lost_per_axis == (5, 0)


def test_gap_refusal_per_axis_and_for_dilation():
    with pytest.raises(SwtError) as err:
        check_coverable(Geometry.from_args((5, 3), stride=(7, 2)))
    assert str(err.value) == (
        "kernel 5x3, stride 7x2 cannot cover an image by padding its far edges: along height, stride 7 exceeds the "
        "window span 5, leaving gaps of 2 between windows: use stride 5,2"
    )
    with pytest.raises(SwtError) as err:
        check_coverable(Geometry.from_args(3, stride=2, dilation=2, ndim=1))
    assert str(err.value) == (
        "kernel 3, stride 2, dilation 2 cannot cover an image by padding its far edges: along length, dilation 2 "
        "and stride 2 reach only one position in 2: use stride 1"
    )
    # Offsets 0 and 3 with stride 2 reach every remainder, but position 1 only from a window at -1.
    with pytest.raises(SwtError, match=r"no window reaches position 1 at the near edge: use stride 1"):
        check_coverable(Geometry.from_args(2, stride=2, dilation=3, ndim=1))
    with pytest.raises(SwtError, match=r"no window reaches position 0 at the near edge: use stride 1"):
        check_coverable(Geometry.from_args(2, stride=2, dilation=3, padding=1, ndim=1))
    check_coverable(Geometry.from_args(2, stride=2, dilation=3, padding=2, ndim=1))  # a window in the padding does
    loss = edge_loss((20,), Geometry.from_args(2, stride=2, dilation=3, ndim=1))
    assert loss.message() == (
        "unfold of 20 with kernel 2, stride 2, dilation 3 leaves 2 elements (10.0% of the elements) outside every "
        "window, some at the near edge, which --cover cannot pad: use --cover with --stride 1, or e.g. --padding 2 "
        "or --stride 1"
    )


# ------------------------------------------------------------------------------ against plain loops


@settings(max_examples=300, deadline=None)
@given(problems())
# An axis that loses nothing at a stride longer than its kernel (a short image) keeps that stride: the
# suggestion was once capped at the kernel, naming stride 1 where stride 2 covers.
@example(((2, 1), geometry_of((2, 1), (3, 3), (1, 0), (1, 1))))
@example(((1, 1), geometry_of((2, 1), (3, 3), (2, 0), (1, 1))))
def test_edge_loss_matches_loops(problem):
    size, g = problem
    per_axis = [reached(o, k, s, p, d) for o, k, s, p, d in zip(size, g.kernel, g.stride, g.padding, g.dilation)]
    lost = [hit.count(False) for hit in per_axis]
    loss = edge_loss(size, g)
    if not any(lost):
        assert loss is None
        return
    assert loss.lost_per_axis == tuple(lost)
    for hit, a in zip(per_axis, loss.axes):
        if any(hit):
            assert (a.near, a.far) == (hit.index(True), hit[::-1].index(True))
        else:
            assert (a.near, a.far) == (len(hit), 0)
    mask = np.ones((), bool)
    for hit in per_axis:
        mask = np.multiply.outer(mask, np.array(hit))
    assert loss.lost == mask.size - np.count_nonzero(mask)
    # The suggested geometries lose nothing, and are the nearest that do: one value for every axis where the
    # given values agree and one does as well, else the nearest per axis.
    if loss.padding is not None:
        assert covers(size, geometry_of(g.kernel, g.stride, loss.padding, g.dilation))
        nearer = [range(p, t) for p, t in zip(g.padding, loss.padding)]
        assert_nearest(size, g, "padding", loss.padding, nearer)
    if loss.stride is not None:
        assert covers(size, geometry_of(g.kernel, loss.stride, g.padding, g.dilation))
        assert all(t <= s for t, s in zip(loss.stride, g.stride))
        nearer = [range(t + 1, min(s, k) + 1) for t, s, k in zip(loss.stride, g.stride, g.kernel)]
        assert_nearest(size, g, "stride", loss.stride, nearer)
    assert loss.message().startswith(f"unfold of {'x'.join(map(str, size))} with {g.describe()} leaves ")


@settings(max_examples=300, deadline=None)
@given(problems())
def test_cover_padding_is_the_least_that_covers(problem):
    size, g = problem
    try:
        check_coverable(g)
    except SwtError as err:
        # Refused: no far padding covers an image long enough to hold a gap, and the named stride does.
        long = tuple((k - 1) * d + s + 1 for k, s, d in zip(g.kernel, g.stride, g.dilation))
        assert not covers(long, g, tuple(5 * (k * d + s + p) for k, s, p, d in zip(g.kernel, g.stride, g.padding, g.dilation)))
        fix = covering_stride(g)
        assert str(err).endswith(f"use stride {fix[0] if len(set(fix)) == 1 else ','.join(map(str, fix))}")
        fixed = geometry_of(g.kernel, fix, g.padding, g.dilation)
        check_coverable(fixed)
        assert covers(size, fixed, cover_padding(size, fixed))
        return
    extra = cover_padding(size, g)
    assert covers(size, g, extra)
    for a, e in enumerate(extra):
        if e:
            less = tuple(v - (b == a) for b, v in enumerate(extra))
            assert not covers(size, g, less)
    loss = edge_loss(size, g)
    assert (loss is None) == (not any(extra))
    if loss is not None:
        assert loss.cover == extra


# ------------------------------------------------------------------------------ arrays


def reference_unfold_cover(x, g, pad_value=0):
    """np.pad at the far edges by the brute-force least covering padding, then the plain-loop unfold."""
    nd = g.ndim
    size = x.shape[-nd:]
    extra = []
    for o, k, s, p, d in zip(size, g.kernel, g.stride, g.padding, g.dilation):
        e = next(e for e in range(10 * (k * d + s)) if all(reached(o + e, k, s, p, d, image=o)))
        extra.append(e)
    padded = np.pad(x, [(0, 0)] * (x.ndim - nd) + [(0, e) for e in extra], constant_values=pad_value)
    return unfold_loops(padded, g.kernel, g.stride, g.padding, g.dilation), padded.shape[-nd:]


@pytest.mark.parametrize("shape, nd, k, s, p, d", [
    ((2, 13), 1, 4, 3, 0, 1),
    ((1, 2, 31), 1, 5, 5, 2, 1),
    ((2, 17, 23), 2, 4, 3, 1, 1),
    ((1, 3, 29, 11), 2, (6, 3), (6, 3), (0, 2), (1, 2)),
    ((2, 9, 10, 7), 3, 3, 2, 1, 1),
    ((1, 7, 5, 11), 3, (2, 3, 3), (2, 3, 2), (0, 1, 2), (1, 1, 3)),
])
def test_unfold_and_fold_cover_match_loops(shape, nd, k, s, p, d):
    rng = np.random.default_rng(7)
    g = Geometry.from_args(k, padding=p, stride=s, dilation=d, ndim=nd)
    x = rng.standard_normal(shape) * 1e6  # large values: a wrong sum order would show in the last bits
    want, padded = reference_unfold_cover(x, g, pad_value=-2.5)
    args = (g.kernel, g.padding, g.stride, g.dilation) if nd != 2 else (k, p, s, d)  # 2-d: ints are 2-d
    w = unfold_cover(x, *args, pad_value=-2.5)
    np.testing.assert_array_equal(w, want)
    assert covered_size(shape[-nd:], g) == padded
    size = shape[-nd:]
    summed = fold_cover(w, size, *args)
    whole = fold_loops(w, padded, g.kernel, g.stride, g.padding, g.dilation)
    np.testing.assert_allclose(summed, whole[(...,) + tuple(slice(0, o) for o in size)], rtol=1e-12, atol=1e-3)
    assert summed.shape == shape and summed.flags.c_contiguous
    np.testing.assert_allclose(fold_cover(w, size, *args, reduce="mean"), x, rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(problems(max_size=25), st.integers(1, 2), st.integers(0, 2**32 - 1))
def test_fold_cover_mean_gives_every_element_back(problem, batch, seed):
    size, g = problem
    try:
        check_coverable(g)
    except SwtError:
        return  # gap geometries: the test above checks their refusal
    rng = np.random.default_rng(seed)
    x = rng.integers(-1000, 1000, (batch,) + size).astype(np.float64)  # exact: sums of equal integers, divided
    kw = {"kernel_size": g.kernel, "padding": g.padding, "stride": g.stride, "dilation": g.dilation}
    w = unfold_cover(x, **kw, pad_value=7)
    back = fold_cover(w, size, **kw, reduce="mean")
    assert back.shape == x.shape
    np.testing.assert_array_equal(back, x)


def test_image_smaller_than_the_window_is_padded_up_to_one():
    x = np.arange(1, 4, dtype=np.float32)
    w = unfold_cover(x, (5,))
    assert w.shape == (1, 5)
    np.testing.assert_array_equal(w[0], [1, 2, 3, 0, 0])
    np.testing.assert_array_equal(fold_cover(w, (3,), (5,), reduce="mean"), x)


def test_pad_value_and_integer_images():
    x = np.arange(12, dtype=np.int16).reshape(3, 4)
    padded = pad_to_cover(x, Geometry.from_args(2, stride=2), pad_value=-9)
    assert padded.dtype == np.int16 and padded.shape == (4, 4)
    np.testing.assert_array_equal(padded[:3], x)
    np.testing.assert_array_equal(padded[3], -9)
    assert pad_to_cover(x, Geometry.from_args((3, 2), stride=(1, 2))) is x  # already covered: no copy
    w = unfold_cover(x, 2, stride=2, pad_value=-9)
    np.testing.assert_array_equal(fold_cover(w, (3, 4), 2, stride=2), x)
    with pytest.raises(SwtError, match=r"pad value 0.5 does not fit int16"):
        unfold_cover(x, 2, stride=2, pad_value=0.5)
    with pytest.raises(SwtError, match=r"pad value 70000 does not fit int16"):
        unfold_cover(x, 2, stride=2, pad_value=70000)
    with pytest.raises(SwtError, match=r"pad value must be one number"):
        unfold_cover(x, 2, stride=2, pad_value=[1, 2])
    nan = pad_to_cover(x.astype(np.float32), Geometry.from_args(2, stride=2), pad_value=float("nan"))
    assert np.isnan(nan[3]).all()


def test_fold_cover_refuses_windows_of_another_size():
    w = unfold_cover(np.ones((2, 30, 30)), 4, stride=4)
    assert w.shape == (2, 8, 8, 4, 4)
    with pytest.raises(SwtError) as err:
        fold_cover(w, (20, 30), 4, stride=4)
    assert str(err.value) == (
        "windows of shape (2, 8, 8, 4, 4) are not a covering unfold of 20x30 with kernel 4, stride 4: that has a "
        "window grid of 5x8 (of the image padded to 20x32)"
    )
    with pytest.raises(SwtError, match=r"cannot crop an array of shape \(2, 3\) to 4x3: it is smaller"):
        crop(np.ones((2, 3)), (4, 3))


# ------------------------------------------------------------------------------ the record


def test_record_gives_the_fold_its_sizes():
    g = Geometry.from_args(64, stride=48, padding=8)
    record = {"op": "unfold", "kernel_size": [64, 64], **cover_record((477, 720), g)}
    assert record["cover"] is True and record["image_size"] == [477, 720] and record["covered_size"] == [480, 720]
    assert recorded_fold_sizes(record) == ((480, 720), (477, 720))
    assert recorded_fold_sizes({"op": "unfold", "image_size": [5, 6]}) == ((5, 6), (5, 6))
    assert recorded_fold_sizes({"op": "unfold"}) is None
    with pytest.raises(SwtError, match=r"the recorded swt geometry is inconsistent"):
        recorded_fold_sizes({"cover": True, "image_size": [477, 720], "covered_size": [470, 720]})
    # The fold computes on the covered size and crops to the image size: the round trip of a file's record.
    x = np.random.default_rng(3).random((1, 477, 720))
    w = unfold_cover(x, 64, 8, 48)
    compute, keep = recorded_fold_sizes(record)
    from swt_cli import sliding_window_transpose

    y = crop(sliding_window_transpose(w, compute, 64, 8, 48, reduce="mean"), keep)
    np.testing.assert_allclose(y, x, rtol=1e-12)


def test_module_imports_without_numpy_at_module_level():
    """The shape arithmetic must not need NumPy (swt plan runs without it): only functions import it."""
    import ast
    import pathlib

    from swt_cli import cover

    tree = ast.parse(pathlib.Path(cover.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"numpy", "backend", "kernels", "coverage", "numba", "dask"}
