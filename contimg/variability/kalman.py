"""Exact Gaussian likelihood of light curves under white + Ornstein-Uhlenbeck noise.

A light curve ``y_k`` at epochs ``t_k`` with measurement variances ``r_k`` (optionally scaled) and
intrinsic red noise modelled as a stationary Ornstein-Uhlenbeck (OU) process
of variance ``a2`` and correlation time ``tau`` (a damped random walk; Kelly,
Bechtold & Siemiginowska 2009, ApJ 698, 895) has the covariance
``C = diag(r) + a2 exp(-|t_i - t_j| / tau)``. Because the OU process is Markov,
a scalar Kalman filter computes the Cholesky whitening ``L^-1 x`` of any column
``x`` in O(N), on irregular epochs, together with ``log det C`` (the sum of the
innovation variances' logs). Whitening the data, a constant and a bank of
templates with the same filter gives every inner product generalised least
squares needs, for all templates at once.

The kernels are compiled with numba and run over sources in parallel. The
ESE templates are evaluated inside the kernel with :func:`shape_scalar`, which
must equal :func:`contimg.variability.esemodel.ese_shape` (a test checks it).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["shape_scalar", "whitened_products"]


@numba.njit(cache=True, inline="always")
def shape_scalar(dt: float, duration: float, caustic_amp: float, caustic_width: float, edge_frac: float) -> float:
    """Unit-depth ESE template at one time offset (see ``ese_shape``).

    Parameters
    ----------
    dt
        Time from the middle of the event (days; the sign does not matter).
    duration
        Full width of the dip at half depth (days).
    caustic_amp
        Peak brightening at ingress and egress, as a fraction of the depth.
    caustic_width
        Half-width of each caustic brightening, as a fraction of ``duration`` (0: none).
    edge_frac
        Width of each dip edge taper, as a fraction of ``duration`` (must be > 0).

    Returns
    -------
    float
        -1 on the flat bottom of the dip, 0 outside the event, up to ``+caustic_amp`` on the caustics.
    """
    dt = abs(dt)
    edge = edge_frac * duration
    inner = 0.5 * duration - 0.5 * edge
    outer = inner + edge
    x = (dt - inner) / edge
    if x < 0.0:
        x = 0.0
    elif x > 1.0:
        x = 1.0
    dip = 0.5 * (1.0 + math.cos(math.pi * x))
    cw = caustic_width * duration
    bump = 0.0
    if cw > 0.0 and caustic_amp != 0.0:
        xx = abs(dt - outer) / cw
        if xx < 1.0:
            bump = 0.5 * (1.0 + math.cos(math.pi * xx))
    return caustic_amp * bump - dip


@numba.njit(cache=True, parallel=True, nogil=True)
def _products(t, y, r, counts, a2, tau, rscale, bc, bd, ba, bw, edge_frac, sq, cd, c1, logdet):  # pragma: no cover - compiled
    n_src = t.shape[0]
    n_grid = a2.shape[1]
    n_tmpl = bc.shape[1]
    n_cols = 2 + n_tmpl
    for b in numba.prange(n_src):
        n = counts[b]
        m = np.zeros(n_cols)
        e = np.zeros(n_cols)
        # the columns at every epoch, evaluated once for all noise models
        X = np.empty((n, n_cols))
        for k in range(n):
            X[k, 0] = y[b, k]
            X[k, 1] = 1.0
            for j in range(n_tmpl):
                X[k, 2 + j] = shape_scalar(t[b, k] - bc[b, j], bd[b, j], ba[b, j], bw[b, j], edge_frac)
        for g in range(n_grid):
            var = a2[b, g]
            ts = tau[b, g]
            rs = rscale[b, g]
            P = var
            for j in range(n_cols):
                m[j] = 0.0
            ld = 0.0
            tprev = t[b, 0]
            for k in range(n):
                tk = t[b, k]
                phi = math.exp(-(tk - tprev) / ts)
                phi2 = phi * phi
                Pp = phi2 * P + var * (1.0 - phi2)
                S = Pp + rs * r[b, k]
                isq = 1.0 / math.sqrt(S)
                gain = Pp / S
                for j in range(n_cols):
                    mp = phi * m[j]
                    v = X[k, j] - mp
                    e[j] = v * isq
                    m[j] = mp + gain * v
                e0 = e[0]
                e1 = e[1]
                for j in range(n_cols):
                    sq[b, g, j] += e[j] * e[j]
                    cd[b, g, j] += e[j] * e0
                    c1[b, g, j] += e[j] * e1
                P = Pp * (1.0 - gain)
                tprev = tk
                ld += math.log(S)
            logdet[b, g] = ld


def whitened_products(
    t: np.ndarray,
    y: np.ndarray,
    r: np.ndarray,
    counts: np.ndarray,
    *,
    a2: np.ndarray,
    tau: np.ndarray,
    rscale: np.ndarray | None = None,
    bank: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    edge_frac: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inner products of whitened columns (data, constant, templates) for many sources.

    Parameters
    ----------
    t, y, r
        Padded epochs, data and measurement variances, shape (B, N); only the
        first ``counts[b]`` entries of row ``b`` are used (time-ordered).
    counts
        Epochs per source.
    a2, tau
        OU variance and correlation time, shape (B, G): G noise models per source.
    rscale
        Factor applied to the measurement variances ``r`` (the square of an
        error scale), shape (B, G); default 1.
    bank
        Templates per source ``(centre, duration, caustic amplitude, caustic
        width fraction)``, each (B, T); None for no template.
    edge_frac
        Dip edge width as a fraction of the duration (as in ``ese_shape``).

    Returns
    -------
    sq, cross_data, cross_const, logdet
        ``sum e_j**2``, ``sum e_j e_data``, ``sum e_j e_const`` with shape
        (B, G, 2 + T) (column 0 data, 1 constant, 2... templates) and
        ``log det C`` (B, G).
    """
    n_src = t.shape[0]
    n_grid = a2.shape[1]
    if rscale is None:
        rscale = np.ones_like(a2)
    if bank is None:
        empty = np.zeros((n_src, 0))
        bank = (empty, empty, empty, empty)
    bc, bd, ba, bw = (np.ascontiguousarray(np.broadcast_to(x, (n_src, bank[0].shape[1])), dtype=np.float64) for x in bank)
    n_cols = 2 + bc.shape[1]
    sq = np.zeros((n_src, n_grid, n_cols))
    cd = np.zeros((n_src, n_grid, n_cols))
    c1 = np.zeros((n_src, n_grid, n_cols))
    logdet = np.zeros((n_src, n_grid))
    _products(
        np.ascontiguousarray(t, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
        np.ascontiguousarray(r, dtype=np.float64), np.ascontiguousarray(counts, dtype=np.int64),
        np.ascontiguousarray(a2, dtype=np.float64), np.ascontiguousarray(tau, dtype=np.float64),
        np.ascontiguousarray(np.broadcast_to(rscale, a2.shape), dtype=np.float64), bc, bd, ba, bw, float(edge_frac), sq, cd, c1, logdet,
    )
    return sq, cd, c1, logdet


@numba.njit(cache=True, parallel=True, nogil=True)
def _box_kernel(y, w, starts, counts, widths, dchi2, best_lo, best_hi):  # pragma: no cover - compiled
    n_src = starts.shape[0]
    for b in numba.prange(n_src):
        s = starts[b]
        n = counts[b]
        cw = np.zeros(n + 1)
        cwy = np.zeros(n + 1)
        for k in range(n):
            cw[k + 1] = cw[k] + w[s + k]
            cwy[k + 1] = cwy[k] + w[s + k] * y[s + k]
        wtot = cw[n]
        ybar = cwy[n] / wtot
        for j in range(widths.shape[0]):
            width = widths[j]
            h = width // 2
            need = max(3, width // 2)
            best = 0.0
            for i in range(n):
                lo = max(i - h, 0)
                hi = min(i + h + 1, n)
                n_in = hi - lo
                if n_in < need or n - n_in < 5:
                    continue
                w_in = cw[hi] - cw[lo]
                num = (cwy[hi] - cwy[lo]) - w_in * ybar
                if num >= 0.0:
                    continue
                den = w_in * (1.0 - w_in / wtot)
                if den <= 0.0:
                    continue
                d = num * num / den
                if d > best:
                    best = d
                    best_lo[b, j] = s + lo
                    best_hi[b, j] = s + hi
            dchi2[b, j] = best


def box_scan(
    y: np.ndarray, w: np.ndarray, starts: np.ndarray, counts: np.ndarray, widths: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best negative box of each width (in epochs) in long-format light curves, white noise.

    For every source (rows ``starts[b] : starts[b] + counts[b]``) and width,
    the window of that many consecutive epochs (truncated at the ends, at
    least half full) whose weighted mean lies furthest *below* the source's
    weighted mean, in units of its Delta-chi^2 against a constant:
    ``(sum_in w y - w_in ybar)**2 / (w_in (1 - w_in / w_tot))``.

    Windows are centred on each epoch and span ``2 * (width // 2) + 1`` epochs (so an even width gets one
    more), truncated at the ends; a window needs at least ``max(3, width // 2)`` epochs inside and 5 outside.

    Parameters
    ----------
    y
        Fluxes of all sources, concatenated (long format), shape (Nrows,).
    w
        Their weights (1 / sigma**2), shape (Nrows,), positive.
    starts, counts
        First row and number of rows of each source, shape (Nsrc,), rows in time order; every count > 0.
    widths
        Box widths to try, in epochs.

    Returns
    -------
    dchi2, lo, hi
        (sources x widths): the best Delta-chi^2 (0 if none) and the row
        range ``lo:hi`` of the best window (-1 if none), rows of ``y`` (``starts`` included).
    """
    n_src, n_w = len(starts), len(widths)
    dchi2 = np.zeros((n_src, n_w))
    lo = np.full((n_src, n_w), -1, dtype=np.int64)
    hi = np.full((n_src, n_w), -1, dtype=np.int64)
    if n_src:
        _box_kernel(np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64),
                    np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(counts, dtype=np.int64),
                    np.asarray(widths, dtype=np.int64), dchi2, lo, hi)
    return dchi2, lo, hi
