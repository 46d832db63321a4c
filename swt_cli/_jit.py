"""numba kernels for fold and unfold on NumPy arrays: the accelerated path of :mod:`swt_cli.kernels`.

Importing this module imports numba (a core dependency on CPython; kernels.py runs without it). kernels.py
imports it on a background thread, once a process's work repays the load, and warms there the kernels
that calls need (see ``kernels._take_numba``); calls take the NumPy path meanwhile. Every kernel is
compiled lazily, once per dtype, and cached on disk (``cache=True``), so the compile cost (about a
second each) is paid once per machine, not per call.

All kernels see 3 spatial axes: 1-d and 2-d problems get axes of size 1 (kernel 1, stride 1, no padding,
dilation 1), which costs nothing since those loops run once: leading ones, except that a 2-d fold gets
its size-1 axis in the middle (see below). Arrays arrive C-contiguous as
``x (P, G0, G1, G2, K0, K1, K2)`` and ``out (P, O0, O1, O2)``, P the flattened leading (batch) axes, and a
call handles planes ``lo`` to ``hi``; threads call them on disjoint plane ranges (``nogil=True``).
``geo`` is ``(k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2)``.

Window ``i`` at kernel offset ``w`` lands on output position ``i*s - p + w*d`` on every axis. The summing
fold kernels add into a small scratch ring of output rows (the rows of the first axis that one grid row
reaches: a few KiB, in L1 cache), padded along the last axis so the inner loops carry no bounds checks,
and write each ring row into the output once it is complete, so each output element is written once.
2-d folds arrive with their size-1 axis in the middle, so that the ring holds image rows.

Summation order: :func:`fold_planes` adds each output element's windows in row-major order of the grid
(the rule stated in :mod:`swt_cli.kernels`), whatever the threads. It runs over grid rows in order and,
within one, over kernel offsets along the last axis from the last down; an element takes at most one
value per offset there. (Adding window after window instead, each window row one vector, puts each load
right behind the previous window's store to the same elements, which stalls: slower.) ``_OPTS``
leaves ``fastmath`` off, so LLVM neither reassociates the sums nor contracts them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numba import njit

from ._native import SEGMENT_STRIDE, ring_dims, ring_in_order  # noqa: F401 (the kernels' callers use them here too)

# No fastmath: LLVM may then neither reassociate the sums nor contract them, so they keep their order.
_OPTS: dict[str, Any] = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}


@njit(**_OPTS)
def _last_axis_range(off, s, g, size):
    """Windows ``i`` in ``[lo, hi)`` with ``0 <= i*s + off < size``."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    top = size - 1 - off
    hi = top // s + 1 if top >= 0 else 0
    return lo, min(hi, g)


@njit(**_OPTS)
def _clear(a):
    for j in range(len(a)):
        a[j] = 0


@njit(**_OPTS)
def _flush_rows(ring, out, p, flushed, top, nring, slot, rowlen, m, phases, p2):
    """Write ring rows ``flushed:top`` (complete: no later grid row reaches them) to ``out[p]`` and clear
    their slots; returns the new ``flushed``."""
    while flushed < top:
        sb = (flushed % nring) * slot
        for r1 in range(out.shape[2]):
            _flush_row(ring, sb + r1 * rowlen, m, phases, p2, out[p, flushed, r1])
        _clear(ring[sb:sb + slot])
        flushed += 1
    return flushed


@njit(**_OPTS)
def _touch(xsl, line):
    """Read one element per cache line of ``xsl``, pulling it into cache for the strided reads after.

    A float sum: LLVM keeps its order, so these loads stay scalar (an integer count became gathers)."""
    touch = 0.0
    for j in range(0, len(xsl), line):
        touch += xsl[j] != 0
    return touch


