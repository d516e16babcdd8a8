"""Thumbnails and cut-out strips from small synthetic FITS images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from contimg.imaging.qa import write_thumbnail
from contimg.plots.sky import (
    cutout_strip_figure,
    display_scale,
    image_figure,
    reduce_blocks,
    write_cutout_strip_png,
    write_image_png,
)

from plot_helpers import point_sources, sky_header, write_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_block_reduction_keeps_a_compact_peak_and_averages_the_rest():
    img = np.full((10, 12), 0.1, dtype=np.float32)
    img[3, 7] = 5.0  # a compact source in block (0, 1)
    img[8, 2] = -4.0  # a deep negative in block (1, 0)
    img[5:, 11:] = np.nan  # a blank corner: block (1, 2) is one finite column, blanks and padding
    small = reduce_blocks(img, 5, keep_above=1.0)
    assert small.shape == (2, 3)  # 12 columns padded to 15
    assert small[0, 1] == pytest.approx(5.0)
    assert small[1, 0] == pytest.approx(-4.0)
    assert small[0, 0] == pytest.approx(0.1)  # the mean of a quiet block
    assert small[1, 2] == pytest.approx(0.1)  # NaNs (and padding) ignored
    # a block average would have diluted the source 25 times
    assert img[:5, 5:10].mean() < 0.35
    # keep_above=0: every block keeps its extreme, sign included
    extreme = reduce_blocks(img, 5)
    assert extreme[1, 0] == pytest.approx(-4.0) and extreme[0, 0] == pytest.approx(0.1)
    assert np.isnan(reduce_blocks(np.full((4, 4), np.nan), 2)).all()
    assert np.array_equal(reduce_blocks(img, 1), img, equal_nan=True)


def test_reduced_image_and_its_wcs_agree():
    """A source lands, in the reduced image, where the sliced WCS puts its sky position."""
    nx, ny, f = 400, 300, 4
    h = sky_header(nx, ny, four_axes=False)
    x0, y0 = 301.2, 77.6
    img = point_sources(nx, ny, [(x0, y0)], [1.0])
    wcs = WCS(h).celestial
    ra, dec = wcs.pixel_to_world_values(x0, y0)
    small = reduce_blocks(img, f, keep_above=0.5)
    sliced = wcs.slice((slice(None, None, f), slice(None, None, f)))
    xs, ys = sliced.world_to_pixel_values(ra, dec)
    jy, jx = np.unravel_index(np.nanargmax(small), small.shape)
    assert abs(jx - xs) <= 0.75 and abs(jy - ys) <= 0.75


def test_display_units():
    assert display_scale("Jy/beam") == (1e3, "mJy/beam")
    assert display_scale("JY/BEAM") == (1e3, "mJy/beam")
    assert display_scale("K") == (1.0, "K")
    assert display_scale(None) == (1.0, "image units")


def test_thumbnail_has_sky_axes_colour_bar_beam_and_catalogue(small_image, tmp_path):
    from astropy.visualization.wcsaxes import WCSAxes
    from matplotlib.patches import Ellipse

    path, header, positions = small_image
    wcs = WCS(header).celestial
    ra, dec = wcs.pixel_to_world_values(np.array([p[0] for p in positions]), np.array([p[1] for p in positions]))
    ra_all = np.append(ra, ra[0] + 5.0)  # one position far off the image
    dec_all = np.append(dec, dec[0])
    from astropy.io import fits

    data = fits.getdata(path)
    fig = image_figure(data, header, title="small", max_pixels=100, catalog_ra_deg=ra_all, catalog_dec_deg=dec_all)
    sky = [ax for ax in fig.axes if isinstance(ax, WCSAxes)]
    assert len(sky) == 1
    ax = sky[0]
    assert ax.coords[0].get_format_unit().to_string() == "hourangle"
    assert "RA" in ax.coords[0].get_axislabel() and "Dec" in ax.coords[1].get_axislabel()
    circles = [c for c in ax.collections if c.get_gid() == "catalogue"]
    assert len(circles) == 1 and len(circles[0].get_offsets()) == 3  # the off-image one is left out
    bars = [a for a in fig.axes if a is not ax]
    assert len(bars) == 1 and bars[0].get_ylabel() == "mJy/beam"
    beams = [a for a in ax.findobj(Ellipse)]
    assert beams, "the restoring beam is drawn"
    # reduced by 3 (300 -> 100 pixels across)
    image = ax.get_images()[0]
    assert image.get_array().shape == (80, 100)
    # the brightest source keeps its peak through the reduction (0.5 Jy = 500 mJy/beam)
    assert float(np.nanmax(image.get_array())) > 0.45e3

    png = write_thumbnail(path, tmp_path / "thumb.png", max_pixels=100, title="t",
                          catalog_ra_deg=ra, catalog_dec_deg=dec)
    assert png.read_bytes()[:8] == PNG_MAGIC
    w, h = _png_size(png)
    assert 100 < w < 400 and 80 < h < 300
    assert not list(tmp_path.glob(".*"))


def test_thumbnail_of_a_full_size_image_is_bounded(tmp_path, rng):
    """A 3840 x 3072 image becomes a picture of bounded size (the time is measured in benchmarks/plots.py)."""
    nx, ny = 3840, 3072
    h = sky_header(nx, ny)
    img = rng.normal(0, 3e-4, (ny, nx)).astype(np.float32)
    img[1500, 2000] = 0.05  # one bright pixel: kept by the reduction
    path = write_image(tmp_path / "big.fits", img, h)
    png = write_image_png(path, tmp_path / "big.png", max_pixels=800, rms=3e-4)
    w, hh = _png_size(png)
    assert w <= 800 + 300 and hh <= 640 + 200


def test_cutout_strip_shares_one_colour_scale_and_marks_the_position(tmp_path, rng):
    from astropy.visualization.wcsaxes import WCSAxes

    nx = ny = 120
    h = sky_header(nx, ny)
    wcs = WCS(h).celestial
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(60.2, 58.7))
    epochs = []
    for k, amp in enumerate([0.02, 0.01, 0.03]):
        img = point_sources(nx, ny, [(60.2, 58.7)], [amp]) + rng.normal(0, 1e-3, (ny, nx))
        epochs.append((write_image(tmp_path / f"e{k}.fits", img, h), f"epoch {k}"))
    # an image elsewhere on the sky: the position is not in it
    far = sky_header(nx, ny, ra0=100.0)
    epochs.append((write_image(tmp_path / "far.fits", rng.normal(0, 1e-3, (ny, nx)), far), "elsewhere"))
    fig = cutout_strip_figure(epochs, ra, dec, size_arcsec=300.0, title="source X")
    sky = [ax for ax in fig.axes if isinstance(ax, WCSAxes)]
    assert len(sky) == 3
    norms = {(im.norm.vmin, im.norm.vmax) for ax in sky for im in ax.get_images()}
    assert len(norms) == 1  # one colour scale
    vmin, vmax = norms.pop()
    assert vmax == pytest.approx(30.0, rel=0.1)  # the brightest epoch's peak, mJy/beam
    assert vmin < 0
    for ax in sky:
        assert len([ln for ln in ax.lines if ln.get_gid() == "position"]) == 4
        assert ax.get_images()[0].get_array().shape == (60, 60)  # 300 arcsec at 5 arcsec
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("not\nin this image" in t for t in texts)
    # a missing file is a blank panel too, not a failed strip
    fig = cutout_strip_figure([*epochs[:1], (tmp_path / "gone.fits", "archived")], ra, dec, size_arcsec=300.0)
    assert any(t.get_text() == "image not\nreadable" for ax in fig.axes for t in ax.texts)
    png = write_cutout_strip_png(epochs, ra, dec, tmp_path / "strip.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    w, hh = _png_size(png)
    assert 600 < w < 1400 and 150 < hh < 500


def test_cutout_strip_needs_images():
    with pytest.raises(ValueError, match="no images"):
        cutout_strip_figure([], 0.0, 0.0)
