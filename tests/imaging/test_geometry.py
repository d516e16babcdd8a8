"""Image geometry derived from the MS: cell from the longest baseline, field from the primary beam."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.beam import SPEED_OF_LIGHT, airy_power, angular_separation
from contimg.errors import InputFileError
from contimg.imaging.geometry import _smooth_even, check_imageable, derive_geometry, pb_radius_rad, pointing_track
from contimg.msmodel import read_ms


@pytest.fixture(scope="module")
def msm(sim_group):
    return read_ms(sim_group["ms"], data_column="CORRECTED_DATA", flags=True)


def test_what_imaging_reads_from_the_ms(msm, sim_group):
    truth = sim_group["truth"]
    assert msm.Ntimes == 24 and msm.Nfreqs == 32
    assert np.all(np.diff(msm.freq_array) > 0)
    assert msm.flagged_fraction < 0.01
    assert msm.telescope_name == "DSA_110"
    assert 300 < msm.max_baseline < 600  # the 20-antenna core
    # the phase center is the meridian at the group midpoint, at the ICRS pointing declination
    assert math.degrees(msm.phase_center_dec) == pytest.approx(math.degrees(truth.pointing_dec_icrs_rad[0]), abs=1e-4)
    assert (msm.mid_mjd + 2400000.5) == pytest.approx(truth.groups[0].mid_time_jd, abs=1e-8)


def test_pointing_track_passes_through_phase_center(msm):
    ra, dec = pointing_track(msm)
    mid = msm.mid_mjd + 2400000.5
    mid_ra, mid_dec = np.interp(mid, msm.time_array, ra), np.interp(mid, msm.time_array, dec)
    sep = float(angular_separation(mid_ra, mid_dec, msm.phase_center_ra, msm.phase_center_dec))
    assert math.degrees(sep) * 3600 < 1.0
    # 309 s of sidereal drift at Dec 35: 23 integrations x 12.88 s x 15.04 arcsec/s x cos(dec)
    drift = math.degrees(float(angular_separation(ra[0], dec[0], ra[-1], dec[-1])))
    expected = 23 * 12.884902 * 15.041 / 3600 * math.cos(msm.phase_center_dec)
    assert drift == pytest.approx(expected, rel=2e-3)


def test_derived_geometry(msm):
    geom = derive_geometry(msm, pb_limit=0.2)
    lam_min = SPEED_OF_LIGHT / msm.freq_upper_edge
    cell = math.degrees(lam_min / msm.max_baseline) * 3600 / 3
    assert cell - 0.1 <= geom.cell_arcsec <= cell
    radius = pb_radius_rad(0.2, msm.freq_lower_edge)
    assert float(airy_power(radius, msm.freq_lower_edge)) == pytest.approx(0.2, abs=1e-6)
    # the image covers the 20 % circle swept along the drift, and is wider in RA
    assert geom.ny * geom.cell_arcsec / 3600 >= 2 * math.degrees(radius)
    assert geom.nx * geom.cell_arcsec / 3600 >= 2 * math.degrees(radius) + geom.drift_deg
    assert geom.nx > geom.ny
    assert geom.nx % 2 == 0 and geom.ny % 2 == 0
    tighter = derive_geometry(msm, pb_limit=0.5)
    assert tighter.nx < geom.nx and tighter.ny < geom.ny


def test_smooth_sizes():
    assert _smooth_even(1001) == 1024
    assert _smooth_even(3000) == 3000
    assert _smooth_even(3001) == 3072
    assert _smooth_even(7) == 8


def test_not_an_ms(tmp_path):
    with pytest.raises(InputFileError, match="not a Measurement Set"):
        read_ms(tmp_path / "missing.ms")


def test_what_cannot_be_imaged_is_refused(msm):
    import dataclasses

    check_imageable(msm)
    with pytest.raises(InputFileError, match=r"group.ms: every cross-correlation visibility is flagged"):
        check_imageable(dataclasses.replace(msm, flagged_fraction=1.0))
    with pytest.raises(InputFileError, match=r"group.ms: has no cross-correlations with non-zero baselines"):
        check_imageable(dataclasses.replace(msm, uvw_array=np.zeros_like(msm.uvw_array)))
