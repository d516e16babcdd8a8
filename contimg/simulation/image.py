"""Synthetic restored images with a known truth, for testing and benchmarking source finders.

A WSClean-like FITS image (RA---SIN/DEC--SIN, FREQ and STOKES axes, BMAJ/BMIN/BPA,
BUNIT Jy/beam) holding point sources convolved with the restoring beam at known
positions and fluxes, seen through a Gaussian primary beam (written beside it as
``<base>.pb.fits``, as the imager writes its averaged beam), plus Gaussian noise
correlated by the beam. Making one of 3840 x 3072 pixels takes seconds, where
simulating and imaging a full-scale group takes many minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SyntheticImage", "synthetic_image", "random_sky"]

FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))


@dataclass(frozen=True)
class SyntheticImage:
    """The files of a synthetic image and its truth."""

    image: Path
    """Flat-noise image (apparent fluxes: true flux times the primary beam)."""
    pb: Path
    """The primary beam (``<base>.pb.fits``)."""
    ra_deg: np.ndarray
    """True (catalogue) positions of the sources, before any ``shift_arcsec``."""
    dec_deg: np.ndarray
    flux_jy: np.ndarray
    """True (PB-corrected) fluxes."""
    noise_jy: float
    beam_arcsec: tuple[float, float, float]


def random_sky(n: int, *, ra0_deg: float, dec0_deg: float, radius_deg: float, flux_range_jy: tuple[float, float],
               rng: np.random.Generator, min_sep_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sources uniform in a box of half-width ``radius_deg`` about a centre, log-uniform fluxes.

    Sources closer than ``min_sep_deg`` to an earlier one are dropped (so fewer than ``n`` may return).

    Parameters
    ----------
    n
        Number of sources drawn.
    ra0_deg, dec0_deg
        Centre (deg).
    radius_deg
        Half-width of the box (deg, on the sky).
    flux_range_jy
        (lowest, highest) flux, drawn log-uniform.
    rng
        Random generator.
    min_sep_deg
        Minimum separation between sources.

    Returns
    -------
    tuple
        ``(ra_deg, dec_deg, flux_jy)`` arrays.
    """
    north = rng.uniform(-radius_deg, radius_deg, n)
    east = rng.uniform(-radius_deg, radius_deg, n)
    dec = dec0_deg + north
    ra = (ra0_deg + east / np.cos(np.radians(dec))) % 360.0
    lo, hi = flux_range_jy
    flux = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    if min_sep_deg > 0:
        keep: list[int] = []
        for i in range(n):
            d = np.hypot(east[keep] - east[i], north[keep] - north[i]) if keep else np.zeros(0)
            if not np.any(d < min_sep_deg):
                keep.append(i)
        ra, dec, flux = ra[keep], dec[keep], flux[keep]
    return ra, dec, flux


