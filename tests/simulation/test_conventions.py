"""The measurement-equation convention, proved with pyuvdata's own phase().

After phasing noise-free, gain-free drift-scan data to a lone source with
``UVData.phase``, that source's visibilities must be real and equal to its
apparent flux S(nu) A(nu, t). This holds only if the simulator's sign, its
``uvw = x_ant2 - x_ant1`` baseline convention, its omission of the w(n-1) term
and its apparent-coordinate computation (aberration, precession, nutation) all
agree with pyuvdata -- the outriggers (2.5 km, different heights) make every
one of them matter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.beam import airy_power, angular_separation
from contimg.simulation import SimulationConfig, SkyCatalog, load_truth, predict_uvdata, simulate
from contimg.stations import apparent_to_icrs, icrs_to_apparent, load_stations, lst_rad

from contimg.simulation.run import _integration_centres as integration_centres

FLUX = 2.0
ALPHA = -0.8


def _single_source_group(tmp_path, read_group, antennas, *, start=None, hour_angle_offset_s: float, ddec_deg: float, dec_deg: float = 35.0):
    kw = {} if start is None else {"start": start}
    cfg = SimulationConfig(
        antenna_numbers=antennas, channels_per_subband=4, subbands=(0, 15), noise=False, gains=False,
        n_sources=0, seed=3, dec_deg=dec_deg, **kw,
    )
    t = integration_centres(cfg, cfg.start)
    t_transit = np.array([t.mean() + hour_angle_offset_s / 86400.0])
    ra, dec = apparent_to_icrs(lst_rad(t_transit), np.radians(dec_deg + ddec_deg), t_transit)
    cat = SkyCatalog.from_sources(np.degrees(ra), np.degrees(dec), FLUX, spectral_index=ALPHA)
    res = simulate(tmp_path, cfg, catalog=cat)
    return read_group(res.groups[0].paths), load_truth(res.truth_path), float(ra[0]), float(dec[0])


def _expected(uvd, truth, ra, dec):
    app_ra, app_dec = icrs_to_apparent(ra, dec, uvd.time_array)
    sep = angular_separation(uvd.lst_array, truth.pointing_dec_rad, app_ra, app_dec)
    freq = uvd.freq_array
    return FLUX * (freq[None, :] / 1.4e9) ** ALPHA * airy_power(sep[:, None], freq[None, :])


def test_stations_used_differ_in_height(mixed_antennas):
    h = load_stations().height_m[list(mixed_antennas)]
    assert np.ptp(h) > 4.0


@pytest.mark.parametrize(
    ("start", "hour_angle_offset_s", "ddec_deg"),
    [
        (None, 0.0, 0.0),  # at the pointing centre, transiting mid-group
        (None, 95.0, 1.2),  # transits 95 s after mid-group, 1.2 deg north
        ("2025-02-11T03:17:00", -140.0, -1.5),  # another season/LST, south of the pointing
    ],
)
def test_phased_visibilities_are_real_and_equal_apparent_flux(tmp_path, read_group, mixed_antennas, start, hour_angle_offset_s, ddec_deg):
    from datetime import datetime, timezone

    st = None if start is None else datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    uvd, truth, ra, dec = _single_source_group(tmp_path, read_group, mixed_antennas, start=st, hour_angle_offset_s=hour_angle_offset_s, ddec_deg=ddec_deg)
    expected = _expected(uvd, truth, ra, dec)
    uvd.phase(ra=ra, dec=dec, cat_name="src", epoch="J2000")
    cross = uvd.ant_1_array != uvd.ant_2_array
    for pol in range(2):
        v = uvd.data_array[cross, :, pol]
        assert np.max(np.abs(v.imag)) < 2e-6 * FLUX
        np.testing.assert_allclose(v.real, expected[cross], rtol=2e-6)
    # The test discriminates: a position error of 2 arcsec (~ the size of the
    # annual aberration's residuals) already gives ~0.1 rad on the outriggers.
    uvd.phase(ra=ra + math.radians(2 / 3600) / math.cos(dec), dec=dec, cat_name="off", epoch="J2000")
    assert np.max(np.abs(np.angle(uvd.data_array[cross, :, 0]))) > 0.05


def test_wrong_conventions_fail(tmp_path, read_group, mixed_antennas):
    """Conjugated data (the other sign or ant1/ant2 swapped) are not real after phase()."""
    uvd, truth, ra, dec = _single_source_group(tmp_path, read_group, mixed_antennas, hour_angle_offset_s=60.0, ddec_deg=0.7)
    uvd.data_array = np.conj(uvd.data_array)
    uvd.phase(ra=ra, dec=dec, cat_name="src", epoch="J2000")
    cross = uvd.ant_1_array != uvd.ant_2_array
    assert np.max(np.abs(uvd.data_array[cross].imag)) > 0.5


def test_uvw_are_ant2_minus_ant1_enu(small_group, read_group):
    """uvw of the unprojected data are the ENU-frame baselines x_ant2 - x_ant1 that pyuvdata computes."""
    res, _ = small_group
    uvd = read_group(res.groups[0].paths[:1])
    stored = uvd.uvw_array.copy()
    uvd.set_uvws_from_antenna_positions()
    np.testing.assert_allclose(stored, uvd.uvw_array, atol=1e-6)
    enu = load_stations().enu(uvd.telescope.location)
    expected = enu[uvd.ant_2_array] - enu[uvd.ant_1_array]
    # pyuvdata's unprojected frame is ENU up to the tiny difference of geodetic vs. geocentric axes
    np.testing.assert_allclose(stored, expected, atol=5e-3 * np.abs(expected).max())


def test_predict_uvdata_matches_files(small_group, tmp_path, read_group):
    """The public model (predict_uvdata) reproduces noise-free, gain-free files exactly."""
    res, truth = small_group
    cfg = SimulationConfig(n_antennas=8, channels_per_subband=4, subbands=(2, 11), seed=1, n_sources=0,
                           noise=False, gains=False)
    out = simulate(tmp_path, cfg, catalog=truth.catalog)
    uvd = read_group(out.groups[0].paths)
    model = predict_uvdata(uvd, truth.catalog)
    auto = uvd.ant_1_array == uvd.ant_2_array
    sefd = np.where(auto, cfg.sefd_jy, 0.0)[:, None, None]
    np.testing.assert_allclose(uvd.data_array, model + sefd, atol=2e-5 * np.abs(model).max())


def test_predict_uvdata_rejects_phased_data(small_group, read_group):
    res, truth = small_group
    uvd = read_group(res.groups[0].paths[:1])
    uvd.phase(ra=0.3, dec=0.6, cat_name="x", epoch="J2000")
    with pytest.raises(ValueError, match="unprojected"):
        predict_uvdata(uvd, truth.catalog)
