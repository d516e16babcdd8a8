"""The DSA-110 primary beam: the Airy pattern of a uniformly illuminated 4.65 m dish.

The simulator attenuates sources with it; calibration uses it to weight the
sky model and imaging for primary-beam correction, so all stages share one
definition.

The power pattern of a uniformly illuminated circular aperture of diameter
:math:`D` at wavelength :math:`\\lambda` is (Airy 1835; e.g. Thompson, Moran &
Swenson 2017, *Interferometry and Synthesis in Radio Astronomy*, sect. 3.3)

.. math:: P(\\theta) = \\left[\\frac{2 J_1(x)}{x}\\right]^2,
          \\qquad x = \\frac{\\pi D \\sin\\theta}{\\lambda},

normalised to 1 on axis, with half-power full width :math:`1.029\\,\\lambda/D`
(2.85 deg at 1.4 GHz) and first null at :math:`1.220\\,\\lambda/D`. It is a
model: real dishes are tapered (wider main lobe, lower sidelobes).

Example
-------
>>> import numpy as np
>>> from contimg.beam import airy_power, airy_fwhm_rad
>>> round(float(airy_power(airy_fwhm_rad(1.4e9) / 2, 1.4e9)), 3)
0.5
"""

from __future__ import annotations

import numpy as np
from scipy.special import j1

from contimg.stations import DISH_DIAMETER_M

__all__ = ["SPEED_OF_LIGHT", "airy_fwhm_rad", "airy_power", "angular_separation", "beam_response"]

SPEED_OF_LIGHT = 299_792_458.0
"""m/s."""
_FWHM_FACTOR = 1.0289939
"""Half-power full width of the Airy power pattern in units of lambda/D."""


def airy_power(sep_rad: np.ndarray | float, freq_hz: np.ndarray | float, diameter_m: float = DISH_DIAMETER_M) -> np.ndarray:
    """Airy power pattern (1 on axis) at angular distance ``sep_rad`` from the pointing.

    Parameters
    ----------
    sep_rad
        Angular separation(s) from the beam centre (radians).
    freq_hz
        Frequency or frequencies (Hz); broadcast against ``sep_rad``, e.g.
        ``sep[:, None]`` against ``freq[None, :]`` for a (Nsrc, Nfreqs) table.
    diameter_m
        Dish diameter (m), 4.65 for DSA-110.

    Returns
    -------
    numpy.ndarray
        Power response in [0, 1], the broadcast shape of the inputs.
    """
    sep = np.asarray(sep_rad, dtype=float)
    freq = np.asarray(freq_hz, dtype=float)
    x = np.pi * diameter_m * np.sin(sep) * freq / SPEED_OF_LIGHT
    x = np.abs(x)
    small = x < 1e-8
    safe = np.where(small, 1.0, x)
    amp = np.where(small, 1.0, 2.0 * j1(safe) / safe)
    return amp * amp


def dish_diameter_from_antennas(diameters, *, ms_path) -> float:
    """The dish diameter (m) of an array from its ANTENNA table's DISH_DIAMETER column (the median).

    Raises
    ------
    contimg.errors.InputFileError
        If the column gives no positive diameter, or the antennas' dishes differ by more than 1 %
        (a heterogeneous array needs a beam per baseline, which contimg does not model).
    """
    from contimg.errors import InputFileError

    d = np.asarray(diameters, float)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise InputFileError(f"{ms_path}: the ANTENNA table gives no dish diameter (DISH_DIAMETER); "
                             "the primary beam cannot be computed")
    med = float(np.median(d))
    if np.any(np.abs(d / med - 1.0) > 0.01):
        raise InputFileError(f"{ms_path}: dishes of {d.min():g} to {d.max():g} m: contimg models one primary beam "
                             "for all antennas and cannot handle a heterogeneous array")
    return med


def airy_fwhm_rad(freq_hz: np.ndarray | float, diameter_m: float = DISH_DIAMETER_M) -> np.ndarray:
    """Half-power full width (radians) of :func:`airy_power` at ``freq_hz``."""
    return _FWHM_FACTOR * SPEED_OF_LIGHT / (np.asarray(freq_hz, dtype=float) * diameter_m)


def angular_separation(
    ra1_rad: np.ndarray | float, dec1_rad: np.ndarray | float, ra2_rad: np.ndarray | float, dec2_rad: np.ndarray | float
) -> np.ndarray:
    """Great-circle distance (radians) between positions, vectorised (Vincenty formula, stable everywhere).

    Parameters
    ----------
    ra1_rad
        Right ascension(s) of the first position(s) (rad).
    dec1_rad
        Declination(s) of the first position(s) (rad).
    ra2_rad
        Right ascension(s) of the second position(s) (rad).
    dec2_rad
        Declination(s) of the second position(s) (rad); all four broadcast together.

    Returns
    -------
    numpy.ndarray
        Separation(s) in [0, pi] rad, the broadcast shape of the inputs.
    """
    dra = np.asarray(ra2_rad, float) - np.asarray(ra1_rad, float)
    s1, c1 = np.sin(dec1_rad), np.cos(dec1_rad)
    s2, c2 = np.sin(dec2_rad), np.cos(dec2_rad)
    num1 = c2 * np.sin(dra)
    num2 = c1 * s2 - s1 * c2 * np.cos(dra)
    den = s1 * s2 + c1 * c2 * np.cos(dra)
    return np.arctan2(np.hypot(num1, num2), den)


def beam_response(
    ra_rad: np.ndarray | float,
    dec_rad: np.ndarray | float,
    *,
    pointing_ra_rad: np.ndarray | float,
    pointing_dec_rad: np.ndarray | float,
    freq_hz: np.ndarray | float,
    diameter_m: float = DISH_DIAMETER_M,
) -> np.ndarray:
    """Primary-beam power response at sky positions for a pointing (same frame for both).

    Positions and pointing broadcast together; the result has a trailing
    frequency axis if ``freq_hz`` is an array: shape ``positions.shape + freq.shape``.

    Parameters
    ----------
    ra_rad
        Right ascension(s) of the sky positions (rad).
    dec_rad
        Declination(s) of the sky positions (rad).
    pointing_ra_rad
        Right ascension of the beam centre (rad), in the same frame as ``ra_rad``.
    pointing_dec_rad
        Declination of the beam centre (rad).
    freq_hz
        Frequency or frequencies (Hz), scalar or shape (Nfreqs,).
    diameter_m
        Dish diameter (m), 4.65 for DSA-110.

    Returns
    -------
    numpy.ndarray
        Power response in [0, 1] (1 on axis), shape ``positions.shape + freq.shape``.
    """
    sep = angular_separation(pointing_ra_rad, pointing_dec_rad, ra_rad, dec_rad)
    freq = np.asarray(freq_hz, dtype=float)
    return airy_power(sep[(...,) + (None,) * freq.ndim], freq, diameter_m)
