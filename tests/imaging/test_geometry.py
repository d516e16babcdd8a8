"""Image geometry derived from the MS: cell from the longest baseline, field from the primary beam."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.beam import SPEED_OF_LIGHT, airy_power, angular_separation
from contimg.errors import InputFileError
from contimg.imaging.geometry import _smooth_even, derive_geometry, pb_radius_rad, pointing_track, read_ms_info


@pytest.fixture(scope="module")
def info(sim_group):
    return read_ms_info(sim_group["ms"])


def test_ms_info(info, sim_group):
    truth = sim_group["truth"]
    assert info.Ntimes == 24 and info.Nfreqs == 32
    assert np.all(np.diff(info.freq_array) > 0)
    assert info.flagged_fraction < 0.01
    assert info.telescope_name == "DSA_110"
    assert 300 < info.max_baseline_m < 600  # the 20-antenna core
    # the phase center is the meridian at the group midpoint, at the ICRS pointing declination
    assert math.degrees(info.phase_center_dec_rad) == pytest.approx(math.degrees(truth.pointing_dec_icrs_rad[0]), abs=1e-4)
    assert info.mid_time_jd == pytest.approx(truth.groups[0].mid_time_jd, abs=1e-8)


def test_pointing_track_passes_through_phase_center(info):
    ra, dec = pointing_track(info)
    mid_ra, mid_dec = np.interp(info.mid_time_jd, info.time_jd, ra), np.interp(info.mid_time_jd, info.time_jd, dec)
    sep = float(angular_separation(mid_ra, mid_dec, info.phase_center_ra_rad, info.phase_center_dec_rad))
    assert math.degrees(sep) * 3600 < 1.0
    # 309 s of sidereal drift at Dec 35: 23 integrations x 12.88 s x 15.04 arcsec/s x cos(dec)
    drift = math.degrees(float(angular_separation(ra[0], dec[0], ra[-1], dec[-1])))
    expected = 23 * 12.884902 * 15.041 / 3600 * math.cos(info.phase_center_dec_rad)
    assert drift == pytest.approx(expected, rel=2e-3)


def test_derived_geometry(info):
    geom = derive_geometry(info, pb_limit=0.2)
    lam_min = SPEED_OF_LIGHT / info.max_freq_hz
    cell = math.degrees(lam_min / info.max_baseline_m) * 3600 / 3
    assert cell - 0.1 <= geom.cell_arcsec <= cell
    radius = pb_radius_rad(0.2, info.min_freq_hz)
    assert float(airy_power(radius, info.min_freq_hz)) == pytest.approx(0.2, abs=1e-6)
    # the image covers the 20 % circle swept along the drift, and is wider in RA
    assert geom.ny * geom.cell_arcsec / 3600 >= 2 * math.degrees(radius)
    assert geom.nx * geom.cell_arcsec / 3600 >= 2 * math.degrees(radius) + geom.drift_deg
    assert geom.nx > geom.ny
    assert geom.nx % 2 == 0 and geom.ny % 2 == 0
    tighter = derive_geometry(info, pb_limit=0.5)
    assert tighter.nx < geom.nx and tighter.ny < geom.ny


def test_smooth_sizes():
    assert _smooth_even(1001) == 1024
    assert _smooth_even(3000) == 3000
    assert _smooth_even(3001) == 3072
    assert _smooth_even(7) == 8


def test_not_an_ms(tmp_path):
    with pytest.raises(InputFileError, match="not a Measurement Set"):
        read_ms_info(tmp_path / "missing.ms")
