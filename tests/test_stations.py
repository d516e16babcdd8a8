"""The station table, the antenna selection and the pointing-frame conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.errors import InputFileError
from contimg.stations import (
    DSA110_LOCATION,
    N_ACTIVE_ANTENNAS,
    apparent_to_icrs,
    icrs_to_apparent,
    load_stations,
    lst_rad,
    select_antennas,
)


def test_table_has_117_stations_numbered_from_zero():
    st = load_stations()
    assert st.Nants == 117
    assert st.antenna_names[0] == "DSA-001" and st.antenna_names[-1] == "DSA-117"
    np.testing.assert_array_equal(st.antenna_numbers, np.arange(117))
    assert st.latitude_deg[0] == pytest.approx(37.2333752)
    assert st.longitude_deg[0] == pytest.approx(-118.2856408)
    assert st.height_m[102] == pytest.approx(1181.3)  # DSA-103
    assert st.height_m[116] == 1182.6  # blank elevation


def test_layout_is_a_t_with_outriggers():
    enu = load_stations().enu()
    ew, ns, out = enu[:51], enu[51:102], enu[102:]
    assert np.ptp(ew[:, 1]) < 1.0 and np.ptp(ew[:, 0]) > 350  # east-west arm
    assert np.ptp(ns[:, 0]) < 1.0 and np.ptp(ns[:, 1]) > 350  # north-south arm
    assert np.max(np.hypot(out[:, 0], out[:, 1])) > 1200  # outriggers reach > 1.2 km
    assert np.all(np.abs(enu[:, 2]) < 10)


def test_reference_position_is_the_centroid():
    st = load_stations()
    assert DSA110_LOCATION.lat.deg == pytest.approx(np.mean(st.latitude_deg))
    assert DSA110_LOCATION.lon.deg == pytest.approx(np.mean(st.longitude_deg))
    assert DSA110_LOCATION.height.value == pytest.approx(np.mean(st.height_m))


def test_default_selection_is_96_with_all_outriggers():
    sel = select_antennas()
    assert sel.size == N_ACTIVE_ANTENNAS == 96
    assert np.all(np.isin(np.arange(102, 117), sel))
    assert np.all(np.diff(sel) > 0)
    np.testing.assert_array_equal(sel, select_antennas(96))  # deterministic


@pytest.mark.parametrize("n", [1, 2, 8, 16, 50, 96, 117])
def test_selection_sizes(n):
    sel = select_antennas(n)
    assert sel.size == n and np.unique(sel).size == n
    assert sel.min() >= 0 and sel.max() <= 116


def test_small_selection_mixes_core_and_outriggers():
    sel = select_antennas(8)
    assert (sel >= 102).sum() == 2 and (sel < 51).any() and ((sel >= 51) & (sel < 102)).any()


@pytest.mark.parametrize("n", [0, 118])
def test_selection_out_of_range(n):
    with pytest.raises(ValueError, match="1..117"):
        select_antennas(n)


def test_bad_station_file_is_named(tmp_path):
    p = tmp_path / "st.csv"
    p.write_text(",DSA-001,37.2,-118.2,1182\n,DSA-003,37.2,-118.2,1182\n")
    with pytest.raises(InputFileError, match="st.csv"):
        load_stations(p)
    with pytest.raises(InputFileError, match="nope.csv"):
        load_stations(tmp_path / "nope.csv")


def test_apparent_icrs_round_trip_and_frame_offset():
    t = np.array([2460827.9, 2460828.2])
    lst = lst_rad(t)
    dec_app = np.radians(35.0)
    ra, dec = apparent_to_icrs(lst, dec_app, t)
    ra2, dec2 = icrs_to_apparent(ra, dec, t)
    np.testing.assert_allclose(np.angle(np.exp(1j * (ra2 - lst))), 0, atol=1e-9)
    np.testing.assert_allclose(dec2, dec_app, atol=1e-9)
    # precession since J2000 moves the meridian by ~0.3 deg in 2025
    off = np.degrees(np.hypot(np.angle(np.exp(1j * (ra - lst))) * math.cos(dec_app), dec - dec_app))
    assert np.all((off > 0.1) & (off < 0.45))


def test_meridian_icrs_is_on_the_meridian():
    from contimg.stations import meridian_icrs

    t = np.array([2460828.0, 2460828.1])
    ra, dec = meridian_icrs(t, math.radians(35.0))
    app_ra, app_dec = icrs_to_apparent(ra, dec, t)
    np.testing.assert_allclose(np.angle(np.exp(1j * (app_ra - lst_rad(t)))), 0, atol=1e-9)
    np.testing.assert_allclose(app_dec, math.radians(35.0), atol=1e-9)
