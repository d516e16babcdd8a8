"""One description of a Measurement Set: :class:`MsModel`, with pyuvdata's names, read once by :func:`read_ms`.

Every stage that needs to know what an MS holds uses this one object: the conversion (the MS it is about to
write, built from the UVH5 headers by :func:`contimg.conversion.plan.plan_group`, and the MS it wrote, read
back and compared with that), calibration (times, antennas with data, channels, pointing, dishes) and imaging
(uv coverage, band, flags, pointing). A stage reads it once and passes it on.

Names and meanings (pyuvdata's ``UVData``/``UVCal`` where they have one)
-------------------------------------------------------------------------
``Nblts`` rows (baseline-times), ``Nbls`` baselines (autocorrelations count), ``Ntimes`` integrations,
``Nfreqs`` channels, ``Npols`` correlations; ``Nants_telescope`` antennas in the ANTENNA table,
``Nants_data`` of them in ANTENNA1 or ANTENNA2. There is no bare ``Nants``: the old containers used it for
both, and they are not the same (an MS from the conversion has an ANTENNA row for every number up to the
largest, ``unused-<n>`` where the group has no antenna).

``time_array``
    The unique integration centres (JD, UTC), ascending, shape (Ntimes,): UVCal's meaning, not UVData's
    per-row times. ``time_index`` gives each row's integration.
``lst_array``
    Apparent local sidereal time (rad) at each of ``time_array``, as pyuvdata computes it.
``integration_time``, ``channel_width``
    One value each (s, Hz), positive: the median INTERVAL and the first channel's width.
``freq_array``
    Channel centres (Hz) of the one spectral window, ascending, in the data's channel order.
``polarization_array``
    The correlations in the data's order as AIPS codes, as pyuvdata: -5 XX, -6 YY, -7 XY, -8 YX, -1 RR,
    -2 LL, -3 RL, -4 LR, 1-4 Stokes I, Q, U, V (the MS's CORR_TYPE holds CASA's codes: :data:`CASA_TO_AIPS`).
``antenna_numbers``, ``antenna_names``, ``antenna_positions``, ``antenna_diameters``
    The telescope's antennas, one per ANTENNA row (its index is the number); positions are ECEF offsets (m)
    from ``telescope_location``. ``ant_array`` (UVCal's name) are the numbers with data, and
    ``data_antenna_names`` / ``data_antenna_positions`` their names and offsets.
``telescope_location``
    ITRF position (m) of the array: OBSERVATION::TELESCOPE_LOCATION (pyuvdata's and contimg's
    non-standard column), else the mean position of the antennas with data (:mod:`contimg.pointing`).
``phase_center_ra``, ``phase_center_dec``
    The one field's phase centre (rad, RA in [0, 2 pi)), frame ``phase_center_frame`` (ICRS or J2000).
``pointing``
    Where the dishes point (:func:`contimg.pointing.read_pointing`).
``ant_1_array``, ``ant_2_array``, ``uvw_array``, ``time_index``
    Per row; ``uvw_array`` as the MS stores it (m, CASA's sign: the negative of pyuvdata's). None in a model
    of an MS not written yet (the conversion plan), whose rows are described by the counts only.
``flagged_fraction``
    Flagged fraction of the cross-correlation visibilities; None unless read with ``flags=True``.

:meth:`MsModel.check` checks that the counts agree with the arrays and that the values make sense, and
raises :class:`~contimg.errors.InputFileError` naming the MS and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

from contimg.errors import InputFileError
from contimg.pointing import Pointing, earth_location, read_pointing, read_telescope_xyz

log = logging.getLogger(__name__)

__all__ = ["AIPS_TO_CASA", "CASA_TO_AIPS", "MJD_JD", "MsModel", "as_model", "read_ms"]

MJD_JD = 2400000.5
"""JD of MJD 0."""

AIPS_TO_CASA = {1: 1, 2: 2, 3: 3, 4: 4, -1: 5, -3: 6, -4: 7, -2: 8, -5: 9, -7: 10, -8: 11, -6: 12}
"""pyuvdata (AIPS) polarization codes → CASA Stokes enum (I=1 ... V=4, RR=5, RL=6, LR=7, LL=8, XX=9, XY=10,
YX=11, YY=12)."""
CASA_TO_AIPS = {casa: aips for aips, casa in AIPS_TO_CASA.items()}
"""CASA Stokes enum (the MS's CORR_TYPE) → pyuvdata (AIPS) codes."""
UNPOLARIZED_RESPONSE = {1: 1.0, 2: 0.0, 3: 0.0, 4: 0.0, -1: 1.0, -2: 1.0, -3: 0.0, -4: 0.0,
                        -5: 1.0, -6: 1.0, -7: 0.0, -8: 0.0}
"""What each correlation (AIPS code) holds of an unpolarised source of flux 1 (CASA's convention: I = (XX + YY)/2)."""

_FLAG_CHUNK_ROWS = 20_000
_EARTH_RADIUS_RANGE_M = (6.2e6, 6.5e6)


def _frozen(value: Any, dtype: Any, *, vectors: bool = False) -> np.ndarray:
    """A read-only copy; ``vectors``: an empty one is shaped (0, 3)."""
    arr = np.array(value, dtype=dtype, copy=True)
    if vectors and arr.size == 0:
        arr = arr.reshape(0, 3)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class MsModel:
    """The metadata of a one-field, one-spectral-window Measurement Set (see the module docstring).

    Build it with :func:`read_ms` (an MS on disk) or, for an MS about to be written, from what is known
    (:func:`contimg.conversion.plan.plan_group`); call :meth:`check` on one built by hand. Arrays are
    read-only copies.
    """

    path: Path | None
    """The MS; None for an MS not written yet."""
    Nants_data: int
    Nants_telescope: int
    Nbls: int
    Nblts: int
    Nfreqs: int
    Npols: int
    Ntimes: int
    freq_array: np.ndarray
    channel_width: float
    polarization_array: np.ndarray
    time_array: np.ndarray
    lst_array: np.ndarray
    integration_time: float
    antenna_numbers: np.ndarray
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray
    antenna_diameters: np.ndarray
    telescope_name: str
    telescope_location: np.ndarray
    phase_center_ra: float
    phase_center_dec: float
    pointing: Pointing
    phase_center_frame: str = "ICRS"
    ant_1_array: np.ndarray | None = None
    ant_2_array: np.ndarray | None = None
    uvw_array: np.ndarray | None = None
    time_index: np.ndarray | None = None
    """(Nblts,) index into ``time_array`` of each row."""
    flagged_fraction: float | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.path is not None:
            put(self, "path", Path(self.path))
        for name in ("Nants_data", "Nants_telescope", "Nbls", "Nblts", "Nfreqs", "Npols", "Ntimes"):
            put(self, name, int(getattr(self, name)))
        for name in ("channel_width", "integration_time", "phase_center_dec"):
            put(self, name, float(getattr(self, name)))
        put(self, "phase_center_ra", float(self.phase_center_ra) % (2 * math.pi))
        for name in ("freq_array", "time_array", "lst_array", "antenna_diameters", "telescope_location"):
            put(self, name, _frozen(getattr(self, name), np.float64))
        put(self, "antenna_positions", _frozen(self.antenna_positions, np.float64, vectors=True))
        put(self, "polarization_array", _frozen(self.polarization_array, np.int64))
        put(self, "antenna_numbers", _frozen(self.antenna_numbers, np.int64))
        put(self, "antenna_names", tuple(str(n) for n in self.antenna_names))
        put(self, "telescope_name", str(self.telescope_name))
        put(self, "phase_center_frame", str(self.phase_center_frame).upper())
        for name in ("ant_1_array", "ant_2_array", "time_index"):
            if getattr(self, name) is not None:
                put(self, name, _frozen(getattr(self, name), np.int64))
        if self.uvw_array is not None:
            put(self, "uvw_array", _frozen(self.uvw_array, np.float64, vectors=True))
        if self.flagged_fraction is not None:
            put(self, "flagged_fraction", float(self.flagged_fraction))

    # ------------------------------------------------------------------ check
    @property
    def label(self) -> str:
        """The MS's path for messages (``the planned MS`` when not written yet)."""
        return str(self.path) if self.path is not None else "the planned MS"

    @property
    def has_rows(self) -> bool:
        """Whether the per-row arrays (``ant_1_array`` ...) are known (an MS that was read)."""
        return self.ant_1_array is not None

    def check(self) -> None:
        """Check that the counts agree with the arrays and that the values make sense.

        Raises
        ------
        InputFileError
            Naming the MS and the first problem found: a count that disagrees with an array's shape,
            channels not ascending, a channel width, integration time or dish diameter that is not
            positive, unknown or repeated polarizations, times not ascending, repeated antenna numbers,
            rows naming antennas or integrations that do not exist, more rows than baselines x times,
            a telescope location off the Earth's surface or a phase centre off the sky.
        """
        problems = self._shape_problems() or self._value_problems()
        if problems:
            raise InputFileError(f"{self.label}: inconsistent MS model: {problems[0]}")
        _ = self.dish_diameter  # raises for no or mixed dish diameters (naming the MS)

    def _shape_problems(self) -> list[str]:
        out = []
        expect = {
            "freq_array": (self.Nfreqs,), "polarization_array": (self.Npols,), "time_array": (self.Ntimes,),
            "lst_array": (self.Ntimes,), "antenna_numbers": (self.Nants_telescope,),
            "antenna_positions": (self.Nants_telescope, 3), "antenna_diameters": (self.Nants_telescope,),
            "telescope_location": (3,),
        }
        for name, shape in expect.items():
            got = getattr(self, name).shape
            if got != shape:
                out.append(f"{name} has shape {got}, expected {shape} from the counts")
        if len(self.antenna_names) != self.Nants_telescope:
            out.append(f"{len(self.antenna_names)} antenna_names for Nants_telescope = {self.Nants_telescope}")
        rows = {n: getattr(self, n) for n in ("ant_1_array", "ant_2_array", "uvw_array", "time_index")}
        given = [n for n, v in rows.items() if v is not None]
        if given and len(given) != len(rows):
            out.append(f"per-row arrays {', '.join(given)} given without "
                       f"{', '.join(n for n in rows if n not in given)}")
        elif given:
            for name, arr in rows.items():
                shape = (self.Nblts, 3) if name == "uvw_array" else (self.Nblts,)
                if arr.shape != shape:
                    out.append(f"{name} has shape {arr.shape}, expected {shape} from Nblts = {self.Nblts}")
        if self.Nants_data > self.Nants_telescope:
            out.append(f"Nants_data = {self.Nants_data} exceeds Nants_telescope = {self.Nants_telescope}")
        if self.Nblts > self.Nbls * self.Ntimes:
            out.append(f"Nblts = {self.Nblts} rows exceed Nbls x Ntimes = {self.Nbls} x {self.Ntimes}")
        return out

    def _value_problems(self) -> list[str]:
        out = []
        if self.Nfreqs < 1 or self.Ntimes < 1 or self.Npols < 1:
            out.append(f"no data axes (Nfreqs {self.Nfreqs}, Ntimes {self.Ntimes}, Npols {self.Npols})")
        if not np.all(np.isfinite(self.freq_array)) or np.any(np.diff(self.freq_array) <= 0):
            out.append("channel frequencies are not ascending (contimg needs one window in ascending frequency)")
        if not (math.isfinite(self.channel_width) and self.channel_width > 0):
            out.append(f"channel width {self.channel_width} Hz is not positive")
        if not (math.isfinite(self.integration_time) and self.integration_time > 0):
            out.append(f"integration time {self.integration_time} s is not positive")
        pols = self.polarization_array.tolist()
        unknown = sorted(set(pols) - set(AIPS_TO_CASA))
        if unknown or len(set(pols)) != len(pols):
            out.append(f"polarizations {pols} are not distinct known codes (unknown: {unknown})")
        if not np.all(np.isfinite(self.time_array)) or np.any(np.diff(self.time_array) <= 0):
            out.append("integration times are not ascending")
        if not np.all(np.isfinite(self.lst_array)):
            out.append("lst_array is not finite")
        if np.unique(self.antenna_numbers).size != self.antenna_numbers.size or np.any(self.antenna_numbers < 0):
            out.append("antenna numbers are negative or repeated")
        if not np.all(np.isfinite(self.antenna_positions)):
            out.append("antenna positions are not finite")
        radius = float(np.linalg.norm(self.telescope_location))
        if not _EARTH_RADIUS_RANGE_M[0] < radius < _EARTH_RADIUS_RANGE_M[1]:
            out.append(f"telescope location {self.telescope_location.tolist()} is {radius / 1e3:.0f} km from the "
                       "Earth's centre")
        if not (math.isfinite(self.phase_center_ra) and abs(self.phase_center_dec) <= math.pi / 2):
            out.append(f"phase centre ({self.phase_center_ra}, {self.phase_center_dec}) rad is not on the sky")
        if self.phase_center_frame not in ("ICRS", "J2000"):
            out.append(f"phase centre frame {self.phase_center_frame} is not ICRS/J2000")
        if self.flagged_fraction is not None and not 0.0 <= self.flagged_fraction <= 1.0:
            out.append(f"flagged fraction {self.flagged_fraction} is not in [0, 1]")
        if self.has_rows and not out:
            out += self._row_problems()
        return out

    def _row_problems(self) -> list[str]:
        assert self.ant_1_array is not None and self.ant_2_array is not None and self.time_index is not None
        out = []
        used = np.union1d(self.ant_1_array, self.ant_2_array)
        missing = np.setdiff1d(used, self.antenna_numbers)
        if missing.size:
            out.append(f"rows name antennas {missing[:5].tolist()} that have no ANTENNA row")
        if used.size != self.Nants_data:
            out.append(f"{used.size} antennas appear in the rows, Nants_data = {self.Nants_data}")
        nbls = np.unique(self._baseline_key).size
        if nbls != self.Nbls:
            out.append(f"{nbls} baselines appear in the rows, Nbls = {self.Nbls}")
        if self.Nblts and (self.time_index.min() < 0 or self.time_index.max() >= self.Ntimes):
            out.append(f"time_index outside 0 ... {self.Ntimes - 1}")
        if self.uvw_array is not None and not np.all(np.isfinite(self.uvw_array)):
            out.append("uvw_array is not finite")
        return out

    # ------------------------------------------------------------------ time
    @property
    def start_mjd(self) -> float:
        """Start of the first integration (MJD)."""
        return float(self.time_array[0] - MJD_JD - 0.5 * self.integration_time / 86400.0)

    @property
    def end_mjd(self) -> float:
        """End of the last integration (MJD)."""
        return float(self.time_array[-1] - MJD_JD + 0.5 * self.integration_time / 86400.0)

    @property
    def mid_mjd(self) -> float:
        """Middle of the observation (MJD)."""
        return 0.5 * (self.start_mjd + self.end_mjd)

    # ------------------------------------------------------------------ frequency
    @property
    def freq_min(self) -> float:
        """Lowest channel centre (Hz)."""
        return float(self.freq_array[0])

    @property
    def freq_max(self) -> float:
        """Highest channel centre (Hz)."""
        return float(self.freq_array[-1])

    @property
    def freq_mean(self) -> float:
        """Mean channel centre (Hz): the reference frequency of our MFS images."""
        return float(np.mean(self.freq_array))

    @property
    def freq_lower_edge(self) -> float:
        """Lower edge (Hz) of the lowest channel."""
        return self.freq_min - 0.5 * self.channel_width

    @property
    def freq_upper_edge(self) -> float:
        """Upper edge (Hz) of the highest channel."""
        return self.freq_max + 0.5 * self.channel_width

    @property
    def unpolarized_response(self) -> np.ndarray:
        """(Npols,) what each correlation holds of an unpolarised source of flux 1.

        1 in the parallel hands (XX, YY, RR, LL) and Stokes I, 0 in the cross hands (XY, YX, RL, LR) and
        Stokes Q, U, V (CASA's convention, I = (XX + YY) / 2).
        """
        return np.array([UNPOLARIZED_RESPONSE[int(p)] for p in self.polarization_array])

    # ------------------------------------------------------------------ site and antennas
    @cached_property
    def location(self):
        """The array's astropy ``EarthLocation``."""
        return earth_location(self.telescope_location)

    @cached_property
    def telescope_lla(self) -> tuple[float, float, float]:
        """Geodetic latitude, longitude (rad) and altitude (m) of ``telescope_location`` (WGS84)."""
        loc = self.location
        return float(loc.lat.rad), float(loc.lon.rad), float(loc.height.to_value("m"))

    def _rows(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        if self.ant_1_array is None or self.ant_2_array is None:
            raise ValueError(f"{self.label}: the model has no rows ({what} needs ANTENNA1/ANTENNA2)")
        return self.ant_1_array, self.ant_2_array

    @cached_property
    def ant_array(self) -> np.ndarray:
        """(Nants_data,) numbers of the antennas with data (in ANTENNA1 or ANTENNA2), ascending."""
        a1, a2 = self._rows("ant_array")
        return np.union1d(a1, a2)

    def antenna_index(self, numbers) -> np.ndarray:
        """Indices into the telescope's antenna arrays (``antenna_numbers`` ...) of antenna ``numbers``.

        Raises
        ------
        ValueError
            If a number is not one of ``antenna_numbers``.
        """
        numbers = np.asarray(numbers, np.int64)
        order = np.argsort(self.antenna_numbers)
        known = self.antenna_numbers[order]
        pos = np.searchsorted(known, numbers)
        found = pos < known.size
        found[found] = known[pos[found]] == numbers[found]
        if not found.all():
            raise ValueError(f"{self.label}: antennas {numbers[~found][:5].tolist()} are not in the ANTENNA table")
        return order[pos]

    @cached_property
    def data_antenna_names(self) -> tuple[str, ...]:
        """Names of the antennas with data, in ``ant_array`` order."""
        return tuple(self.antenna_names[i] for i in self.antenna_index(self.ant_array))

    @cached_property
    def data_antenna_positions(self) -> np.ndarray:
        """(Nants_data, 3) ECEF offsets (m) of the antennas with data from ``telescope_location``."""
        return self.antenna_positions[self.antenna_index(self.ant_array)]

    @cached_property
    def dish_diameter(self) -> float:
        """The dish diameter (m) of the antennas with data (of all antennas when the rows are unknown).

        Raises
        ------
        InputFileError
            If no positive diameter is given or the dishes differ (:func:`contimg.beam.dish_diameter_from_antennas`).
        """
        from contimg.beam import dish_diameter_from_antennas

        d = self.antenna_diameters[self.antenna_index(self.ant_array)] if self.has_rows else self.antenna_diameters
        return dish_diameter_from_antennas(d, ms_path=self.label)

    # ------------------------------------------------------------------ rows
    @property
    def _baseline_key(self) -> np.ndarray:
        a1, a2 = self._rows("baselines")
        return a1.astype(np.int64) * 1_000_003 + a2

    @cached_property
    def cross_mask(self) -> np.ndarray:
        """(Nblts,) True for cross-correlation rows (ANTENNA1 != ANTENNA2)."""
        a1, a2 = self._rows("cross_mask")
        return a1 != a2

    @cached_property
    def baseline_index(self) -> np.ndarray:
        """(Nblts,) index 0 ... Nbls-1 of each row's baseline (baselines ordered by antenna pair)."""
        _, index = np.unique(self._baseline_key, return_inverse=True)
        return index.ravel()

    @cached_property
    def max_baseline(self) -> float:
        """Longest projected baseline in the uv plane, max sqrt(u^2 + v^2) over cross-correlations (m)."""
        if self.uvw_array is None:
            raise ValueError(f"{self.label}: the model has no rows (max_baseline needs UVW)")
        uvw = self.uvw_array[self.cross_mask]
        return float(np.hypot(uvw[:, 0], uvw[:, 1]).max()) if uvw.size else 0.0

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (str/int/float/list/dict/None); :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Pointing):
                value = dataclasses.asdict(value)
                value["telescope_xyz"] = list(value["telescope_xyz"])
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MsModel":
        """Inverse of :meth:`to_dict` (the model is checked).

        Raises
        ------
        InputFileError
            If the dict does not describe a consistent MS (:meth:`check`).
        """
        d = dict(d)
        p = dict(d["pointing"])
        p["telescope_xyz"] = tuple(float(v) for v in p["telescope_xyz"])
        d["pointing"] = Pointing(**p)
        model = cls(**d)
        model.check()
        return model


# ---------------------------------------------------------------------------- reading
def _flagged_fraction(t, nrows: int, cross: np.ndarray) -> float:
    """Flagged fraction of the cross-correlation visibilities (FLAG or FLAG_ROW), read in row chunks."""
    nflag = nvis = 0
    for start in range(0, nrows, _FLAG_CHUNK_ROWS):
        n = min(_FLAG_CHUNK_ROWS, nrows - start)
        c = cross[start:start + n]
        if not c.any():
            continue
        flag = t.getcol("FLAG", start, n)[c]
        frow = t.getcol("FLAG_ROW", start, n)[c]
        f = flag | frow[:, None, None]
        nflag += int(f.sum())
        nvis += int(f.size)
    return nflag / nvis if nvis else 1.0


def read_ms(path: str | os.PathLike, *, data_column: str | None = None, flags: bool = False) -> MsModel:
    """Read the :class:`MsModel` of a one-field, one-spectral-window Measurement Set, and check it.

    Reads the main table's cheap columns (ANTENNA1/2, TIME, INTERVAL, UVW, DATA_DESC_ID, FIELD_ID) and the
    subtables; the pointing with :func:`contimg.pointing.read_pointing`.

    Parameters
    ----------
    path
        The Measurement Set.
    data_column
        A column that must exist (e.g. the one to be imaged); None: no requirement.
    flags
        Also scan FLAG and FLAG_ROW (in row chunks) for ``flagged_fraction``.

    Returns
    -------
    MsModel
        The checked model, with the per-row arrays.

    Raises
    ------
    InputFileError
        Naming the MS: it is missing or unreadable, lacks ``data_column``, has no rows, more than one field
        or spectral window, a phase centre not in ICRS/J2000, or metadata that fail :meth:`MsModel.check`.
    """
    from casacore.tables import table

    from contimg.stations import lst_rad

    ms = Path(path)
    if not (ms / "table.dat").exists():
        raise InputFileError(f"{ms}: not a Measurement Set (no table.dat)")
    p = str(ms)
    try:
        with table(p, ack=False) as t:
            cols = t.colnames()
            if data_column is not None and data_column not in cols:
                hint = "; calibrate it (or apply the calibration) first" if data_column == "CORRECTED_DATA" else ""
                raise InputFileError(f"{ms}: has no {data_column} column (columns: "
                                     f"{', '.join(c for c in cols if c.endswith('DATA'))}){hint}")
            nrows = t.nrows()
            if nrows == 0:
                raise InputFileError(f"{ms}: has no rows")
            time_s = t.getcol("TIME")
            interval = float(np.median(t.getcol("INTERVAL", 0, min(nrows, 1000))))
            a1 = np.asarray(t.getcol("ANTENNA1"), np.int64)
            a2 = np.asarray(t.getcol("ANTENNA2"), np.int64)
            uvw = np.asarray(t.getcol("UVW"), float)
            ddids = np.unique(t.getcol("DATA_DESC_ID"))
            fields = np.unique(t.getcol("FIELD_ID"))
            flagged = _flagged_fraction(t, nrows, a1 != a2) if flags else None
        with table(p + "/FIELD", ack=False) as t:
            nfield = t.nrows()
            if nfield != 1 or fields.size != 1:
                raise InputFileError(f"{ms}: contimg needs exactly one field, found {max(nfield, fields.size)}")
            if int(fields[0]) != 0:
                raise InputFileError(f"{ms}: rows name field {int(fields[0])}, the FIELD table has one row")
            frame = str(t.getcolkeyword("PHASE_DIR", "MEASINFO").get("Ref", "J2000")).upper()
            ra0, dec0 = np.asarray(t.getcell("PHASE_DIR", 0), float).reshape(-1)[:2]
        with table(p + "/SPECTRAL_WINDOW", ack=False) as t:
            nspw = t.nrows()
            if nspw != 1 or ddids.size != 1:
                raise InputFileError(f"{ms}: contimg needs exactly one spectral window, found {max(nspw, ddids.size)}")
            freq = np.asarray(t.getcell("CHAN_FREQ", 0), float)
            width = float(abs(np.asarray(t.getcell("CHAN_WIDTH", 0), float).reshape(-1)[0]))
        with table(p + "/DATA_DESCRIPTION", ack=False) as t:
            if not 0 <= int(ddids[0]) < t.nrows() or int(t.getcell("SPECTRAL_WINDOW_ID", int(ddids[0]))) != 0:
                raise InputFileError(f"{ms}: rows name data description {int(ddids[0])}, which is not the one "
                                     "spectral window's")
            pol_id = int(t.getcell("POLARIZATION_ID", int(ddids[0])))
        with table(p + "/POLARIZATION", ack=False) as t:
            corr = [int(c) for c in np.asarray(t.getcell("CORR_TYPE", pol_id)).reshape(-1)]
        with table(p + "/ANTENNA", ack=False) as t:
            names = [str(n) for n in t.getcol("NAME")]
            positions = np.asarray(t.getcol("POSITION"), float).reshape(-1, 3)
            diameters = np.asarray(t.getcol("DISH_DIAMETER"), float)
        with table(p + "/OBSERVATION", ack=False) as t:
            telescope = str(t.getcell("TELESCOPE_NAME", 0)) if t.nrows() else ""
        if frame not in ("ICRS", "J2000"):
            raise InputFileError(f"{ms}: phase center frame {frame} is not ICRS/J2000")
        unknown = [c for c in corr if c not in CASA_TO_AIPS]
        if unknown:
            raise InputFileError(f"{ms}: correlation types {unknown} (CASA codes) are not understood")
        utimes, time_index = np.unique(time_s, return_inverse=True)
        time_jd = utimes / 86400.0 + MJD_JD
        with_data = np.union1d(a1, a2)
        if with_data.max() >= len(names) or with_data.min() < 0:
            raise InputFileError(f"{ms}: ANTENNA1/ANTENNA2 name antenna {int(with_data.max())}, the ANTENNA table "
                                 f"has {len(names)} rows")
        xyz = read_telescope_xyz(ms, with_data)
        pointing = read_pointing(ms, time_jd=time_jd, telescope_xyz=xyz)
    except RuntimeError as exc:  # casacore raises RuntimeError for unreadable tables
        raise InputFileError(f"{ms}: cannot read the Measurement Set: {exc}") from exc
    nbls = np.unique(a1 * 1_000_003 + a2).size
    model = MsModel(
        path=ms, Nants_data=with_data.size, Nants_telescope=len(names), Nbls=nbls, Nblts=nrows,
        Nfreqs=freq.size, Npols=len(corr), Ntimes=utimes.size,
        freq_array=freq, channel_width=width, polarization_array=np.array([CASA_TO_AIPS[c] for c in corr]),
        time_array=time_jd, lst_array=np.asarray(lst_rad(time_jd, pointing.location), float),
        integration_time=interval, antenna_numbers=np.arange(len(names)), antenna_names=tuple(names),
        antenna_positions=positions - xyz[None, :], antenna_diameters=diameters, telescope_name=telescope,
        telescope_location=xyz, phase_center_ra=float(ra0), phase_center_dec=float(dec0),
        phase_center_frame=frame, pointing=pointing, ant_1_array=a1, ant_2_array=a2, uvw_array=uvw,
        time_index=time_index.ravel(), flagged_fraction=flagged,
    )
    model.check()
    log.debug("%s: %d rows, %d times, %d of %d antennas with data, %d channels, %d correlations, %.2f m dishes, "
              "pointing %s", ms, model.Nblts, model.Ntimes, model.Nants_data, model.Nants_telescope, model.Nfreqs,
              model.Npols, model.dish_diameter, pointing.describe())
    return model


def as_model(ms: MsModel | str | os.PathLike) -> MsModel:
    """``ms`` itself if it is the model of an MS on disk (with its rows), else :func:`read_ms` of the path.

    For functions that take an MS "as a model already read, or a path to read once".

    Raises
    ------
    ValueError
        If ``ms`` is a model of an MS not written yet (no path or no rows).
    InputFileError
        From :func:`read_ms`.
    """
    if isinstance(ms, MsModel):
        if ms.path is None or not ms.has_rows:
            raise ValueError(f"{ms.label}: a model of an MS on disk (read_ms) is needed here")
        return ms
    return read_ms(ms)


@contextlib.contextmanager
def open_rows(ms: MsModel, purpose: str, *, readonly: bool = True) -> Iterator[Any]:
    """The MS's main table, open (and closed afterwards), with the rows its model was read with.

    Parameters
    ----------
    ms
        The model of an MS on disk (:func:`read_ms`).
    purpose
        What the table is opened for, in the error ("averaging", "writing the model").
    readonly
        Open for reading only.

    Returns
    -------
    Iterator of casacore.tables.table
        The open table (a context manager: ``with open_rows(ms, "averaging") as tb:``).

    Raises
    ------
    InputFileError
        If the MS cannot be opened, or no longer has the number of rows of its model.
    """
    from casacore import tables

    try:
        tb = tables.table(str(ms.path), readonly=readonly, ack=False)
    except RuntimeError as exc:
        raise InputFileError(f"{ms.path}: cannot open for {purpose}: {exc}") from exc
    try:
        nrows = tb.nrows()
        if nrows != ms.Nblts:
            raise InputFileError(f"{ms.path}: has {nrows} rows, {ms.Nblts} when its metadata were read")
        yield tb
    finally:
        tb.close()
