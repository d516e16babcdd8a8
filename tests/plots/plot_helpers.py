"""Helpers of the plot tests: small synthetic FITS images with a proper WCS and restoring beam."""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

CELL_ARCSEC = 5.0
BMAJ_ARCSEC, BMIN_ARCSEC, BPA_DEG = 30.0, 15.0, 20.0
RA0, DEC0 = 282.5, 35.0


def sky_header(nx: int, ny: int, *, ra0: float = RA0, dec0: float = DEC0, four_axes: bool = True) -> fits.Header:
    """A WSClean-like header: RA---SIN/DEC--SIN (plus FREQ and STOKES), beam, Jy/beam."""
    w = WCS(naxis=4 if four_axes else 2)
    ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    w.wcs.ctype = ctype[: w.naxis]
    w.wcs.crval = [ra0, dec0, 1.405e9, 1.0][: w.naxis]
    w.wcs.crpix = [nx / 2 + 1, ny / 2 + 1, 1.0, 1.0][: w.naxis]
    w.wcs.cdelt = [-CELL_ARCSEC / 3600, CELL_ARCSEC / 3600, 1.9e8, 1.0][: w.naxis]
    w.wcs.radesys = "ICRS"
    h = w.to_header()
    h["BMAJ"], h["BMIN"], h["BPA"], h["BUNIT"] = BMAJ_ARCSEC / 3600, BMIN_ARCSEC / 3600, BPA_DEG, "Jy/beam"
    return h


def point_sources(nx: int, ny: int, positions, amps) -> np.ndarray:
    """Restoring-beam Gaussians at pixel positions (PA east of north, RA increasing to -x)."""
    y, x = np.mgrid[:ny, :nx]
    s = 1 / math.sqrt(8 * math.log(2))
    pa = math.radians(BPA_DEG)
    img = np.zeros((ny, nx))
    for (x0, y0), amp in zip(positions, amps):
        east, north = -(x - x0), y - y0
        a = east * math.sin(pa) + north * math.cos(pa)
        b = east * math.cos(pa) - north * math.sin(pa)
        img += amp * np.exp(-0.5 * ((a / (BMAJ_ARCSEC / CELL_ARCSEC * s)) ** 2 + (b / (BMIN_ARCSEC / CELL_ARCSEC * s)) ** 2))
    return img


def write_image(path, img: np.ndarray, header: fits.Header) -> str:
    data = img.astype(np.float32)
    if header.get("NAXIS", 0) == 4 or header.get("WCSAXES", 0) == 4:
        data = data[None, None]
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return str(path)
