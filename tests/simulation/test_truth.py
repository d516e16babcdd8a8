"""The truth file: catalogue, light curves with ESEs, epochs at the same LST, calibrator placement, CSV."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from contimg.errors import ConfigError, InputFileError
from contimg.simulation import EseInjection, SimulationConfig, SkyCatalog, load_truth, predict_uvdata, simulate
from contimg.simulation.lightcurves import ese_profile
from contimg.simulation.sky import power_law_fluxes
from contimg.stations import icrs_to_apparent, lst_rad


def test_days_repeat_at_the_same_lst(light_curve_days):
    res, truth = light_curve_days
    assert len(res.groups) == 6 and [g.epoch for g in res.groups] == list(range(6))
    first = np.array([g.time_jd[0] for g in truth.groups])
    np.testing.assert_allclose(np.diff(first) * 86400.0, 86164.0905, atol=1e-3)
    lst = lst_rad(first)
    dlst = np.angle(np.exp(1j * (lst - lst[0])))
    assert np.max(np.abs(dlst)) < math.radians(0.2 / 3600 * 15)  # < 0.2 s of time
    np.testing.assert_allclose(truth.epoch_days, np.arange(6) * 86164.0905 / 86400.0)


def test_injected_ese_is_in_the_truth(light_curve_days):
    _, truth = light_curve_days
    (ev,) = [e for e in truth.events if e["source_id"] == 0]
    assert ev["depth"] == 0.4 and ev["duration_days"] == 2.0 and ev["t_center_days"] == 2.5
    lc = truth.lightcurve(0)
    s0 = truth.catalog.flux_jy[truth.catalog.index_of(0)]
    expected = s0 * ese_profile(truth.epoch_days, t_center=2.5, duration_days=2.0, depth=0.4, caustic_amplitude=0.3)
    np.testing.assert_allclose(lc, expected)
    assert lc.min() == pytest.approx(0.6 * s0, rel=1e-9)  # the flat bottom of the dip
    assert lc[0] == pytest.approx(s0) and lc[-1] == pytest.approx(s0)
    dense = ese_profile(np.linspace(0, 5, 2001), t_center=ev["t_center_days"], duration_days=ev["duration_days"],
                        depth=ev["depth"], caustic_amplitude=ev["caustic_amplitude"])
    assert dense.max() > 1.05  # caustic brightenings at ingress and egress (between the daily samples here)
    assert truth.flux(0, 2) == pytest.approx(lc[2])


def test_random_eses_and_quiet_sources(light_curve_days):
    _, truth = light_curve_days
    cat = truth.catalog
    n_random = round(0.25 * 12)
    assert len(truth.events) in (n_random, n_random + 1)  # the injected one may coincide with a random pick
    ese_ids = set(truth.ese_source_ids)
    for k, sid in enumerate(cat.source_id):
        lc = truth.flux_per_epoch[k]
        if sid in ese_ids:
            assert lc.min() < cat.flux_jy[k]
        else:
            np.testing.assert_allclose(lc, cat.flux_jy[k])


def test_flux_scale_error_and_calibrator(light_curve_days):
    _, truth = light_curve_days
    assert truth.flux_scale.shape == (6,)
    assert np.std(truth.flux_scale) > 0.005 and np.all(np.abs(truth.flux_scale - 1) < 0.3)
    cal = truth.calibrator_id
    assert cal == 12 and truth.catalog.calibrator[truth.catalog.index_of(cal)]
    for day in range(6):
        assert truth.observed_flux(cal, day) == 5.0
        assert truth.observed_flux(1, day) == pytest.approx(truth.flux(1, day) * truth.flux_scale[day])


def test_visibilities_follow_the_light_curves(light_curve_days, read_group):
    """Noise-free, gain-free data of each epoch equal the model of that epoch's observed fluxes."""
    res, truth = light_curve_days
    for day in (0, 2):
        uvd = read_group(res.groups[day].paths)
        model = predict_uvdata(uvd, truth.catalog_for_epoch(day))
        cross = uvd.ant_1_array != uvd.ant_2_array
        np.testing.assert_allclose(uvd.data_array[cross], model[cross], atol=1e-5 * np.abs(model).max())
    # and the ESE dip is there: day 2 minus day 0 is the (scaled) change of source 0 alone
    assert truth.flux(0, 2) < 0.7 * truth.flux(0, 0)


def test_calibrator_transits_mid_group_at_pointing_dec(small_group):
    _, truth = small_group
    k = truth.catalog.index_of(truth.calibrator_id)
    t_mid = truth.groups[0].mid_time_jd
    app_ra, app_dec = icrs_to_apparent(np.radians(truth.catalog.ra_deg[k]), np.radians(truth.catalog.dec_deg[k]), t_mid)
    ha = np.angle(np.exp(1j * (lst_rad(t_mid) - app_ra)))
    assert abs(float(ha[0])) < math.radians(0.1 / 3600)
    assert float(app_dec) == pytest.approx(truth.pointing_dec_rad, abs=math.radians(0.1 / 3600))
    assert truth.catalog.flux_jy[k] == 10.0
    # the ICRS declination of the meridian is recorded and differs from the apparent one
    assert abs(truth.pointing_dec_icrs_rad[0] - truth.pointing_dec_rad) > math.radians(0.01)
    assert truth.pointing_dec_icrs_rad[0] == pytest.approx(math.radians(truth.catalog.dec_deg[k]), abs=1e-6)


