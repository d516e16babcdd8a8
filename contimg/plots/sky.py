"""Sky pictures: image thumbnails on RA/Dec axes and cut-out strips of one position over epochs.

Thumbnail (:func:`image_figure`, :func:`write_image_png`)
    The image on ICRS RA/Dec axes (sexagesimal ticks, WCSAxes), an asinh
    stretch from -3 rms to well above the noise with a colour bar in mJy/beam,
    the restoring beam as an ellipse in the lower-left corner (BMAJ/BMIN/BPA;
    drawn magnified and labelled "x N" when at true scale it would be a dot, as
    on a full 5-degree field), optional catalogue positions as circles, and a
    title. A full-scale image (3840 x 3072) is reduced to at most
    ``max_pixels`` across by block means, except that a block holding a pixel
    beyond ``keep_sigma`` (5) rms keeps that pixel, sign included
    (:func:`reduce_blocks`): a compact source keeps its peak instead of being
    averaged away with its block, while the noise looks as smooth as a plain
    average (keeping every block's extreme instead made the noise look rough and
    speckled). The reduced image is drawn one data pixel per screen pixel: about
    2 s for a full-scale image.

Cut-out strip (:func:`cutout_strip_figure`, :func:`write_cutout_strip_png`)
    Small WCS cut-outs (astropy ``Cutout2D``) of one sky position in several
    images, side by side on one linear colour scale (so brightness compares
    across epochs), each with its label, the value of the pixel at the position
    and a cross-hair (with a gap, not hiding the source) marking it. An image
    that does not cover the position, or cannot be read, is a labelled blank panel.

Units: images in Jy/beam are shown in mJy/beam; others in their own ``BUNIT``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contimg.plots.common import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = [
    "cutout_strip_figure",
    "display_scale",
    "image_figure",
    "reduce_blocks",
    "write_cutout_strip_png",
    "write_image_png",
]

_IMAGE_CMAP = "inferno"
_BLANK_COLOUR = "0.6"
"""Grey for blanked (NaN) pixels, e.g. beyond the primary-beam limit of a PB-corrected image."""
_MARKER_COLOUR = "#00e5ff"


def _cmap():
    from matplotlib import colormaps

    return colormaps[_IMAGE_CMAP].with_extremes(bad=_BLANK_COLOUR)


def _plane(data: np.ndarray) -> np.ndarray:
    d = np.asarray(data)
    while d.ndim > 2:
        d = d[0]
    return d


def reduce_blocks(data: np.ndarray, factor: int, *, keep_above: float = 0.0) -> np.ndarray:
    """Reduce a 2-D image by ``factor`` in each axis without losing compact sources.

    Each ``factor x factor`` block becomes its mean, unless its value of
    largest magnitude exceeds ``keep_above``: then that value (sign kept). With
    ``keep_above`` a few times the noise, the background looks as smooth as a
    block average while a source (or a deep negative artefact) keeps its peak
    instead of being diluted by the block; with 0 every block keeps its extreme.
    NaNs are ignored (an all-NaN block stays NaN), and the image is padded with
    NaN to whole blocks, so the reduced pixel ``(j, i)`` covers input pixels
    ``factor*j ... factor*j + factor - 1`` (likewise in ``i``): its WCS is the
    input's sliced with step ``factor`` (``wcs.slice((slice(None, None, factor),) * 2)``).

    Parameters
    ----------
    data
        2-D array (ny, nx).
    factor
        Block size; 1 returns ``data`` (as float32).
    keep_above
        Magnitude (image units) above which a block keeps its extreme value instead of its mean.

    Returns
    -------
    numpy.ndarray
        Shape ``(ceil(ny / factor), ceil(nx / factor))``, float32.
    """
    img = np.asarray(data, dtype=np.float32)
    if factor <= 1:
        return img
    ny, nx = img.shape
    py, px = (-ny) % factor, (-nx) % factor
    if py or px:
        img = np.pad(img, ((0, py), (0, px)), constant_values=np.nan)
    my, mx = img.shape[0] // factor, img.shape[1] // factor
    blocks = img.reshape(my, factor, mx, factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = np.fmax.reduce(np.fmax.reduce(blocks, axis=3), axis=1)
        lo = np.fmin.reduce(np.fmin.reduce(blocks, axis=3), axis=1)
        finite = np.isfinite(blocks)
        total = np.where(finite, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
        mean = (total / finite.sum(axis=(1, 3))).astype(np.float32)
    extreme = np.where(hi >= -lo, hi, lo)
    return np.where(np.abs(extreme) > keep_above, extreme, mean).astype(np.float32)


def display_scale(bunit: str | None) -> tuple[float, str]:
    """Factor and label to show values of unit ``bunit``: Jy/beam -> (1000, 'mJy/beam').

    Parameters
    ----------
    bunit
        The image's ``BUNIT`` (None or empty: unknown).

    Returns
    -------
    tuple[float, str]
        Multiply the data by the factor to get the labelled unit.
    """
    unit = (bunit or "").strip()
    compact = unit.replace(" ", "").lower()
    if compact in ("jy/beam", "jy/bm", "jybeam-1", "jybeam^-1"):
        return 1e3, "mJy/beam"
    if compact == "jy":
        return 1e3, "mJy"
    return 1.0, unit or "image units"


def _sigma(img: np.ndarray, rms: float | None) -> float:
    from contimg.imaging.qa import robust_rms

    sigma = float(rms) if rms and rms > 0 else robust_rms(img)
    if not np.isfinite(sigma) or sigma <= 0:
        finite = img[np.isfinite(img)]
        sigma = float(np.std(finite)) if finite.size else 1.0
    return sigma or 1.0


def _beam_deg(header) -> tuple[float, float, float] | None:
    try:
        bmaj, bmin, bpa = float(header["BMAJ"]), float(header["BMIN"]), float(header["BPA"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (bmaj > 0 and bmin > 0):
        return None
    return bmaj, bmin, bpa


def _draw_beam(ax, header, pixel_deg: float, *, min_pixels: float = 8.0, colour: str = "white") -> str | None:
    """The restoring beam in the lower-left corner, magnified by an integer factor if it would be a dot."""
    from astropy.visualization.wcsaxes import add_beam

    beam = _beam_deg(header)
    if beam is None:
        return None
    bmaj, bmin, bpa = beam
    zoom = 1
    if bmaj / pixel_deg < min_pixels:
        zoom = int(math.ceil(min_pixels * pixel_deg / bmaj))
    add_beam(ax, major=bmaj * zoom, minor=bmin * zoom, angle=bpa, corner="bottom left", frame=False,
             facecolor="none", edgecolor=colour, linewidth=1.2)
    text = f"beam {bmaj * 3600:.0f}\u2033\u00d7{bmin * 3600:.0f}\u2033, PA {bpa:.0f}\u00b0"
    if zoom > 1:
        text += f" (drawn \u00d7{zoom})"
    return text


def _style_coords(ax, *, ticks: bool = True, fontsize: Any = "small") -> None:
    ra, dec = ax.coords[0], ax.coords[1]
    ra.set_format_unit("hourangle")
    ra.set_major_formatter("hh:mm:ss" if ticks else "hh:mm")
    dec.set_major_formatter("dd:mm")
    ra.set_axislabel("RA (ICRS)", fontsize=fontsize)
    dec.set_axislabel("Dec (ICRS)", fontsize=fontsize, minpad=0.6)
    ra.set_ticklabel(size=fontsize, exclude_overlapping=True)
    dec.set_ticklabel(size=fontsize, exclude_overlapping=True)
    for c in (ra, dec):
        c.set_ticks(color="white", size=4)
        c.display_minor_ticks(False)
    ax.coords.grid(color="white", alpha=0.18, linestyle=":", linewidth=0.6)


def image_figure(
    data: np.ndarray,
    header,
    *,
    title: str | None = None,
    rms: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    max_pixels: int = 800,
    keep_sigma: float = 5.0,
    catalog_ra_deg: Sequence[float] | np.ndarray | None = None,
    catalog_dec_deg: Sequence[float] | np.ndarray | None = None,
    catalog_label: str = "catalogue",
) -> Figure:
    """An image on RA/Dec axes with colour bar, beam and optional catalogue circles (see the module docstring).

    Parameters
    ----------
    data
        Pixels (the first plane of any leading axes is drawn), in ``BUNIT``.
    header
        FITS header with a celestial WCS, ``BUNIT`` and (optionally) BMAJ/BMIN/BPA.
    title
        Drawn above the image.
    rms
        Noise in image units setting the stretch; None or 0: the robust rms of the drawn pixels.
    vmin, vmax
        Stretch limits in image units; None: -3 rms and the larger of 30 rms and the 99.99th percentile,
        at most 1000 rms.
    max_pixels
        Largest width or height of the drawn image (screen pixels); larger images are reduced by an
        integer factor with :func:`reduce_blocks` (mean, or the extreme where beyond
        ``keep_sigma`` times the noise).
    keep_sigma
        See ``max_pixels``; 0 keeps every block's extreme value.
    catalog_ra_deg, catalog_dec_deg
        ICRS positions (deg) to circle; positions outside the image are left out.
    catalog_label
        Legend entry of the circles.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from astropy.visualization import AsinhStretch, ImageNormalize
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    img = _plane(data)
    wcs = WCS(header).celestial
    sigma = _sigma(img, rms)
    factor = max(1, int(math.ceil(max(img.shape) / max(int(max_pixels), 16))))
    small = reduce_blocks(img, factor, keep_above=keep_sigma * sigma)
    if factor > 1:
        wcs = wcs.slice((slice(None, None, factor), slice(None, None, factor)))
    scale, unit = display_scale(header.get("BUNIT"))
    lo = -3 * sigma if vmin is None else float(vmin)
    if vmax is None:
        finite = small[np.isfinite(small)]
        p = float(np.percentile(finite, 99.99)) if finite.size else 30 * sigma
        hi = float(min(max(30 * sigma, p), 1000 * sigma))
    else:
        hi = float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    # linear up to ~5 sigma above the floor, logarithmic-like beyond
    a = min(0.5, max(1e-3, 8 * sigma / (hi - lo)))
    norm = ImageNormalize(vmin=lo * scale, vmax=hi * scale, stretch=AsinhStretch(a=a), clip=True)

    ny, nx = small.shape
    dpi = 100.0
    left, right, bottom, top = 1.05, 1.25, 0.7, 0.55 if title else 0.25
    width_in, height_in = nx / dpi + left + right, ny / dpi + bottom + top
    fig = new_figure(width_in, height_in, dpi=dpi)
    ax: Any = fig.add_axes((left / width_in, bottom / height_in, nx / dpi / width_in, ny / dpi / height_in),
                           projection=wcs)  # a WCSAxes
    im = ax.imshow(small * scale, origin="lower", cmap=_cmap(), norm=norm, interpolation="nearest")
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    _style_coords(ax)
    pixel_deg = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs))))
    beam_text = _draw_beam(ax, header, pixel_deg)
    if catalog_ra_deg is not None and catalog_dec_deg is not None:
        _mark_catalogue(ax, wcs, np.asarray(catalog_ra_deg, float), np.asarray(catalog_dec_deg, float),
                        nx=nx, ny=ny, label=catalog_label)
    foot = [f"rms {sigma * scale:.3g} {unit}"]
    if beam_text:
        foot.insert(0, beam_text)
    if factor > 1:
        foot.append(f"{factor}\u00d7{factor} block means, peaks beyond {keep_sigma:g} rms kept")
    ax.text(0.995, 0.005, "; ".join(foot), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
            color="white", bbox=dict(facecolor="black", alpha=0.45, edgecolor="none", pad=1.5))
    cax = fig.add_axes(((left + nx / dpi + 0.12) / width_in, bottom / height_in, 0.16 / width_in, ny / dpi / height_in))
    bar = fig.colorbar(im, cax=cax, ticks=_colour_ticks(norm))
    bar.set_label(unit, fontsize="small")
    bar.ax.tick_params(labelsize="small")
    if title:
        fig.text(left / width_in, 1 - 0.12 / height_in, title, ha="left", va="top", fontsize=9)
    return fig


