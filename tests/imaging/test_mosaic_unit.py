"""The mosaic's weighting, grid and tiling on synthetic arrays and small synthetic images (no imaging)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from contimg.imaging.mosaic import MosaicInput, accumulate, combine, make_mosaic, plan_grid
from mosaic_helpers import drift_inputs

CELL = 20.0 / 3600


def test_two_inputs_give_the_analytic_combination():
    """Two overlapping images with known B and sigma: S = sum(w B I)/sum(w B^2), sigma = sum(w B^2)^-1/2."""
    b1 = np.array([[1.0, 0.8, 0.5, 0.1]])
    b2 = np.array([[0.3, 0.6, 0.9, 1.0]])
    s1, s2, truth = 0.002, 0.001, 1.7
    i1, i2 = truth * b1 + 0.0, truth * b2 + 0.0
    num, den = np.zeros(b1.shape), np.zeros(b1.shape)
    accumulate(num, den, i1, b1, rms_jy=s1, pb_limit=0.2)
    accumulate(num, den, i2, b2, rms_jy=s2, pb_limit=0.2)
    image, noise = combine(num, den, min_weight=0.0)
    np.testing.assert_allclose(image, truth, rtol=1e-6)
    w1 = np.where(b1 >= 0.2, b1**2 / s1**2, 0.0)  # the 0.1 of image 1 is below pb_limit: left out
    w2 = b2**2 / s2**2
    np.testing.assert_allclose(noise, 1 / np.sqrt(w1 + w2), rtol=1e-6)
    # a noisy pixel: the inverse-variance mean of the two PB-corrected values
    num, den = np.zeros((1, 1)), np.zeros((1, 1))
    accumulate(num, den, np.array([[0.9]]), np.array([[0.5]]), rms_jy=s1, pb_limit=0.2)
    accumulate(num, den, np.array([[1.2]]), np.array([[0.8]]), rms_jy=s2, pb_limit=0.2)
    v1, v2 = (s1 / 0.5) ** 2, (s2 / 0.8) ** 2
    expected = (0.9 / 0.5 / v1 + 1.2 / 0.8 / v2) / (1 / v1 + 1 / v2)
    np.testing.assert_allclose(combine(num, den, min_weight=0.0)[0], expected, rtol=1e-6)


def test_pixels_below_the_cut_off_are_blank():
    num, den = np.zeros((1, 3)), np.zeros((1, 3))
    accumulate(num, den, np.ones((1, 3)), np.array([[1.0, 0.25, 0.15]]), rms_jy=1.0, pb_limit=0.1)
    image, noise = combine(num, den, min_weight=0.2**2)
    assert np.isfinite(image[0, :2]).all() and np.isnan(image[0, 2]) and np.isnan(noise[0, 2])


def test_non_finite_and_bad_noise():
    num, den = np.zeros((1, 2)), np.zeros((1, 2))
    accumulate(num, den, np.array([[np.nan, 1.0]]), np.array([[1.0, np.nan]]), rms_jy=1.0, pb_limit=0.1)
    assert (den == 0).all()
    with pytest.raises(ValueError):
        accumulate(num, den, np.ones((1, 2)), np.ones((1, 2)), rms_jy=0.0, pb_limit=0.1)


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    """Four small snapshots 1.2 deg apart at Dec 35, with one 1 Jy source between the 2nd and 3rd."""
    out = tmp_path_factory.mktemp("mosaic_drift")
    rng = np.random.default_rng(5)
    src = (100.0 + 1.8 / np.cos(np.radians(35.0)), 35.1, 1.0)
    made = drift_inputs(out, n=4, ra0_deg=100.0, dec_deg=35.0, step_deg=1.2 / np.cos(np.radians(35.0)), nx=240,
                        ny=180, cell_deg=CELL, pb_fwhm_deg=2.7, rms_jy=[0.002, 0.003, 0.002, 0.0025], rng=rng,
                        sources=[src])
    return {"dir": out, "inputs": [MosaicInput(i, p, r, label=f"s{k}") for k, (i, p, r) in enumerate(made)],
            "source": src}


def _stitch(result, grid_shape, kind="image"):
    full = np.full(grid_shape, np.nan, dtype=np.float32)
    for t in result.tiles:
        full[t["y0"]:t["y0"] + t["ny"], t["x0"]:t["x0"] + t["nx"]] = fits.getdata(t["files"][kind])[0, 0]
    return full


def test_the_grid_covers_every_input_along_the_drift(drift):
    headers = [fits.getheader(i.image) for i in drift["inputs"]]
    grid = plan_grid(headers)
    assert grid.cell_deg == pytest.approx(CELL)
    assert abs(grid.dec0_deg - 35.0) < 0.05
    # 4 snapshots 1.2 deg apart on the sky, each 240 x 20" = 1.33 deg wide: ~4.9 deg of strip
    assert grid.nx * CELL == pytest.approx(3 * 1.2 + 240 * CELL, rel=0.05)
    xs = [f[0] for f in grid.footprints]
    assert xs == sorted(xs, reverse=True)  # RA grows to the left


def test_small_tiles_equal_one_tile(drift, tmp_path):
    one = make_mosaic(drift["inputs"], tmp_path / "one", name="m", tile_size=4096)
    many = make_mosaic(drift["inputs"], tmp_path / "many", name="m", tile_size=64)
    assert len(one.tiles) == 1 and len(many.tiles) > 6
    shape = (one.grid["ny"], one.grid["nx"])
    for kind in ("image", "noise", "weight"):
        a, b = _stitch(one, shape, kind), _stitch(many, shape, kind)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9, equal_nan=True)
    manifest = json.loads(many.manifest.read_text())
    assert manifest["n_tiles"] == len(many.tiles) and manifest["inputs"][0]["label"] == "s0"
    # each tile is its own sub-grid of the one grid: the same sky at the same pixel
    t = many.tiles[len(many.tiles) // 2]
    h = fits.getheader(t["files"]["image"])
    assert h["CRPIX1"] == pytest.approx(fits.getheader(one.tiles[0]["files"]["image"])["CRPIX1"] - t["x0"])
    assert h["BUNIT"] == "Jy/beam" and h["BMAJ"] == pytest.approx(60 / 3600) and h["CTYPE3"] == "FREQ"


def test_the_source_and_the_noise_come_back(drift, tmp_path):
    from contimg.imaging.qa import fit_point_source, robust_rms
    from contimg.photometry.forced import forced_photometry

    res = make_mosaic(drift["inputs"], tmp_path, name="m")
    path = res.tiles[0]["files"]["image"]
    data, header = fits.getdata(path), fits.getheader(path)
    ra, dec, flux = drift["source"]
    fit = fit_point_source(data, header, ra, dec)
    assert fit.ok and fit.flux_jy == pytest.approx(flux, rel=0.02)
    phot = forced_photometry(data, header, np.array([ra]), np.array([dec]))
    assert phot.flux_jy[0] == pytest.approx(flux, rel=0.02)
    noise = fits.getdata(res.tiles[0]["files"]["noise"])[0, 0]
    # away from the source, where the noise map is near its minimum: measured / predicted
    from astropy.wcs import WCS

    x, y = WCS(header).celestial.world_to_pixel_values(ra, dec)
    img = data[0, 0].copy()
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    far = ((xx - x) ** 2 + (yy - y) ** 2 > 20**2) & np.isfinite(img)
    sel = far & (noise < 1.3 * np.nanmin(noise))
    ratio = robust_rms(img[sel]) / float(np.median(noise[sel]))
    assert ratio == pytest.approx(1.0, abs=0.1)


def test_a_rerun_removes_tiles_it_did_not_write_and_measures_missing_noise(drift, tmp_path):
    many = make_mosaic(drift["inputs"], tmp_path, name="m", tile_size=64)
    assert len(list(tmp_path.glob("m_t*.fits"))) == 3 * len(many.tiles)
    unknown = [MosaicInput(i.image, i.pb, None, label=i.label) for i in drift["inputs"]]
    one = make_mosaic(unknown, tmp_path, name="m", tile_size=4096)
    assert sorted(tmp_path.glob("m_t*.fits")) == sorted(tmp_path / f"m_t000.{k}.fits" for k in ("image", "noise", "weight"))
    rms = [i["rms_jy"] for i in json.loads(one.manifest.read_text())["inputs"]]
    np.testing.assert_allclose(rms, [i.rms_jy for i in drift["inputs"]], rtol=0.15)
