"""The image geometry derived from a Measurement Set, and what makes an MS imageable.

The MS is read once, with :func:`contimg.msmodel.read_ms` (python-casacore,
no CASA session): its phase center, times, frequencies, uv rows, flags and
pointing. :func:`check_imageable` refuses, with a
:class:`~contimg.errors.InputFileError` naming the MS, one that is entirely
flagged or has no non-zero baselines (``read_ms`` itself refuses a missing
column, several fields or spectral windows, and a phase center not in
ICRS/J2000).

:func:`derive_geometry` turns the model into a cell and an image size:

* cell = ``lambda_min / B_max / pixels_per_beam`` (``B_max`` the longest
  projected baseline in the uv plane), rounded down to 0.1 arcsec: the
  synthesized beam's narrowest fringe is sampled by at least
  ``pixels_per_beam`` (3 ... 5) pixels; and, given the PSF's predicted main
  lobe (:mod:`contimg.imaging.psf`), no more than its narrowest half-power
  width / ``pixels_per_beam``: where the Briggs weights leave the main lobe
  narrower than the longest baseline says (DSA-110's core-only array: 57
  arcsec for an 85 arcsec fringe), the lobe sets the cell;
* the field reaches the primary-beam response ``pb_limit`` of the
  *time-averaged* Airy beam at the lowest frequency (the widest beam): a
  circle of radius ``theta(pb_limit, nu_min)`` swept along the pointing's RA
  track during the group, so the image is wider in RA than in Dec;
* sizes are rounded up to even 5-smooth numbers (fast FFTs in WSClean and CASA).

:func:`pointing_track` gives the ICRS pointing of every integration, read
from the MS by :mod:`contimg.pointing`: for DSA-110 the meridian (apparent RA
= apparent LST) at the apparent declination of the phase center, which the
conversion stage phased to the meridian at the group midpoint; for a pointed
observation its fixed position. A drift scan's beam is fixed in HA/Dec while
the sky drifts, so primary-beam correction uses this track (see
:mod:`contimg.imaging.pbcor`); the array's position is the MS's too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq

from contimg.beam import SPEED_OF_LIGHT, airy_power
from contimg.errors import InputFileError
from contimg.msmodel import MsModel

__all__ = ["ImageGeometry", "check_imageable", "derive_geometry", "pb_radius_rad", "pointing_track"]

log = logging.getLogger(__name__)

ARCSEC = math.pi / (180 * 3600)


@dataclass(frozen=True)
class ImageGeometry:
    """Pixel grid of an image centred on the phase center (SIN projection)."""

    cell_arcsec: float
    nx: int
    """Pixels along RA."""
    ny: int
    """Pixels along Dec."""
    pb_limit: float
    pb_radius_deg: float
    """Radius at which the time-averaged beam at the lowest frequency falls to ``pb_limit``."""
    drift_deg: float
    """Great-circle length of the pointing track during the group."""

    @property
    def width_deg(self) -> float:
        return self.nx * self.cell_arcsec / 3600

    @property
    def height_deg(self) -> float:
        return self.ny * self.cell_arcsec / 3600

    def to_dict(self) -> dict:
        return asdict(self)


def check_imageable(ms: MsModel) -> None:
    """Refuse an MS that cannot give an image: every cross-correlation flagged, or no non-zero baseline.

    Parameters
    ----------
    ms
        The MS's model, read with ``flags=True`` (:func:`contimg.msmodel.read_ms`).

    Raises
    ------
    InputFileError
        Naming the MS and the reason.
    """
    if ms.flagged_fraction is not None and ms.flagged_fraction >= 1.0:
        raise InputFileError(f"{ms.label}: every cross-correlation visibility is flagged; nothing to image")
    if ms.max_baseline <= 0:
        raise InputFileError(f"{ms.label}: has no cross-correlations with non-zero baselines")


def pointing_track(ms: MsModel) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (RA, Dec) of the pointing at each integration (radians, RA in [0, 2 pi)).

    From the pointing read from the MS (:mod:`contimg.pointing`): a drift scan's pointing moves
    along its hour angle, a pointed observation's stays put.
    """
    return ms.pointing.icrs(ms.time_array)