def _colour_ticks(norm, *, min_gap: float = 0.09) -> list[float]:
    """Round values between the limits of ``norm``, at least ``min_gap`` apart in colour (0-1) space.

    Coarse steps are placed first (zero, then 10, 20 ...) and finer ones only where the stretch leaves room,
    so a non-linear colour bar gets evenly spread, round labels.
    """
    from matplotlib.ticker import MaxNLocator

    lo, hi = float(norm.vmin), float(norm.vmax)
    span = max(abs(lo), abs(hi))
    chosen: list[float] = [0.0] if lo <= 0 <= hi else []
    for bins in (2, 4, 8, 16, 32):
        for v in MaxNLocator(bins, steps=[1, 2, 5, 10]).tick_values(-span, span):
            v = float(v)
            if lo <= v <= hi and all(abs(float(norm(v)) - float(norm(c))) >= min_gap for c in chosen):
                chosen.append(v)
    return sorted(chosen)


def _mark_catalogue(ax, wcs, ra: np.ndarray, dec: np.ndarray, *, nx: int, ny: int, label: str) -> int:
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        return 0
    x, y = wcs.world_to_pixel_values(ra[ok], dec[ok])
    inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    if inside.any():
        ax.scatter(x[inside], y[inside], s=110, facecolors="none", edgecolors=_MARKER_COLOUR, linewidths=0.9,
                   label=f"{label} ({int(inside.sum())})", gid="catalogue")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.5, handletextpad=0.3, borderpad=0.3)
    return int(inside.sum())


