"""Detection of extreme scattering events (ESEs) in many light curves at once.

An ESE is a plasma-lensing event: for 14-180 days the flux of a compact source
dips by 10-50 %, often with brightenings at ingress and egress (Fiedler et al.
1987, Nature 326, 675; 1994, ApJ 430, 581; Clegg, Fey & Lazio 1998, ApJ 496,
253). The detector asks, for every source, how much better its light curve is
explained by *a dip of that shape on top of the source's own noise* than by
*the noise alone*, where "noise" includes the source's intrinsic red-noise
variability. A significance is only meaningful against that null: a red-noise
wander of a few per cent over months is hugely "significant" against
measurement errors alone, and a deviation in units of the curve's own scatter
can never exceed sqrt(N-1).

Method
------
1. *Normalise and clip.* Fluxes are divided by the source's median (``y =
   S/median - 1``, errors likewise). Epochs deviating from a running median
   (``clip_window`` epochs) by more than ``clip_sigma`` times
   ``max(error, robust scatter)`` are dropped: single bad nights must not
   pass for a two-week dip, while a dip, being smooth, survives the median.
2. *Gate* (white noise, cumulative sums, every source): the best negative
   box of every other pre-scan width (in epochs) and its Delta-chi^2,
   deflated by ``max(1, chi2_nu)``. Sources below ``prefilter_min_dchi2``
   are not examined further; at the 5-sigma threshold a candidate needs a
   likelihood ratio (below) of ~55, which no source below the gate reaches.
3. *Noise model.* Each examined light curve is modelled as
   ``y = mu + A s(t) + x(t) + e``, with ``e`` the measurement errors, ``x`` a
   stationary Ornstein-Uhlenbeck process (damped random walk, amplitude ``a``,
   correlation time ``tau``; Kelly, Bechtold & Siemiginowska 2009, ApJ 698,
   895) and ``s`` a unit-depth ESE template
   (:func:`contimg.variability.esemodel.ese_shape`: dip, optional caustic
   brightenings). The exact Gaussian likelihood is evaluated in O(N) per
   column with a Kalman filter on the irregular epochs
   (:mod:`contimg.variability.kalman`), which whitens the data and every
   template at once; ``mu`` and ``A`` are profiled analytically (generalised
   least squares). ``(a, tau)`` and a factor by which the quoted errors are
   underestimated (``error_scales``, >= 1) are fitted on grids by maximum
   likelihood, separately under the null (no dip) and the alternative.
4. *Template search.* The best boxes of the ``n_proposals`` strongest widths
   of a full box pre-scan seed a coarse bank (durations x
   ``refine_duration_factors``, centres shifted by ``refine_center_fracs`` x
   duration, caustic amplitudes), followed by a fine grid of centre and
   duration around the best template and a grid of caustic strengths and
   widths. The search runs from two starting noise models -- the null fit
   (whose red noise may have absorbed a long, deep dip) and white noise
   (whose sharp likelihood pins down a bright source's dip) -- refitting the
   noise after each and keeping the likelier; only dips (``A > 0``) count.
   The score is the profile likelihood ratio
   ``LR = 2 [max ln L(dip + noise) - max ln L(noise)]``.
5. *Significance.* Under the null, each template's LR is a one-sided chi^2_1;
   the search over centres and durations is a look-elsewhere effect with
   ``N_eff = trials_per_window * sum_w span/w`` effective trials (sum over the
   pre-scan widths), and refitting the noise stretches the tail, so
   ``p = min(1/2, N_eff * P(chi^2_1 > LR / lr_scale) / 2)``, turned into a
   one-sided Gaussian-equivalent sigma (:func:`significance_from_lr`).
   ``trials_per_window`` (3.16) and ``lr_scale`` (1.42) were fitted to the
   top 10 % of the LR distribution of 4,000 simulated null light curves
   (white + OU red noise of 0.3-6 % over 3-300 d, a year of daily epochs
   with gaps and outliers; ``benchmarks/ese_detection.py --calibrate``):
   0.125 % of them reach 3 sigma (0.135 % expected). The extrapolation to
   5 sigma assumes the tail keeps that exponential form.

Sources with fewer than ``min_epochs`` epochs are not scored (NaN). Sources
that fail the gate keep the gate's deflated Delta-chi^2 as their score and a
significance of 0; they are never candidates.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special

from contimg.variability.esemodel import DEFAULT_EDGE_FRAC
from contimg.variability.kalman import box_scan, whitened_products
from contimg.variability.metrics import group_runs, to_padded

log = logging.getLogger(__name__)

__all__ = ["EseResult", "EseSearch", "detect_ese", "significance_from_lr"]


@dataclass(frozen=True)
class EseSearch:
    """Parameters of the ESE search (defaults suit daily cadence over months to years)."""

    box_widths: tuple[int, ...] = (9, 13, 19, 27, 39, 55, 79, 111, 159)
    """Widths (in epochs) of the box pre-scan."""
    refine_duration_factors: tuple[float, ...] = (0.7, 1.0, 1.4)
    refine_center_fracs: tuple[float, ...] = (-0.3, -0.15, 0.0, 0.15, 0.3)
    caustic_amplitudes: tuple[float, ...] = (0.0, 0.4)
    coarse_caustic_width_frac: float = 0.08
    caustic_amplitudes_fine: tuple[float, ...] = (0.0, 0.15, 0.3, 0.45, 0.6, 0.8)
    caustic_width_fracs: tuple[float, ...] = (0.04, 0.07, 0.11)
    fine_duration_factors: tuple[float, ...] = (0.84, 0.92, 1.0, 1.09, 1.19)
    fine_center_fracs: tuple[float, ...] = (-0.1, -0.05, 0.0, 0.05, 0.1)
    n_proposals: int = 3
    prefilter_min_dchi2: float = 36.0
    """Sources whose pre-scan Delta-chi^2 (every other box width, deflated by chi2_nu) is lower are not examined."""
    red_noise_amplitudes: tuple[float, ...] = (0.0, 0.004, 0.008, 0.016, 0.03, 0.06, 0.12, 0.24)
    red_noise_timescales_days: tuple[float, ...] = (4.0, 15.0, 50.0, 150.0)
    error_scales: tuple[float, ...] = (1.0, 1.25, 1.6, 2.0, 2.5)
    """Factors by which the quoted errors may be underestimated (fitted per source, never below 1)."""
    clip_sigma: float = 5.0
    clip_window: int = 7
    min_epochs: int = 20
    min_duration_days: float = 7.0
    chunk_sources: int = 512
    trials_per_window: float = 3.16
    """Calibrated effective trials per (width, position) cell; see :func:`significance_from_lr`."""
    lr_scale: float = 1.42
    """Calibrated stretch of the null LR distribution relative to chi^2_1 (>= 1: a heavier tail)."""


@dataclass(frozen=True)
class EseResult:
    """ESE search results, one entry per source (see :func:`detect_ese`)."""

    source_id: np.ndarray
    n_epochs: np.ndarray
    n_clipped: np.ndarray
    examined: np.ndarray
    score: np.ndarray
    significance: np.ndarray
    depth: np.ndarray
    depth_err: np.ndarray
    t_center: np.ndarray
    duration_days: np.ndarray
    caustic_amplitude: np.ndarray
    caustic_width_frac: np.ndarray
    red_noise_amplitude: np.ndarray
    red_noise_timescale_days: np.ndarray
    error_scale: np.ndarray
    prefilter_dchi2: np.ndarray

    def __len__(self) -> int:
        return int(self.source_id.size)

    def candidates(self, threshold: float) -> np.ndarray:
        """Indices of the sources whose significance is at least ``threshold`` sigma."""
        return np.flatnonzero(self.examined & (np.nan_to_num(self.significance, nan=-np.inf) >= threshold))

    def as_columns(self) -> dict[str, np.ndarray]:
        """The results as a dict of equal-length arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def significance_from_lr(lr: np.ndarray, span_days: np.ndarray, *, search: EseSearch = EseSearch(), cadence_days: float = 1.0) -> np.ndarray:
    """Gaussian-equivalent significance of likelihood ratios, with the trials factor.

    ``p = min(1/2, N_eff * P(chi2_1 > LR / lr_scale) / 2)`` with
    ``N_eff = trials_per_window * sum_w max(1, span / (w * cadence))`` over the
    pre-scan widths ``w``; ``trials_per_window`` and ``lr_scale`` are the
    calibrated constants of :class:`EseSearch`. The result is the one-sided
    normal deviate with tail probability ``p``.

    Parameters
    ----------
    lr
        ``2 Delta ln L`` of the best dip template against the noise model.
    span_days
        Time span of each light curve (sets the number of independent positions).
    search
        The search parameters (box widths, calibrated constants).
    cadence_days
        Typical epoch spacing, to turn box widths into durations.

    Returns
    -------
    numpy.ndarray
        One-sided sigma (0 where the p-value is 1/2 or more).
    """
    lr = np.maximum(np.asarray(lr, dtype=float), 0.0)
    widths = np.asarray(search.box_widths, dtype=float) * cadence_days
    span = np.asarray(span_days, dtype=float)
    n_eff = search.trials_per_window * np.maximum(span[..., None] / widths, 1.0).sum(axis=-1)
    # P(chi2_1 > x) = 2 Phi(-sqrt(x)); log_ndtr stays finite far into the tail
    logp = np.log(n_eff) + special.log_ndtr(-np.sqrt(lr / search.lr_scale))
    logp = np.minimum(logp, np.log(0.5))
    return np.maximum(-special.ndtri_exp(logp), 0.0)


