""":func:`contimg.msmodel.read_ms` on the conversion's MS: what the plan said, what the table holds, the truth.

Before the one model, calibration and imaging each had readers of their own; ``read_ms`` gave exactly
their values on the converted test groups (checked when it replaced them). Here it is held to independent
references: the plan the MS was written from, the MS's own columns, and the simulator's truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from casacore import tables

from conftest import N_ANTENNAS

from contimg.msmodel import MJD_JD, read_ms


@pytest.fixture(scope="module")
def model(calibrator_ms):
    ms, _, _ = calibrator_ms
    return read_ms(ms, data_column="CORRECTED_DATA", flags=True)


def test_the_written_ms_reads_as_planned(calibrator_ms, model):
    ms, _, plan = calibrator_ms
    want = plan.ms
    assert model.path == ms
    for name in ("Nants_data", "Nants_telescope", "Nbls", "Nblts", "Nfreqs", "Npols", "Ntimes", "channel_width",
                 "integration_time", "telescope_name", "phase_center_ra", "phase_center_dec", "phase_center_frame",
                 "antenna_names"):
        assert getattr(model, name) == getattr(want, name), name
    for name in ("freq_array", "polarization_array", "antenna_numbers", "antenna_diameters", "telescope_location"):
        np.testing.assert_array_equal(getattr(model, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(model.antenna_positions, want.antenna_positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.time_array, want.time_array, rtol=0, atol=1e-6 / 86400)
    np.testing.assert_allclose(model.lst_array, want.lst_array, rtol=0, atol=1e-9)
    assert model.pointing.kind == want.pointing.kind == "drift"
    assert model.pointing.lat_rad == pytest.approx(want.pointing.lat_rad, abs=1e-9)
    assert model.dish_diameter == want.dish_diameter == 4.65


def test_read_ms_agrees_with_the_columns(calibrator_ms, model):
    ms, _, _ = calibrator_ms
    with tables.table(str(ms), ack=False) as t:
        a1, a2, time_s, uvw = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME"), t.getcol("UVW")
        interval = t.getcol("INTERVAL")
        flag = t.getcol("FLAG")
    np.testing.assert_array_equal(model.ant_1_array, a1)
    np.testing.assert_array_equal(model.ant_2_array, a2)
    np.testing.assert_array_equal(model.uvw_array, uvw)
    assert model.integration_time == float(np.median(interval))
    np.testing.assert_array_equal(model.time_array[model.time_index], time_s / 86400.0 + MJD_JD)
    cross = a1 != a2
    assert model.cross_mask.tolist() == cross.tolist()
    assert model.flagged_fraction == pytest.approx(flag[cross].mean())
    assert model.max_baseline == pytest.approx(float(np.hypot(uvw[cross, 0], uvw[cross, 1]).max()))
    # each row's baseline index names its antenna pair
    pairs = {}
    for b, p, q in zip(model.baseline_index, a1, a2):
        assert pairs.setdefault(int(b), (int(p), int(q))) == (int(p), int(q))
    assert len(pairs) == model.Nbls == N_ANTENNAS * (N_ANTENNAS + 1) // 2
    with tables.table(str(ms / "POLARIZATION"), ack=False) as t:
        assert t.getcell("CORR_TYPE", 0).tolist() == [9, 12]
    assert model.polarization_array.tolist() == [-5, -6]  # XX, YY as pyuvdata numbers them


def test_read_ms_agrees_with_the_truth(calibrator_group, model):
    _, truth = calibrator_group
    g = truth.groups[0]
    np.testing.assert_allclose(model.time_array, g.time_jd, rtol=0, atol=1e-3 / 86400)
    np.testing.assert_allclose(model.lst_array, g.lst_rad, rtol=0, atol=1e-7)
    assert model.ant_array.tolist() == sorted(truth.antenna_numbers.tolist())
    assert model.Nants_data == N_ANTENNAS and model.Ntimes == len(g.time_jd)
    assert model.mid_mjd + MJD_JD == pytest.approx(g.mid_time_jd, abs=1e-3 / 86400)
    assert model.pointing.lat_rad == pytest.approx(truth.pointing_dec_rad, abs=1e-9)
    assert math.degrees(model.phase_center_dec) == pytest.approx(math.degrees(truth.pointing_dec_icrs_rad[0]),
                                                                 abs=1e-4)
