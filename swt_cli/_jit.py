"""numba kernels for fold and unfold on NumPy arrays: the accelerated path of :mod:`swt_cli.kernels`.

Importing this module imports numba (an optional dependency: ``pip install "swt-cli[fast]"``); kernels.py
imports it only on the first fold or unfold that can use it. Every kernel is compiled lazily, once per
dtype, and cached on disk (``cache=True``), so the compile cost (about a second each) is paid once per
machine, not per call.

All kernels see 3 spatial axes: 1-d and 2-d problems get leading axes of size 1 (kernel 1, stride 1, no
padding, dilation 1), which costs nothing since those loops run once. Arrays arrive C-contiguous as
``x (P, G0, G1, G2, K0, K1, K2)`` and ``out (P, O0, O1, O2)``, P the flattened leading (batch) axes, and a
call handles planes ``lo`` to ``hi``; threads call them on disjoint plane ranges (``nogil=True``).
``geo`` is ``(k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2)``.

Window ``i`` at kernel offset ``w`` lands on output position ``i*s - p + w*d`` on every axis. The fold
kernels accumulate straight into the unpadded output: on the last axis the range of windows that land
inside it is worked out once per (row, kernel offset), so the inner loops carry no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTS = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")


@njit(**_OPTS)
def _last_axis_range(off, s, g, size):
    """Windows ``i`` in ``[lo, hi)`` with ``0 <= i*s + off < size``."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    top = size - 1 - off
    hi = top // s + 1 if top >= 0 else 0
    if hi > g:
        hi = g
    return lo, hi


