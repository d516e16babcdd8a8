"""The new-source rules without the database: which components are looked at, and what makes one new."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.photometry.newsource import NewSourceCriteria, newness, select_components, source_name

BEAM_ARCSEC = 30.0


def _components(**overrides):
    """Four unmatched components at (150, 35 + k * 0.1 deg), SNR 20, compact, clean fits."""
    n = 4
    cols = {"ra_deg": np.full(n, 150.0), "dec_deg": 35.0 + 0.1 * np.arange(n), "peak_flux_jy": np.full(n, 0.01),
            "int_flux_jy": np.full(n, 0.011), "peak_flux_err_jy": np.full(n, 5e-4),
            "int_flux_err_jy": np.full(n, 8e-4), "local_rms_jy": np.full(n, 5e-4), "beam_response": np.ones(n),
            "flags": np.zeros(n, int)}
    for key, value in overrides.items():
        cols[key] = np.asarray(value)
    return cols


EMPTY = {"ra_deg": np.zeros(0), "dec_deg": np.zeros(0), "flux_jy": np.zeros(0), "spectral_index": np.zeros(0)}


def _select(cols, match=None, catalogue=EMPTY, **criteria):
    match = np.full(cols["ra_deg"].size, -1) if match is None else np.asarray(match)
    return select_components(cols, match, catalogue, beam_major_arcsec=BEAM_ARCSEC, freq_hz=1.4e9,
                             criteria=NewSourceCriteria(**criteria))


def test_only_unmatched_bright_compact_clean_components_are_looked_at():
    assert _select(_components()).tolist() == [True] * 4
    assert _select(_components(), match=[-1, 3, -1, -1]).tolist() == [True, False, True, True]
    faint = _components(peak_flux_jy=[0.01, 0.003, 0.01, 0.01])  # SNR 6 < 7
    assert _select(faint).tolist() == [True, False, True, True]
    flagged = _components(flags=[0, 256, 4, 0])  # the island-edge flag alone is tolerated
    assert _select(flagged).tolist() == [True, True, False, True]
    wide = _components(int_flux_jy=[0.011, 0.03, 0.011, 0.011])  # ratio 3 +- 0.25
    assert _select(wide).tolist() == [True, False, True, True]
    # at low SNR the ratio scatters: 1.8 +- 0.3 is compact (without errors, a point source's at that SNR is used)
    noisy = _components(peak_flux_jy=np.full(4, 0.0045), int_flux_jy=np.full(4, 0.0081),
                        peak_flux_err_jy=np.full(4, 5e-4), int_flux_err_jy=np.full(4, 1.2e-3))
    assert _select(noisy).all()
    unknown = _components(peak_flux_jy=np.full(4, 0.0045), int_flux_jy=np.full(4, 0.0081),
                          peak_flux_err_jy=np.full(4, np.nan), int_flux_err_jy=np.full(4, np.nan))
    assert _select(unknown).all()


def test_components_beside_brighter_sources_are_confused():
    cols = _components()
    # a brighter catalogue source 1.5 beams from the first, a fainter one 1.5 beams from the second
    offset = 1.5 * BEAM_ARCSEC / 3600
    catalogue = {"ra_deg": np.array([150.0, 150.0]), "dec_deg": np.array([35.0 + offset, 35.1 + offset]),
                 "flux_jy": np.array([0.5, 0.001]), "spectral_index": np.array([np.nan, -0.7])}
    assert _select(cols, catalogue=catalogue).tolist() == [False, True, True, True]
    # a brighter component of the same image beside the third (e.g. a split fit of one source)
    cols["dec_deg"][3] = 35.2 + offset
    cols["peak_flux_jy"][3] = 0.05
    cols["int_flux_jy"][3] = 0.055
    assert _select(cols, catalogue=catalogue).tolist() == [False, True, False, True]
    assert _select(cols, catalogue=catalogue, confusion_beams=1.0).tolist() == [True, True, True, True]


def test_newness_against_the_earlier_epochs():
    # nothing there before in three epochs of different depth: the deepest (sigma 1 mJy) gives 10 sigma
    new = newness(0.010, np.array([0.0004, -0.001, 0.0]), np.array([0.002, 0.001, 0.004]), threshold=5.0)
    assert new.significance == pytest.approx(11.0) and new.best == 1 and new.n_prior == 3
    assert new.limit_jy == pytest.approx(0.005) and new.is_new(5.0, 4.0)
    # there before at the same flux: not new
    old = newness(0.010, np.array([0.0098, 0.0105]), np.array([0.001, 0.001]), threshold=5.0)
    assert old.significance < 1 and not old.is_new(5.0)
    # seen by one earlier image but not by another (an artefact of one drift geometry, or a shallow epoch that
    # happened low): the largest z alone calls it new, the epoch that saw it vetoes it
    artefact = newness(0.010, np.array([0.0, 0.0095]), np.array([0.002, 0.001]), threshold=5.0)
    assert artefact.significance == pytest.approx(5.0) and artefact.prior_sigma == pytest.approx(9.5)
    assert artefact.is_new(5.0) and not artefact.is_new(5.0, 4.0)
    # earlier epochs that could not measure the position do not count; none at all: not judged
    unprobed = newness(0.010, np.array([np.nan, 0.0]), np.array([np.nan, 0.0]), threshold=5.0)
    assert unprobed.n_prior == 0 and math.isnan(unprobed.significance) and not unprobed.is_new(5.0)


def test_names_are_truncated_iau_style():
    assert source_name(150.0, 35.2) == "CTG J100000.0+351200"
    assert source_name(10.123456, -5.51) == "CTG J004029.6-053036"
    assert source_name(359.99999, 0.0) == "CTG J235959.9+000000"
