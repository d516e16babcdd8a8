"""The converted Measurement Set against the simulator's truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from casacore import tables

from conftest import N_ANTENNAS, expected_apparent_flux

from contimg.naming import NSUBBANDS


def _sim_freqs(channels: int) -> np.ndarray:
    from contimg.simulation import subband_frequencies

    return np.sort(np.concatenate([subband_frequencies(sb, channels) for sb in range(NSUBBANDS)]))


def test_plan_is_json_and_round_trips(calibrator_ms):
    from contimg.conversion import ConversionPlan

    _, _, plan = calibrator_ms
    text = json.dumps(plan.to_dict())
    again = ConversionPlan.from_dict(json.loads(text))
    assert again.to_dict() == plan.to_dict()
    assert again.ms.path is None and not again.ms.has_rows  # the MS is described by its counts until written
    for name in ("freq_array", "time_array", "lst_array", "antenna_positions", "telescope_location"):
        np.testing.assert_array_equal(getattr(again.ms, name), getattr(plan.ms, name))
    assert again.ms.pointing == plan.ms.pointing and again.ms.telescope_lla == plan.ms.telescope_lla


def test_phase_center_is_the_meridian_at_the_group_midpoint(calibrator_group, calibrator_ms):
    """The simulator's calibrator transits the meridian (apparent LST, apparent Dec) at mid-group."""
    _, truth = calibrator_group
    ms, result, plan = calibrator_ms
    cal = truth.catalog.index_of(truth.calibrator_id)
    ra, dec = math.radians(truth.catalog.ra_deg[cal]), math.radians(truth.catalog.dec_deg[cal])
    assert abs(plan.ms.mid_mjd + 2400000.5 - truth.groups[0].mid_time_jd) * 86400 < 1e-3
    # ICRS, not apparent: the two differ by ~0.33 deg in 2025
    assert abs((plan.ms.phase_center_ra - ra) * math.cos(dec)) < math.radians(0.1 / 3600)
    assert abs(plan.ms.phase_center_dec - dec) < math.radians(0.1 / 3600)
    assert abs(plan.ms.phase_center_dec - truth.pointing_dec_icrs_rad[0]) < math.radians(0.1 / 3600)
    # apparent (of date) and ICRS differ visibly: the frame conversion was done
    assert abs(math.degrees(plan.ms.phase_center_dec) - truth.config.dec_deg) > 0.01
    assert abs(math.degrees(float(np.mean(plan.ms.lst_array)) - plan.ms.phase_center_ra)) > 0.2
    with tables.table(str(ms / "FIELD"), ack=False) as t:
        assert t.nrows() == 1
        assert t.getcolkeyword("PHASE_DIR", "MEASINFO")["Ref"] == "ICRS"
        pdir = t.getcol("PHASE_DIR")[0, 0]
    assert np.allclose(pdir, [plan.ms.phase_center_ra, plan.ms.phase_center_dec], atol=1e-12)
    with tables.table(str(ms), ack=False) as t:
        assert set(t.getcol("FIELD_ID")) == {0}
        assert set(t.getcol("DATA_DESC_ID")) == {0}


def test_one_window_ascending_on_the_simulated_frequencies(calibrator_ms):
    ms, result, _ = calibrator_ms
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as t:
        assert t.nrows() == 1
        freqs = t.getcell("CHAN_FREQ", 0)
        widths = t.getcell("CHAN_WIDTH", 0)
    expect = _sim_freqs(4)
    assert freqs.size == NSUBBANDS * 4
    assert np.all(np.diff(freqs) > 0)
    assert np.allclose(freqs, expect, rtol=0, atol=1e-3)
    assert np.allclose(widths, 11.71875e6 / 4)
    assert result.validation["ok"]
    assert result.validation["Nfreqs"] == 64


