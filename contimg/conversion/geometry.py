"""Baseline coordinates toward the shared phase center, and the phase rotation of the data.

Conventions (proved by ``tests/conversion``):

* Input (pyuvdata "unprojected" drift-scan data): ``uvw = x_ant2 - x_ant1`` in
  the zenith frame and ``V = S exp(+2πi (u l + v m + w n) ν / c)`` with no
  ``w (n - 1)`` term, which is what pyuvdata's ``phase()`` assumes.
* Phasing to a direction ``s0`` multiplies by ``exp(-2πi w0 ν / c)`` with
  ``w0 = b · s0`` (pyuvdata's ``_apply_w_proj`` with old w = 0); the new
  ``uvw`` are the baseline vectors in the frame of ``s0``. We compute them with
  the same pyuvdata astrometry functions that ``UVData.phase()`` uses
  (``calc_app_coords``, ``calc_frame_pos_angle``, ``calc_uvw``), so our
  phases agree with pyuvdata's to rounding.
* Measurement Set (what pyuvdata's ``write_ms`` writes with its default
  ``flip_conj=True`` and what CASA and WSClean read): ``DATA`` is the complex
  conjugate of the pyuvdata visibility and ``UVW`` its negative.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from contimg.stations import offline_iers  # noqa: F401 - re-exported for conversion modules

if TYPE_CHECKING:
    from contimg.msmodel import MsModel

C_M_S = 299792458.0


def earth_location(telescope_lla: tuple[float, float, float]):
    """``EarthLocation`` of geodetic latitude, longitude (radians) and altitude (m)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    lat, lon, alt = telescope_lla
    return EarthLocation.from_geodetic(lon=lon * u.rad, lat=lat * u.rad, height=alt * u.m)


def lst_for_times(times_jd: np.ndarray, telescope_lla: tuple[float, float, float]) -> np.ndarray:
    """Apparent LST (radians) at ``times_jd``, computed as pyuvdata does."""
    from pyuvdata.utils import get_lst_for_time

    lat, lon, alt = telescope_lla
    with offline_iers():
        return get_lst_for_time(
            np.asarray(times_jd, dtype=float),
            latitude=np.degrees(lat), longitude=np.degrees(lon), altitude=alt,
        )


def phased_uvw(
    ms: "MsModel",
    *,
    times_jd: np.ndarray,
    ant_1_array: np.ndarray,
    ant_2_array: np.ndarray,
) -> np.ndarray:
    """Baseline coordinates (m, pyuvdata convention ``x2 - x1``) toward the MS's phase center.

    Parameters
    ----------
    ms
        The model of the MS (antenna positions, telescope location, ICRS phase center), e.g. a plan's ``ms``.
    times_jd
        Time of each baseline-time (UTC JD), shape (Nblts,).
    ant_1_array, ant_2_array
        Antenna numbers of each baseline-time, shape (Nblts,).

    Returns
    -------
    ndarray of shape (Nblts, 3)
    """
    times_jd = np.asarray(times_jd, dtype=float)
    utimes, inverse = np.unique(times_jd, return_inverse=True)
    lsts = lst_for_times(utimes, ms.telescope_lla)
    with offline_iers():
        return _phased_uvw(ms, utimes, inverse, lsts, ms.location, ant_1_array, ant_2_array)


def _phased_uvw(ms, utimes, inverse, lsts, loc, ant_1_array, ant_2_array) -> np.ndarray:
    from pyuvdata.utils import phasing

    app_ra, app_dec = phasing.calc_app_coords(
        lon_coord=ms.phase_center_ra,
        lat_coord=ms.phase_center_dec,
        coord_frame="icrs",
        coord_type="sidereal",
        time_array=utimes,
        lst_array=lsts,
        telescope_loc=loc,
        all_times_unique=True,
    )
    frame_pa = phasing.calc_frame_pos_angle(
        time_array=utimes, app_ra=app_ra, app_dec=app_dec, telescope_loc=loc, ref_frame="icrs",
    )
    lat, lon, _ = ms.telescope_lla
    # pyuvdata's rotation of antenna positions, once per (time, antenna) instead of per
    # baseline-time (its per-row dict look-ups cost more than the rotation): vectors of
    # every antenna relative to the first, then differences (the reference cancels).
    nums = np.asarray(ms.antenna_numbers)
    nt, na = utimes.size, nums.size
    ti = np.repeat(np.arange(nt), na)
    vec = phasing.calc_uvw(
        app_ra=app_ra[ti],
        app_dec=app_dec[ti],
        frame_pa=frame_pa[ti],
        lst_array=lsts[ti],
        use_ant_pos=True,
        antenna_positions=np.asarray(ms.antenna_positions, dtype=float),
        antenna_numbers=nums,
        ant_1_array=np.full(nt * na, nums[0]),
        ant_2_array=np.tile(nums, nt),
        telescope_lat=lat,
        telescope_lon=lon,
    ).reshape(nt, na, 3)
    ant_1_array, ant_2_array = np.asarray(ant_1_array), np.asarray(ant_2_array)
    lookup = np.full(int(max(nums.max(), ant_1_array.max(), ant_2_array.max())) + 1, -1)
    lookup[nums] = np.arange(na)
    i1, i2 = lookup[ant_1_array], lookup[ant_2_array]
    if np.any(i1 < 0) or np.any(i2 < 0):
        raise ValueError(f"{ms.label}: baseline antenna numbers missing from the antenna list")
    return vec[inverse, i2] - vec[inverse, i1]


def phase_to_ms(
    vis: np.ndarray,
    *,
    w_m: np.ndarray,
    freq_hz: np.ndarray,
) -> np.ndarray:
    """Phase unprojected visibilities and convert them to the MS convention.

    Computes ``conj(V · exp(-2πi w ν / c)) = conj(V) · exp(+2πi w ν / c)``.

    Parameters
    ----------
    vis
        Visibilities (pyuvdata convention), shape (Nblts, Nfreqs, Npols); may be
        a strided view (e.g. channels reversed).
    w_m
        w toward the new phase center (m, pyuvdata convention), shape (Nblts,).
    freq_hz
        Channel frequencies of ``vis``'s channel axis, shape (Nfreqs,).

    Returns
    -------
    A new contiguous complex64 array of the shape of ``vis``.
    """
    w = np.asarray(w_m, dtype=np.float64) * (1.0 / C_M_S)
    freq = np.asarray(freq_hz, dtype=np.float64)
    nf = freq.size
    df = freq[1] - freq[0] if nf > 1 else 0.0
    if nf > 2 and np.max(np.abs(np.diff(freq) - df)) < 1e-3:
        # evenly spaced channels: exp(iφ_k) = exp(iφ_0) exp(iΔφ)^k, products in complex128
        # (w/λ reaches ~1e4 turns; the recurrence loses ~k ulp, far below float32)
        rot = np.empty((nf, w.size), dtype=np.complex128)
        rot[0] = np.exp((2j * np.pi * freq[0]) * w)
        step = np.exp((2j * np.pi * df) * w)
        for k in range(1, nf):
            np.multiply(rot[k - 1], step, out=rot[k])
        rot64 = rot.T.astype(np.complex64)
    else:
        rot64 = np.exp((2j * np.pi) * np.multiply.outer(w, freq)).astype(np.complex64)
    out = np.empty(vis.shape, dtype=np.complex64)
    np.conjugate(vis, out=out)
    out *= rot64[:, :, None]
    return out
