"""Differential normalisation: recovery of injected flux-scale errors on simulated photometry."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.photometry.normalize import normalize_fluxes, normalize_long

RMS_JY = 0.001
N_EPOCHS = 30


def _simulate(rng: np.random.Generator, *, n_src: int = 400, scale_rms: float = 0.05, variable_fraction: float = 0.1):
    """Epoch x source fluxes with per-epoch scale errors, thermal noise and some variable sources."""
    true = np.exp(rng.uniform(np.log(0.005), np.log(1.0), n_src))
    gain = 1.0 + scale_rms * rng.standard_normal(N_EPOCHS)
    variable = rng.random(n_src) < variable_fraction
    intrinsic = np.ones((N_EPOCHS, n_src))
    # variable sources: slow sinusoids of 10-30 % amplitude with random phases
    amp = rng.uniform(0.1, 0.3, n_src)
    phase = rng.uniform(0, 2 * np.pi, n_src)
    period = rng.uniform(8, 40, n_src)
    t = np.arange(N_EPOCHS)[:, None]
    intrinsic[:, variable] = 1.0 + (amp * np.sin(2 * np.pi * t / period + phase))[:, variable]
    err = np.full((N_EPOCHS, n_src), RMS_JY)
    flux = gain[:, None] * true * intrinsic + err * rng.standard_normal((N_EPOCHS, n_src))
    missing = rng.random((N_EPOCHS, n_src)) < 0.05
    flux[missing] = np.nan
    return flux, err, true, gain, variable


def test_normalisation_removes_injected_scale_errors(rng):
    flux, err, true, gain, variable = _simulate(rng)
    res = normalize_fluxes(flux, err, min_snr=50.0, baseline_epochs=10)
    # the correction tracks the injected gains up to one global constant
    ratio = res.correction / gain
    assert np.std(ratio / np.mean(ratio)) < 0.003
    snr = true / RMS_JY
    steady = ~variable & (snr > 50)
    assert steady.sum() > 100
    norm = res.flux[:, steady]
    frac_rms = np.nanstd(norm, axis=0, ddof=1) / np.nanmean(norm, axis=0)
    raw = flux[:, steady]
    raw_rms = np.nanstd(raw, axis=0, ddof=1) / np.nanmean(raw, axis=0)
    assert np.median(raw_rms) > 0.04  # the 5 % scale errors are there before normalising ...
    noise = 1.0 / snr[steady]
    # ... and gone after: what is left is the thermal noise. Sources whose noise is
    # below 0.5 % (SNR > 200) scatter by at most 1 %, and across every steady source
    # with SNR > 50 the excess scatter over the noise is well below 1 %.
    assert np.all(frac_rms[noise < 0.005] <= 0.01)
    excess = np.sqrt(max(np.mean(frac_rms**2 - noise**2), 0.0))
    assert excess < 0.005
    # the propagated errors describe the scatter: reduced chi-square ~ 1
    chi2_nu = np.nansum(((norm - np.nanmean(norm, axis=0)) / res.flux_err[:, steady]) ** 2, axis=0) / (
        np.isfinite(norm).sum(axis=0) - 1
    )
    assert 0.8 < np.median(chi2_nu) < 1.3


def test_variable_references_are_dropped(rng):
    flux, err, true, gain, variable = _simulate(rng, variable_fraction=0.2)
    res = normalize_fluxes(flux, err, min_snr=50.0)
    bright_var = variable & (np.nanmedian(flux / err, axis=0) >= 50)  # the variable reference candidates
    assert bright_var.sum() > 5
    assert not np.any(res.is_reference & bright_var)
    assert np.all(res.dropped_variable[bright_var])
    assert not np.any(res.dropped_variable & ~variable)  # steady references stay
    assert np.all(res.n_references >= 10)


def test_candidates_restrict_the_ensemble(rng):
    flux, err, true, gain, variable = _simulate(rng)
    cand = np.zeros(flux.shape[1], dtype=bool)
    cand[np.flatnonzero(~variable & (true / RMS_JY > 50))[:20]] = True
    res = normalize_fluxes(flux, err, candidates=cand)
    assert not np.any(res.is_reference & ~cand)
    ratio = res.correction / gain
    assert np.std(ratio / np.mean(ratio)) < 0.005


def test_too_few_references_give_nan_corrections(rng):
    flux, err, *_ = _simulate(rng)
    res = normalize_fluxes(flux, err, min_snr=1e6)
    assert np.all(np.isnan(res.correction))
    assert np.all(np.isnan(res.flux))


def test_long_format_matches_matrix(rng):
    flux, err, *_ = _simulate(rng, n_src=120)
    e_idx, s_idx = np.nonzero(np.isfinite(flux))
    order = rng.permutation(e_idx.size)
    e_idx, s_idx = e_idx[order], s_idx[order]
    f_rows, ferr_rows, res, epochs, sources = normalize_long(
        e_idx + 60000, s_idx * 7, flux[e_idx, s_idx], err[e_idx, s_idx], min_snr=50.0
    )
    direct = normalize_fluxes(flux, err, min_snr=50.0)
    np.testing.assert_allclose(f_rows, direct.flux[e_idx, s_idx])
    np.testing.assert_allclose(ferr_rows, direct.flux_err[e_idx, s_idx])
    assert epochs[0] == 60000 and sources[1] == 7


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="matrices"):
        normalize_fluxes(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        normalize_fluxes(np.ones((2, 2)), np.zeros((2, 2)))
