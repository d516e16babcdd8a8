"""What a converted Measurement Set says about itself: times, antennas, frequencies, pointing.

Everything the calibration stage needs to predict visibilities or choose a
calibrator is read from the MS written by :mod:`contimg.conversion` (never from
the UVH5 files): the integration times, the antennas with data and their
positions, the telescope location (the non-standard ``TELESCOPE_LOCATION``
column of OBSERVATION, as pyuvdata writes it; the mean antenna position if it
is absent), the single spectral window's channel frequencies and the ICRS
phase center of the FIELD table.

Pointing
--------
Read from the MS by :func:`contimg.pointing.read_pointing`: a DSA-110 drift
scan points at the meridian at a fixed *apparent* declination (the conversion
places the phase center at the meridian at the group's midpoint, so the phase
center's apparent declination is the pointing's); a pointed observation of
another array has a fixed ICRS pointing (its POINTING table, or its FIELD's
reference direction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contimg.beam import dish_diameter_from_antennas
from contimg.errors import InputFileError
from contimg.pointing import Pointing, earth_location, read_pointing, read_telescope_xyz

log = logging.getLogger(__name__)

__all__ = ["MsMeta", "read_ms_meta"]

_MJD_JD = 2400000.5


@dataclass(frozen=True)
class MsMeta:
    """Metadata of a one-field, one-window Measurement Set.

    Attributes
    ----------
    path
        The MS.
    time_jd
        Unique integration centres (UTC JD), ascending, shape (Ntimes,).
    lst_rad
        Apparent LST at each of ``time_jd``.
    integration_time_s
        Integration length (s).
    freq_array
        Channel frequencies (Hz), shape (Nfreqs,).
    antenna_numbers
        Antennas appearing in the main table (ANTENNA1 or ANTENNA2).
    antenna_names
        Their names (ANTENNA NAME).
    antenna_positions
        Their ECEF offsets from the telescope location (m), shape (Nants, 3).
    telescope_xyz
        Telescope location, ITRF (m).
    phase_center_ra, phase_center_dec
        ICRS phase center (radians).
    pointing
        Where the dishes point (:class:`contimg.pointing.Pointing`), see the module docstring.
    Npols
        Correlations per row.
    """

    path: Path
    time_jd: np.ndarray
    lst_rad: np.ndarray
    integration_time_s: float
    freq_array: np.ndarray
    antenna_numbers: np.ndarray
    antenna_names: list[str]
    antenna_positions: np.ndarray
    telescope_xyz: np.ndarray
    phase_center_ra: float
    phase_center_dec: float
    pointing: Pointing
    Npols: int
    dish_diameter_m: float = 4.65
    """The antennas' dish diameter from the ANTENNA table (the primary beam of the model and the selection)."""

    @property
    def Ntimes(self) -> int:  # noqa: N802 - pyuvdata naming
        return int(self.time_jd.size)

    @property
    def Nfreqs(self) -> int:  # noqa: N802
        return int(self.freq_array.size)

    @property
    def Nants(self) -> int:  # noqa: N802
        return int(self.antenna_numbers.size)

    @property
    def start_mjd(self) -> float:
        """Start of the first integration (MJD)."""
        return float(self.time_jd[0] - _MJD_JD - 0.5 * self.integration_time_s / 86400.0)

    @property
    def end_mjd(self) -> float:
        """End of the last integration (MJD)."""
        return float(self.time_jd[-1] - _MJD_JD + 0.5 * self.integration_time_s / 86400.0)

    @property
    def mid_mjd(self) -> float:
        return 0.5 * (self.start_mjd + self.end_mjd)

    @property
    def location(self):
        """The telescope's astropy ``EarthLocation``."""
        return earth_location(self.telescope_xyz)


def read_ms_meta(ms_path: str | Path) -> MsMeta:
    """Read :class:`MsMeta` from a Measurement Set written by the conversion.

    Raises
    ------
    InputFileError
        If the MS cannot be opened, has more than one field or spectral window,
        or has no rows.
    """
    from casacore import tables

    ms_path = Path(ms_path)
    p = str(ms_path)
    try:
        with tables.table(p, ack=False) as tb:
            if tb.nrows() == 0:
                raise InputFileError(f"{ms_path}: the Measurement Set has no rows")
            time_s = tb.getcol("TIME")
            interval = float(np.median(tb.getcol("INTERVAL", 0, min(tb.nrows(), 1000))))
            ant = np.union1d(tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2"))
            ddid = np.unique(tb.getcol("DATA_DESC_ID"))
            fields = np.unique(tb.getcol("FIELD_ID"))
            npol = int(tb.getcell("FLAG", 0).shape[1])
        with tables.table(p + "/SPECTRAL_WINDOW", ack=False) as t:
            if t.nrows() != 1 or ddid.size != 1:
                raise InputFileError(f"{ms_path}: calibration needs one spectral window, found {t.nrows()}")
            freq = np.asarray(t.getcell("CHAN_FREQ", 0), float)
        with tables.table(p + "/FIELD", ack=False) as t:
            if t.nrows() != 1 or fields.size != 1:
                raise InputFileError(f"{ms_path}: calibration needs one field, found {t.nrows()}")
            ref = t.getcolkeyword("PHASE_DIR", "MEASINFO").get("Ref", "J2000")
            ra0, dec0 = np.asarray(t.getcell("PHASE_DIR", 0), float).reshape(-1)[:2]
        with tables.table(p + "/ANTENNA", ack=False) as t:
            names_all = list(t.getcol("NAME"))
            pos_all = np.asarray(t.getcol("POSITION"), float)
            diameters = np.asarray(t.getcol("DISH_DIAMETER"), float)
        if ref not in ("ICRS", "J2000"):
            raise InputFileError(f"{ms_path}: phase center frame {ref} is not ICRS/J2000")
        time_jd = np.unique(time_s) / 86400.0 + _MJD_JD
        xyz = read_telescope_xyz(ms_path, ant)
        pointing = read_pointing(ms_path, time_jd=time_jd, telescope_xyz=xyz)
    except RuntimeError as exc:  # casacore raises RuntimeError for unreadable tables
        raise InputFileError(f"{ms_path}: cannot read the Measurement Set: {exc}") from exc
    from contimg.stations import lst_rad

    lst = np.asarray(lst_rad(time_jd, pointing.location), float)
    log.debug("%s: %d times, %d antennas, %d channels, %.2f m dishes, pointing %s",
              ms_path, time_jd.size, ant.size, freq.size, float(np.median(diameters[ant])), pointing.describe())
    return MsMeta(
        path=ms_path, time_jd=time_jd, lst_rad=lst, integration_time_s=interval, freq_array=freq,
        antenna_numbers=ant.astype(int), antenna_names=[names_all[a] for a in ant],
        antenna_positions=pos_all[ant] - xyz[None, :], telescope_xyz=xyz,
        phase_center_ra=float(ra0), phase_center_dec=float(dec0), pointing=pointing, Npols=npol,
        dish_diameter_m=dish_diameter_from_antennas(diameters[ant], ms_path=ms_path),
    )
