"""Where the dishes point during a Measurement Set, read from the MS itself.

Two kinds of observation are understood:

``drift``
    The dishes stay fixed in hour angle and declination while the sky drifts
    through the beam (DSA-110: the meridian at a fixed apparent declination).
    The pointing at time ``t`` is apparent RA = LST(t) − HA, apparent Dec = δ.
``fixed``
    The dishes track one sky position (ICRS) for the whole MS: a pointed
    observation.

:func:`read_pointing` decides which, in this order:

1. The POINTING table, if it has rows: its ``DIRECTION`` column in its own
   frame (pyuvdata's placeholder, every row ``ZENITH`` at J2000 Dec +90 deg,
   is the zenith for fixed-mount antennas and is ignored for steerable ones).
   ``J2000``/``ICRS`` directions are a fixed pointing; ``HADEC``,
   ``AZEL`` and ``AZELGEO`` directions are a drift at that hour angle and
   declination (azimuth and elevation are converted with the array's
   latitude). A pointing that moves by more than :data:`MAX_POINTING_SPREAD_DEG`
   in its own frame (a mosaic, an on-the-fly scan) is refused.
2. No POINTING rows: ``OBSERVATION::SCHEDULE_TYPE == "drift"`` (what
   :mod:`contimg.conversion` writes) or a DSA-110 telescope name means a
   meridian drift at the phase centre's apparent declination at the middle of
   the MS (the conversion phases to the meridian at the group midpoint).
3. Otherwise a fixed pointing at the FIELD's ``REFERENCE_DIR`` (the phase
   centre of a pointed observation), logged as an assumption.

The array's position is ``OBSERVATION::TELESCOPE_LOCATION`` (pyuvdata's and
contimg's non-standard column) or else the mean position of the antennas that
carry data. Every consumer of the beam (the calibrator model and choice, the
field size, primary-beam correction, photometry) takes the pointing from here,
so a pointed 25 m observation at another site gets the beam of its own dishes
at its own pointing, not DSA-110's meridian.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from contimg.errors import InputFileError

log = logging.getLogger(__name__)

__all__ = ["MAX_POINTING_SPREAD_DEG", "Pointing", "earth_location", "read_pointing", "read_telescope_xyz"]

MAX_POINTING_SPREAD_DEG = 0.05
"""A POINTING table whose directions spread wider than this (in their own frame) is not one pointing."""

_DSA110_NAMES = {"DSA_110", "DSA-110", "DSA110"}
_MJD_JD = 2400000.5


@dataclass(frozen=True)
class Pointing:
    """The pointing of a whole Measurement Set (see the module docstring).

    Attributes
    ----------
    kind
        ``"drift"`` (fixed hour angle and declination) or ``"fixed"`` (a fixed ICRS position).
    lon_rad, lat_rad
        drift: apparent hour angle and declination; fixed: ICRS RA and Dec (radians).
    telescope_xyz
        The array's ITRF position (m).
    origin
        Where the pointing was read from (for logs and FITS headers).
    """

    kind: Literal["drift", "fixed"]
    lon_rad: float
    lat_rad: float
    telescope_xyz: tuple[float, float, float]
    origin: str

    @property
    def location(self):
        """The array's astropy ``EarthLocation``."""
        return earth_location(self.telescope_xyz)

    def apparent(self, time_jd) -> tuple[np.ndarray, np.ndarray]:
        """Apparent (RA, Dec) of the pointing at ``time_jd`` (radians, the shape of ``time_jd``)."""
        from contimg.stations import icrs_to_apparent, lst_rad

        t = np.asarray(time_jd, float)
        if self.kind == "drift":
            ra = np.mod(np.asarray(lst_rad(t, self.location), float) - self.lon_rad, 2 * math.pi)
            return ra, np.full(t.shape, self.lat_rad)
        ra, dec = icrs_to_apparent(np.full(t.shape, self.lon_rad), np.full(t.shape, self.lat_rad), t,
                                   self.location)
        return np.asarray(ra, float), np.asarray(dec, float)

    def icrs(self, time_jd) -> tuple[np.ndarray, np.ndarray]:
        """ICRS (RA, Dec) of the pointing at ``time_jd`` (radians, RA in [0, 2 pi))."""
        from contimg.stations import apparent_to_icrs

        t = np.asarray(time_jd, float)
        if self.kind == "fixed":
            return np.full(t.shape, self.lon_rad % (2 * math.pi)), np.full(t.shape, self.lat_rad)
        ra, dec = self.apparent(t)
        ra_i, dec_i = apparent_to_icrs(ra, dec, t, self.location)
        return np.mod(np.asarray(ra_i, float), 2 * math.pi), np.asarray(dec_i, float)

    def describe(self) -> str:
        if self.kind == "drift":
            return (f"drift at HA {math.degrees(self.lon_rad):+.4f} deg, apparent Dec "
                    f"{math.degrees(self.lat_rad):.4f} deg ({self.origin})")
        return (f"fixed at ICRS RA {math.degrees(self.lon_rad) % 360:.4f} Dec {math.degrees(self.lat_rad):.4f} deg "
                f"({self.origin})")


