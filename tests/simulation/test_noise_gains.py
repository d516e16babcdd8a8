"""Thermal noise against the radiometer equation and gains in the data against the truth file."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.beam import airy_power, angular_separation
from contimg.simulation import GainModel
from contimg.stations import icrs_to_apparent


def test_cross_correlation_noise_follows_sefd(noise_only):
    uvd, truth = noise_only
    cfg = truth.config
    sigma = cfg.sefd_jy / np.sqrt(2 * cfg.channel_width_hz * cfg.integration_time_s)
    assert truth.noise_sigma_jy == pytest.approx(sigma)
    cross = uvd.ant_1_array != uvd.ant_2_array
    v = uvd.data_array[cross]
    n = v.size
    for part in (v.real, v.imag):
        assert abs(part.mean()) < 5 * sigma / np.sqrt(n)
        assert part.std() == pytest.approx(sigma, rel=0.02)
    # real and imaginary parts, and the two polarizations, are independent
    assert abs(np.corrcoef(v.real.ravel(), v.imag.ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(v[..., 0].real.ravel(), v[..., 1].real.ravel())[0, 1]) < 0.03


def test_autocorrelations_carry_system_power_and_its_noise(noise_only):
    uvd, truth = noise_only
    cfg = truth.config
    auto = uvd.ant_1_array == uvd.ant_2_array
    a = uvd.data_array[auto]
    assert np.all(a.imag == 0)
    assert a.real.mean() == pytest.approx(cfg.sefd_jy, rel=1e-3)
    expected = cfg.sefd_jy / np.sqrt(cfg.channel_width_hz * cfg.integration_time_s)
    assert truth.auto_noise_sigma_jy == pytest.approx(expected)
    assert a.real.std() == pytest.approx(expected, rel=0.04)


def test_noise_is_reproducible_and_seeded(tmp_path):
    from contimg.simulation import SimulationConfig, simulate
    from pyuvdata import UVData

    def run(seed, sub):
        cfg = SimulationConfig(n_antennas=3, channels_per_subband=2, subbands=(4,), n_integrations=2, n_sources=0,
                               gains=False, seed=seed)
        res = simulate(tmp_path / sub, cfg)
        uvd = UVData()
        uvd.read(str(res.groups[0].paths[0]), file_type="uvh5")
        return uvd.data_array

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_gains_in_data_equal_truth(calibrator_with_gains):
    """Noise-free, one calibrator: after phasing to it, V_ij = g_i g_j^* S A exactly."""
    uvd, truth = calibrator_with_gains
    cal = truth.catalog.index_of(truth.calibrator_id)
    ra, dec = np.radians(truth.catalog.ra_deg[cal]), np.radians(truth.catalog.dec_deg[cal])
    freq = uvd.freq_array
    app_ra, app_dec = icrs_to_apparent(ra, dec, uvd.time_array)
    sep = angular_separation(uvd.lst_array, truth.pointing_dec_rad, app_ra, app_dec)
    s_app = truth.catalog.flux_at(freq)[cal][None, :] * airy_power(sep[:, None], freq[None, :])
    auto = uvd.ant_1_array == uvd.ant_2_array
    raw_autos = uvd.data_array[auto].copy()
    uvd.phase(ra=float(ra), dec=float(dec), cat_name="cal", epoch="J2000")

    times, tidx = np.unique(uvd.time_array, return_inverse=True)
    ants = truth.antenna_numbers
    g = truth.gains(ants, freq, times)  # (Nants, 2, Ntimes, Nfreqs)
    row = {int(a): k for k, a in enumerate(ants)}
    i = np.array([row[a] for a in uvd.ant_1_array])
    j = np.array([row[a] for a in uvd.ant_2_array])
    for p in range(2):
        expected = g[i, p, tidx] * np.conj(g[j, p, tidx]) * s_app
        cross = ~auto
        np.testing.assert_allclose(uvd.data_array[cross, :, p], expected[cross], rtol=2e-5, atol=2e-5)
        auto_expected = np.abs(g[i, p, tidx]) ** 2 * (s_app + truth.config.sefd_jy)
        np.testing.assert_allclose(raw_autos[:, :, p], auto_expected[auto], rtol=2e-5)


def test_gain_model_has_every_ingredient(calibrator_with_gains):
    uvd, truth = calibrator_with_gains
    gm = truth.gain_model
    assert gm.amplitude.shape == (len(truth.antenna_numbers), 2)
    assert np.std(gm.amplitude) > 0.02 and np.all(gm.amplitude > 0)
    assert np.std(gm.delay_s) > 0.3e-9
    assert not np.allclose(gm.amplitude[:, 0], gm.amplitude[:, 1]), "X and Y gains differ"
    freq = np.linspace(1311e6, 1499e6, 400)
    times = np.asarray(truth.groups[0].time_jd)
    g = truth.gains(truth.antenna_numbers[:2], freq, times)
    # smooth bandpass ripple in amplitude; slow phase drift across the group
    assert np.ptp(np.abs(g[0, 0, 0])) > 0.01
    drift = np.angle(g[:, :, -1, 200] / g[:, :, 0, 200])
    assert np.all(np.abs(drift) > 0) and np.all(np.abs(drift) < 0.5)
    missing = int(np.setdiff1d(np.arange(117), truth.antenna_numbers)[0])
    with pytest.raises(KeyError, match=str(missing)):
        truth.gains([missing], 1.4e9, times[0])


def test_unity_gains_round_trip():
    gm = GainModel.unity(np.arange(4), reference_time_jd=2460000.5)
    g = gm.evaluate(np.array([1.3e9, 1.4e9]), np.array([2460000.6]))
    np.testing.assert_array_equal(g, 1.0)
    back = GainModel.from_arrays(gm.to_arrays())
    assert back.reference_time_jd == 2460000.5
    np.testing.assert_array_equal(back.antenna_numbers, np.arange(4))


def test_no_gains_means_unity_in_truth(noise_only):
    _, truth = noise_only
    g = truth.gains(truth.antenna_numbers, np.array([1.35e9, 1.45e9]), truth.groups[0].time_jd)
    np.testing.assert_array_equal(g, 1.0)


def test_parallel_subbands_give_identical_files(tmp_path):
    """Every (group, subband) has its own noise stream: 2 processes write what 1 writes."""
    from contimg.simulation import SimulationConfig, simulate
    from pyuvdata import UVData

    def run(processes, sub):
        cfg = SimulationConfig(n_antennas=4, channels_per_subband=2, subbands=(0, 5, 10, 15), n_integrations=3,
                               n_sources=5, seed=13, processes=processes)
        res = simulate(tmp_path / sub, cfg)
        out = []
        for p in res.groups[0].paths:
            uvd = UVData()
            uvd.read(str(p), file_type="uvh5")
            out.append(uvd.data_array)
        return [p.name for p in res.groups[0].paths], out

    names1, data1 = run(1, "serial")
    names2, data2 = run(2, "parallel")
    assert names1 == names2
    for a, b in zip(data1, data2):
        np.testing.assert_array_equal(a, b)


def test_truth_apparent_flux_is_what_the_data_hold(calibrator_with_gains):
    uvd, truth = calibrator_with_gains
    freq = uvd.freq_array
    expected = truth.apparent_flux(truth.calibrator_id, freq)
    assert expected.shape == (uvd.Ntimes, uvd.Nfreqs)
    # mid-group the calibrator is at the pointing centre: A = 1 there, the spectrum alone
    mid = uvd.Ntimes // 2
    spec = 10.0 * (freq / 1.4e9) ** truth.config.calibrator_spectral_index
    np.testing.assert_allclose(expected[mid - 1:mid + 1].max(axis=0), spec, rtol=5e-4)  # half an integration off
    assert np.all(expected[0] < expected[mid]) and np.all(expected[-1] < expected[mid])


def test_apparent_flux_shapes_and_no_beam():
    from contimg.simulation.visibilities import apparent_flux

    freq = np.array([1.3e9, 1.4e9, 1.5e9])
    sa = apparent_flux(np.zeros((2, 5)), np.array([1.0, 2.0]), np.array([0.0, -1.0]), freq, diameter_m=None)
    assert sa.shape == (2, 5, 3)
    np.testing.assert_allclose(sa[0], 1.0)
    np.testing.assert_allclose(sa[1, 0], 2.0 * (freq / 1.4e9) ** -1.0)
    off = apparent_flux(np.full(2, np.radians(1.0)), np.ones(2), np.zeros(2), freq)
    assert off.shape == (2, 3) and np.all(off < 1) and np.all(np.diff(off[0]) < 0)
