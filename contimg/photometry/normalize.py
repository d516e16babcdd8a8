"""Differential flux normalisation against an ensemble of stable reference sources.

Each epoch's image carries a flux-scale error common to every source in it
(calibration, primary-beam model, ionosphere): a few per cent from night to
night, larger than the thermal noise of bright sources. Dividing every source by
a per-epoch *correction factor* -- the robust mean ratio of the reference
sources' fluxes to their baselines -- removes it, the way differential
photometry does in the optical (and as in e.g. the ensemble normalisation of
Honeycutt 1992, PASP 104, 435).

Algorithm (:func:`normalize_fluxes`, on an epoch x source matrix):

1. Reference candidates: sources flagged stable and compact by the caller (the
   catalogue knows which) whose median SNR is at least ``min_snr`` and which
   were measured in at least ``min_baseline_epochs`` of the first
   ``baseline_epochs`` epochs.
2. Baseline per reference: the median of its corrected flux over the first
   ``baseline_epochs`` epochs in which it was measured (iterated with step 3,
   so the baseline itself is free of the epoch factors, up to one global
   constant).
3. Correction per epoch: inverse-variance weighted mean of the reference
   ratios ``S_ij / baseline_j`` with iterative ``clip_sigma`` rejection (around
   the median, scale from the MAD and the ratios' errors); its uncertainty is
   the weighted-mean error, inflated by ``sqrt(chi2_nu)`` of the accepted
   ratios when they scatter more than their errors.
4. References that turn out variable -- their normalised light curve has a
   reduced chi-square whose probability under constancy is below
   ``variable_p`` -- are dropped and steps 2-3 repeated until none is dropped.
5. Normalised flux ``S_ij / c_i`` and error
   ``sqrt((sigma_ij / c_i)**2 + (S_ij sigma_c_i / c_i**2)**2)``.

Epochs with fewer than ``min_references`` usable references get a NaN
correction (and NaN normalised fluxes): the caller decides what to do with
them. :func:`normalize_long` applies the same to long-format rows.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

__all__ = ["Normalization", "normalize_fluxes", "normalize_long"]


@dataclass(frozen=True)
class Normalization:
    """Result of :func:`normalize_fluxes` (E epochs, S sources).

    Attributes
    ----------
    flux, flux_err
        Normalised fluxes and errors, (E, S); NaN where the input was missing
        or the epoch had no correction.
    correction, correction_err
        Per-epoch factor ``c_i`` (the measured/true flux-scale ratio, up to one
        global constant) and its 1-sigma uncertainty, (E,).
    n_references
        References that entered each epoch's correction (after clipping), (E,).
    baseline
        Baseline flux of each reference (NaN for non-references), (S,).
    is_reference
        References used in the final correction, (S,).
    dropped_variable
        Candidates dropped because they turned out variable, (S,).
    iterations
        Reference-rejection iterations performed.
    """

    flux: np.ndarray
    flux_err: np.ndarray
    correction: np.ndarray
    correction_err: np.ndarray
    n_references: np.ndarray
    baseline: np.ndarray
    is_reference: np.ndarray
    dropped_variable: np.ndarray
    iterations: int


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as intended
        return np.nanmedian(a, axis=axis)


def _epoch_corrections(ratio: np.ndarray, ratio_err: np.ndarray, *, clip_sigma: float, max_iter: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust weighted mean of each row of ``ratio`` (NaN = missing), its error and the count used."""
    use = np.isfinite(ratio)
    for _ in range(max_iter):
        r = np.where(use, ratio, np.nan)
        center = _nanmedian(r, axis=1)
        mad = 1.4826 * _nanmedian(np.abs(r - center[:, None]), axis=1)
        scale = np.sqrt(mad[:, None] ** 2 + ratio_err**2)
        new_use = np.isfinite(ratio) & (np.abs(ratio - center[:, None]) <= clip_sigma * scale)
        if np.array_equal(new_use, use):
            break
        use = new_use
    w = np.where(use, 1.0 / ratio_err**2, 0.0)
    sum_w = w.sum(axis=1)
    n = use.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (w * np.where(use, ratio, 0.0)).sum(axis=1) / sum_w
        chi2 = (w * np.where(use, ratio - mean[:, None], 0.0) ** 2).sum(axis=1)
        inflate = np.sqrt(np.maximum(1.0, chi2 / np.maximum(n - 1, 1)))
        err = inflate / np.sqrt(sum_w)
    return mean, err, n