def read_telescope_xyz(ms_path: str | Path, antennas: np.ndarray | None = None) -> np.ndarray:
    """The array's ITRF position (m): OBSERVATION::TELESCOPE_LOCATION, else the mean of ``antennas``' positions."""
    from casacore import tables

    p = str(ms_path)
    with tables.table(p + "/OBSERVATION", ack=False) as t:
        if "TELESCOPE_LOCATION" in t.colnames() and t.nrows():
            xyz = np.asarray(t.getcell("TELESCOPE_LOCATION", 0), float)
            if xyz.shape == (3,) and np.linalg.norm(xyz) > 6.0e6:
                return xyz
    with tables.table(p + "/ANTENNA", ack=False) as t:
        pos = np.asarray(t.getcol("POSITION"), float)
    if antennas is not None and len(antennas):
        pos = pos[np.asarray(antennas, int)]
    pos = pos[np.linalg.norm(pos, axis=1) > 6.0e6]
    if not len(pos):
        raise InputFileError(f"{ms_path}: neither OBSERVATION::TELESCOPE_LOCATION nor ANTENNA positions give the "
                             "array's position")
    log.info("%s: no TELESCOPE_LOCATION in OBSERVATION; the array's position is the mean antenna position", ms_path)
    return pos.mean(axis=0)


def _circular_spread(lon: np.ndarray, lat: np.ndarray) -> tuple[float, float, float]:
    """(mean lon, mean lat, largest separation from the mean) of directions, radians."""
    from contimg.beam import angular_separation

    v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1).mean(axis=0)
    mlon = math.atan2(v[1], v[0])
    mlat = math.atan2(v[2], math.hypot(v[0], v[1]))
    return mlon, mlat, float(np.max(angular_separation(mlon, mlat, lon, lat)))


def _azel_to_hadec(az: float, el: float, lat: float) -> tuple[float, float]:
    """Hour angle and declination (radians) of azimuth ``az`` (from north through east) and elevation ``el``."""
    sd = math.sin(el) * math.sin(lat) + math.cos(el) * math.cos(lat) * math.cos(az)
    dec = math.asin(max(-1.0, min(1.0, sd)))
    ha = math.atan2(-math.sin(az) * math.cos(el), math.sin(el) * math.cos(lat) - math.cos(el) * math.sin(lat) * math.cos(az))
    return ha, dec


