"""Per-source variability statistics, vectorised over many ragged light curves.

Light curves are passed in *long format*: one row per measurement, in arrays
``source_idx``, ``flux``, ``flux_err`` (and usually ``t_days``) sorted by source
(and by time within a source; see :func:`sort_long`). Every statistic is then
computed for all sources at once with ``np.add.reduceat`` over the contiguous
runs, so scoring 50,000 sources x 200 epochs is a few array passes.

Statistics (per source, ``N`` epochs, weights ``w = 1/sigma**2``):

``weighted_mean``, ``weighted_mean_err``
    ``sum(w S) / sum(w)`` and ``sum(w)**-0.5``.
``chi2_nu``
    ``sum(w (S - weighted_mean)**2) / (N - 1)``: the reduced chi-square of a
    constant model.
``eta``
    The weighted reduced chi-square in the form used by TraP (Swinbank et al.
    2015, A&C 11, 25, eq. 3) and the VAST pipeline:
    ``N/(N-1) * (mean(w S**2) - mean(w S)**2 / mean(w))``. Mathematically equal
    to ``chi2_nu``; kept under its own name because surveys threshold on it.
``v``
    Coefficient of variation ``std(S, ddof=1) / mean(S)`` (TraP's V; Swinbank
    et al. 2015, eq. 2).
``m_debiased``
    Modulation index with the measurement noise removed,
    ``sqrt(max(var(S) - mean(sigma**2), 0)) / mean(S)`` (Barvainis et al. 2005,
    ApJ 618, 108; Sadler et al. 2006, MNRAS 371, 898): the fractional rms of the
    *intrinsic* variability, ~0 for a steady source whatever its SNR.
``vs_max``, ``m_max``
    The two-epoch statistics of Mooley et al. (2016, ApJ 818, 105):
    ``Vs = (S1 - S2) / sqrt(sigma1**2 + sigma2**2)`` and
    ``m = 2 (S1 - S2) / (S1 + S2)``. ``vs_max`` is the largest ``|Vs|`` over all
    epoch pairs (computed exactly, with a bound that prunes pairs that cannot
    win); ``m_max`` is the largest ``|m|`` among the *significant* pairs
    (``|Vs| >= vs_threshold``, 4.3 in Mooley et al. 2016), 0 if there are none,
    as in the VAST pipeline's ``m_abs_significant_max``. Mooley et al. call a
    source variable if some pair has ``|Vs| >= 4.3`` and ``|m| >= 0.26``.
``chi2_sigma``
    The Gaussian-equivalent significance of ``chi2_nu`` against a constant
    source with correct errors (a white-noise test; red noise and error
    misestimates make it large too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
from scipy import special, stats

log = logging.getLogger(__name__)

__all__ = [
    "MOOLEY_M_THRESHOLD",
    "MOOLEY_VS_THRESHOLD",
    "VariabilityMetrics",
    "group_runs",
    "sort_long",
    "to_padded",
    "variability_metrics",
]

MOOLEY_VS_THRESHOLD = 4.3
"""|Vs| above which a two-epoch flux difference is significant (Mooley et al. 2016)."""
MOOLEY_M_THRESHOLD = 0.26
"""|m| above which a significant two-epoch change counts as variability (Mooley et al. 2016)."""

_PAIR_BLOCK = 4_000_000
"""Largest number of epoch pairs held in memory at once by the pairwise statistics."""


def sort_long(source_idx: np.ndarray, t_days: np.ndarray | None = None) -> np.ndarray:
    """Permutation that sorts long-format rows by source (then time).

    Parameters
    ----------
    source_idx
        Source id of every row.
    t_days
        Epoch of every row (optional secondary key).

    Returns
    -------
    numpy.ndarray
        Indices that put the rows in order; apply it to every column.
    """
    if t_days is None:
        return np.argsort(source_idx, kind="stable")
    return np.lexsort((t_days, source_idx))


def group_runs(source_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique ids, start offsets and lengths of the runs of a sorted id column.

    Parameters
    ----------
    source_idx
        Source id of every row, sorted (equal ids contiguous).

    Returns
    -------
    ids, starts, counts
        One entry per source.

    Raises
    ------
    ValueError
        If the column is not grouped (an id appears in two separate runs).
    """
    source_idx = np.asarray(source_idx)
    if source_idx.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return source_idx[:0], empty, empty
    change = np.flatnonzero(source_idx[1:] != source_idx[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ids = source_idx[starts]
    if np.unique(ids).size != ids.size:
        raise ValueError("long-format rows are not grouped by source; sort them with sort_long() first")
    counts = np.diff(np.concatenate((starts, [source_idx.size]))).astype(np.int64)
    return ids, starts, counts


def to_padded(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, *, fill: float = np.nan) -> np.ndarray:
    """Scatter long-format values into a (sources x max epochs) matrix.

    Parameters
    ----------
    values
        One value per row (rows grouped by source).
    starts, counts
        From :func:`group_runs`.
    fill
        Value of the padding cells.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(starts), counts.max())``; row ``i`` holds source ``i``'s
        values left-aligned.
    """
    n_src = len(starts)
    width = int(counts.max()) if n_src else 0
    out = np.full((n_src, width), fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    row = np.repeat(np.arange(n_src), counts)
    col = np.arange(values.size) - np.repeat(starts, counts)
    out[row, col] = values
    return out


@dataclass(frozen=True)
class VariabilityMetrics:
    """Variability statistics of many sources (one array entry per source).

    See the module docstring for definitions and references. Entries of
    sources with fewer than two epochs are NaN (``n_epochs`` tells why).
    """

    source_id: np.ndarray
    n_epochs: np.ndarray
    weighted_mean: np.ndarray
    weighted_mean_err: np.ndarray
    mean: np.ndarray
    chi2_nu: np.ndarray
    chi2_sigma: np.ndarray
    eta: np.ndarray
    v: np.ndarray
    m_debiased: np.ndarray
    vs_max: np.ndarray
    m_max: np.ndarray

    def __len__(self) -> int:
        return int(self.source_id.size)

    def as_columns(self) -> dict[str, np.ndarray]:
        """The statistics as a dict of equal-length arrays (e.g. for a bulk insert)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _chi2_sigma(chi2: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent significance of ``chi2`` with ``dof`` degrees of freedom (one-sided)."""
    out = np.full(chi2.shape, np.nan)
    ok = (dof > 0) & np.isfinite(chi2)
    logp = stats.chi2.logsf(chi2[ok], dof[ok])
    out[ok] = -special.ndtri_exp(logp)
    return out


def _pair_blocks(counts: np.ndarray, members: np.ndarray) -> list[np.ndarray]:
    """Split the sources in ``members`` into blocks of about ``_PAIR_BLOCK`` padded pairs each."""
    if members.size == 0:
        return []
    members = members[np.argsort(counts[members], kind="stable")]  # similar widths share a block
    cost = np.maximum(counts[members].astype(np.int64), 1) ** 2
    block_id = (np.cumsum(cost) - 1) // _PAIR_BLOCK
    cuts = np.flatnonzero(np.diff(block_id)) + 1
    return np.split(members, cuts)


def _padded_subset(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Padded (len(sub) x max count) matrix of the runs of the sources ``sub``."""
    c = counts[sub]
    new_starts = np.concatenate(([0], np.cumsum(c)[:-1]))
    rows = np.repeat(starts[sub] - new_starts, c) + np.arange(c.sum())
    return to_padded(values[rows], new_starts, c)


def _vs_max(flux: np.ndarray, err: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Exact max |Vs| over all epoch pairs of every source (Mooley et al. 2016).

    The pair (brightest, faintest) gives a lower bound ``L``. A measurement ``i``
    can only be part of a pair beating it if
    ``max(S_max - S_i, S_i - S_min) / sqrt(sigma_i**2 + sigma_min**2) >= L``, so
    only the few measurements passing that bound are paired exhaustively.
    """
    n_src = starts.size
    out = np.full(n_src, np.nan)
    has_pair = counts >= 2
    if not has_pair.any():
        return out
    seg = np.repeat(np.arange(n_src), counts)
    fmax = np.maximum.reduceat(flux, starts)
    fmin = np.minimum.reduceat(flux, starts)
    emin = np.minimum.reduceat(err, starts)
    # error at the extreme fluxes (first occurrence)
    is_max = flux == fmax[seg]
    is_min = flux == fmin[seg]
    row = np.arange(flux.size)
    i_max = np.minimum.reduceat(np.where(is_max, row, flux.size), starts)
    i_min = np.minimum.reduceat(np.where(is_min, row, flux.size), starts)
    lower = (fmax - fmin) / np.hypot(err[np.minimum(i_max, flux.size - 1)], err[np.minimum(i_min, flux.size - 1)])
    upper = np.maximum(fmax[seg] - flux, flux - fmin[seg]) / np.hypot(err, emin[seg])
    keep = upper >= lower[seg] * (1.0 - 1e-12)
    k_flux, k_err, k_seg = flux[keep], err[keep], seg[keep]
    k_counts = np.bincount(k_seg, minlength=n_src)
    k_starts = np.concatenate(([0], np.cumsum(k_counts)[:-1]))
    out[has_pair] = lower[has_pair]
    todo = np.flatnonzero(has_pair & (k_counts > 2))
    for block in _pair_blocks(k_counts, todo):
        f = _padded_subset(k_flux, k_starts, k_counts, block)
        e = _padded_subset(k_err, k_starts, k_counts, block)
        vs = np.abs(f[:, :, None] - f[:, None, :]) / np.sqrt(e[:, :, None] ** 2 + e[:, None, :] ** 2)
        out[block] = np.fmax(np.nanmax(vs.reshape(len(block), -1), axis=1), lower[block])
    return out


def _m_max_significant(flux: np.ndarray, err: np.ndarray, starts: np.ndarray, counts: np.ndarray, sources: np.ndarray, vs_threshold: float) -> np.ndarray:
    """Max |m| over pairs with |Vs| >= threshold, for the given sources (others 0).

    For positive fluxes |m| is largest for the (brightest, faintest) pair, so
    when that pair is itself significant it is the answer; only the remaining
    sources are paired exhaustively.
    """
    out = np.zeros(starts.size)
    if sources.size == 0:
        return out
    f_pad_max = np.maximum.reduceat(flux, starts)[sources]
    f_pad_min = np.minimum.reduceat(flux, starts)[sources]
    row = np.arange(flux.size)
    seg = np.repeat(np.arange(starts.size), counts)
    i_max = np.minimum.reduceat(np.where(flux == np.maximum.reduceat(flux, starts)[seg], row, flux.size), starts)[sources]
    i_min = np.minimum.reduceat(np.where(flux == np.minimum.reduceat(flux, starts)[seg], row, flux.size), starts)[sources]
    vs_ext = (f_pad_max - f_pad_min) / np.hypot(err[i_max], err[i_min])
    easy = (f_pad_min > 0) & (vs_ext >= vs_threshold)
    out[sources[easy]] = 2.0 * (f_pad_max[easy] - f_pad_min[easy]) / (f_pad_max[easy] + f_pad_min[easy])
    # a measurement can only be in a significant pair if its best conceivable
    # partner (the extreme flux on the other side, with the smallest error) makes one
    hard = sources[~easy]
    in_hard = np.zeros(starts.size, dtype=bool)
    in_hard[hard] = True
    fmax_all = np.maximum.reduceat(flux, starts)[seg]
    fmin_all = np.minimum.reduceat(flux, starts)[seg]
    emin_all = np.minimum.reduceat(err, starts)[seg]
    upper = np.maximum(fmax_all - flux, flux - fmin_all) / np.hypot(err, emin_all)
    keep = in_hard[seg] & (upper >= vs_threshold)
    k_flux, k_err = flux[keep], err[keep]
    k_counts = np.bincount(seg[keep], minlength=starts.size)
    k_starts = np.concatenate(([0], np.cumsum(k_counts)[:-1]))
    for block in _pair_blocks(k_counts, hard[k_counts[hard] >= 2]):
        f = _padded_subset(k_flux, k_starts, k_counts, block)
        e = _padded_subset(k_err, k_starts, k_counts, block)
        diff = f[:, :, None] - f[:, None, :]
        vs = np.abs(diff) / np.sqrt(e[:, :, None] ** 2 + e[:, None, :] ** 2)
        total = f[:, :, None] + f[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.abs(2.0 * diff / total)
        m = np.where((vs >= vs_threshold) & (total > 0), m, 0.0)
        out[block] = np.nanmax(m.reshape(len(block), -1), axis=1)
    return out


def variability_metrics(
    source_idx: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    *,
    vs_threshold: float = MOOLEY_VS_THRESHOLD,
) -> VariabilityMetrics:
    """Variability statistics of every source in a long-format photometry table.

    Parameters
    ----------
    source_idx
        Source id of every measurement, grouped (sorted) by source.
    flux
        Flux densities (any unit; ratios are unitless).
    flux_err
        1-sigma uncertainties (same unit), > 0.
    vs_threshold
        |Vs| defining a significant epoch pair for ``m_max``.

    Returns
    -------
    VariabilityMetrics
        One entry per source, in the order of first appearance.

    Raises
    ------
    ValueError
        If the arrays differ in length, are not grouped by source, or an error
        is not positive and finite.
    """
    flux = np.asarray(flux, dtype=float)
    err = np.asarray(flux_err, dtype=float)
    source_idx = np.asarray(source_idx)
    if not (flux.shape == err.shape == source_idx.shape):
        raise ValueError("source_idx, flux and flux_err must have the same length")
    if flux.size and not (np.all(np.isfinite(err)) and np.all(err > 0) and np.all(np.isfinite(flux))):
        raise ValueError("flux must be finite and flux_err finite and positive")
    ids, starts, counts = group_runs(source_idx)
    n = counts.astype(float)
    if ids.size == 0:
        z = np.zeros(0)
        return VariabilityMetrics(ids, counts, z, z, z, z, z, z, z, z, z, z)
    w = 1.0 / err**2
    sum_w = np.add.reduceat(w, starts)
    sum_wf = np.add.reduceat(w * flux, starts)
    sum_wff = np.add.reduceat(w * flux * flux, starts)
    sum_f = np.add.reduceat(flux, starts)
    sum_var = np.add.reduceat(err * err, starts)
    wmean = sum_wf / sum_w
    wmean_err = 1.0 / np.sqrt(sum_w)
    mean = sum_f / n
    seg = np.repeat(np.arange(ids.size), counts)
    dev = flux - mean[seg]
    sample_var = np.add.reduceat(dev * dev, starts)
    wdev = flux - wmean[seg]
    chi2 = np.add.reduceat(w * wdev * wdev, starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = n - 1.0
        chi2_nu = np.where(dof > 0, chi2 / dof, np.nan)
        eta = np.where(dof > 0, n / dof * (sum_wff / n - (sum_wf / n) ** 2 / (sum_w / n)), np.nan)
        var = np.where(dof > 0, sample_var / dof, np.nan)
        v = np.sqrt(var) / mean
        m_deb = np.sqrt(np.maximum(var - sum_var / n, 0.0)) / mean
    vs_max = _vs_max(flux, err, starts, counts)
    significant = np.flatnonzero(np.nan_to_num(vs_max) >= vs_threshold)
    m_max = _m_max_significant(flux, err, starts, counts, significant, vs_threshold)
    m_max[counts < 2] = np.nan
    return VariabilityMetrics(
        source_id=ids,
        n_epochs=counts,
        weighted_mean=wmean,
        weighted_mean_err=wmean_err,
        mean=mean,
        chi2_nu=chi2_nu,
        chi2_sigma=_chi2_sigma(np.where(dof > 0, chi2, np.nan), dof),
        eta=eta,
        v=v,
        m_debiased=m_deb,
        vs_max=vs_max,
        m_max=m_max,
    )
