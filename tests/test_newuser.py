"""A new user's first hour (issue 13, points 1-4): covering unfolds from the library and the command line,
the quick start's round trip, `swt info` on files of several arrays, and geometry messages that say where
each value came from.

References are independent of swt's kernels: np.pad at the far edges and the plain loops of
tests/reference.py; files are real .npy, HDF5 and Zarr files, and the command line runs as installed.
"""

import numpy as np
import pytest
from reference import fold_loops, unfold_loops

from swt_cli import Geometry, SwtError, sliding_window, sliding_window_transpose

# ------------------------------------------------------------------------------- library: cover=True


@pytest.mark.parametrize("shape, k, s, p, d, extra", [
    ((2, 14), (4,), (3,), (0,), (1,), (2,)),  # 4 windows reach 0-12: one more needs 16
    ((1, 2, 17, 23), 4, 3, 0, 1, (2, 2)),
    ((2, 10, 7, 8), (3, 3, 3), (2, 2, 2), (0, 0, 0), (1, 1, 1), (1, 0, 1)),
    ((1, 19, 20), (5, 3), (4, 3), 2, (1, 2), (0, 2)),  # dilated: the last window that reaches 21 starts at 21
])
def test_sliding_window_cover_pads_the_far_edges_and_the_transpose_crops(shape, k, s, p, d, extra):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape) * 1e8 + 3.0  # large values: a wrong summation order shows in the last bits
    g = Geometry.from_args(k, padding=p, stride=s, dilation=d)
    nd = g.ndim
    padded = np.pad(x, [(0, 0)] * (x.ndim - nd) + [(0, e) for e in extra], constant_values=-4.0)
    w = sliding_window(x, k, p, s, d, cover=True, pad_value=-4.0)
    np.testing.assert_array_equal(w, unfold_loops(padded, g.kernel, g.stride, g.padding, g.dilation))
    size = shape[-nd:]
    summed = sliding_window_transpose(w, size, k, p, s, d, cover=True)
    whole = fold_loops(w, padded.shape[-nd:], g.kernel, g.stride, g.padding, g.dilation)
    np.testing.assert_allclose(summed, whole[(...,) + tuple(slice(0, o) for o in size)], rtol=1e-12)
    np.testing.assert_allclose(sliding_window_transpose(w, size, k, p, s, d, reduce="mean", cover=True), x, rtol=1e-12)


def test_sliding_window_cover_refuses_gaps_and_pad_value_alone():
    with pytest.raises(SwtError, match="^kernel 5, stride 7 cannot cover an image by padding its far edges: .*use stride 5$"):
        sliding_window(np.ones((20, 20)), 5, stride=7, cover=True)
    with pytest.raises(SwtError, match=r"^pad_value=3 pads only with cover=True"):
        sliding_window(np.ones((20, 20)), 5, stride=5, pad_value=3)
    with pytest.raises(SwtError, match="cover=True needs output_size"):
        sliding_window_transpose(np.ones((4, 4, 5, 5)), None, 5, stride=5, cover=True)
    w = sliding_window(np.ones((21, 20)), 5, stride=5, cover=True)
    with pytest.raises(SwtError, match=r"not a covering unfold of 30x20"):
        sliding_window_transpose(w, (30, 20), 5, stride=5, cover=True)