def pb_radius_rad(pb_limit: float, freq_hz: float, diameter_m: float = 4.65) -> float:
    """Angular radius (radians) where the Airy power beam of ``diameter_m`` dishes at ``freq_hz`` falls to ``pb_limit``.

    Parameters
    ----------
    pb_limit
        Power response (0-1) to reach, above the main lobe's floor (0 at the first null).
    freq_hz
        Frequency (Hz); the lowest channel for the largest radius.
    diameter_m
        Dish diameter (m), 4.65 for DSA-110.

    Returns
    -------
    float
        Radius (rad) inside the main lobe (before the first null, 1.22 lambda/D).

    Raises
    ------
    ValueError
        If ``pb_limit`` is not strictly between 0 and 1 (no root in the main lobe, from ``brentq``).
    """
    first_null = 1.2197 * SPEED_OF_LIGHT / (freq_hz * diameter_m)
    return float(brentq(lambda r: float(airy_power(r, freq_hz, diameter_m)) - pb_limit, 1e-9, first_null * 0.999))


def _smooth_even(n: int) -> int:
    """The smallest even 5-smooth number (2^a 3^b 5^c) that is >= n."""
    m = max(2, int(n))
    while True:
        if m % 2 == 0:
            k = m
            for p in (2, 3, 5):
                while k % p == 0:
                    k //= p
            if k == 1:
                return m
        m += 1


def derive_geometry(
    ms: MsModel,
    *,
    pb_limit: float,
    pixels_per_beam: float = 3.0,
    cell_arcsec: float | None = None,
    psf_minor_arcsec: float | None = None,
    max_pixels: int = 8192,
) -> ImageGeometry:
    """Cell and image size for the MS ``ms`` (see the module docstring).

    Parameters
    ----------
    ms
        The MS's model (:func:`contimg.msmodel.read_ms`).
    pb_limit
        Image out to this response of the time-averaged primary beam at the
        lowest frequency (``settings.imaging.pb_limit``).
    pixels_per_beam
        Pixels across ``lambda_min / B_max`` (3 ... 5).
    cell_arcsec
        Force this cell instead of deriving it.
    psf_minor_arcsec
        The narrowest half-power width of the PSF's main lobe
        (:func:`contimg.imaging.psf.main_lobe_fwhm`); the cell samples it by
        ``pixels_per_beam`` too.
    max_pixels
        Upper bound of either dimension.

    Returns
    -------
    ImageGeometry
        Cell (arcsec, floored to 0.1), ``nx`` (along RA: beam diameter plus the drift) and ``ny`` (along Dec:
        beam diameter) as even 5-smooth numbers clipped to ``max_pixels``, ``pb_limit``, the beam radius (deg)
        and the drift of the pointing track (deg).
    """
    lam_min = SPEED_OF_LIGHT / ms.freq_upper_edge
    if cell_arcsec is None:
        cell = lam_min / ms.max_baseline / pixels_per_beam / ARCSEC
        if psf_minor_arcsec is not None and psf_minor_arcsec > 0:
            cell = min(cell, psf_minor_arcsec / pixels_per_beam)
        cell_arcsec = math.floor(cell * 10) / 10
    radius = pb_radius_rad(pb_limit, ms.freq_lower_edge, ms.dish_diameter)
    ra, dec = pointing_track(ms)
    from contimg.beam import angular_separation

    drift = float(angular_separation(ra[0], dec[0], ra[-1], dec[-1]))
    # one integration on either side of the track: the time-averaged beam reaches a
    # little beyond the outermost pointings
    drift_full = drift * ms.Ntimes / max(ms.Ntimes - 1, 1)
    nx = _smooth_even(math.ceil((2 * radius + drift_full) / (cell_arcsec * ARCSEC)))
    ny = _smooth_even(math.ceil(2 * radius / (cell_arcsec * ARCSEC)))
    if max(nx, ny) > max_pixels:
        log.warning("%s: image %dx%d exceeds %d pixels; clipping", ms.label, nx, ny, max_pixels)
        nx, ny = min(nx, max_pixels), min(ny, max_pixels)
    return ImageGeometry(cell_arcsec=float(cell_arcsec), nx=nx, ny=ny, pb_limit=pb_limit,
                         pb_radius_deg=math.degrees(radius), drift_deg=math.degrees(drift))