@njit(**_OPTS)
def _flush_row(d, db, m, s2, p2, orow):
    """Write output row ``orow`` from its deinterleaved sums: column ``c = col + p2`` is ``d[db + (c % s2)*m + c // s2]``."""
    o2 = len(orow)
    ph0 = p2 % s2
    m0 = p2 // s2
    if s2 == 1:
        src = d[db + p2:db + p2 + o2]
        for j in range(o2):
            orow[j] = src[j]
    elif s2 == 2:  # two phases: a constant-stride interleave, which LLVM vectorises
        a = d[db + ph0 * m + m0:]
        b = d[db + m + m0:] if ph0 == 0 else d[db + m0 + 1:]
        h = o2 // 2
        for j in range(h):
            orow[2 * j] = a[j]
            orow[2 * j + 1] = b[j]
        if o2 % 2:
            orow[o2 - 1] = a[h]
    else:
        us2 = np.uint64(s2)
        for t in range(s2):  # output columns t, t + s2, ... come from one phase
            ph = ph0 + t
            first = m0
            if ph >= s2:
                ph -= s2
                first += 1
            src = d[db + ph * m + first:]
            dst = orow[t:]
            oi = np.uint64(0)
            for j in range((o2 - t + s2 - 1) // s2):
                dst[oi] = src[j]
                oi += us2




@njit(**_OPTS)
def _add_window_runs(dst, src, g2, s2, kk, k2):
    """Add ``g2`` window rows of ``k2`` elements, ``kk`` apart in ``src``, onto ``dst`` at ``s2`` apart:
    window after window, so each element takes its windows in order."""
    for i2 in range(g2):
        d = dst[i2 * s2:i2 * s2 + k2]
        s = src[i2 * kk:i2 * kk + k2]
        for w in range(k2):
            d[w] += s[w]


@njit(**_OPTS)
def _add_run(dst, src, n):
    for j in range(n):
        dst[j] += src[j]


@njit(**_OPTS)
def _add_segments(row, src, g2, s2, kk, k2):
    """Add ``g2`` window rows of ``k2`` elements, ``kk`` apart in ``src``, onto ``row`` (columns in
    order) at ``s2`` apart, by segment: segment ``q`` (columns ``q*s2`` to ``q*s2 + s2 - 1``) takes
    windows ``q - t``, ``t`` from the largest down (the earliest window first), each a contiguous run of
    its row (the last ``t``'s shorter where ``k2`` is not a whole number of strides), so each element
    takes its windows in order."""
    tmax = (k2 - 1) // s2
    last = k2 - tmax * s2  # the length of the run at the largest t
    for q in range(g2 + tmax):
        base = q * s2
        for t in range(min(tmax, q), max(0, q - g2 + 1) - 1, -1):
            n = last if t == tmax else s2
            at = (q - t) * kk + t * s2
            _add_run(row[base:base + n], src[at:at + n], n)


_ring_dims = njit(**_OPTS)(ring_dims)


@njit(**_OPTS)
def fold_planes(x, out, lo, hi, geo, layout, ring, xf):
    """Sum the windows of planes ``lo:hi`` of ``x`` into ``out`` (every element of ``out`` is written).

    The sums are kept in a small scratch ring of output rows, deinterleaved along the last axis:
    ``ring[row, phase, m]`` holds padded column ``c = m*s2 + phase``. Window ``i2`` at offset ``w2``
    lands on ``c = i2*s2 + w2*d2``, so for one kernel offset the windows of a grid row add onto a
    *contiguous* run of the ring, and the adds vectorise: LLVM gathers the inputs, strided by ``kk`` in
    ``x`` (a row of windows, a few KiB first touched into L1), into vector registers. (Transposing them
    into a scratch buffer first, and then adding whole vectors, cost a store per element more: slower.)
    A ring row is written out (interleaved, cropped to the output) once no later grid row reaches it,
    so each output element is written once. Grid rows in order, and the offsets along the last axis from
    the last down, add each element's windows in row-major order.

    Where the windows are undilated, at least 4 apart and a whole number of strides long (kernel 8,
    stride 4, say), and a row of windows is at most 8 KiB, the ring rows hold the columns in order and
    each window row is added as one contiguous run, window after window: the loads are then contiguous
    too, and that measured faster than the gathers (by a quarter to a half on rows of 8 KiB and less;
    5-10% slower on rows of 16 and 32 KiB, and slower for strides 2 and 3 or kernels that are no stride
    multiple). Windows in order add each element's windows in row-major order there as well.

    Elsewhere, where the windows are undilated and at least :data:`SEGMENT_STRIDE` apart (overlap-add of
    long 1-d windows, large 2-d kernels), the ring rows hold the columns in order too, and are filled
    segment of ``s2`` columns after segment, each taking its windows' runs earliest first
    (:func:`_add_segments`): contiguous adds without gathers, which with long windows had each lane of a
    gather on a cache line (or page) of its own.

    The caller gives the ring, zeroed, of ``nring * slot`` elements (``_native.ring_dims``), and ``xf``,
    ``x`` flattened: the kernel allocates nothing, so that its native code (:mod:`swt_cli._native`) needs
    no numba runtime.
    """
    k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2 = geo
    g0, g1, g2 = x.shape[1], x.shape[2], x.shape[3]
    o0, o1, o2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk  # one row of windows along the last axis: contiguous in x
    plane_in = g0 * g1 * slab
    m, rowlen, nring, slot = _ring_dims(k0, d0, k2, s2, d2, p2, g2, o1, o2)
    ukk = np.uint64(kk)
    line = max(1, 64 // x.itemsize)  # elements per cache line
    touch = 0.0
    # The ring's layout comes as a type (an empty array of 1-byte items: columns in order, see
    # ring_in_order), so that each layout gets code of its own: a test in the loop made the gathers of
    # the other about 5% slower. In order, ring rows are written out as rows of one phase.
    natural = layout.itemsize != 2
    segments = layout.itemsize == 4
    ring_m, ring_phases = (rowlen, 1) if natural else (m, s2)
    for p in range(lo, hi):
        flushed = 0
        for i0 in range(g0 + 1):
            # Rows below this grid row's first are complete: write them out and clear their slots.
            top = min(o0, i0 * s0 - p0) if i0 < g0 else o0
            flushed = _flush_rows(ring, out, p, flushed, top, nring, slot, rowlen, ring_m, ring_phases, p2)
            if i0 == g0:
                break
            for i1 in range(g1):
                xs = p * plane_in + (i0 * g1 + i1) * slab
                xsl = xf[xs:xs + slab]
                if not segments:  # the segments read their rows in order
                    touch += _touch(xsl, line)  # the strided loads below then hit L1
                for w0 in range(k0):
                    r0 = i0 * s0 - p0 + w0 * d0
                    if r0 < 0 or r0 >= o0:
                        continue
                    sbase = (r0 % nring) * slot
                    for w1 in range(k1):
                        r1 = i1 * s1 - p1 + w1 * d1
                        if r1 < 0 or r1 >= o1:
                            continue
                        rbase = sbase + r1 * rowlen
                        if segments:
                            _add_segments(ring[rbase:], xsl[(w0 * k1 + w1) * k2:], g2, s2, kk, k2)
                            continue
                        if natural:
                            _add_window_runs(ring[rbase:], xsl[(w0 * k1 + w1) * k2:], g2, s2, kk, k2)
                            continue
                        # Offsets along the last axis from the last down: an element's windows of this
                        # grid row then arrive in order (larger offsets come from earlier windows).
                        for w2 in range(k2 - 1, -1, -1):
                            c = w2 * d2
                            dst = ring[rbase + (c % s2) * m + c // s2:]
                            xi = np.uint64((w0 * k1 + w1) * k2 + w2)
                            for i2 in range(g2):
                                dst[i2] += xsl[xi]
                                xi += ukk
    return touch


#: Undilated window rows of at least this many items (words, where the caller copies 8-byte words) are
#: copied window by window, each row one contiguous run on both sides (:func:`_copy_run`), rather than
#: offset by offset, each offset a strided pass over the windows that touches every cache line of the
#: row once per offset (tiles of 7 to 16, as images are cut into patches, took about twice the memory
#: floor; BENCHMARKS.md, "Long windows"). Eight at a time in :func:`_copy_run`, or a plain loop that LLVM
#: vectorises for a length known only at run time, were slower.
_RUN_ITEMS = 4


@njit(**_OPTS)
def _copy_run(dst, di, src, si, n):
    """``dst[di:di + n] = src[si:si + n]``: four elements loaded, then stored, at a time (LLVM makes each
    four one vector load and store), the rest one by one."""
    di = np.uint64(di)
    si = np.uint64(si)
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    four = np.uint64(4)
    for _ in range(n // 4):
        a = src[si]
        b = src[si + one]
        c = src[si + two]
        d = src[si + three]
        dst[di] = a
        dst[di + one] = b
        dst[di + two] = c
        dst[di + three] = d
        si += four
        di += four
    for _ in range(n % 4):
        dst[di] = src[si]
        si += one
        di += one


@njit(**_OPTS)
def fold_planes_tiled(x, out, lo, hi, geo, xf, of):
    """Fold without overlap (stride == kernel, dilation 1, no padding): every window is copied into place.

    Nothing is added, so the output is neither zeroed (except beyond the tiles, where the grid does not
    reach the edge) nor read. Window rows of one item (or word) are gathered into an output row in one
    pass, long ones copied as runs (:data:`_RUN_ITEMS`), others offset by offset.
    """
    k0, k1, k2 = geo[0], geo[1], geo[2]
    g0, g1, g2 = x.shape[1], x.shape[2], x.shape[3]
    o0, o1, o2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk
    plane_in = g0 * g1 * slab
    plane_out = o0 * o1 * o2
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
                        if k2 == 1:  # one word per window row (float32, kernel 2): written in order
                            dst = of[ob:ob + g2]
                            src = xf[xb:]
                            for i2 in range(g2):
                                dst[i2] = src[i2 * kk]
                            continue
                        if k2 >= _RUN_ITEMS:  # long window rows: each one contiguous on both sides
                            for i2 in range(g2):
                                _copy_run(of, ob + i2 * k2, xf, xb + i2 * kk, k2)
                            continue
                        for w2 in range(k2):
                            oi = np.uint64(ob + w2)
                            xi = np.uint64(xb + w2)
                            for _ in range(g2):
                                of[oi] = xf[xi]
                                oi += uk2
                                xi += ukk
    return 0


@njit(**_OPTS)
def _copy_window_rows(xf, of, xi, oi, count, s2, kk, k2, d2):
    """Copy one window row (``k2`` elements ``d2`` apart) of ``count`` windows: window ``j`` from
    ``xf[xi + j*s2:]`` to ``of[oi + j*kk:]``, every element inside the image.

    Rows of 2 to 5 elements are spelled out, a window's elements loaded and stored together, at offsets
    in unsigned integers (no sign checks in the loop); that took about two thirds of the time of a loop
    per offset, each a strided run. Longer undilated rows are copied window by window as runs
    (:data:`_RUN_ITEMS`); longer dilated ones offset by offset. (One spelled-out copy for every width,
    called with the width, was slower again.)
    """
    us2 = np.uint64(s2)
    ukk = np.uint64(kk)
    ud = np.uint64(d2)
    one = np.uint64(1)
    xi = np.uint64(xi)
    oi = np.uint64(oi)
    if k2 == 2:
        for _ in range(count):
            a = xf[xi]
            b = xf[xi + ud]
            of[oi] = a
            of[oi + one] = b
            xi += us2
            oi += ukk
    elif k2 == 3:
        for _ in range(count):
            a = xf[xi]
            b = xf[xi + ud]
            c = xf[xi + ud + ud]
            of[oi] = a
            of[oi + one] = b
            of[oi + one + one] = c
            xi += us2
            oi += ukk
    elif k2 == 4 or k2 == 5:
        x1 = ud
        x2 = x1 + ud
        x3 = x2 + ud
        x4 = x3 + ud
        o4 = np.uint64(4)
        five = k2 == 5  # a loop-invariant test: LLVM makes two loops of this one
        for _ in range(count):
            a = xf[xi]
            b = xf[xi + x1]
            c = xf[xi + x2]
            d = xf[xi + x3]
            if five:
                of[oi + o4] = xf[xi + x4]
            of[oi] = a
            of[oi + one] = b
            of[oi + one + one] = c
            of[oi + one + one + one] = d
            xi += us2
            oi += ukk
    elif d2 == 1 and k2 >= _RUN_ITEMS:  # long window rows: each one contiguous on both sides
        for _ in range(count):
            _copy_run(of, oi, xf, xi, k2)
            xi += us2
            oi += ukk
    else:
        for w2 in range(k2):
            xj = xi + np.uint64(w2) * ud
            oj = oi + np.uint64(w2)
            for _ in range(count):
                of[oj] = xf[xj]
                xj += us2
                oj += ukk


@njit(**_OPTS)
def _copy_border(xf, of, xbase, obase, lo, hi, n2, s2, p2, kk, k2, d2):
    """Windows ``lo:hi`` of one window row that reach into the padding: copy the elements inside the image
    (the rest of the slab is already zero)."""
    for i2 in range(lo, hi):
        for w2 in range(k2):
            c = i2 * s2 - p2 + w2 * d2
            if 0 <= c < n2:
                of[obase + i2 * kk + w2] = xf[xbase + c]


@njit(**_OPTS)
def unfold_planes(x, out, lo, hi, geo, xf, of):
    """Cut planes ``lo:hi`` of images ``x (P, S0, S1, S2)`` into windows ``out (P, G0, G1, G2, K0, K1, K2)``.

    The mirror of :func:`fold_planes`: one row of windows (a contiguous slab of ``out``, in L1 cache) at
    a time, kernel row by kernel row; the windows of a slab that reach into the padding are zeroed first. Along the
    last axis the windows wholly inside the image (``ia:ib``) are copied without bounds checks
    (:func:`_copy_window_rows`), the few at the edges element by element.
    """
    k0, k1, k2, s0, s1, s2, p0, p1, p2, d0, d1, d2 = geo
    n0, n1, n2 = x.shape[1], x.shape[2], x.shape[3]
    g0, g1, g2 = out.shape[1], out.shape[2], out.shape[3]
    kk = k0 * k1 * k2
    slab = g2 * kk
    plane_in = n0 * n1 * n2
    plane_out = g0 * g1 * slab
    # Windows wholly inside the image along the last axis.
    ia, ib = _last_axis_range(-p2, s2, g2, n2 - (k2 - 1) * d2)
    ia = min(ia, g2)  # wide padding on a short row: maybe none inside
    ib = max(ia, ib)
    full_rows = ia == 0 and ib == g2
    for p in range(lo, hi):
        for i0 in range(g0):
            for i1 in range(g1):
                os_ = p * plane_out + (i0 * g1 + i1) * slab
                inside = True  # every kernel row of this row of windows inside the image?
                for w0 in range(k0):
                    r0 = i0 * s0 - p0 + w0 * d0
                    inside = inside and 0 <= r0 < n0
                for w1 in range(k1):
                    r1 = i1 * s1 - p1 + w1 * d1
                    inside = inside and 0 <= r1 < n1
                if not inside:
                    of[os_:os_ + slab] = 0
                elif not full_rows:  # only the windows at the ends of the row reach into the padding
                    of[os_:os_ + ia * kk] = 0
                    of[os_ + ib * kk:os_ + slab] = 0
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
                        _copy_window_rows(xf, of, xbase + ia * s2 - p2, obase + ia * kk, ib - ia, s2, kk, k2, d2)
                        _copy_border(xf, of, xbase, obase, 0, ia, n2, s2, p2, kk, k2, d2)
                        _copy_border(xf, of, xbase, obase, ib, g2, n2, s2, p2, kk, k2, d2)
    return 0


@njit(**_OPTS)
def unfold_planes_3x3(x, out, lo, hi, geo):
    """:func:`unfold_planes` for 2-d 3x3 windows: images ``x (P, S0, S1)``, windows ``out (P, G0, G1, 9)``;
    ``geo`` is ``(s0, s1, p0, p1, d0, d1)``.

    Window after window: nine loads from its three image rows, then its nine values stored as one run,
    so the stores of neighbouring windows follow each other (the copy by kernel row writes every third
    of them in each of three passes). Windows reaching into the padding, and rows of windows that do,
    go element by element. Measured (float32, one thread, kernel-only, 2026-12-02): about 0.55x the time
    of :func:`unfold_planes` at stride 1, 0.85-0.9x at stride 2.
    """
    s0, s1, p0, p1, d0, d1 = geo
    n0, n1 = x.shape[1], x.shape[2]
    g0, g1 = out.shape[1], out.shape[2]
    ia, ib = _last_axis_range(-p1, s1, g1, n1 - 2 * d1)  # windows wholly inside along the rows
    ia = min(ia, g1)
    ib = max(ia, ib)
    zero = out.dtype.type(0)  # of out's type: a literal 0 would unify uint64 with int64 as float64
    for pl in range(lo, hi):
        for i0 in range(g0):
            r = i0 * s0 - p0
            orow = out[pl, i0]
            if r < 0 or r + 2 * d0 >= n0:  # a row of windows reaching into the padding
                for i1 in range(g1):
                    for w0 in range(3):
                        rr = r + w0 * d0
                        for w1 in range(3):
                            cc = i1 * s1 - p1 + w1 * d1
                            orow[i1, w0 * 3 + w1] = x[pl, rr, cc] if 0 <= rr < n0 and 0 <= cc < n1 else zero
                continue
            a = x[pl, r]
            b = x[pl, r + d0]
            c = x[pl, r + 2 * d0]
            for i1 in range(g1):
                if i1 < ia or i1 >= ib:
                    for w0 in range(3):
                        for w1 in range(3):
                            cc = i1 * s1 - p1 + w1 * d1
                            orow[i1, w0 * 3 + w1] = x[pl, r + w0 * d0, cc] if 0 <= cc < n1 else zero
                    continue
                cc = i1 * s1 - p1
                o = orow[i1]
                a0 = a[cc]
                a1 = a[cc + d1]
                a2 = a[cc + 2 * d1]
                b0 = b[cc]
                b1 = b[cc + d1]
                b2 = b[cc + 2 * d1]
                c0 = c[cc]
                c1 = c[cc + d1]
                c2 = c[cc + 2 * d1]
                o[0] = a0
                o[1] = a1
                o[2] = a2
                o[3] = b0
                o[4] = b1
                o[5] = b2
                o[6] = c0
                o[7] = c1
                o[8] = c2
    return 0


def native_library(name: str, examples) -> tuple:
    """Entry point ``name`` compiled as a C function (``numba.cfunc``) for arguments of the types of
    ``examples``, linked by the system's ``ld`` into a shared library: its symbol and the library's bytes
    (:mod:`swt_cli._native` keeps them). The code is numba's, made for this CPU as its JIT makes it, only
    position-independent. Its parameters: each array's data pointer or each integer, in order, then a
    pointer to all the arrays' shapes, one after another; it returns the kernel's result as a float."""
    import subprocess
    import tempfile

    import llvmlite.binding as ll
    from numba import carray, cfunc, typeof, types

    from ._native import NEVER_CALLED

    params, lines, sig = [], [], []
    k = 0
    for i, a in enumerate(examples):
        params.append(f"p{i}")
        if isinstance(a, np.ndarray):
            sig.append(types.CPointer(typeof(a).dtype))
            lines.append(f"    a{i} = carray(p{i}, ({''.join(f'dims[{k + j}], ' for j in range(a.ndim))}))")
            k += a.ndim
        else:
            sig.append(types.int64)
            lines.append(f"    a{i} = p{i}")
    args = ", ".join(f"a{i}" for i in range(len(examples)))
    source = f"def wrapper({', '.join(params)}, dims):\n" + "\n".join(lines) + f"\n    return float(kernel({args}))\n"
    scope: dict = {"carray": carray, "kernel": globals()[name]}
    exec(source, scope)
    compiled = cfunc(types.float64(*sig, types.CPointer(types.int64)), nopython=True, error_model="numpy",
                     boundscheck=False)(scope["wrapper"])
    library = compiled._library
    codegen = library._codegen
    machine = ll.Target.from_triple(ll.get_process_triple()).create_target_machine(
        cpu=codegen._get_host_cpu_name(), features=codegen._tm_features, opt=3, reloc="pic", codemodel="default")
    # numba's helpers that raise exceptions or free its arrays: never called by these kernels (see
    # _native.NEVER_CALLED), defined here as traps so that the library needs nothing of numba's
    traps = "declare void @llvm.trap()\n" + "".join(
        f"define void @{n}() {{\n  call void @llvm.trap()\n  unreachable\n}}\n" for n in NEVER_CALLED)
    with tempfile.TemporaryDirectory() as folder:
        objects = []
        for i, module in enumerate((library._final_module, ll.parse_assembly(traps))):
            objects.append(os.path.join(folder, f"{i}.o"))
            with open(objects[-1], "wb") as f:
                f.write(machine.emit_object(module))
        out = os.path.join(folder, "kernel.so")
        subprocess.run(["ld", "-shared", "-o", out, *objects], check=True, capture_output=True)
        with open(out, "rb") as f:
            return compiled.native_name, f.read()
