"""Synthetic inputs of the mosaic tests and benchmark: SIN images along a drift with a Gaussian primary beam.

Each image is what :func:`contimg.imaging.image_ms` writes for a snapshot pointed at ``(ra, dec)``:
a flat-noise image ``I = B * S_true`` convolved with the restoring beam plus noise correlated over the
beam (white noise smoothed by the beam, scaled to ``rms_jy``), and its primary-beam image ``B``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def sin_header(ra_deg: float, dec_deg: float, *, nx: int, ny: int, cell_deg: float, freq_hz: float = 1.4e9,
               beam_arcsec: tuple[float, float, float] = (60.0, 40.0, 0.0), mjd: float = 60800.0):
    """A 4-axis (RA, Dec, FREQ, STOKES) SIN header as the imager writes it."""
    from astropy.io import fits

    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRVAL1"], h["CRVAL2"] = ra_deg % 360.0, dec_deg
    h["CDELT1"], h["CDELT2"] = -cell_deg, cell_deg
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 1, ny / 2 + 1
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = "FREQ", freq_hz, 1e8, 1.0, "Hz"
    h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    h["RADESYS"] = "ICRS"
    h["BUNIT"] = "Jy/beam"
    h["BMAJ"], h["BMIN"], h["BPA"] = beam_arcsec[0] / 3600, beam_arcsec[1] / 3600, beam_arcsec[2]
    h["MJD-OBS"] = mjd
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, nx, ny
    return h


def gaussian_pb(header, *, fwhm_deg: float) -> np.ndarray:
    """A circular Gaussian primary beam centred on the header's reference position."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    w = WCS(header).celestial
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = w.pixel_to_world_values(xx, yy)
    c0 = SkyCoord(header["CRVAL1"], header["CRVAL2"], unit="deg")
    sep = c0.separation(SkyCoord(ra, dec, unit="deg")).deg
    return np.exp(-0.5 * (sep / (fwhm_deg * FWHM_TO_SIGMA)) ** 2)


def pb_at(header, ra_deg: float, dec_deg: float, *, fwhm_deg: float) -> float:
    """The Gaussian primary beam of ``header``'s pointing at ``(ra_deg, dec_deg)``."""
    from astropy.coordinates import SkyCoord

    sep = SkyCoord(header["CRVAL1"], header["CRVAL2"], unit="deg").separation(SkyCoord(ra_deg, dec_deg, unit="deg")).deg
    return float(np.exp(-0.5 * (sep / (fwhm_deg * FWHM_TO_SIGMA)) ** 2))


def beam_kernel_image(header, x0: float, y0: float) -> np.ndarray:
    """The restoring beam (peak 1) centred at pixel ``(x0, y0)`` of ``header`` (square pixels)."""
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    cell = abs(float(header["CDELT2"]))
    smaj = header["BMAJ"] / cell * FWHM_TO_SIGMA
    smin = header["BMIN"] / cell * FWHM_TO_SIGMA
    pa = math.radians(header["BPA"])
    yy, xx = np.mgrid[0:ny, 0:nx]
    dx, dy = -(xx - x0), yy - y0  # east, north (CDELT1 < 0)
    u = dx * math.sin(pa) + dy * math.cos(pa)  # along the major axis (PA east of north)
    v = dx * math.cos(pa) - dy * math.sin(pa)
    return np.exp(-0.5 * ((u / smaj) ** 2 + (v / smin) ** 2))


def correlated_noise(header, rms_jy: float, rng: np.random.Generator) -> np.ndarray:
    """White noise smoothed by the restoring beam, scaled to ``rms_jy``."""
    from scipy import ndimage

    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    cell = abs(float(header["CDELT2"]))
    s = (header["BMIN"] / cell * FWHM_TO_SIGMA, header["BMAJ"] / cell * FWHM_TO_SIGMA)
    n = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), sigma=s)
    return (n * (rms_jy / n.std())).astype(np.float32)


def write_input(out: Path, name: str, header, image: np.ndarray, pb: np.ndarray) -> tuple[Path, Path]:
    """Write ``<name>.image.fits`` and ``<name>.pb.fits`` (4-axis) and return their paths."""
    from astropy.io import fits

    img, pbf = out / f"{name}.image.fits", out / f"{name}.pb.fits"
    fits.PrimaryHDU(image.astype(np.float32)[None, None], header).writeto(img, overwrite=True)
    fits.PrimaryHDU(pb.astype(np.float32)[None, None], header).writeto(pbf, overwrite=True)
    return img, pbf


def drift_inputs(out: Path, *, n: int, ra0_deg: float, dec_deg: float, step_deg: float, nx: int, ny: int,
                 cell_deg: float, pb_fwhm_deg: float, rms_jy: list[float] | float, rng: np.random.Generator,
                 sources: list[tuple[float, float, float]] = ()) -> list[tuple[Path, Path, float]]:
    """``n`` synthetic snapshots ``step_deg`` apart in RA along ``dec_deg``: [(image, pb, rms)].

    ``sources`` are (ra, dec, flux Jy) point sources, seen through every snapshot's beam.
    """
    from astropy.wcs import WCS

    out.mkdir(parents=True, exist_ok=True)
    rms_list = [rms_jy] * n if isinstance(rms_jy, float) else list(rms_jy)
    made = []
    for k in range(n):
        h = sin_header(ra0_deg + k * step_deg, dec_deg, nx=nx, ny=ny, cell_deg=cell_deg, mjd=60800.0 + k * 0.0036)
        pb = gaussian_pb(h, fwhm_deg=pb_fwhm_deg)
        img = correlated_noise(h, rms_list[k], rng).astype(np.float64) if rms_list[k] > 0 else np.zeros((ny, nx))
        w = WCS(h).celestial
        for ra, dec, flux in sources:
            x, y = (float(v) for v in w.world_to_pixel_values(ra, dec))
            if -5 < x < nx + 5 and -5 < y < ny + 5:
                img += flux * pb_at(h, ra, dec, fwhm_deg=pb_fwhm_deg) * beam_kernel_image(h, x, y)
        made.append((*write_input(out, f"snap{k:02d}", h, img, pb), rms_list[k]))
    return made
