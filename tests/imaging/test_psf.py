"""The PSF main lobe predicted from the uv coverage, against the PSF WSClean makes of the same MS."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from contimg.imaging.geometry import derive_geometry
from contimg.imaging.psf import main_lobe_fwhm
from contimg.msmodel import read_ms

CELL_ARCSEC = 4.0
"""Fine enough to read the half-power widths of WSClean's PSF to < 1 %."""


def _half_power_width(psf: np.ndarray, direction: tuple[float, float]) -> float:
    """Full width at half power of ``psf`` (peak at its centre) along ``direction`` (dx, dy in pixels)."""
    from scipy.ndimage import map_coordinates

    cy, cx = np.unravel_index(int(np.argmax(psf)), psf.shape)
    r = np.linspace(0, 60, 6001)
    profile = map_coordinates(psf, [cy + r * direction[1], cx + r * direction[0]], order=3)
    k = int(np.argmax(profile < 0.5))
    return float(2 * (r[k - 1] + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k]) * (r[k] - r[k - 1])))


@pytest.mark.parametrize("robust", [0.0, 1.0])
def test_main_lobe_matches_the_psf_wsclean_makes(sim_group, tmp_path, robust):
    from astropy.io import fits

    ms = sim_group["ms"]
    msm = read_ms(ms)
    geometry = derive_geometry(msm, pb_limit=0.2)
    fov = (math.radians(geometry.width_deg), math.radians(geometry.height_deg))
    lobe = main_lobe_fwhm(msm, robust=robust, fov_rad=fov)
    # WSClean on the same field (the same uv cell for its Briggs weights), finer pixels
    n = [int(round(geometry.width_deg * 3600 / CELL_ARCSEC / 2)) * 2, int(round(geometry.height_deg * 3600 / CELL_ARCSEC / 2)) * 2]
    subprocess.run(["wsclean", "-make-psf-only", "-size", str(n[0]), str(n[1]), "-scale", f"{CELL_ARCSEC}asec",
                    "-weight", "briggs", f"{robust:g}", "-data-column", "CORRECTED_DATA", "-name", str(tmp_path / "p"),
                    "-j", "2", str(ms)], check=True, capture_output=True, timeout=300)
    psf = fits.getdata(tmp_path / "p-psf.fits")[0, 0].astype(float)
    theta = math.radians(lobe.minor_pa_deg)
    # uv position angle theta -> image direction (l, m) = (cos, sin); l grows to the east, i.e. to -x
    minor = _half_power_width(psf, (-math.cos(theta), math.sin(theta))) * CELL_ARCSEC
    widths = [_half_power_width(psf, (-math.cos(t), math.sin(t))) * CELL_ARCSEC for t in np.radians(np.arange(0, 180, 5))]
    assert lobe.minor_arcsec == pytest.approx(minor, rel=0.03)
    assert lobe.minor_arcsec == pytest.approx(min(widths), rel=0.03)
    assert lobe.major_arcsec == pytest.approx(max(widths), rel=0.03)


def test_the_cell_samples_the_main_lobe(sim_group):
    """Briggs weighting leaves the core's main lobe narrower than its longest fringe: the lobe sets the cell."""
    msm = read_ms(sim_group["ms"])
    baseline_rule = derive_geometry(msm, pb_limit=0.2)
    fov = (math.radians(baseline_rule.width_deg), math.radians(baseline_rule.height_deg))
    lobe = main_lobe_fwhm(msm, robust=0.0, fov_rad=fov)
    geometry = derive_geometry(msm, pb_limit=0.2, psf_minor_arcsec=lobe.minor_arcsec)
    assert lobe.minor_arcsec / baseline_rule.cell_arcsec < 3  # what the baseline rule alone would do
    assert lobe.minor_arcsec / geometry.cell_arcsec >= 3
    assert geometry.cell_arcsec > lobe.minor_arcsec / 3 - 0.1
    # the field is the same; only its sampling changes
    assert geometry.width_deg == pytest.approx(baseline_rule.width_deg, rel=0.05)
    # a lobe wider than the fringe rule changes nothing
    assert derive_geometry(msm, pb_limit=0.2, psf_minor_arcsec=10 * lobe.minor_arcsec) == baseline_rule
