"""MODEL_DATA: equal to the simulator's noise-free visibilities, and to CASA's own prediction (sign convention)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from casacore import tables

from contimg.calibration.model import PointSources, apparent_flux, write_model_data
from contimg.calibration.msmeta import read_ms_meta

from .conftest import truth_sources


def _cols(ms, *names):
    with tables.table(str(ms), ack=False) as tb:
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        return [tb.getcol(n)[cross] for n in names]


def test_meta_recovers_the_pointing(noisefree):
    truth, ms = noisefree
    meta = read_ms_meta(ms)
    assert meta.pointing_dec_apparent == pytest.approx(truth.pointing_dec_rad, abs=1e-9)
    assert meta.Nants == 16 and meta.Nfreqs == 64 and meta.Ntimes == 24
    assert np.all(np.diff(meta.freq_array) > 0)


def test_model_equals_noise_free_data(noisefree, ms_copy):
    """Simulate noise- and gain-free, convert, compute MODEL_DATA from the catalogue: it is DATA."""
    truth, ms = noisefree
    ms = ms_copy(ms)
    report = write_model_data(ms, truth_sources(truth))
    assert report.n_sources == truth.catalog.Nsrc
    data, model = _cols(ms, "DATA", "MODEL_DATA")
    scale = np.abs(data).max()
    assert scale > 5.0  # the 10 Jy calibrator is in the data
    # complex64 storage: agreement to ~1e-6 of the peak; any sign or beam error would be O(1)
    assert np.abs(data - model).max() < 2e-6 * scale * 10
    assert np.sqrt(np.mean(np.abs(data - model) ** 2)) < 1e-6 * scale


def test_model_is_idempotent_and_beam_matters(noisefree, ms_copy):
    truth, ms = noisefree
    ms = ms_copy(ms)
    src = truth_sources(truth)
    write_model_data(ms, src)
    (first,) = _cols(ms, "MODEL_DATA")
    write_model_data(ms, src)
    (second,) = _cols(ms, "MODEL_DATA")
    np.testing.assert_array_equal(first, second)
    write_model_data(ms, src, diameter_m=None)
    (nobeam,) = _cols(ms, "MODEL_DATA")
    assert np.abs(nobeam - first).max() > 0.1  # sources off axis are attenuated by the beam


def test_apparent_flux_follows_the_drift(noisefree):
    """A source off the meridian rises and falls in the beam during the group; the model follows it per time."""
    truth, ms = noisefree
    meta = read_ms_meta(ms)
    ra = math.degrees(meta.phase_center_ra) + 0.6 / math.cos(meta.phase_center_dec)
    src = PointSources(["east"], np.array([ra]), np.array([math.degrees(meta.phase_center_dec)]),
                       np.array([1.0]), np.array([0.0]))
    a = apparent_flux(src, meta)[0]  # (Ntimes, Nfreqs)
    assert a[:, 0].max() > a[0, 0] and a[:, 0].argmax() > 0  # it transits later in the group
    assert np.all(a[:, 0] > a[:, -1])  # the beam is narrower at the top of the band


@pytest.mark.integration
def test_sign_convention_matches_casa_ft(noisefree, ms_copy, tmp_path):
    """CASA's ``ft`` of a point component (no beam) equals our model of the same source.

    A wrong sign (or a conjugation, or UVW flipped) would scramble the phase of
    a source 0.3 deg from the phase center by tens of turns on long baselines.
    """
    from contimg import casa_env

    truth, ms = noisefree
    ms = ms_copy(ms)
    meta = read_ms_meta(ms)
    ra = math.degrees(meta.phase_center_ra) + 0.25 / math.cos(meta.phase_center_dec)
    dec = math.degrees(meta.phase_center_dec) + 0.15
    src = PointSources(["offset"], np.array([ra]), np.array([dec]), np.array([2.0]), np.array([0.0]))
    write_model_data(ms, src, diameter_m=None)
    (ours,) = _cols(ms, "MODEL_DATA")

    tools = casa_env.casatools()
    cl_path = tmp_path / "offset.cl"
    cl = tools.componentlist()
    cl.addcomponent(dir=f"ICRS {ra}deg {dec}deg", flux=2.0, fluxunit="Jy", shape="point", freq="1.4GHz",
                    spectrumtype="constant")
    cl.rename(str(cl_path))
    cl.close()
    casa_env.casatasks().ft(vis=str(ms), complist=str(cl_path), usescratch=True)
    (casa,) = _cols(ms, "MODEL_DATA")

    assert np.abs(casa).mean() == pytest.approx(2.0, rel=1e-3)
    dphi = np.degrees(np.abs(np.angle(casa * np.conj(ours))))
    # CASA predicts from ICRS offsets and the MS's UVW; we use apparent positions, so differential
    # aberration leaves a small phase difference on the longest baselines; a sign error gives ~90 deg
    assert np.median(dphi) < 1.0
    assert np.percentile(dphi, 99) < 5.0