def test_catalogue_is_nvss_like_and_in_the_beam(small_group):
    _, truth = small_group
    cat = truth.catalog
    sky = ~cat.calibrator
    assert sky.sum() == 20
    assert np.all(cat.flux_jy[sky] >= 0.01) and np.all(cat.flux_jy[sky] <= 3.0)
    assert np.all(np.diff(cat.flux_jy[sky]) <= 0), "sorted by decreasing flux"
    from contimg.beam import angular_separation

    cal = cat.index_of(truth.calibrator_id)
    sep = np.degrees(angular_separation(np.radians(cat.ra_deg[cal]), np.radians(cat.dec_deg[cal]),
                                        np.radians(cat.ra_deg[sky]), np.radians(cat.dec_deg[sky])))
    assert sep.max() < 5.0 + 1.0  # field radius around the drift track (0.65 deg/2 each side)


def test_power_law_counts(sim_rng):
    s = power_law_fluxes(200_000, rng=sim_rng, s_min=0.01, s_max=3.0, slope=1.8)
    assert s.min() >= 0.01 and s.max() <= 3.0
    # N(>S) ~ S^-0.8 far from the upper cut-off
    n1, n2 = (s > 0.02).sum(), (s > 0.2).sum()
    assert math.log10(n1 / n2) == pytest.approx(0.8, abs=0.05)


def test_sources_csv_round_trip(small_group):
    _, truth = small_group
    path = truth.path / "sources.csv"
    header = path.read_text().splitlines()[0]
    assert header == "id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator"
    back = SkyCatalog.read_csv(path)
    np.testing.assert_array_equal(back.source_id, truth.catalog.source_id)
    np.testing.assert_allclose(back.ra_deg, truth.catalog.ra_deg, atol=1e-9)
    np.testing.assert_allclose(back.flux_jy, truth.catalog.flux_jy, rtol=1e-8)
    np.testing.assert_array_equal(back.calibrator, truth.catalog.calibrator)


def test_bad_csv_is_named(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("id,ra_deg\n1,2\n")
    with pytest.raises(InputFileError, match="bad.csv"):
        SkyCatalog.read_csv(p)


def test_truth_json_records_everything(small_group):
    res, truth = small_group
    meta = json.loads((truth.path / "truth.json").read_text())
    for key in ("config", "pointing_dec_rad", "groups", "noise_sigma_jy", "events", "calibrator_id", "location"):
        assert key in meta
    assert meta["config"]["seed"] == 1 and meta["config"]["channels_per_subband"] == 4
    assert meta["groups"][0]["files"]["0"] == res.groups[0].paths[0].name
    assert truth.config == SimulationConfig.from_dict(meta["config"])
    assert load_truth(truth.path / "truth.json").noise_sigma_jy == truth.noise_sigma_jy


def test_missing_truth_is_named(tmp_path):
    with pytest.raises(InputFileError, match="truth"):
        load_truth(tmp_path)


def test_invalid_options_are_rejected():
    with pytest.raises(ConfigError, match="channels_per_subband"):
        SimulationConfig(channels_per_subband=0)
    with pytest.raises(ConfigError, match="n_antennas"):
        SimulationConfig(n_antennas=118)
    with pytest.raises(ConfigError, match="ese_fraction"):
        SimulationConfig(ese_fraction=1.5)


def test_injection_into_unknown_source_is_rejected(tmp_path):
    cfg = SimulationConfig(n_antennas=3, channels_per_subband=1, subbands=(0,), n_integrations=1, n_sources=2,
                           events=(EseInjection(source_id=5, t_center_days=0, duration_days=1, depth=0.2),))
    with pytest.raises(ConfigError, match="source 5"):
        simulate(tmp_path, cfg)


def test_a_transient_is_in_the_visibilities_on_its_days_only_and_never_in_the_catalogue(tmp_path):
    from pyuvdata import UVData

    from contimg.simulation import TransientInjection
    from contimg.simulation.sky import SkyCatalog

    probe = simulate(tmp_path / "probe", SimulationConfig(n_antennas=4, channels_per_subband=1, subbands=(0,),
                                                          n_integrations=2, n_sources=0, noise=False, gains=False))
    g = load_truth(probe.truth_path).groups[0]
    from contimg.stations import meridian_icrs

    ra, dec = meridian_icrs(np.array(g.time_jd), load_truth(probe.truth_path).pointing_dec_rad)
    tr = TransientInjection(ra_deg=float(np.degrees(ra.mean())), dec_deg=float(np.degrees(dec.mean())), flux_jy=2.0,
                            first_day=1, last_day=1, spectral_index=0.0)
    cfg = SimulationConfig(n_antennas=4, channels_per_subband=1, subbands=(0,), n_integrations=2, n_days=3,
                           noise=False, gains=False, jitter_s=0, transients=(tr,))
    res = simulate(tmp_path / "sim", cfg, catalog=SkyCatalog.from_sources([], [], []))
    truth = load_truth(res.truth_path)
    assert truth.transients == (tr,) and truth.catalog.Nsrc == 0
    assert (tmp_path / "sim" / "sources.csv").read_text().count("\n") == 1  # the header only
    amps = []
    for group in res.groups:
        uv = UVData.from_file(group.paths[0], file_type="uvh5")
        cross = uv.ant_1_array != uv.ant_2_array
        amps.append(float(np.abs(uv.data_array[cross]).max()))
    # day 1: the transient (2 Jy, at the phase centre, so ~2 Jy times the beam); days 0 and 2: nothing
    assert amps[0] == 0.0 and amps[2] == 0.0 and 1.5 < amps[1] <= 2.0