def synthetic_image(out_base: str | Path, *, shape: tuple[int, int], cell_arcsec: float, ra0_deg: float,
                    dec0_deg: float, ra_deg: np.ndarray, dec_deg: np.ndarray, flux_jy: np.ndarray,
                    noise_jy: float, beam_arcsec: tuple[float, float, float] = (30.0, 15.0, 0.0),
                    pb_fwhm_deg: float | None = 3.3, freq_hz: float = 1.4e9, seed: int = 0,
                    shift_arcsec: tuple[float, float] = (0.0, 0.0)) -> SyntheticImage:
    """Write a synthetic restored image ``<out_base>.image.fits`` and its beam ``<out_base>.pb.fits``.

    Parameters
    ----------
    out_base
        Path prefix of the two files.
    shape
        (Ny, Nx) pixels.
    cell_arcsec
        Pixel size (arcsec).
    ra0_deg, dec0_deg
        Phase (reference) centre; the primary beam points here.
    ra_deg, dec_deg, flux_jy
        True positions (deg) and fluxes (Jy) of point sources.
    noise_jy
        The rms of the noise (Jy/beam) after it is correlated by the beam.
    beam_arcsec
        Restoring beam (major FWHM, minor FWHM in arcsec, position angle in deg east of north).
    pb_fwhm_deg
        FWHM of the Gaussian primary beam; None: a flat beam of 1.
    freq_hz
        Reference frequency (CRVAL3).
    seed
        Seed of the noise.
    shift_arcsec
        (east, north) offset at which every source is drawn from its true position: an astrometric error.

    Returns
    -------
    SyntheticImage
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    ny, nx = shape
    header = fits.Header()
    header["NAXIS"] = 4
    for k, (ctype, crval, cdelt, crpix) in enumerate(
            (("RA---SIN", ra0_deg % 360.0, -cell_arcsec / 3600, nx / 2 + 1),
             ("DEC--SIN", dec0_deg, cell_arcsec / 3600, ny / 2 + 1),
             ("FREQ", freq_hz, 1e8, 1.0), ("STOKES", 1.0, 1.0, 1.0)), start=1):
        header[f"CTYPE{k}"], header[f"CRVAL{k}"], header[f"CDELT{k}"], header[f"CRPIX{k}"] = ctype, crval, cdelt, crpix
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["RADESYS"], header["EQUINOX"] = "ICRS", 2000.0
    header["BMAJ"], header["BMIN"], header["BPA"] = beam_arcsec[0] / 3600, beam_arcsec[1] / 3600, beam_arcsec[2]
    header["BUNIT"] = "JY/BEAM"
    header["MJD-OBS"] = 61000.0
    wcs = WCS(header).celestial

    yy, xx = np.mgrid[0:ny, 0:nx]
    pb = np.ones(shape, np.float32)
    if pb_fwhm_deg is not None:
        ra_g, dec_g = wcs.pixel_to_world_values(xx, yy)
        sep = _separation_deg(ra_g, dec_g, ra0_deg, dec0_deg)
        pb = np.exp(-0.5 * (sep / (pb_fwhm_deg * FWHM_TO_SIGMA)) ** 2).astype(np.float32)
        del ra_g, dec_g, sep
    del yy, xx

    rng = np.random.default_rng(seed)
    data = _correlated_noise(shape, beam_arcsec, cell_arcsec, rng) * noise_jy
    ra = np.asarray(ra_deg, float)
    dec = np.asarray(dec_deg, float)
    dec_s = dec + shift_arcsec[1] / 3600
    ra_s = ra + shift_arcsec[0] / 3600 / np.cos(np.radians(dec_s))
    x, y = wcs.world_to_pixel_values(ra_s, dec_s)
    for xi, yi, s in zip(np.atleast_1d(x), np.atleast_1d(y), np.asarray(flux_jy, float)):
        _add_gaussian(data, xi, yi, s, beam_arcsec, cell_arcsec, pb)

    base = str(out_base)
    image_path, pb_path = Path(base + ".image.fits"), Path(base + ".pb.fits")
    fits.PrimaryHDU(data[None, None].astype(np.float32), header=header).writeto(image_path, overwrite=True)
    fits.PrimaryHDU(pb[None, None], header=header).writeto(pb_path, overwrite=True)
    return SyntheticImage(image=image_path, pb=pb_path, ra_deg=ra, dec_deg=dec, flux_jy=np.asarray(flux_jy, float),
                          noise_jy=noise_jy, beam_arcsec=tuple(beam_arcsec))  # type: ignore[arg-type]


def _separation_deg(ra, dec, ra0, dec0):
    r, d, r0, d0 = np.radians(ra), np.radians(dec), math.radians(ra0), math.radians(dec0)
    c = np.sin(d) * math.sin(d0) + np.cos(d) * math.cos(d0) * np.cos(r - r0)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _beam_quadratic(beam_arcsec, cell_arcsec, scale: float = 1.0):
    """Coefficients (a, b, c) with exp(-(a dx^2 + 2 b dx dy + c dy^2)) the beam in pixel offsets (x east-negative)."""
    smaj = beam_arcsec[0] * FWHM_TO_SIGMA / cell_arcsec * scale
    smin = beam_arcsec[1] * FWHM_TO_SIGMA / cell_arcsec * scale
    pa = math.radians(beam_arcsec[2])
    # the major axis points (east, north) = (sin pa, cos pa), i.e. pixels (dx, dy) = (-sin pa, cos pa)
    ux, uy = -math.sin(pa), math.cos(pa)  # major
    vx, vy = uy, -ux  # minor
    a = 0.5 * (ux ** 2 / smaj ** 2 + vx ** 2 / smin ** 2)
    b = 0.5 * (ux * uy / smaj ** 2 + vx * vy / smin ** 2)
    c = 0.5 * (uy ** 2 / smaj ** 2 + vy ** 2 / smin ** 2)
    return a, b, c, smaj


def _add_gaussian(data, x0, y0, flux, beam_arcsec, cell_arcsec, pb):
    a, b, c, smaj = _beam_quadratic(beam_arcsec, cell_arcsec)
    half = int(math.ceil(5 * smaj)) + 1
    ix, iy = int(round(x0)), int(round(y0))
    x_lo, x_hi = max(ix - half, 0), min(ix + half + 1, data.shape[1])
    y_lo, y_hi = max(iy - half, 0), min(iy + half + 1, data.shape[0])
    if x_lo >= x_hi or y_lo >= y_hi:
        return
    dy, dx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
    dx = dx - x0
    dy = dy - y0
    gain = float(pb[min(max(iy, 0), pb.shape[0] - 1), min(max(ix, 0), pb.shape[1] - 1)])
    data[y_lo:y_hi, x_lo:x_hi] += flux * gain * np.exp(-(a * dx ** 2 + 2 * b * dx * dy + c * dy ** 2))


def _correlated_noise(shape, beam_arcsec, cell_arcsec, rng) -> np.ndarray:
    """Unit-rms Gaussian noise whose autocorrelation is the restoring beam (white noise convolved by beam/sqrt 2)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    a, b, c, _ = _beam_quadratic(beam_arcsec, cell_arcsec, scale=1.0 / math.sqrt(2.0))
    # Fourier transform of exp(-(a x^2 + 2 b x y + c y^2)) is proportional to exp(-pi^2 (c kx^2 - 2 b kx ky + a ky^2)/det)
    det = a * c - b * b
    kernel = np.exp(-(math.pi ** 2) * (c * kx ** 2 - 2 * b * kx * ky + a * ky ** 2) / det).astype(np.float32)
    noise = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape).astype(np.float32)
    noise /= float(noise.std())
    return noise