def read_pointing(ms_path: str | Path, *, time_jd: np.ndarray, telescope_xyz: np.ndarray) -> Pointing:
    """The pointing of ``ms_path`` (see the module docstring).

    Parameters
    ----------
    ms_path
        The Measurement Set (one field).
    time_jd
        Its integration centres (JD UTC).
    telescope_xyz
        The array's ITRF position (m), e.g. from :func:`read_telescope_xyz`.

    Returns
    -------
    Pointing
        ``drift`` (apparent hour angle and declination, rad) or ``fixed`` (ICRS RA and Dec, rad), with the
        array position and where the pointing was read from.

    Raises
    ------
    InputFileError
        If the POINTING table's frame is not understood or its directions are not one pointing.
    """
    from casacore import tables

    p = str(ms_path)
    x, y, z = (float(v) for v in np.asarray(telescope_xyz, float))
    xyz = (x, y, z)
    t_mid = float(0.5 * (np.min(time_jd) + np.max(time_jd)))
    try:
        with tables.table(p + "/POINTING", ack=False) as t:
            nrows = t.nrows()
            if nrows:
                direction = np.asarray(t.getcol("DIRECTION"), float).reshape(nrows, 2, -1)[:, :, 0]
                row_jd = np.asarray(t.getcol("TIME"), float) / 86400.0 + _MJD_JD
                ref = str(t.getcolkeyword("DIRECTION", "MEASINFO").get("Ref", "J2000")).upper()
                names = {str(n).strip().upper() for n in t.getcol("NAME")}
    except RuntimeError:  # no POINTING table at all
        nrows = 0
    if nrows and names == {"ZENITH"} and ref in ("J2000", "ICRS") and np.allclose(direction[:, 1], math.pi / 2):
        # pyuvdata's write_ms always writes this placeholder ("we always point at zenith"): true for
        # fixed-mount arrays (HERA), meaningless for steerable dishes
        with tables.table(p + "/ANTENNA", ack=False) as t:
            mounts = {str(m).strip().lower() for m in t.getcol("MOUNT")} - {""}  # "": unused antenna rows
        if mounts == {"fixed"}:
            return Pointing("drift", 0.0, float(earth_location(xyz).lat.rad), xyz, "POINTING table ZENITH, fixed mounts")
        log.info("%s: ignoring the POINTING table's ZENITH placeholder (pyuvdata writes it for any array; the "
                 "mounts are %s)", ms_path, ", ".join(sorted(mounts)))
        nrows = 0
    if nrows:
        lon, lat, spread = _circular_spread(direction[:, 0], direction[:, 1])
        if ref in ("J2000", "ICRS") and math.degrees(spread) > MAX_POINTING_SPREAD_DEG:
            # a drift written as sky directions (the zenith's RA moves with LST): constant hour angle?
            drift = _as_drift(direction, row_jd, xyz)
            if drift is not None:
                return Pointing("drift", drift[0], drift[1], xyz, f"POINTING table, {ref} at a constant hour angle")
        if math.degrees(spread) > MAX_POINTING_SPREAD_DEG:
            raise InputFileError(
                f"{ms_path}: the POINTING table's directions ({ref}) spread over {math.degrees(spread):.3f} deg; "
                "contimg handles one fixed or drifting pointing per MS, not a mosaic or a scan")
        if ref in ("J2000", "ICRS"):
            return Pointing("fixed", lon % (2 * math.pi), lat, xyz, f"POINTING table, {ref}")
        if ref == "HADEC":
            return Pointing("drift", lon, lat, xyz, "POINTING table, HADEC")
        if ref in ("AZEL", "AZELGEO", "AZELSW", "AZELSWGEO"):
            az = lon + math.pi if ref.startswith("AZELSW") else lon
            site_lat = float(earth_location(xyz).lat.rad)
            ha, dec = _azel_to_hadec(az, lat, site_lat)
            return Pointing("drift", ha, dec, xyz, f"POINTING table, {ref}")
        raise InputFileError(f"{ms_path}: POINTING table directions in frame {ref}, which contimg does not handle "
                             "(J2000, ICRS, HADEC, AZEL, AZELGEO)")
    with tables.table(p + "/OBSERVATION", ack=False) as t:
        sched = str(t.getcell("SCHEDULE_TYPE", 0)).strip().lower() if t.nrows() and "SCHEDULE_TYPE" in t.colnames() else ""
        tel = str(t.getcell("TELESCOPE_NAME", 0)).strip() if t.nrows() else ""
    with tables.table(p + "/FIELD", ack=False) as t:
        if t.nrows() != 1:
            raise InputFileError(f"{ms_path}: one field expected, found {t.nrows()}")
        col = "REFERENCE_DIR" if "REFERENCE_DIR" in t.colnames() else "PHASE_DIR"
        ra0, dec0 = np.asarray(t.getcell(col, 0), float).reshape(-1)[:2]
        fref = str(t.getcolkeyword(col, "MEASINFO").get("Ref", "J2000")).upper()
    if fref not in ("ICRS", "J2000"):
        raise InputFileError(f"{ms_path}: FIELD {col} frame {fref} is not ICRS/J2000")
    if sched == "drift" or tel.upper() in _DSA110_NAMES:
        from contimg.stations import icrs_to_apparent

        _, dec_app = icrs_to_apparent(np.array(ra0), np.array(dec0), np.array(t_mid), earth_location(xyz))
        why = "OBSERVATION::SCHEDULE_TYPE drift" if sched == "drift" else f"telescope {tel}"
        return Pointing("drift", 0.0, float(dec_app), xyz, f"meridian drift at the phase centre's Dec ({why})")
    log.info("%s: no POINTING rows and not a drift scan (telescope %r); assuming a fixed pointing at the FIELD's "
             "%s", ms_path, tel, col)
    return Pointing("fixed", float(ra0) % (2 * math.pi), float(dec0), xyz, f"FIELD {col} (no POINTING rows)")


def _as_drift(direction: np.ndarray, row_jd: np.ndarray, xyz) -> tuple[float, float] | None:
    """(HA, apparent Dec) if ICRS ``direction`` rows at ``row_jd`` keep one hour angle and declination, else None."""
    from contimg.stations import icrs_to_apparent, lst_rad

    loc = earth_location(xyz)
    app_ra, app_dec = icrs_to_apparent(direction[:, 0], direction[:, 1], row_jd, loc)
    ha = np.asarray(lst_rad(row_jd, loc), float) - np.asarray(app_ra, float)
    mha, mdec, spread = _circular_spread(ha, np.asarray(app_dec, float))
    return (mha, mdec) if math.degrees(spread) <= MAX_POINTING_SPREAD_DEG else None


def earth_location(xyz):
    """The astropy ``EarthLocation`` of an ITRF position (m)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    x, y, z = (float(v) for v in xyz)
    return EarthLocation.from_geocentric(x * u.m, y * u.m, z * u.m)
