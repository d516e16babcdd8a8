"""Clean masks from a source catalogue: circles around the known sources in the field.

WSClean takes a FITS mask on exactly the image grid (``-fits-mask``); tclean a
CASA region (:func:`contimg.imaging.tclean.catalog_region`). Sources are kept
if they fall on the image and the averaged primary beam there is at least
``pb_limit`` (fainter parts of the field are not imaged usefully anyway).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from contimg.imaging.geometry import ImageGeometry
from contimg.msmodel import MsModel

__all__ = ["image_wcs", "sources_in_field", "write_fits_mask"]


def image_wcs(ms: MsModel, geometry: ImageGeometry):
    """The celestial WCS WSClean gives an image: SIN at the phase center, reference pixel nx/2, ny/2 (0-based)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [math.degrees(ms.phase_center_ra), math.degrees(ms.phase_center_dec)]
    w.wcs.crpix = [geometry.nx // 2 + 1, geometry.ny // 2 + 1]
    w.wcs.cdelt = [-geometry.cell_arcsec / 3600, geometry.cell_arcsec / 3600]
    w.wcs.radesys = "ICRS"
    return w


def sources_in_field(ra_deg: np.ndarray, dec_deg: np.ndarray, *, ms: MsModel, geometry: ImageGeometry) -> np.ndarray:
    """Boolean selection of catalogue positions on the image where the averaged beam is >= ``geometry.pb_limit``.

    Parameters
    ----------
    ra_deg
        ICRS right ascensions (deg), shape (Nsrc,).
    dec_deg
        ICRS declinations (deg), shape (Nsrc,).
    ms
        The model of the MS imaged (phase center, pointing track, band, dish diameter).
    geometry
        The image grid (:func:`contimg.imaging.geometry.derive_geometry`) and its ``pb_limit``.

    Returns
    -------
    numpy.ndarray
        Booleans, shape (Nsrc,): inside the pixel grid and time/band-averaged beam >= ``geometry.pb_limit``.
    """
    from contimg.imaging.pbcor import beam_at_positions

    ra = np.asarray(ra_deg, float)
    dec = np.asarray(dec_deg, float)
    if ra.size == 0:
        return np.zeros(0, bool)
    x, y = image_wcs(ms, geometry).world_to_pixel_values(ra, dec)
    on = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= geometry.nx - 1) & (y >= 0) & (y <= geometry.ny - 1)
    pb = beam_at_positions(np.radians(ra), np.radians(dec), ms)
    return on & (pb >= geometry.pb_limit)


def write_fits_mask(
    path: str | os.PathLike,
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    *,
    ms: MsModel,
    geometry: ImageGeometry,
    radius_arcsec: float,
) -> Path:
    """Write a FITS mask (1 inside circles of ``radius_arcsec`` around the positions, else 0) on the image grid.

    Parameters
    ----------
    path
        The FITS file to write (replaced if it exists).
    ra_deg
        ICRS right ascensions (deg) of the mask centres, shape (Nsrc,).
    dec_deg
        ICRS declinations (deg), shape (Nsrc,).
    ms
        The model of the MS imaged (phase center; mean frequency for the FREQ axis).
    geometry
        The image grid, which the mask matches pixel for pixel (WSClean's ``-fits-mask`` requires it).
    radius_arcsec
        Radius (arcsec) of each circle; circles partly off the image are clipped.

    Returns
    -------
    pathlib.Path
        ``path``: a float32 (1, 1, ny, nx) image with RA/Dec SIN, FREQ and STOKES axes.
    """
    from astropy.io import fits

    wcs = image_wcs(ms, geometry)
    mask = np.zeros((geometry.ny, geometry.nx), np.float32)
    r_pix = radius_arcsec / geometry.cell_arcsec
    n = int(math.ceil(r_pix))
    dy, dx = np.mgrid[-n:n + 1, -n:n + 1]
    disk = dx**2 + dy**2 <= r_pix**2
    xs, ys = wcs.world_to_pixel_values(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
    for x, y in zip(np.atleast_1d(xs), np.atleast_1d(ys)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        xi, yi = int(round(float(x))), int(round(float(y)))
        yy, xx = yi + dy[disk], xi + dx[disk]
        ok = (xx >= 0) & (xx < geometry.nx) & (yy >= 0) & (yy < geometry.ny)
        mask[yy[ok], xx[ok]] = 1.0
    header = wcs.to_header()
    header.remove("WCSAXES", ignore_missing=True)
    hdu = fits.PrimaryHDU(data=mask[None, None], header=header)
    hdu.header["CTYPE3"], hdu.header["CRVAL3"], hdu.header["CDELT3"], hdu.header["CRPIX3"] = "FREQ", ms.freq_mean, 1.0, 1.0
    hdu.header["CTYPE4"], hdu.header["CRVAL4"], hdu.header["CDELT4"], hdu.header["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    path = Path(path)
    hdu.writeto(path, overwrite=True)
    return path