def test_antenna_table_and_observation(calibrator_group, calibrator_ms):
    from contimg.stations import load_stations

    _, truth = calibrator_group
    ms, _, _ = calibrator_ms
    stations = load_stations()
    with tables.table(str(ms / "ANTENNA"), ack=False) as t:
        names = t.getcol("NAME")
        assert names == list(stations.antenna_names)
        assert t.getcol("STATION") == names
        assert np.allclose(t.getcol("DISH_DIAMETER"), 4.65)
        assert set(t.getcol("MOUNT")) == {"ALT-AZ"}
        pos = t.getcol("POSITION")
        assert t.getcolkeyword("POSITION", "MEASINFO")["Ref"] == "ITRF"
    # ITRF positions: on the Earth's surface near OVRO, and the stations' baselines
    assert np.allclose(np.linalg.norm(pos, axis=1), 6.37e6, rtol=2e-3)
    from contimg.stations import DSA110_LOCATION

    rel = stations.relative_ecef(DSA110_LOCATION)
    center = np.array([DSA110_LOCATION.x.value, DSA110_LOCATION.y.value, DSA110_LOCATION.z.value])
    assert np.allclose(pos - center, rel, atol=1e-3)
    with tables.table(str(ms / "OBSERVATION"), ack=False) as t:
        assert t.getcell("TELESCOPE_NAME", 0) == "DSA_110"
    with tables.table(str(ms), ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    assert sorted(set(a1) | set(a2)) == sorted(truth.antenna_numbers.tolist())
    assert len(set(a1) | set(a2)) == N_ANTENNAS


def test_columns_units_flags_and_model(calibrator_ms):
    ms, _, plan = calibrator_ms
    with tables.table(str(ms), ack=False) as t:
        cols = set(t.colnames())
        for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "FLAG", "UVW"):
            assert c in cols
        assert list(t.getcolkeyword("DATA", "QuantumUnits")) == ["Jy"]
        assert t.nrows() == plan.ms.Nblts
        data = t.getcol("DATA")
        assert np.array_equal(t.getcol("CORRECTED_DATA"), data)
        assert not np.any(t.getcol("MODEL_DATA"))
        # MODEL_DATA is writable (calibration fills it) although stored sparse
        model_file = ms / f"table.f{t.getdminfo('MODEL_DATA')['SEQNR']}_TSM0"
        assert model_file.stat().st_blocks == 0
        flags = t.getcol("FLAG")
        auto = t.getcol("ANTENNA1") == t.getcol("ANTENNA2")
        assert auto.sum() == N_ANTENNAS * plan.ms.Ntimes
        assert flags[auto].all()
        assert not flags[~auto].any()
        assert t.getcol("FLAG_ROW")[auto].all()
        # TaQL works on the data column (units are not 'uncalib')
        assert tables.taql("select gsum(sumsqr(abs(DATA))) as s from $t").getcol("s")[0] > 0
        times = t.getcol("TIME")
    assert np.allclose(np.unique(times) / 86400 + 2400000.5, plan.ms.time_array, atol=1e-3 / 86400)


def test_point_source_at_phase_center_is_real_and_equal_to_its_apparent_flux(calibrator_group, calibrator_ms):
    """The convention test: V(phase center) = S_apparent exactly, imaginary part zero."""
    _, truth = calibrator_group
    ms, _, plan = calibrator_ms
    with tables.table(str(ms), ack=False) as t:
        data = t.getcol("DATA")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        times = t.getcol("TIME")
    freqs = plan.ms.freq_array
    cal = truth.catalog.index_of(truth.calibrator_id)
    expect = expected_apparent_flux(truth, cal, freqs)  # (Ntimes, Nfreqs)
    tidx = np.searchsorted(np.unique(times), times)
    cross = a1 != a2
    want = expect[tidx[cross]]
    for pol in range(2):
        got = data[cross, :, pol]
        assert np.max(np.abs(got.imag)) < 1e-4 * 10
        assert np.allclose(got.real, want, rtol=2e-5, atol=1e-5)
    # the apparent flux really varies (beam, spectrum): the test is not trivial
    assert np.ptp(want) > 0.5