def write_image_png(image_fits: str | os.PathLike, png: str | os.PathLike, **kwargs: Any) -> Path:
    """:func:`image_figure` of a FITS image (first plane of its primary HDU), written atomically as PNG.

    Parameters
    ----------
    image_fits
        The image.
    png
        The PNG to write (replaced if it exists).
    **kwargs
        Passed to :func:`image_figure` (``title``, ``rms``, ``max_pixels``, ``catalog_ra_deg`` ...).

    Returns
    -------
    pathlib.Path
        ``png``.
    """
    from astropy.io import fits

    with fits.open(image_fits, memmap=True) as hdul:
        header = hdul[0].header.copy()
        img = np.array(_plane(hdul[0].data), dtype=np.float32)
    return save_png(image_figure(img, header, **kwargs), png)


def _cutout(path: str | os.PathLike, ra_deg: float, dec_deg: float, size_arcsec: float):
    """(cut-out data, its celestial WCS, header) or None when the position is off the image."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D, NoOverlapError
    from astropy.wcs import WCS

    with fits.open(path, memmap=True) as hdul:
        header = hdul[0].header.copy()
        wcs = WCS(header).celestial
        x, y = wcs.world_to_pixel_values(ra_deg, dec_deg)
        if not (np.isfinite(x) and np.isfinite(y)):  # e.g. the far side of the sky in a SIN projection
            return None
        try:
            cut = Cutout2D(_plane(hdul[0].data), SkyCoord(ra_deg, dec_deg, unit="deg", frame="icrs"),
                           size=size_arcsec * u.arcsec, wcs=wcs, mode="partial", fill_value=np.nan, copy=True)
        except NoOverlapError:
            return None
    return np.asarray(cut.data, dtype=np.float32), cut.wcs, header


def cutout_strip_figure(
    epochs: Sequence[tuple[str | os.PathLike, str]],
    ra_deg: float,
    dec_deg: float,
    *,
    size_arcsec: float | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    per_row: int = 8,
) -> Figure:
    """Cut-outs of one position in several images, side by side on one colour scale (see the module docstring).

    Parameters
    ----------
    epochs
        ``(FITS path, label)`` per panel, in the order drawn (e.g. by epoch).
    ra_deg, dec_deg
        The position (ICRS, deg), marked in every panel.
    size_arcsec
        Side of the square cut-outs; None: eight restoring-beam major axes of the first image (3 arcmin
        without a beam).
    title
        Drawn above the strip.
    vmin, vmax
        Colour limits in image units; None: -3 times the median noise of the cut-outs and the largest value
        within a beam of the position (at least 6 times the noise).
    per_row
        Panels per row before the strip wraps.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from astropy.visualization import ImageNormalize, LinearStretch
    from astropy.wcs.utils import proj_plane_pixel_scales

    if not epochs:
        raise ValueError("no images to cut out")
    cuts: list[tuple[Any, str]] = []
    for path, label in epochs:
        try:
            if size_arcsec is None:
                from astropy.io import fits

                beam = _beam_deg(fits.getheader(path))
                size_arcsec = 8 * beam[0] * 3600 if beam else 180.0
            cut: Any = _cutout(path, ra_deg, dec_deg, size_arcsec)
        except OSError as exc:  # a missing or unreadable file is a blank panel, not a failed strip
            log.warning("cut-out of %s: %s", path, exc)
            cut = "image not\nreadable"
        cuts.append((cut if cut is not None else "position not\nin this image", label))
    present = [c for c, _ in cuts if not isinstance(c, str)]
    header0 = present[0][2] if present else None
    scale, unit = display_scale(header0.get("BUNIT") if header0 is not None else "Jy/beam")
    sigmas, peaks = [], []
    for data, wcs, header in present:
        sigmas.append(_sigma(data, None))
        x0, y0 = (float(v) for v in wcs.world_to_pixel_values(ra_deg, dec_deg))
        beam = _beam_deg(header)
        pix = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs))))
        r = max(1.5, (beam[0] / pix) if beam else 3.0)
        yy, xx = np.mgrid[: data.shape[0], : data.shape[1]]
        near = ((xx - x0) ** 2 + (yy - y0) ** 2 <= r * r) & np.isfinite(data)
        if near.any():
            peaks.append(float(data[near].max()))
    sigma = float(np.median(sigmas)) if sigmas else 1.0
    lo = -3 * sigma if vmin is None else float(vmin)
    hi = max([6 * sigma, *peaks]) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    norm = ImageNormalize(vmin=lo * scale, vmax=hi * scale, stretch=LinearStretch(), clip=True)

    n = len(cuts)
    ncol = min(n, max(1, per_row))
    nrow = int(math.ceil(n / ncol))
    panel, gap_x, gap_y = 1.9, 0.12, 0.42
    left, right, bottom, top = 0.95, 1.05, 0.62, 0.3 + (0.3 if title else 0.0)
    width_in = left + ncol * panel + (ncol - 1) * gap_x + right
    height_in = bottom + nrow * panel + (nrow - 1) * gap_y + top
    fig = new_figure(width_in, height_in, dpi=100)
    im = None
    for k, (cut, label) in enumerate(cuts):
        row, col = divmod(k, ncol)
        x_in = left + col * (panel + gap_x)
        y_in = bottom + (nrow - 1 - row) * (panel + gap_y)
        rect = (x_in / width_in, y_in / height_in, panel / width_in, panel / height_in)
        if isinstance(cut, str):
            blank = fig.add_axes(rect)
            blank.set_xticks([])
            blank.set_yticks([])
            blank.text(0.5, 0.5, cut, ha="center", va="center", fontsize=8, transform=blank.transAxes)
            blank.set_title(str(label), fontsize=8)
            continue
        data, wcs, header = cut
        ax: Any = fig.add_axes(rect, projection=wcs)  # a WCSAxes
        im = ax.imshow(data * scale, origin="lower", cmap=_cmap(), norm=norm, interpolation="nearest")
        ax.set_xlim(-0.5, data.shape[1] - 0.5)
        ax.set_ylim(-0.5, data.shape[0] - 0.5)
        _style_coords(ax, fontsize=7)
        ax.coords.grid(False)
        first_col, last_row = col == 0, row == nrow - 1 or k + ncol >= n
        ax.coords[1].set_ticklabel_visible(first_col)
        ax.coords[1].set_axislabel("Dec (ICRS)" if first_col else "", fontsize=7)
        ax.coords[0].set_ticklabel_visible(last_row)
        ax.coords[0].set_axislabel("RA (ICRS)" if last_row else "", fontsize=7)
        ax.coords[0].set_ticks(number=3)
        ax.coords[1].set_ticks(number=3)
        x0, y0 = (float(v) for v in wcs.world_to_pixel_values(ra_deg, dec_deg))
        _cross_hair(ax, x0, y0, data.shape)
        ix, iy = int(round(x0)), int(round(y0))
        value = data[iy, ix] if 0 <= iy < data.shape[0] and 0 <= ix < data.shape[1] else np.nan
        ax.text(0.03, 0.97, f"{value * scale:.3g} {unit}" if np.isfinite(value) else "blank",
                transform=ax.transAxes, ha="left", va="top", fontsize=7, color="white",
                bbox=dict(facecolor="black", alpha=0.45, edgecolor="none", pad=1.0))
        pix = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs))))
        _draw_beam(ax, header, pix, min_pixels=2.0)
        ax.set_title(str(label), fontsize=8, pad=3)
    if im is not None:
        top_in = bottom + nrow * panel + (nrow - 1) * gap_y
        cax = fig.add_axes(((width_in - right + 0.15) / width_in, bottom / height_in, 0.14 / width_in,
                            (top_in - bottom) / height_in))
        from matplotlib.ticker import MaxNLocator

        bar = fig.colorbar(im, cax=cax, ticks=MaxNLocator(7))  # a linear scale: evenly spaced round ticks
        bar.set_label(unit, fontsize="small")
        bar.ax.tick_params(labelsize="small")
    if title:
        fig.text(left / width_in, 1 - 0.1 / height_in, title, ha="left", va="top", fontsize=9)
    return fig


def _cross_hair(ax, x: float, y: float, shape: tuple[int, ...]) -> None:
    """Four short ticks around (x, y), leaving the centre (and the source) visible."""
    r_in, r_out = 0.10 * min(shape), 0.22 * min(shape)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ax.plot([x + dx * r_in, x + dx * r_out], [y + dy * r_in, y + dy * r_out], color=_MARKER_COLOUR, lw=1.2,
                gid="position")


def write_cutout_strip_png(
    epochs: Sequence[tuple[str | os.PathLike, str]],
    ra_deg: float,
    dec_deg: float,
    png: str | os.PathLike,
    **kwargs: Any,
) -> Path:
    """:func:`cutout_strip_figure` written atomically as PNG.

    Parameters
    ----------
    epochs
        ``(FITS path, label)`` per panel.
    ra_deg, dec_deg
        The position (ICRS, deg).
    png
        The PNG to write (replaced if it exists).
    **kwargs
        Passed to :func:`cutout_strip_figure`.

    Returns
    -------
    pathlib.Path
        ``png``.
    """
    return save_png(cutout_strip_figure(epochs, ra_deg, dec_deg, **kwargs), png)