@njit(**_OPTS)
def fold_planes(x, out, lo, hi, geo, accumulate):
    """Add the windows of planes ``lo:hi`` of ``x`` onto ``out`` (zeroed first unless ``accumulate``).

    The last axis runs kernel-offset-major (for each offset, every window): reads stride through the
    slab of one grid row, which is in L1 cache, and writes land ``s2`` apart. This beat the window-major
    order (short inner loops, store-to-load stalls where windows overlap) and a gather per output.
    """
    k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2 = geo
    g0, g1, g2 = x.shape[1], x.shape[2], x.shape[3]
    o0, o1, o2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk  # one row of windows along the last axis: contiguous in x
    plane_in = g0 * g1 * slab
    plane_out = o0 * o1 * o2
    xf = x.reshape(-1)
    of = out.reshape(-1)
    touch = 0
    line = max(1, 64 // x.itemsize)  # elements per cache line
    us2 = np.uint64(s2)
    ukk = np.uint64(kk)
    for p in range(lo, hi):
        obase_p = p * plane_out
        if not accumulate:
            of[obase_p:obase_p + plane_out] = 0
        for i0 in range(g0):
            for i1 in range(g1):
                xs = p * plane_in + (i0 * g1 + i1) * slab
                # Pull the slab into cache with a sequential read: the strided passes below then hit L1.
                for j in range(0, slab, line):
                    touch += xf[xs + j] != 0
                for w0 in range(k0):
                    r0 = i0 * s0 - p0 + w0 * d0
                    if r0 < 0 or r0 >= o0:
                        continue
                    for w1 in range(k1):
                        r1 = i1 * s1 - p1 + w1 * d1
                        if r1 < 0 or r1 >= o1:
                            continue
                        obase = obase_p + (r0 * o1 + r1) * o2
                        xbase = xs + (w0 * k1 + w1) * k2
                        for w2 in range(k2):
                            off = w2 * d2 - p2
                            a, b = _last_axis_range(off, s2, g2, o2)
                            oi = np.uint64(obase + a * s2 + off)
                            xi = np.uint64(xbase + a * kk + w2)
                            for _ in range(b - a):
                                of[oi] += xf[xi]
                                oi += us2
                                xi += ukk
    return touch


@njit(**_OPTS)
def fold_planes_tiled(x, out, lo, hi, geo):
    """Fold without overlap (stride == kernel, dilation 1, no padding): every window is copied into place.

    Nothing is added, so the output is neither zeroed (except beyond the tiles, where the grid does not
    reach the edge) nor read.
    """
    k0, k1, k2 = geo[0], geo[1], geo[2]
    g0, g1, g2 = x.shape[1], x.shape[2], x.shape[3]
    o0, o1, o2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk
    plane_in = g0 * g1 * slab
    plane_out = o0 * o1 * o2
    xf = x.reshape(-1)
    of = out.reshape(-1)
    uk2 = np.uint64(k2)
    ukk = np.uint64(kk)
    edge = g0 * k0 < o0 or g1 * k1 < o1 or g2 * k2 < o2
    for p in range(lo, hi):
        obase_p = p * plane_out
        if edge:
            of[obase_p:obase_p + plane_out] = 0
        for i0 in range(g0):
            for i1 in range(g1):
                xs = p * plane_in + (i0 * g1 + i1) * slab
                for w0 in range(k0):
                    for w1 in range(k1):
                        ob = obase_p + ((i0 * k0 + w0) * o1 + i1 * k1 + w1) * o2
                        xb = xs + (w0 * k1 + w1) * k2
                        for w2 in range(k2):
                            oi = np.uint64(ob + w2)
                            xi = np.uint64(xb + w2)
                            for _ in range(g2):
                                of[oi] = xf[xi]
                                oi += uk2
                                xi += ukk
    return 0


@njit(**_OPTS)
def unfold_planes(x, out, lo, hi, geo):
    """Cut planes ``lo:hi`` of images ``x (P, S0, S1, S2)`` into windows ``out (P, G0, G1, G2, K0, K1, K2)``.

    The mirror of :func:`fold_planes`: one row of windows (a contiguous slab of ``out``, in L1 cache) at
    a time, kernel-offset-major; a slab that reaches into the padding is zeroed first.
    """
    k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2 = geo
    n0, n1, n2 = x.shape[1], x.shape[2], x.shape[3]
    g0, g1, g2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk
    plane_in = n0 * n1 * n2
    plane_out = g0 * g1 * slab
    xf = x.reshape(-1)
    of = out.reshape(-1)
    us2 = np.uint64(s2)
    ukk = np.uint64(kk)
    # Every window of a row inside the image along the last axis?
    a0, b0 = _last_axis_range(-p2, s2, g2, n2 - (k2 - 1) * d2)
    full_rows = a0 == 0 and b0 == g2
    for p in range(lo, hi):
        for i0 in range(g0):
            for i1 in range(g1):
                os_ = p * plane_out + (i0 * g1 + i1) * slab
                inside = full_rows
                for w0 in range(k0):
                    r0 = i0 * s0 - p0 + w0 * d0
                    inside = inside and 0 <= r0 < n0
                for w1 in range(k1):
                    r1 = i1 * s1 - p1 + w1 * d1
                    inside = inside and 0 <= r1 < n1
                if not inside:
                    of[os_:os_ + slab] = 0
                for w0 in range(k0):
                    r0 = i0 * s0 - p0 + w0 * d0
                    if r0 < 0 or r0 >= n0:
                        continue
                    for w1 in range(k1):
                        r1 = i1 * s1 - p1 + w1 * d1
                        if r1 < 0 or r1 >= n1:
                            continue
                        xbase = p * plane_in + (r0 * n1 + r1) * n2
                        obase = os_ + (w0 * k1 + w1) * k2
                        for w2 in range(k2):
                            off = w2 * d2 - p2
                            a, b = _last_axis_range(off, s2, g2, n2)
                            xi = np.uint64(xbase + a * s2 + off)
                            oi = np.uint64(obase + a * kk + w2)
                            for _ in range(b - a):
                                of[oi] = xf[xi]
                                xi += us2
                                oi += ukk
    return 0