def normalize_fluxes(
    flux: np.ndarray,
    flux_err: np.ndarray,
    *,
    candidates: np.ndarray | None = None,
    min_snr: float = 50.0,
    baseline_epochs: int = 10,
    min_baseline_epochs: int = 3,
    min_references: int = 3,
    clip_sigma: float = 3.0,
    variable_p: float = 1e-3,
    max_iter: int = 10,
) -> Normalization:
    """Normalise an epoch x source flux matrix by a per-epoch reference-ensemble factor.

    Parameters
    ----------
    flux, flux_err
        Measured fluxes and 1-sigma errors, shape (E, S), epochs in time
        order; NaN where a source was not measured.
    candidates
        Boolean (S,): sources that may serve as references (stable, compact
        catalogue sources). Default: every source.
    min_snr
        Smallest median ``flux / flux_err`` of a reference
        (``settings.photometry.reference_min_snr``).
    baseline_epochs
        A reference's baseline is taken from its first this many measured
        epochs (``settings.photometry.baseline_epochs``).
    min_baseline_epochs
        Fewest measurements in those epochs for a source to be a reference.
    min_references
        Fewest references an epoch needs for a correction.
    clip_sigma
        Outlier rejection threshold for the per-epoch ratios.
    variable_p
        A reference whose normalised light curve is constant with probability
        below this (chi-square test) is dropped as variable.
    max_iter
        Most reference-rejection iterations.

    Returns
    -------
    Normalization

    Raises
    ------
    ValueError
        If the shapes differ or an error is not positive where a flux is given.
    """
    flux = np.asarray(flux, dtype=float)
    err = np.asarray(flux_err, dtype=float)
    if flux.ndim != 2 or flux.shape != err.shape:
        raise ValueError(f"flux and flux_err must be (epochs, sources) matrices of one shape, got {flux.shape} and {err.shape}")
    measured = np.isfinite(flux) & np.isfinite(err)
    if np.any(err[measured] <= 0):
        raise ValueError("flux_err must be positive wherever a flux is given")
    n_epochs, n_src = flux.shape
    cand = np.ones(n_src, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool).copy()
    if cand.shape != (n_src,):
        raise ValueError(f"candidates must have one entry per source ({n_src}), got {cand.shape}")
    f = np.where(measured, flux, np.nan)
    e = np.where(measured, err, np.nan)
    snr = _nanmedian(f / e, axis=0)
    # the first `baseline_epochs` measured epochs of every source
    rank = np.cumsum(measured, axis=0)
    in_base = measured & (rank <= baseline_epochs)
    cand &= (np.nan_to_num(snr) >= min_snr) & (in_base.sum(axis=0) >= min_baseline_epochs)
    refs = cand.copy()
    dropped = np.zeros(n_src, dtype=bool)
    corr = np.ones(n_epochs)
    corr_err = np.zeros(n_epochs)
    n_used = np.zeros(n_epochs, dtype=np.int64)
    baseline = np.full(n_src, np.nan)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        if refs.sum() < min_references:
            log.warning("normalisation: only %d reference sources (need %d)", refs.sum(), min_references)
            corr[:] = np.nan
            corr_err[:] = np.nan
            n_used[:] = 0
            break
        for _ in range(3):  # baseline and corrections converge in a couple of passes
            c = np.where(np.isfinite(corr), corr, 1.0)
            base_vals = np.where(in_base[:, refs], f[:, refs] / c[:, None], np.nan)
            base = _nanmedian(base_vals, axis=0)
            ratio = f[:, refs] / base
            ratio_err = e[:, refs] / base
            corr, corr_err, n_used = _epoch_corrections(ratio, ratio_err, clip_sigma=clip_sigma)
        baseline[:] = np.nan
        baseline[refs] = base
        too_few = n_used < min_references
        corr[too_few] = np.nan
        corr_err[too_few] = np.nan
        # drop references whose normalised curve is not constant
        norm = ratio / corr[:, None]
        norm_err = np.sqrt(ratio_err**2 + (ratio * corr_err[:, None]) ** 2) / corr[:, None]
        good = np.isfinite(norm) & np.isfinite(norm_err)
        w = np.where(good, 1.0 / norm_err**2, 0.0)
        dof = good.sum(axis=0) - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (w * np.where(good, norm, 0.0)).sum(axis=0) / w.sum(axis=0)
            chi2 = (w * np.where(good, norm - mean, 0.0) ** 2).sum(axis=0)
        p = np.where(dof > 0, stats.chi2.sf(chi2, np.maximum(dof, 1)), 1.0)
        variable = p < variable_p
        if not variable.any():
            break
        # drop the worst offenders first: one bad reference inflates everyone's chi-square
        worst = np.argsort(p)[: max(1, int(np.ceil(0.5 * variable.sum())))]
        worst = worst[variable[worst]]
        idx = np.flatnonzero(refs)[worst]
        refs[idx] = False
        dropped[idx] = True
        log.debug("normalisation iteration %d: dropped %d variable references", iterations, idx.size)
    c = corr[:, None]
    out_flux = f / c
    out_err = np.sqrt((e / c) ** 2 + (f * corr_err[:, None] / c**2) ** 2)
    log.info(
        "normalisation: %d epochs, %d references (%d dropped as variable), median correction error %.4f",
        n_epochs, refs.sum(), dropped.sum(), float(np.nanmedian(corr_err)) if np.isfinite(corr_err).any() else float("nan"),
    )
    return Normalization(
        flux=out_flux, flux_err=out_err, correction=corr, correction_err=corr_err, n_references=n_used,
        baseline=baseline, is_reference=refs, dropped_variable=dropped, iterations=iterations,
    )


def normalize_long(
    epoch_idx: np.ndarray,
    source_idx: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    *,
    candidate_sources: np.ndarray | None = None,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, Normalization, np.ndarray, np.ndarray]:
    """:func:`normalize_fluxes` for long-format photometry rows.

    Parameters
    ----------
    epoch_idx
        Epoch key of every row (e.g. an image id or MJD); sorted numerically,
        which must be time order.
    source_idx
        Source id of every row.
    flux, flux_err
        Measured flux and error of every row.
    candidate_sources
        Ids of the sources that may serve as references (default: all).
    **kwargs
        Passed to :func:`normalize_fluxes`.

    Returns
    -------
    flux_norm, flux_err_norm, normalization, epochs, sources
        Normalised values per row, the matrix result and the unique epoch and
        source keys indexing its axes.
    """
    epochs, ei = np.unique(np.asarray(epoch_idx), return_inverse=True)
    sources, si = np.unique(np.asarray(source_idx), return_inverse=True)
    mat_f = np.full((epochs.size, sources.size), np.nan)
    mat_e = np.full((epochs.size, sources.size), np.nan)
    mat_f[ei, si] = flux
    mat_e[ei, si] = flux_err
    cand = None if candidate_sources is None else np.isin(sources, candidate_sources)
    res = normalize_fluxes(mat_f, mat_e, candidates=cand, **kwargs)
    return res.flux[ei, si], res.flux_err[ei, si], res, epochs, sources
