"""MODEL_DATA: equal to the simulator's noise-free visibilities, and to CASA's own prediction (sign convention)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from casacore import tables

from contimg.calibration.model import PointSources, apparent_flux, write_model_data
from contimg.msmodel import read_ms

from .conftest import truth_sources


def _cols(ms, *names):
    with tables.table(str(ms), ack=False) as tb:
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        return [tb.getcol(n)[cross] for n in names]


def test_the_ms_model_recovers_the_pointing(noisefree):
    truth, ms = noisefree
    msm = read_ms(ms)
    assert msm.pointing.kind == "drift" and msm.pointing.lon_rad == 0.0
    assert msm.pointing.lat_rad == pytest.approx(truth.pointing_dec_rad, abs=1e-9)
    assert "SCHEDULE_TYPE drift" in msm.pointing.origin
    assert msm.Nants_data == 16 and msm.Nfreqs == 64 and msm.Ntimes == 24
    assert np.all(np.diff(msm.freq_array) > 0)


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
    msm = read_ms(ms)
    ra = math.degrees(msm.phase_center_ra) + 0.6 / math.cos(msm.phase_center_dec)
    src = PointSources(["east"], np.array([ra]), np.array([math.degrees(msm.phase_center_dec)]),
                       np.array([1.0]), np.array([0.0]))
    a = apparent_flux(src, msm)[0]  # (Ntimes, Nfreqs)
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
    msm = read_ms(ms)
    ra = math.degrees(msm.phase_center_ra) + 0.25 / math.cos(msm.phase_center_dec)
    dec = math.degrees(msm.phase_center_dec) + 0.15
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


@pytest.fixture(scope="module")
def nine_metre_group(tmp_path_factory):
    """A noise- and gain-free group of an array with 9 m dishes (a narrower primary beam than DSA-110's)."""
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("nine_metre")
    res = simulate(out / "sim", SimulationConfig(n_antennas=10, channels_per_subband=2, seed=4, noise=False,
                                                 gains=False, calibrator_flux_jy=10.0, n_sources=30,
                                                 dish_diameter_m=9.0))
    ms = out / "g0.ms"
    convert_group(res.groups[0].paths, ms, staging_dir=out / "staging", processes=1)
    return load_truth(res.truth_path), ms


def test_the_dish_is_read_from_the_ms(nine_metre_group, ms_copy):
    """The model uses the MS's own dishes: 9 m here. With DSA-110's 4.65 m beam the off-axis sources would be
    several times too bright."""
    from contimg.imaging.geometry import derive_geometry

    truth, ms = nine_metre_group
    ms = ms_copy(ms)
    msm = read_ms(ms)
    assert msm.dish_diameter == 9.0
    # the field to 20 % of the beam scales inversely with the dish
    dsa110 = dataclasses.replace(msm, antenna_diameters=np.full(msm.Nants_telescope, 4.65))
    assert derive_geometry(msm, pb_limit=0.2).pb_radius_deg < 0.6 * derive_geometry(dsa110, pb_limit=0.2).pb_radius_deg
    write_model_data(msm, truth_sources(truth))
    data, model = _cols(ms, "DATA", "MODEL_DATA")
    scale = np.abs(data).max()
    assert np.sqrt(np.mean(np.abs(data - model) ** 2)) < 1e-6 * scale
    write_model_data(ms, truth_sources(truth), diameter_m=4.65)
    (wrong,) = _cols(ms, "MODEL_DATA")
    assert np.sqrt(np.mean(np.abs(data - wrong) ** 2)) > 1e-3 * scale


def test_a_heterogeneous_array_is_refused(nine_metre_group, ms_copy):
    from casacore import tables as ctables

    from contimg.errors import InputFileError

    _, ms = nine_metre_group
    ms = ms_copy(ms)
    with ctables.table(str(ms / "ANTENNA"), readonly=False, ack=False) as t:
        d = t.getcol("DISH_DIAMETER")
        d[::2] = 25.0
        t.putcol("DISH_DIAMETER", d)
    with pytest.raises(InputFileError, match=r"g0.ms: dishes of 9 to 25 m: contimg models one primary beam"):
        read_ms(ms)


@pytest.mark.parametrize("pols, parallel", [(("xx", "xy", "yx", "yy"), ("xx", "yy")),
                                            (("rr", "rl", "lr", "ll"), ("rr", "ll"))])
def test_the_model_is_unpolarised_in_a_four_correlation_ms(tmp_path, pols, parallel):
    """An unpolarised sky: the parallel hands get the Stokes-I model, the cross hands zero (they got I too)."""
    from pyuvdata.utils.pol import polstr2num

    from .test_foreign_array import _write_hera_ms

    ms = tmp_path / "four.ms"
    ra, dec = _write_hera_ms(ms, mount="alt-az", ha_deg=0.0, dec_deg=-30.0, pols=pols)
    msm = read_ms(ms)
    assert msm.Npols == 4
    src = PointSources(["s"], np.degrees([ra + 0.01]), np.degrees([dec]), np.array([3.0]), np.array([0.0]))
    write_model_data(msm, src, diameter_m=None)
    (model,) = _cols(ms, "MODEL_DATA")
    hand = {int(p): model[..., k] for k, p in enumerate(msm.polarization_array)}
    a, b = (hand[polstr2num(p)] for p in parallel)
    np.testing.assert_allclose(np.abs(a), 3.0, rtol=1e-5)  # the source, unattenuated (no beam)
    np.testing.assert_array_equal(a, b)
    for p in set(pols) - set(parallel):
        assert not hand[polstr2num(p)].any(), f"{p} holds {np.abs(hand[polstr2num(p)]).max()} Jy"
