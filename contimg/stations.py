"""The DSA-110 station table, the array reference position and pointing geometry.

The station table (``contimg/data/DSA110_Station_Coordinates.csv``, public data)
lists 117 stations ``DSA-001`` ... ``DSA-117`` with geodetic latitude, longitude
(degrees, WGS84) and elevation (m); a blank elevation means 1182.6 m. Station
``DSA-NNN`` is antenna number ``NNN - 1`` (0 ... 116).

The layout is a T: stations 1-51 form the east-west arm, 52-102 the
north-south arm and 103-117 are outriggers out to ~2.5 km, which set the
~25'' x 50'' synthesised beam.

Array reference position
    :data:`DSA110_LOCATION` is the centroid of the 117 stations (mean geodetic
    latitude, longitude and height). It is this project's choice; antenna
    positions written into files are ECEF offsets from it, so any choice is
    self-consistent.

Which antennas carry data
    The correlator of the real array processes 96 antennas. The simulator's
    default (:func:`select_antennas`) keeps all 15 outriggers (without them the
    synthesised beam is ~5x wider) and 81 of the 102 core stations, evenly spaced
    along the arms; for fewer antennas it keeps the same proportion,
    ``ceil(N * 15 / 96)`` outriggers and the rest from the core, each subset
    evenly spaced. The choice is deterministic and documented here, not the
    observatory's list of working antennas.

Pointing frame
    A meridian drift scan points at a fixed elevation, i.e. a fixed *apparent*
    (true equator and equinox of date, topocentric) declination. The UVH5
    extra keyword ``phase_center_dec`` written by the simulator is that
    apparent declination in radians; the meridian's RA is the apparent local
    sidereal time. :func:`apparent_to_icrs` converts both to ICRS with the same
    ERFA routines pyuvdata's ``phase()`` uses, so a source placed with it is on
    the meridian to pyuvdata's precision.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.utils import iers as _iers

# contimg never uses the network: astropy would otherwise try to download IERS-A
# (a ~3.5 s time-out offline) the first time a process converts a time. The
# bundled tables (astropy-iers-data) carry predictions a year ahead; update them
# with `pip install -U astropy-iers-data`. Process-wide, like the CASA site config.
_iers.conf.auto_download = False
_iers.conf.auto_max_age = None

from contimg.errors import InputFileError

__all__ = [
    "DEFAULT_ELEVATION_M",
    "DISH_DIAMETER_M",
    "DSA110_LOCATION",
    "NSTATIONS",
    "N_ACTIVE_ANTENNAS",
    "StationTable",
    "TELESCOPE_NAME",
    "apparent_to_icrs",
    "icrs_to_apparent",
    "lst_rad",
    "load_stations",
    "meridian_icrs",
    "offline_iers",
    "select_antennas",
]

TELESCOPE_NAME = "DSA_110"
"""Telescope name written into the UVH5 files (as the real array does)."""
DISH_DIAMETER_M = 4.65
"""Dish diameter (m)."""
DEFAULT_ELEVATION_M = 1182.6
"""Elevation used where the station table leaves it blank (m)."""
NSTATIONS = 117
"""Stations in the table (antenna numbers 0 ... 116)."""
N_ACTIVE_ANTENNAS = 96
"""Antennas carrying data by default."""
N_OUTRIGGERS = 15
"""Stations 103-117 are outriggers."""

_TABLE = Path(__file__).parent / "data" / "DSA110_Station_Coordinates.csv"
_NAME_RE = re.compile(r"^DSA-\d{3}$")


@dataclass(frozen=True)
class StationTable:
    """All stations of the array, indexed by antenna number (0 ... 116).

    Attributes
    ----------
    antenna_names
        ``DSA-001`` ... ``DSA-117``.
    antenna_numbers
        0 ... 116 (station number minus one).
    latitude_deg, longitude_deg, height_m
        Geodetic WGS84 coordinates.
    """

    antenna_names: tuple[str, ...]
    antenna_numbers: np.ndarray
    latitude_deg: np.ndarray
    longitude_deg: np.ndarray
    height_m: np.ndarray

    @property
    def Nants(self) -> int:  # noqa: N802 - pyuvdata naming
        return len(self.antenna_names)

    def ecef(self) -> np.ndarray:
        """Absolute ECEF (ITRS) positions, shape (Nants, 3), metres."""
        loc = EarthLocation.from_geodetic(
            self.longitude_deg * u.deg, self.latitude_deg * u.deg, self.height_m * u.m
        )
        return np.stack([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)], axis=-1)

    def relative_ecef(self, location: EarthLocation | None = None) -> np.ndarray:
        """ECEF offsets from ``location`` (default :data:`DSA110_LOCATION`), shape (Nants, 3)."""
        loc = (DSA110_LOCATION if location is None else location)
        ref = np.array([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)])
        return self.ecef() - ref

    def enu(self, location: EarthLocation | None = None) -> np.ndarray:
        """East-north-up offsets from ``location`` (default :data:`DSA110_LOCATION`), metres."""
        loc = (DSA110_LOCATION if location is None else location)
        lat, lon = loc.lat.rad, loc.lon.rad
        d = self.relative_ecef(loc)
        sl, cl, sp, cp = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
        rot = np.array([[-sp, cp, 0.0], [-sl * cp, -sl * sp, cl], [cl * cp, cl * sp, sl]])
        return d @ rot.T

    def index(self, antenna_numbers: np.ndarray) -> np.ndarray:
        """Row indices of the given antenna numbers (they equal the numbers here)."""
        nums = np.asarray(antenna_numbers, dtype=int)
        if nums.size and (nums.min() < 0 or nums.max() >= self.Nants):
            raise ValueError(f"antenna numbers must be in 0..{self.Nants - 1}, got {nums}")
        return nums


def _parse(lines: Iterator[str], source: str) -> StationTable:
    names: list[str] = []
    lats: list[float] = []
    lons: list[float] = []
    hs: list[float] = []
    for row in csv.reader(lines):
        if len(row) < 4 or not _NAME_RE.match(row[1].strip()):
            continue
        name = row[1].strip()
        try:
            number = int(name[4:])
            lat, lon = float(row[2]), float(row[3])
            h = float(row[4]) if len(row) > 4 and row[4].strip() else DEFAULT_ELEVATION_M
        except ValueError as exc:
            raise InputFileError(f"{source}: bad station row {row!r}: {exc}") from exc
        if number != len(names) + 1:
            raise InputFileError(f"{source}: station {name} out of order (expected DSA-{len(names) + 1:03d})")
        names.append(name)
        lats.append(lat)
        lons.append(lon)
        hs.append(h)
    if not names:
        raise InputFileError(f"{source}: no station rows found")
    return StationTable(
        antenna_names=tuple(names),
        antenna_numbers=np.arange(len(names)),
        latitude_deg=np.array(lats),
        longitude_deg=np.array(lons),
        height_m=np.array(hs),
    )


@lru_cache(maxsize=4)
def load_stations(path: str | Path | None = None) -> StationTable:
    """Read the station table (the packaged one by default).

    Raises
    ------
    InputFileError
        If the file is missing or a row cannot be parsed.
    """
    path = _TABLE if path is None else path
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read station table: {exc}") from exc
    return _parse(iter(text.splitlines()), str(path))


def _centroid() -> EarthLocation:
    st = load_stations()
    return EarthLocation.from_geodetic(
        float(np.mean(st.longitude_deg)) * u.deg,
        float(np.mean(st.latitude_deg)) * u.deg,
        float(np.mean(st.height_m)) * u.m,
    )


DSA110_LOCATION: EarthLocation = _centroid()
"""Array reference position: the centroid of the 117 stations (see module docstring)."""


def select_antennas(n: int = N_ACTIVE_ANTENNAS, *, nstations: int = NSTATIONS) -> np.ndarray:
    """Antenna numbers of the ``n`` stations that carry data (sorted).

    ``ceil(n * 15 / 96)`` outriggers (at most 15) and the rest from the 102 core
    stations, each subset evenly spaced over its stations. ``n = 96`` gives all
    15 outriggers and 81 core antennas; ``n = 117`` gives every station.

    Raises
    ------
    ValueError
        If ``n`` is not in 1 ... 117.
    """
    if not 1 <= n <= nstations:
        raise ValueError(f"number of antennas must be in 1..{nstations}, got {n}")
    ncore_total = nstations - N_OUTRIGGERS
    n_out = min(N_OUTRIGGERS, math.ceil(n * N_OUTRIGGERS / N_ACTIVE_ANTENNAS))
    if n == 1:
        n_out = 0
    n_core = n - n_out
    if n_core > ncore_total:
        n_core, n_out = ncore_total, n - ncore_total
    core = np.round(np.linspace(0, ncore_total - 1, n_core)).astype(int) if n_core else np.array([], int)
    out = (
        ncore_total + np.round(np.linspace(0, N_OUTRIGGERS - 1, n_out)).astype(int)
        if n_out
        else np.array([], int)
    )
    sel = np.concatenate([core, out])
    assert np.unique(sel).size == n  # noqa: S101 - linspace over >= n points never repeats
    return np.sort(sel)


@contextlib.contextmanager
def offline_iers() -> Iterator[None]:
    """Use astropy's bundled Earth-orientation tables, never the network.

    astropy otherwise tries to download IERS-A for recent dates and fails
    offline ("interpolating from IERS_Auto using predictive values that are
    more than 30 days old"). Times beyond the bundled table still fail.
    """
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        yield


def lst_rad(time_jd: np.ndarray, location: EarthLocation | None = None) -> np.ndarray:
    """Apparent local sidereal time (radians), as pyuvdata computes ``lst_array``."""
    from pyuvdata.utils.times import get_lst_for_time

    with offline_iers():
        return get_lst_for_time(np.atleast_1d(np.asarray(time_jd, float)), telescope_loc=(DSA110_LOCATION if location is None else location))


def icrs_to_apparent(
    ra_rad: np.ndarray, dec_rad: np.ndarray, time_jd: np.ndarray, location: EarthLocation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Topocentric apparent RA/Dec (radians) of ICRS positions, as pyuvdata's ``phase()`` computes them.

    All inputs broadcast to one shape.

    Parameters
    ----------
    ra_rad
        ICRS right ascension(s) (rad).
    dec_rad
        ICRS declination(s) (rad).
    time_jd
        Time(s) (JD, UTC).
    location
        The observatory (astropy ``EarthLocation``); None: :data:`DSA110_LOCATION`.

    Returns
    -------
    app_ra, app_dec : numpy.ndarray
        Apparent (true equator and equinox of date, topocentric) RA and Dec (rad), the broadcast shape.
    """
    from pyuvdata.utils.phasing import transform_icrs_to_app

    ra, dec, t = np.broadcast_arrays(np.asarray(ra_rad, float), np.asarray(dec_rad, float), np.asarray(time_jd, float))
    with offline_iers():
        app_ra, app_dec = transform_icrs_to_app(
            time_array=t.ravel(), ra=ra.ravel(), dec=dec.ravel(), telescope_loc=(DSA110_LOCATION if location is None else location)
        )
    return app_ra.reshape(ra.shape), app_dec.reshape(ra.shape)


def apparent_to_icrs(
    app_ra_rad: np.ndarray, app_dec_rad: np.ndarray, time_jd: np.ndarray, location: EarthLocation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec (radians) of topocentric apparent positions (inverse of :func:`icrs_to_apparent`).

    For the meridian at time ``t`` pass ``app_ra = lst_rad(t)`` and the pointing's
    apparent declination (the ``phase_center_dec`` header keyword).

    Parameters
    ----------
    app_ra_rad
        Topocentric apparent right ascension(s) (rad).
    app_dec_rad
        Topocentric apparent declination(s) (rad).
    time_jd
        Time(s) (JD, UTC).
    location
        The observatory (astropy ``EarthLocation``); None: :data:`DSA110_LOCATION`.

    Returns
    -------
    ra, dec : numpy.ndarray
        ICRS RA and Dec (rad), the broadcast shape of the inputs.
    """
    from pyuvdata.utils.phasing import transform_app_to_icrs

    ra, dec, t = np.broadcast_arrays(np.asarray(app_ra_rad, float), np.asarray(app_dec_rad, float), np.asarray(time_jd, float))
    with offline_iers():
        icrs_ra, icrs_dec = transform_app_to_icrs(
            time_array=t.ravel(), app_ra=ra.ravel(), app_dec=dec.ravel(), telescope_loc=(DSA110_LOCATION if location is None else location)
        )
    return np.asarray(icrs_ra).reshape(ra.shape), np.asarray(icrs_dec).reshape(ra.shape)


def meridian_icrs(
    time_jd: np.ndarray | float, pointing_dec_rad: float, location: EarthLocation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA/Dec (radians) of the drift-scan pointing (meridian, apparent Dec) at ``time_jd``.

    ``pointing_dec_rad`` is the ``phase_center_dec`` header keyword (apparent
    declination); the pointing's apparent RA is the apparent LST.

    Parameters
    ----------
    time_jd
        Time(s) (JD, UTC); a scalar becomes shape (1,).
    pointing_dec_rad
        Apparent declination (rad) of the drift scan.
    location
        The observatory (astropy ``EarthLocation``); None: :data:`DSA110_LOCATION`.

    Returns
    -------
    ra, dec : numpy.ndarray
        ICRS RA and Dec (rad) of the pointing, shape ``atleast_1d(time_jd).shape``.
    """
    t = np.atleast_1d(np.asarray(time_jd, float))
    return apparent_to_icrs(lst_rad(t, location), np.full(t.shape, float(pointing_dec_rad)), t, location)
