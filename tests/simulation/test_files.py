"""The files read back with pyuvdata: every number DSA-110 writes."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from contimg.naming import NSUBBANDS, parse_subband_filename
from contimg.simulation import SimulationConfig, simulate, subband_frequencies
from contimg.simulation.config import CHANNEL_WIDTH_HZ, INTEGRATION_TIME_S
from contimg.stations import DSA110_LOCATION, load_stations, select_antennas

MHZ = 1e6


def test_sixteen_files_named_with_jitter(small_group):
    res, truth = small_group
    paths = res.groups[0].paths
    assert len(paths) == NSUBBANDS
    names = [parse_subband_filename(p) for p in paths]
    assert [n.subband for n in names] == list(range(NSUBBANDS))
    start = res.groups[0].start.replace(microsecond=0)
    offsets = [(n.timestamp - start).total_seconds() for n in names]
    assert min(offsets) >= 0 and max(offsets) <= truth.config.jitter_s
    assert len(set(offsets)) > 1, "timestamps of one group should jitter"
    assert truth.files(0) == paths


def test_jitter_is_configurable(tmp_path):
    cfg = SimulationConfig(n_antennas=3, channels_per_subband=1, n_integrations=2, jitter_s=0.0, n_sources=0, seed=2)
    res = simulate(tmp_path, cfg)
    assert len({parse_subband_filename(p).timestamp for p in res.groups[0].paths}) == 1


def test_frequency_layout(small_group, read_group):
    res, _ = small_group
    nchan = 4
    width = 48 * CHANNEL_WIDTH_HZ / nchan
    tops = []
    for sb, path in enumerate(res.groups[0].paths):
        uvd = read_group([path], read_data=False)
        f = uvd.freq_array
        assert f.shape == (nchan,)
        assert np.all(np.diff(f) < 0), "frequencies descend inside a file"
        np.testing.assert_allclose(np.diff(f), -width)
        np.testing.assert_allclose(uvd.channel_width, width)
        np.testing.assert_allclose(f, subband_frequencies(sb, nchan))
        tops.append(f[0])
    assert np.all(np.diff(tops) < 0), "sb00 is the highest subband"
    whole = np.concatenate([subband_frequencies(sb, 48) for sb in range(NSUBBANDS)])
    assert whole.size == 768 and np.all(np.diff(whole) < 0)
    np.testing.assert_allclose(np.diff(whole), -CHANNEL_WIDTH_HZ)
    assert abs(whole[0] - 1498.6 * MHZ) < CHANNEL_WIDTH_HZ
    assert abs(whole[-1] - 1311.4 * MHZ) < CHANNEL_WIDTH_HZ
    # fewer channels: the same subband edges
    top_edge = tops[0] + width / 2
    np.testing.assert_allclose(top_edge, whole[0] + CHANNEL_WIDTH_HZ / 2)
    bottom_edge = subband_frequencies(15, nchan)[-1] - width / 2
    np.testing.assert_allclose(bottom_edge, whole[-1] - CHANNEL_WIDTH_HZ / 2)


def test_whole_group_reads_along_frequency(small_group, read_group):
    res, _ = small_group
    uvd = read_group(res.groups[0].paths)
    assert uvd.Nfreqs == 64
    uvd.check()


def test_times_pols_baselines_and_header(small_group, read_group):
    res, truth = small_group
    uvd = read_group(res.groups[0].paths[:1])
    assert uvd.Ntimes == 24
    times = np.unique(uvd.time_array)
    np.testing.assert_allclose(np.diff(times) * 86400.0, INTEGRATION_TIME_S, atol=1e-4)
    np.testing.assert_allclose(uvd.integration_time, INTEGRATION_TIME_S)
    assert (times[-1] - times[0]) * 86400 + INTEGRATION_TIME_S == pytest.approx(309.237648, abs=1e-3)
    start_jd = times[0] - INTEGRATION_TIME_S / 2 / 86400
    from astropy.time import Time

    assert abs(Time(start_jd, format="jd").datetime - res.groups[0].start.replace(tzinfo=None)) < timedelta(milliseconds=1)
    assert list(uvd.polarization_array) == [-5, -6]  # XX, YY (AIPS codes)
    assert uvd.Nants_data == 8 and uvd.Nbls == 8 * 9 // 2
    autos = uvd.ant_1_array == uvd.ant_2_array
    assert autos.sum() == 8 * 24
    assert np.all(uvd.data_array[autos].real > 0) and np.all(uvd.data_array[autos].imag == 0)
    assert np.all(uvd.ant_1_array <= uvd.ant_2_array)
    assert not uvd.flag_array.any()
    assert np.all(uvd.nsample_array == 1)
    assert uvd.data_array.dtype == np.complex64 or uvd.data_array.dtype == np.complex128
    assert uvd.telescope.name == "DSA_110"
    assert uvd.extra_keywords["ha_phase_center"] == 0.0
    assert uvd.extra_keywords["phase_center_dec"] == pytest.approx(math.radians(35.0))
    assert truth.pointing_dec_rad == pytest.approx(math.radians(35.0))
    (cat,) = uvd.phase_center_catalog.values()
    assert cat["cat_type"] == "unprojected"
    assert uvd.vis_units == "uncalib"


def test_antenna_table_matches_station_csv(small_group, read_group):
    res, truth = small_group
    uvd = read_group(res.groups[0].paths[:1], read_data=False)
    st = load_stations()
    tel = uvd.telescope
    assert tel.Nants == 117
    assert list(tel.antenna_names) == [f"DSA-{k:03d}" for k in range(1, 118)]
    np.testing.assert_array_equal(tel.antenna_numbers, np.arange(117))
    np.testing.assert_allclose(tel.antenna_diameters, 4.65)
    assert set(tel.mount_type) == {"alt-az"}
    # positions: back to geodetic and compare with the CSV
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    loc = tel.location
    ecef = tel.antenna_positions + np.array([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)])
    geo = EarthLocation.from_geocentric(*ecef.T, unit=u.m).to_geodetic()
    np.testing.assert_allclose(geo.lat.deg, st.latitude_deg, atol=1e-9)
    np.testing.assert_allclose(geo.lon.deg, st.longitude_deg, atol=1e-9)
    np.testing.assert_allclose(geo.height.to_value(u.m), st.height_m, atol=1e-4)
    assert st.height_m[116] == 1182.6  # DSA-117's elevation is blank in the CSV
    assert loc.lat.deg == pytest.approx(DSA110_LOCATION.lat.deg)
    np.testing.assert_array_equal(np.unique(uvd.ant_1_array.tolist() + uvd.ant_2_array.tolist()), select_antennas(8))
    np.testing.assert_array_equal(truth.antenna_numbers, select_antennas(8))


def test_default_is_96_antennas_with_data(tmp_path, read_group):
    cfg = SimulationConfig(channels_per_subband=1, subbands=(0,), n_integrations=1, n_sources=0, seed=4, noise=False)
    res = simulate(tmp_path, cfg)
    uvd = read_group(res.groups[0].paths, read_data=False)
    assert uvd.Nants_data == 96
    assert uvd.Nbls == 96 * 97 // 2
    assert uvd.telescope.Nants == 117


def test_consecutive_groups_follow_each_other(tmp_path, read_group):
    cfg = SimulationConfig(n_antennas=3, channels_per_subband=1, subbands=(0,), n_groups=3, n_sources=0, seed=2)
    res = simulate(tmp_path, cfg)
    starts = [g.start for g in res.groups]
    for a, b in zip(starts, starts[1:]):
        assert (b - a).total_seconds() == pytest.approx(24 * INTEGRATION_TIME_S, abs=1e-5)
    t = [np.unique(read_group(g.paths, read_data=False).time_array) for g in res.groups]
    for a, b in zip(t, t[1:]):
        assert (b[0] - a[-1]) * 86400 == pytest.approx(INTEGRATION_TIME_S, abs=1e-4)