# --------------------------------------------------------------------------- helpers
def _segments(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(starts.size), counts)


def _running_clip(y: np.ndarray, s: np.ndarray, counts: np.ndarray, *, window: int, nsigma: float) -> np.ndarray:
    """Mask (True = keep) of padded light curves after running-median outlier rejection."""
    n_src, width = y.shape
    half = window // 2
    pad = np.full((n_src, half), np.nan)
    yy = np.concatenate((pad, y, pad), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows in the padding
        med = np.nanmedian(sliding_window_view(yy, window, axis=1), axis=2)
    resid = y - med
    valid = np.arange(width)[None, :] < counts[:, None]
    mad = 1.4826 * np.nanmedian(np.where(valid, np.abs(resid), np.nan), axis=1)
    scale = np.maximum(s, mad[:, None])
    return valid & ~(np.abs(resid) > nsigma * scale)


def _box_scan(
    y: np.ndarray,
    w: np.ndarray,
    t: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    widths: tuple[int, ...],
    *,
    locate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best negative box of each width for long-format light curves (white noise).

    Returns ``dchi2`` (sources x widths) and, if ``locate``, the best window's
    centre and span (days; NaN where there is none). See
    :func:`contimg.variability.kalman.box_scan`.
    """
    dchi2, lo, hi = box_scan(y, w, starts, counts, widths)
    center = np.full(dchi2.shape, np.nan)
    span = np.full(dchi2.shape, np.nan)
    if locate:
        good = lo >= 0
        center[good] = 0.5 * (t[lo[good]] + t[hi[good] - 1])
        span[good] = t[hi[good] - 1] - t[lo[good]]
    return dchi2, center, span


def _gls(sq: np.ndarray, cd: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile the constant and each template's amplitude from whitened inner products.

    Returns ``chi2_null`` (B, G), and for every template column (index 2...)
    ``dchi2`` (dips only, else 0) and the stacked amplitude ``A``, its error and
    the constant ``mu`` of the fit with that template.
    """
    dd, d1, o11 = sq[..., 0], cd[..., 1], sq[..., 1]
    chi2_null = dd - d1 * d1 / o11
    ss, sd, s1 = sq[..., 2:], cd[..., 2:], c1[..., 2:]
    num = sd - s1 * (d1 / o11)[..., None]
    den = np.maximum(ss - s1 * s1 / o11[..., None], 1e-300)
    amp = num / den
    dchi2 = np.where(amp > 0, num * num / den, 0.0)
    mu = (d1[..., None] - amp * s1) / o11[..., None]
    return chi2_null, dchi2, np.stack((amp, 1.0 / np.sqrt(den), mu))


def _noise_grid(search: EseSearch, n_src: int) -> tuple[np.ndarray, np.ndarray]:
    amps = np.asarray(search.red_noise_amplitudes, dtype=float)
    taus = np.asarray(search.red_noise_timescales_days, dtype=float)
    a, tau = np.meshgrid(amps, taus, indexing="ij")
    a, tau = a.ravel(), tau.ravel()
    keep = (a > 0) | (tau == tau[0])  # a = 0 is the same model for every tau
    a, tau = a[keep], tau[keep]
    return np.broadcast_to(a * a, (n_src, a.size)).copy(), np.broadcast_to(tau, (n_src, a.size)).copy()


def _examine(
    t_rows: np.ndarray,
    y_rows: np.ndarray,
    s_rows: np.ndarray,
    counts: np.ndarray,
    search: EseSearch,
    cadence: float,
) -> dict[str, np.ndarray]:
    """Stage 2 for one chunk of sources (long-format rows grouped by source)."""
    n_src = counts.size
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # 1. clip outliers against a running median, then compact
    keep = _running_clip(
        to_padded(y_rows, starts, counts), to_padded(s_rows, starts, counts), counts,
        window=search.clip_window, nsigma=search.clip_sigma,
    )
    width = int(counts.max())
    valid = np.arange(width)[None, :] < counts[:, None]
    keep_rows = keep[valid]
    t_rows, y_rows, s_rows = t_rows[keep_rows], y_rows[keep_rows], s_rows[keep_rows]
    new_counts = keep.sum(axis=1)
    n_clipped = counts - new_counts
    starts = np.concatenate(([0], np.cumsum(new_counts)[:-1]))
    # 2. proposals from a box scan of the clipped curves
    dchi2, center, span = _box_scan(y_rows, 1.0 / s_rows**2, t_rows, starts, new_counts, search.box_widths)
    order = np.argsort(-dchi2, axis=1, kind="stable")[:, : search.n_proposals]
    top = order[:, :1]
    order = np.where(np.take_along_axis(dchi2, order, 1) > 0, order, top)
    c0 = np.take_along_axis(center, order, 1)
    d0 = np.maximum(np.take_along_axis(span, order, 1) + cadence, search.min_duration_days)
    bad = ~np.isfinite(c0)
    c0[bad] = 0.5 * (t_rows[starts] + t_rows[starts + new_counts - 1]).repeat(search.n_proposals).reshape(c0.shape)[bad]
    d0[bad] = 30.0
    fd = np.asarray(search.refine_duration_factors)
    fc = np.asarray(search.refine_center_fracs)
    ca = np.asarray(search.caustic_amplitudes)
    shape = (n_src, c0.shape[1], fd.size, fc.size, ca.size)
    tmpl_c = np.broadcast_to(c0[:, :, None, None, None] + fc[None, None, None, :, None] * d0[:, :, None, None, None], shape).reshape(n_src, -1)
    tmpl_d = np.broadcast_to(d0[:, :, None, None, None] * fd[None, None, :, None, None], shape).reshape(n_src, -1)
    tmpl_a = np.broadcast_to(ca[None, None, None, None, :], shape).reshape(n_src, -1)
    # 3. padded arrays for the compiled filter
    T = to_padded(t_rows, starts, new_counts, fill=0.0)
    Y = to_padded(y_rows, starts, new_counts, fill=0.0)
    R = to_padded(s_rows**2, starts, new_counts, fill=1.0)
    tc, td, ta = tmpl_c, tmpl_d, tmpl_a
    a2_grid, tau_grid = _noise_grid(search, n_src)
    scales2 = np.asarray(search.error_scales, dtype=float) ** 2
    sel = np.arange(n_src)

    def products(bank, a2, tau, rs):
        return whitened_products(T, Y, R, new_counts, a2=a2, tau=tau, rscale=rs, bank=bank, edge_frac=DEFAULT_EDGE_FRAC)

    def scan(bank, nm):
        """Best template of ``bank`` at fixed noise parameters ``nm = (a2, tau, error scale**2)``."""
        sq, cd, c1, logdet = products(bank, *(x[:, None] for x in nm))
        chi2_null, dchi2, par = _gls(sq, cd, c1)
        j = np.argmax(dchi2[:, 0, :], axis=1)
        ll = -0.5 * (chi2_null[:, 0] - dchi2[sel, 0, j] + logdet[:, 0])
        return j, ll, par[:, sel, 0, j]

    def best_of(bank, a2, tau, rs):
        sq, cd, c1, logdet = products(bank, a2, tau, rs)
        chi2_null, dchi2, _ = _gls(sq, cd, c1)
        ll = -0.5 * (chi2_null + logdet) if bank is None else -0.5 * (chi2_null - dchi2[..., 0] + logdet)
        g = np.argmax(ll, axis=1)
        return a2[sel, g], tau[sel, g], rs[sel, g], ll[sel, g]

    joint_a2 = np.repeat(a2_grid, scales2.size, axis=1)
    joint_tau = np.repeat(tau_grid, scales2.size, axis=1)
    joint_rs = np.tile(scales2, (n_src, a2_grid.shape[1]))

    def refit(bank, *, joint: bool = False):
        """Noise parameters maximising the likelihood with one template per source (or none).

        ``joint``: over the full grid of OU models x error scales (used for the
        two likelihoods whose ratio is the score). Otherwise a cheaper
        coordinate ascent for the intermediate steps: the error scale without
        red noise (an upper bound, as it absorbs any red noise), the OU grid at
        that scale, the error scale again at that OU model.
        """
        if joint:
            a2, tau, rs, ll = best_of(bank, joint_a2, joint_tau, joint_rs)
            return (a2, tau, rs), ll
        shape = (n_src, scales2.size)
        zeros, ones = np.zeros(shape), np.ones(shape)
        _, _, rs, _ = best_of(bank, zeros, ones, np.broadcast_to(scales2, shape))
        a2, tau, _, _ = best_of(bank, a2_grid, tau_grid, np.broadcast_to(rs[:, None], a2_grid.shape))
        a2, tau, rs, ll = best_of(bank, np.broadcast_to(a2[:, None], shape), np.broadcast_to(tau[:, None], shape),
                                  np.broadcast_to(scales2, shape))
        return (a2, tau, rs), ll

    def null_loglike(nm):
        sq, cd, c1, logdet = products(None, *(x[:, None] for x in nm))
        chi2_null, _, _ = _gls(sq, cd, c1)
        return -0.5 * (chi2_null[:, 0] + logdet[:, 0])

    def pick(bank, j):
        return tuple(b[sel, j][:, None] for b in bank)

    coarse = (tc, td, ta, np.full_like(ta, search.coarse_caustic_width_frac))
    # 4. null: noise parameters by maximum likelihood
    nm_0, ll_null = refit(None, joint=True)
    gd = np.asarray(search.fine_duration_factors)
    gc = np.asarray(search.fine_center_fracs)
    amps, widths = np.meshgrid(np.asarray(search.caustic_amplitudes_fine), np.asarray(search.caustic_width_fracs), indexing="ij")
    keep = (amps.ravel() > 0) | (widths.ravel() == widths.ravel()[0])
    amps, widths = amps.ravel()[keep], widths.ravel()[keep]

    def fine_bank(best):
        c, d, a, w = best
        shape = (n_src, gd.size, gc.size)
        return (
            np.broadcast_to(c[:, :, None] + gc[None, None, :] * d[:, :, None], shape).reshape(n_src, -1),
            np.broadcast_to(d[:, :, None] * gd[None, :, None], shape).reshape(n_src, -1),
            np.broadcast_to(a[:, :, None], shape).reshape(n_src, -1),
            np.broadcast_to(w[:, :, None], shape).reshape(n_src, -1),
        )

    def shape_bank(best):
        c, d, _, _ = best
        n = amps.size
        return (np.broadcast_to(c, (n_src, n)), np.broadcast_to(d, (n_src, n)),
                np.broadcast_to(amps, (n_src, n)), np.broadcast_to(widths, (n_src, n)))

    def chain(nm):
        """Coarse, fine and caustic-shape scans at fixed noise, then refit the noise."""
        best = pick(coarse, scan(coarse, nm)[0])
        bank = fine_bank(best)
        best = pick(bank, scan(bank, nm)[0])
        bank = shape_bank(best)
        best = pick(bank, scan(bank, nm)[0])
        nm, ll = refit(best)
        return best, nm, ll

    # 5. template search from two starting noise models -- the null fit, whose
    #    red noise may have absorbed a long deep dip, and white noise at the
    #    quoted errors, whose sharp likelihood pins down a bright source's dip
    best_n, nm_n, ll_n = chain(nm_0)
    best_w, nm_w, ll_w = chain((np.zeros(n_src), nm_0[1], np.ones(n_src)))
    w_ = ll_w > ll_n
    best = tuple(np.where(w_[:, None], bw, bn) for bw, bn in zip(best_w, best_n))
    nm_1 = tuple(np.where(w_, xw, xn) for xw, xn in zip(nm_w, nm_n))
    # 6. polish the position and duration at the fitted noise, refit, final fit
    bank = fine_bank(best)
    best = pick(bank, scan(bank, nm_1)[0])
    nm_2, _ = refit(best, joint=True)
    _, ll_alt, (amp, amp_err, mu) = scan(best, nm_2)
    # the null's own coordinate ascent may stop short of its maximum; the noise
    # models found with a dip are candidates for it too (a higher null
    # likelihood only lowers the ratio)
    for nm in (nm_n, nm_w, nm_1, nm_2):
        ll_null = np.maximum(ll_null, null_loglike(nm))
    lr = np.maximum(2.0 * (ll_alt - ll_null), 0.0)
    out = {
        "score": lr,
        "depth": amp / (1.0 + mu),
        "depth_err": amp_err / np.abs(1.0 + mu),
        "t_center": best[0][:, 0],
        "duration_days": best[1][:, 0],
        "caustic_amplitude": best[2][:, 0],
        "caustic_width_frac": best[3][:, 0],
        "red_noise_amplitude": np.sqrt(nm_2[0]),
        "red_noise_timescale_days": nm_2[1],
        "error_scale": np.sqrt(nm_2[2]),
        "span": T[sel, new_counts - 1] - T[:, 0],
    }
    out["n_clipped"] = n_clipped
    return out


def detect_ese(
    source_idx: np.ndarray,
    t_days: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    *,
    search: EseSearch = EseSearch(),
) -> EseResult:
    """Search every light curve of a long-format photometry table for an ESE.

    Parameters
    ----------
    source_idx
        Source id of every measurement; rows grouped by source and sorted by
        time within a source (see :func:`contimg.variability.metrics.sort_long`).
    t_days
        Epoch of every measurement (days, e.g. MJD).
    flux, flux_err
        Flux density and its 1-sigma error (> 0).
    search
        Search parameters.

    Returns
    -------
    EseResult
        One entry per source in order of appearance; ``significance`` is the
        Gaussian-equivalent sigma of the best dip (see the module docstring),
        ``depth`` its fractional depth, ``t_center``/``duration_days`` where
        and how long.

    Raises
    ------
    ValueError
        If the columns differ in length, are not grouped by source or not
        time-ordered within a source, or an error is not positive.
    """
    source_idx = np.asarray(source_idx)
    t = np.asarray(t_days, dtype=float)
    f = np.asarray(flux, dtype=float)
    e = np.asarray(flux_err, dtype=float)
    if not (source_idx.shape == t.shape == f.shape == e.shape):
        raise ValueError("source_idx, t_days, flux and flux_err must have the same length")
    if f.size and not (np.all(e > 0) and np.all(np.isfinite(e)) and np.all(np.isfinite(f)) and np.all(np.isfinite(t))):
        raise ValueError("flux, t_days must be finite and flux_err finite and positive")
    ids, starts, counts = group_runs(source_idx)
    n_src = ids.size
    seg = _segments(starts, counts)
    if f.size and np.any(np.diff(t)[seg[1:] == seg[:-1]] < 0):
        raise ValueError("light curves must be sorted by time within each source")
    nan = np.full(n_src, np.nan)
    res = {k: nan.copy() for k in ("score", "significance", "depth", "depth_err", "t_center", "duration_days",
                                    "caustic_amplitude", "caustic_width_frac", "red_noise_amplitude", "red_noise_timescale_days",
                                    "error_scale", "prefilter_dchi2")}
    n_clipped = np.zeros(n_src, dtype=np.int64)
    examined = np.zeros(n_src, dtype=bool)
    usable = counts >= search.min_epochs
    if n_src == 0 or not usable.any():
        return EseResult(ids, counts, n_clipped, examined, **res)
    # normalise by the median of each light curve
    med = np.nanmedian(to_padded(f, starts, counts), axis=1)
    usable &= med > 0
    row_ok = usable[seg]
    y = np.where(row_ok, f / np.where(usable, med, 1.0)[seg] - 1.0, 0.0)
    s = e / np.where(usable, med, 1.0)[seg]
    cadence = float(np.nanmedian(np.diff(t)[seg[1:] == seg[:-1]])) if f.size > 1 else 1.0
    # gate: white-noise box scan, deflated by the source's reduced chi-square
    u = np.flatnonzero(usable)
    urows = np.flatnonzero(row_ok)
    ucounts = counts[u]
    ustarts = np.concatenate(([0], np.cumsum(ucounts)[:-1]))
    w = 1.0 / s[urows] ** 2
    dchi2, _, _ = _box_scan(y[urows], w, t[urows], ustarts, ucounts, search.box_widths[::2], locate=False)
    useg = _segments(ustarts, ucounts)
    wsum = np.add.reduceat(w, ustarts)
    ybar = np.add.reduceat(w * y[urows], ustarts) / wsum
    chi2_nu = np.add.reduceat(w * (y[urows] - ybar[useg]) ** 2, ustarts) / np.maximum(ucounts - 1, 1)
    gate = dchi2.max(axis=1) / np.maximum(chi2_nu, 1.0)
    res["prefilter_dchi2"][u] = gate
    res["score"][u] = gate
    todo = u[gate >= search.prefilter_min_dchi2]
    log.info("ESE search: %d sources, %d usable, %d examined in detail", n_src, u.size, todo.size)
    for lo in range(0, todo.size, search.chunk_sources):
        chunk = todo[lo : lo + search.chunk_sources]
        rows = np.concatenate([np.arange(starts[i], starts[i] + counts[i]) for i in chunk])
        out = _examine(t[rows], y[rows], s[rows], counts[chunk], search, cadence)
        for key in ("score", "depth", "depth_err", "t_center", "duration_days", "caustic_amplitude",
                    "caustic_width_frac", "red_noise_amplitude", "red_noise_timescale_days", "error_scale"):
            res[key][chunk] = out[key]
        res["significance"][chunk] = significance_from_lr(out["score"], out["span"], search=search, cadence_days=cadence)
        n_clipped[chunk] = out["n_clipped"]
        examined[chunk] = True
    not_examined = usable & ~examined
    res["significance"][not_examined] = 0.0
    return EseResult(ids, counts, n_clipped, examined, **res)
