"""Forced photometry on synthetic images: flux recovery, the error against beam-correlated noise, fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from contimg.photometry.forced import BeamShape, beam_template, correlated_noise_factor, forced_photometry

CELL_ARCSEC = 10.0
BMAJ_ARCSEC, BMIN_ARCSEC = 60.0, 30.0


def _header(n: int = 256, *, bpa: float = 0.0) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [150.0, 35.0]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    w.wcs.cdelt = [-CELL_ARCSEC / 3600, CELL_ARCSEC / 3600]
    h = w.to_header()
    h["BMAJ"], h["BMIN"], h["BPA"] = BMAJ_ARCSEC / 3600, BMIN_ARCSEC / 3600, bpa
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, n, n
    return h


def _sky(header, ra, dec, flux, n: int) -> np.ndarray:
    """Point sources restored with the header's beam at exact sub-pixel positions."""
    beam = BeamShape.from_header(header)
    x, y = WCS(header).world_to_pixel_values(np.asarray(ra), np.asarray(dec))
    img = np.zeros((n, n))
    half = int(8 * beam.sigma_major_pix) + 1  # the Gaussian is < 1e-13 beyond
    for xi, yi, s in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux)):
        xs = np.arange(max(0, int(xi) - half), min(n, int(xi) + half + 1))
        ys = np.arange(max(0, int(yi) - half), min(n, int(yi) + half + 1))
        gx, gy = np.meshgrid(xs, ys)
        img[np.ix_(ys, xs)] += s * beam_template(gx - xi, gy - yi, beam)
    return img


def _correlated_noise(rng, header, n: int, rms: float) -> np.ndarray:
    """White noise smoothed so that its autocorrelation is the restoring beam (BPA = 0: major axis along y)."""
    from scipy.ndimage import gaussian_filter

    beam = BeamShape.from_header(header)
    assert header["BPA"] == 0
    noise = gaussian_filter(rng.standard_normal((n, n)),
                            sigma=(beam.sigma_major_pix / math.sqrt(2), beam.sigma_minor_pix / math.sqrt(2)), mode="wrap")
    return noise * rms / noise.std()


def _grid_positions(header, n_side: int, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Positions on a grid (well separated) with random sub-pixel offsets."""
    pos = np.linspace(20, n - 20, n_side)
    gx, gy = np.meshgrid(pos, pos)
    gx = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    gy = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    ra, dec = WCS(header).pixel_to_world_values(gx, gy)
    return np.asarray(ra), np.asarray(dec)


def test_noise_free_fluxes_exact_at_subpixel_positions(rng):
    n = 200
    h = _header(n, bpa=35.0)
    ra, dec = _grid_positions(h, 5, n, rng)
    flux = rng.uniform(0.01, 2.0, ra.size)
    res = forced_photometry(_sky(h, ra, dec, flux, n), h, ra, dec)
    assert (res.method == "fit").all()
    np.testing.assert_allclose(res.flux_jy, flux, rtol=1e-9)


def test_agrees_with_the_imaging_qa_fit(rng):
    """The closed-form fixed-position fit and qa.fit_point_source (free position) agree on a clean source."""
    from contimg.imaging.qa import fit_point_source

    n = 128
    h = _header(n, bpa=-20.0)
    ra, dec = WCS(h).pixel_to_world_values(60.3, 70.6)
    img = _sky(h, [ra], [dec], [1.7], n)
    ours = forced_photometry(img, h, [ra], [dec])
    theirs = fit_point_source(img, h, float(ra), float(dec))
    assert ours.flux_jy[0] == pytest.approx(theirs.flux_jy, rel=1e-4)


def test_error_matches_scatter_in_beam_correlated_noise(rng):
    """Pulls (measured - true) / error have unit spread on noise correlated like the beam (Condon 1997)."""
    n = 512
    h = _header(n)
    rms = 1e-3
    pulls = []
    for _ in range(4):
        ra, dec = _grid_positions(h, 10, n, rng)
        flux = rng.uniform(0, 0.05, ra.size)
        img = _sky(h, ra, dec, flux, n) + _correlated_noise(rng, h, n, rms)
        res = forced_photometry(img, h, ra, dec)
        pulls.append((res.flux_jy - flux) / res.flux_err_jy)
        np.testing.assert_allclose(res.rms_jy, rms, rtol=0.25)
    pulls = np.concatenate(pulls)
    assert abs(np.mean(pulls)) < 0.15
    assert np.std(pulls) == pytest.approx(1.0, abs=0.12)
    # the correlated-noise factor is close to one inside the half-power contour (sigma_S ~ sigma_rms)
    assert 0.9 < correlated_noise_factor(BeamShape.from_header(h)) < 1.05


def test_beam_response_divides_flux_and_error(rng):
    n = 200
    h = _header(n)
    ra, dec = _grid_positions(h, 3, n, rng)
    img = _sky(h, ra, dec, np.full(ra.size, 0.5), n) + _correlated_noise(rng, h, n, 1e-3)
    flat = forced_photometry(img, h, ra, dec)
    resp = np.linspace(0.3, 1.0, ra.size)
    pb = forced_photometry(img, h, ra, dec, beam_response=resp)
    np.testing.assert_allclose(pb.flux_jy, flat.flux_jy / resp)
    np.testing.assert_allclose(pb.flux_err_jy, flat.flux_err_jy / resp)
    np.testing.assert_allclose(pb.beam_response, resp)


def test_non_detection_kept_as_upper_limit(rng):
    n = 256
    h = _header(n)
    rms = 2e-3
    ra, dec = WCS(h).pixel_to_world_values(np.array([100.0, 160.0]), np.array([128.0, 128.0]))
    img = _sky(h, ra[:1], dec[:1], [1.0], n) + _correlated_noise(rng, h, n, rms)
    res = forced_photometry(img, h, ra, dec)
    assert res.upper_limit.tolist() == [False, True]
    assert np.isfinite(res.flux_jy).all()
    assert abs(res.flux_jy[1]) < 4 * res.flux_err_jy[1]
    assert res.flux_err_jy[1] == pytest.approx(rms, rel=0.3)


def test_fallback_to_pixel_and_unmeasurable_positions(rng):
    n = 128
    h = _header(n)
    ra, dec = WCS(h).pixel_to_world_values(np.array([40.0, 90.0, 500.0]), np.array([64.0, 64.0, 64.0]))
    img2 = _sky(h, ra[:2], dec[:2], [1.0, 2.0], n)
    img2[:, 91:] = np.nan  # most of the second source's beam blanked, as at the pb_limit edge
    img2[55:75, 88:90] = np.nan
    res2 = forced_photometry(img2, h, ra, dec)
    assert res2.method.tolist() == ["fit", "pixel", "none"]
    assert res2.flux_jy[1] == pytest.approx(2.0, rel=1e-6)
    assert np.isnan(res2.flux_jy[2]) and not res2.measured[2]


def test_bad_inputs():
    h = _header(64)
    del h["BMAJ"]
    with pytest.raises(ValueError, match="restoring beam"):
        forced_photometry(np.zeros((64, 64)), h, [150.0], [35.0])
    with pytest.raises(ValueError, match="shape"):
        forced_photometry(np.zeros((64, 64)), _header(64), [150.0, 150.1], [35.0])
