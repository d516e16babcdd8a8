"""QA figures and point-source measurement on synthetic images (no imager needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from contimg.imaging.qa import fit_point_source, image_qa, robust_rms, write_thumbnail

CELL = 5.0
BMAJ, BMIN, BPA = 50.0, 25.0, 30.0


def _header(n: int = 128) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [200.0, 35.0]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    w.wcs.cdelt = [-CELL / 3600, CELL / 3600]
    h = w.to_header()
    h["BMAJ"], h["BMIN"], h["BPA"], h["BUNIT"] = BMAJ / 3600, BMIN / 3600, BPA, "Jy/beam"
    return h


def _gaussian(n: int, x0: float, y0: float, amp: float) -> np.ndarray:
    """The restoring beam at pixel (x0, y0), PA east of north, RA increasing to -x."""
    y, x = np.mgrid[:n, :n]
    east, north = -(x - x0), y - y0
    pa = math.radians(BPA)
    a = east * math.sin(pa) + north * math.cos(pa)
    b = east * math.cos(pa) - north * math.sin(pa)
    s = 1 / math.sqrt(8 * math.log(2))
    return amp * np.exp(-0.5 * ((a / (BMAJ / CELL * s)) ** 2 + (b / (BMIN / CELL * s)) ** 2))


def test_fit_recovers_flux_and_position_between_pixels(rng):
    n = 128
    h = _header(n)
    x0, y0 = 60.43, 70.61  # between pixel centres
    img = _gaussian(n, x0, y0, 1.7) + rng.normal(0, 1e-3, (n, n))
    ra, dec = WCS(h).pixel_to_world_values(x0, y0)
    fit = fit_point_source(img, h, float(ra), float(dec))
    assert fit.ok
    assert fit.flux_jy == pytest.approx(1.7, rel=2e-3)
    assert fit.offset_arcsec < 0.1
    # the naive brightest-pixel estimate is biased low by the pixel grid
    assert fit.peak_pixel_jy < 1.7 * 0.995
    # a position a few arcsec off still converges on the source
    ra2, dec2 = WCS(h).pixel_to_world_values(x0 + 1.2, y0 - 0.8)
    fit2 = fit_point_source(img, h, float(ra2), float(dec2))
    assert fit2.flux_jy == pytest.approx(1.7, rel=2e-3)
    assert fit2.offset_arcsec == pytest.approx(math.hypot(1.2, 0.8) * CELL, rel=0.05)


def test_fit_outside_image_or_blank_is_not_ok():
    h = _header(64)
    img = np.full((64, 64), np.nan)
    ra, dec = WCS(h).pixel_to_world_values(32, 32)
    assert not fit_point_source(img, h, float(ra), float(dec)).ok
    ra, dec = WCS(h).pixel_to_world_values(500, 32)
    assert not fit_point_source(np.zeros((64, 64)), h, float(ra), float(dec)).ok


def test_robust_rms_ignores_sources(rng):
    x = rng.normal(0, 2e-3, (400, 400))
    x[100:110, 100:110] += 5.0
    assert robust_rms(x) == pytest.approx(2e-3, rel=0.03)
    assert math.isnan(robust_rms(np.full(10, np.nan)))


def test_image_qa_and_thumbnail(tmp_path, rng):
    n = 256
    h = _header(n)
    img = _gaussian(n, 100.2, 140.7, 2.0) + rng.normal(0, 1e-3, (n, n))
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(img.astype(np.float32), h).writeto(path)
    qa = image_qa(path)
    assert qa.beam_major_arcsec == pytest.approx(BMAJ) and qa.beam_minor_arcsec == pytest.approx(BMIN)
    assert qa.rms_jy == pytest.approx(1e-3, rel=0.05)
    assert qa.dynamic_range == pytest.approx(qa.peak_jy / qa.rms_jy)
    png = write_thumbnail(path, tmp_path / "x.png", max_pixels=100, title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))


def test_thumbnail_marks_the_catalogue_sources_expected_above_the_noise(monkeypatch):
    from types import SimpleNamespace

    import contimg.imaging.pbcor as pbcor
    from contimg.imaging.geometry import ImageGeometry
    from contimg.imaging.run import THUMBNAIL_MARK_SNR, field_sources, thumbnail_sources

    info = SimpleNamespace(phase_center_ra=math.radians(200.0), phase_center_dec=math.radians(35.0),
                           freq_mean=1.4e9, path="test.ms")
    geometry = ImageGeometry(5.0, 1000, 800, 0.2, 2.0, 0.5)
    asked = []

    def catalogue(ra, dec, radius):
        asked.append((ra, dec, radius))
        return {"ra_deg": np.array([200.0, 200.5, 201.0, 199.0]), "dec_deg": np.full(4, 35.0),
                "flux_jy": np.array([0.010, 0.004, 0.1, 0.002]), "spectral_index": np.array([np.nan, 0.0, -0.7, 0.0])}

    # the beam halves the third source's flux
    monkeypatch.setattr(pbcor, "beam_at_positions", lambda ra, dec, info: np.array([1.0, 1.0, 0.5, 1.0]))
    ra, dec = thumbnail_sources(field_sources(catalogue, info, geometry), rms_jy=0.001)
    assert THUMBNAIL_MARK_SNR == 5.0
    assert ra.tolist() == [201.0, 200.0]  # brightest first; 4 and 2 mJy are below 5 rms
    assert asked[0][2] == pytest.approx(math.hypot(geometry.width_deg, geometry.height_deg) / 2)
    assert thumbnail_sources(field_sources(None, info, geometry), rms_jy=0.001) == (None, None)
