"""Baseline-dependent averaging: our model of WSClean's averaging and of the peak loss it causes, against truth."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from msmodel_helpers import toy_model

from contimg.imaging.smearing import (
    OMEGA_EARTH,
    averaging_factors,
    baseline_length_max_m,
    averaging_loss,
    briggs_weights,
    native_smearing_loss,
    plan_baseline_averaging,
    row_fraction,
)
from contimg.msmodel import read_ms

CELL_ARCSEC = 15.0  # as in conftest: the core array's beam is ~45 x 90 arcsec
C = 299792458.0


def _linear_tracks(nt: int = 24, u0: float = 1000.0, rate_m_s: float = 0.1):
    """An MS of one baseline along u whose length grows linearly, u = u0 + rate t (10 s integrations, one
    channel at 1.5 GHz)."""
    t = np.arange(nt)
    uvw = np.zeros((nt, 3))
    uvw[:, 0] = u0 + rate_m_s * 10.0 * t
    return toy_model(nants=2, ntimes=nt, nfreqs=1, autos=False, uvw=uvw, freq_array=[1.5e9], channel_width=244e3)


def test_averaging_factors_follow_wsclean_rule():
    tr = _linear_tracks()
    speed = OMEGA_EARTH * 10.0 * baseline_length_max_m(tr)[0] * 1.5e9 / C  # wavelengths per integration
    assert averaging_factors(tr, 0.99 * speed)[0] == 1
    assert averaging_factors(tr, 2.5 * speed)[0] == 2
    assert averaging_factors(tr, 1e6)[0] == 24  # never more than the group


def test_loss_of_a_linear_phase_ramp():
    """Averaging pairs of a linear fringe loses 1 - cos(dphi / 2) exactly."""
    tr = _linear_tracks()
    speed = OMEGA_EARTH * 10.0 * baseline_length_max_m(tr)[0] * 1.5e9 / C
    radius = math.radians(2.0)
    loss = averaging_loss(tr, 2.5 * speed, radius_rad=radius, position_angles_deg=(90.0,))  # source due east: l
    dphi = 2 * math.pi * 1.5e9 / C * 1.0 * math.sin(radius)  # 1 m of u per integration
    assert loss[0] == pytest.approx(1 - math.cos(dphi / 2), rel=1e-6)
    # due north the source sees no u motion: no loss (but the w term of a pure-u baseline is zero too)
    assert averaging_loss(tr, 2.5 * speed, radius_rad=radius, position_angles_deg=(0.0,))[0] == pytest.approx(0, abs=1e-12)
    assert averaging_loss(tr, 0.5 * speed, radius_rad=radius).max() == 0.0


def test_briggs_weights_limits(sim_group):
    tr = read_ms(sim_group["ms"])
    fov = (math.radians(2.0), math.radians(2.0))
    natural = briggs_weights(tr, robust=5.0, fov_rad=fov)
    uniform = briggs_weights(tr, robust=-5.0, fov_rad=fov)
    assert np.ptp(natural / natural.max()) < 1e-3  # robust +5 is natural weighting
    assert np.ptp(uniform) > 0.5 * uniform.max()  # robust -5 tracks the density


def test_native_smearing_grows_with_radius(sim_group):
    tr = read_ms(sim_group["ms"])
    near = native_smearing_loss(tr, radius_rad=math.radians(0.5))
    far = native_smearing_loss(tr, radius_rad=math.radians(2.0))
    for key in ("bandwidth", "integration"):
        assert 0 <= near[key] < far[key] < 0.05


@pytest.mark.integration
def test_row_count_and_peak_loss_match_wsclean(one_source_group, tmp_path):
    """Real WSClean with and without averaging: its row count, and the peak loss of a lone source 1 deg out.

    Natural weighting, dirty images, no noise: the measured loss is the
    averaging's alone. The model assumes the source's amplitude is constant
    during the group; the drifting beam concentrates an off-axis source's
    signal in part of the group, so the measured loss comes out ~10 % below
    the model (an upper bound).
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.imaging.wsclean import run_wsclean

    ms = one_source_group["ms"]
    tracks = read_ms(ms)
    ra0, dec0 = tracks.phase_center_ra, tracks.phase_center_dec
    ra, dec = math.radians(one_source_group["ra"]), math.radians(one_source_group["dec"])
    l_ = math.cos(dec) * math.sin(ra - ra0)
    m_ = math.sin(dec) * math.cos(dec0) - math.cos(dec) * math.sin(dec0) * math.cos(ra - ra0)
    radius, pa = math.asin(math.hypot(l_, m_)), math.degrees(math.atan2(l_, m_))

    def predicted(size: float) -> float:
        return float(averaging_loss(tracks, size, radius_rad=radius, position_angles_deg=(pa,))[0])

    size = next(s for s in np.geomspace(1, 400, 80) if predicted(s) > 0.05)
    peaks = {}
    for label, extra in (("none", []), ("bda", ["-baseline-averaging", f"{size:.4g}"])):
        prefix = tmp_path / label
        log = tmp_path / f"{label}.log"
        args = ["-name", str(prefix), "-data-column", "CORRECTED_DATA", "-no-update-model-required", "-pol", "I",
                "-weight", "natural", "-size", "640", "640", "-scale", f"{CELL_ARCSEC:g}asec", "-use-wgridder",
                "-wgridder-accuracy", "1e-6", "-niter", "0", "-j", "2", "-temp-dir", str(tmp_path), *extra, str(ms)]
        run_wsclean(args, ms_path=ms, timeout_s=300, log_path=log)
        image = fits.getdata(f"{prefix}-image.fits")[0, 0]
        x, y = WCS(fits.getheader(f"{prefix}-image.fits")).celestial.world_to_pixel_values(
            one_source_group["ra"], one_source_group["dec"])
        peaks[label] = float(image[int(round(float(y))), int(round(float(x)))])
        if extra:
            reported = float(re.search(r"reduced the number of rows to ([\d.]+)%", log.read_text()).group(1)) / 100
            assert row_fraction(tracks, float(f"{size:.4g}")) == pytest.approx(reported, abs=0.002)
    measured = 1 - peaks["bda"] / peaks["none"]
    expected = predicted(float(f"{size:.4g}"))
    assert 0.75 * expected < measured < expected + 0.002, (measured, expected)


def test_plan_stays_within_budget(sim_group):
    tracks = read_ms(sim_group["ms"])
    fov = (math.radians(3.0), math.radians(3.0))
    radius = math.radians(2.0)
    plan = plan_baseline_averaging(tracks, radius_rad=radius, max_loss=0.01, robust=0.0, fov_rad=fov)
    assert plan.wavelengths is not None and 0 < plan.loss <= 0.01 and plan.row_fraction < 1
    weights = briggs_weights(tracks, robust=0.0, fov_rad=fov)
    assert averaging_loss(tracks, plan.wavelengths, radius_rad=radius, weights=weights).max() <= 0.01
    looser = plan_baseline_averaging(sim_group["ms"], radius_rad=radius, max_loss=0.03, robust=0.0, fov_rad=fov)
    assert looser.wavelengths > plan.wavelengths and looser.row_fraction < plan.row_fraction
    with pytest.raises(ValueError):
        plan_baseline_averaging(sim_group["ms"], radius_rad=0.0, max_loss=0.01, robust=0.0, fov_rad=fov)