def test_uvw_validated_against_casacore(calibrator_ms):
    ms, result, _ = calibrator_ms
    checks = {c["name"]: c for c in result.validation["checks"]}
    assert checks["uvw"]["ok"]
    assert "mscal" in checks["uvw"]["detail"]
    assert result.validation["uvw_max_error_m"] < 0.05
    with tables.table(str(ms), ack=False) as t:
        uvw = t.getcol("UVW")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    with tables.table(str(ms / "ANTENNA"), ack=False) as t:
        pos = t.getcol("POSITION")
    # MS convention (as pyuvdata's write_ms): UVW = -(x2 - x1) rotated; lengths are exact
    assert np.allclose(np.linalg.norm(uvw, axis=1), np.linalg.norm(pos[a2] - pos[a1], axis=1), atol=1e-6)


def test_same_as_pyuvdata_phase_and_write_ms(calibrator_group, calibrator_ms, tmp_path):
    """Our fast path reproduces pyuvdata's read + phase + write_ms (the reference writer)."""
    from pyuvdata import UVData

    from contimg.conversion.geometry import offline_iers

    files, _ = calibrator_group
    ms, _, plan = calibrator_ms
    uvd = UVData()
    with offline_iers():
        uvd.read([str(f) for f in files], file_type="uvh5", axis="freq", run_check=False)
        uvd.phase(lon=plan.ms.phase_center_ra, lat=plan.ms.phase_center_dec, cat_name="pc", phase_frame="icrs")
        uvd.reorder_freqs(channel_order="freq")
        ref_ms = tmp_path / "ref.ms"
        uvd.write_ms(str(ref_ms), run_check=False)
    with tables.table(str(ref_ms), ack=False) as r, tables.table(str(ms), ack=False) as t:
        ref_uvw, uvw = r.getcol("UVW"), t.getcol("UVW")
        ref_data, data = r.getcol("DATA"), t.getcol("DATA")
        assert np.array_equal(r.getcol("ANTENNA1"), t.getcol("ANTENNA1"))
    # same UVW to a few micrometres (LSTs recomputed rather than read from the headers)
    assert np.max(np.abs(ref_uvw - uvw)) < 1e-4
    assert np.allclose(data, ref_data, rtol=1e-5, atol=1e-5)


def test_sigma_and_weights_match_the_simulated_noise(offcenter_group, offcenter_ms):
    """SIGMA_SPECTRUM is the simulated thermal noise; WEIGHT_SPECTRUM = 1/sigma^2."""
    _, truth, _ = offcenter_group
    with tables.table(str(offcenter_ms), ack=False) as t:
        data = t.getcol("DATA")
        sigma = t.getcol("SIGMA_SPECTRUM")
        weight = t.getcol("WEIGHT_SPECTRUM")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        row_w = t.getcol("WEIGHT")
    cross = a1 != a2
    assert np.allclose(sigma[cross], truth.noise_sigma_jy, rtol=1e-5)
    assert np.allclose(weight[cross], 1 / truth.noise_sigma_jy**2, rtol=1e-5)
    assert np.allclose(row_w[cross], 1 / truth.noise_sigma_jy**2, rtol=1e-5)
    # XX and YY carry the same (unpolarised, gain-free) sky and independent noise
    diff = (data[cross, :, 0] - data[cross, :, 1]) / np.sqrt(2)
    measured = np.std(np.concatenate([diff.real.ravel(), diff.imag.ravel()]))
    assert measured == pytest.approx(truth.noise_sigma_jy, rel=0.03)


def test_model_data_is_writable(calibrator_ms, tmp_path):
    """Calibration writes MODEL_DATA into the (sparse) column; it reads back, DATA is untouched."""
    import shutil

    ms, _, plan = calibrator_ms
    copy = tmp_path / "copy.ms"
    shutil.copytree(ms, copy)
    rng = np.random.default_rng(5)
    with tables.table(str(copy), readonly=False, ack=False) as t:
        n = plan.ms.Nbls
        model = (rng.standard_normal((n, plan.ms.Nfreqs, 2)) + 1j).astype(np.complex64)
        t.putcol("MODEL_DATA", model, n, n)
        data = t.getcol("DATA")
    with tables.table(str(copy), ack=False) as t:
        assert np.array_equal(t.getcol("MODEL_DATA", n, n), model)
        assert not np.any(t.getcol("MODEL_DATA", 0, n))
        assert np.array_equal(t.getcol("DATA"), data)
