"""Plan the conversion of one subband group: read headers, check them, choose the phase center.

:func:`plan_group` reads only the UVH5 *headers* (a few hundred kB per file, no
visibilities), checks that the files belong together and returns a
:class:`ConversionPlan`: a JSON-serialisable description of the group that the
two conversion steps (:mod:`contimg.conversion.subband`,
:mod:`contimg.conversion.combine`) receive instead of arrays. Besides the files,
it holds the MS to be written as a :class:`contimg.msmodel.MsModel` (``plan.ms``,
no path and no rows yet): the writer writes it, and the validator
(:mod:`contimg.conversion.validate`) compares the written MS, read back with
:func:`contimg.msmodel.read_ms`, with it.

Frequency grid
--------------
DSA-110 subbands are 48 contiguous channels each; ``sb00`` holds the highest
frequencies. The final Measurement Set has one spectral window holding the
whole 16-subband grid in ascending frequency, whatever subbands are present:
the grid is derived from the present subbands (each must sit exactly on it),
and the channels of a missing subband keep their frequencies and are flagged.
A calibration table solved on a complete group therefore applies channel for
channel to an incomplete one.

Phase center
------------
RA is the *apparent* local sidereal time at the group midpoint (the mean of
all subbands' mid-times), Dec the pointing declination of the headers'
``phase_center_dec`` keyword, which the DSA-110 writer (and the contimg
simulator) record as an *apparent* (of date) declination in radians. The pair
is converted apparent → ICRS with pyuvdata's ERFA-based
``transform_app_to_icrs`` (the inverse of what ``UVData.phase()`` applies; it
agrees with astropy's TETE → ICRS to well under an arcsecond). The ICRS
position is what goes into the FIELD table and what the UVW coordinates refer
to; in 2025 it differs from the apparent one by ~0.33 deg in RA.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from contimg.errors import InputFileError
from contimg.msmodel import AIPS_TO_CASA, MsModel
from contimg.naming import NSUBBANDS, parse_subband_filename
from contimg.pointing import Pointing

log = logging.getLogger(__name__)

TIME_TOLERANCE_S = 0.5
"""Largest allowed difference between the same integration's time in two subbands."""

POSITION_TOLERANCE_M = 1e-3
"""Largest allowed difference between two files' antenna or telescope positions."""

FREQ_TOLERANCE_HZ = 1.0
"""Largest allowed departure of a channel frequency from the shared grid."""

DEC_TOLERANCE_RAD = math.radians(1.0 / 3600.0)
"""Largest allowed difference between two files' pointing declinations (1 arcsec)."""

CASA_POL = {p: AIPS_TO_CASA[p] for p in (-5, -6, -7, -8, 1, 2, 3, 4)}
"""The polarizations the conversion writes: pyuvdata (AIPS) codes → CASA Stokes enum (XX=9, XY=10, YX=11,
YY=12; Stokes I-V 1-4)."""


@dataclass(frozen=True)
class SubbandHeader:
    """What :func:`read_header` learns about one subband file (headers only)."""

    path: str
    subband: int
    size_bytes: int
    Nants_data: int
    Nants_telescope: int
    Nbls: int
    Nblts: int
    Ntimes: int
    Nfreqs: int
    Npols: int
    freq_array: np.ndarray
    channel_width: float
    integration_time: float
    unique_times: np.ndarray
    ant_1_array: np.ndarray
    ant_2_array: np.ndarray
    antenna_numbers: np.ndarray
    antenna_names: list[str]
    antenna_positions: np.ndarray
    antenna_diameters: np.ndarray | None
    telescope_name: str
    telescope_lla: tuple[float, float, float]
    polarization_array: np.ndarray
    phase_center_dec: float
    unprojected: bool
    vis_units: str
    extra_keywords: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConversionPlan:
    """The plan of a group's conversion: its files, and the MS they become; JSON-serialisable.

    Build it with :func:`plan_group`; pass it between processes as ``plan.to_dict()`` /
    ``ConversionPlan.from_dict(d)``. What the MS will hold is :attr:`ms`, an
    :class:`~contimg.msmodel.MsModel` (no path, no rows yet) that the writer writes and the validator
    compares the written MS with.
    """

    group_id: str
    files: dict[int, str]
    """Subband index → absolute path of its file."""
    file_sizes: dict[int, int]
    ms: MsModel
    """The Measurement Set to be written: the full 16-subband window, the group's integration centres
    (mean over subbands), polarizations in CASA order, an ANTENNA row for every number up to the largest
    (``unused-<n>`` at the array centre where the headers have none), the ICRS phase centre and the
    pointing (a meridian drift at the headers' apparent ``phase_center_dec``)."""
    Nfreqs_subband: int
    """Channels per subband file."""
    sefd_jy: float | None = None
    """System equivalent flux density from the headers (keyword ``sefd_jy``), if given."""

    # ------------------------------------------------------------ derived
    @property
    def subbands(self) -> list[int]:
        return sorted(self.files)

    @property
    def missing_subbands(self) -> list[int]:
        return [sb for sb in range(NSUBBANDS) if sb not in self.files]

    def channel_offset(self, subband: int) -> int:
        """Index of ``subband``'s lowest channel in the final spectral window."""
        return (NSUBBANDS - 1 - subband) * self.Nfreqs_subband

    def subband_freqs(self, subband: int) -> np.ndarray:
        """Ascending channel centers (Hz) that ``subband`` must have."""
        off = self.channel_offset(subband)
        return self.ms.freq_array[off:off + self.Nfreqs_subband]

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (only str/int/float/list/dict/None)."""
        return {
            "group_id": self.group_id,
            "files": {str(k): v for k, v in self.files.items()},
            "file_sizes": {str(k): int(v) for k, v in self.file_sizes.items()},
            "ms": self.ms.to_dict(),
            "Nfreqs_subband": self.Nfreqs_subband,
            "sefd_jy": self.sefd_jy,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConversionPlan":
        """Inverse of :meth:`to_dict` (the MS model is checked).

        Raises
        ------
        InputFileError
            If the plan's MS model is inconsistent (:meth:`contimg.msmodel.MsModel.check`).
        """
        return cls(
            group_id=d["group_id"],
            files={int(k): v for k, v in d["files"].items()},
            file_sizes={int(k): int(v) for k, v in d["file_sizes"].items()},
            ms=MsModel.from_dict(d["ms"]),
            Nfreqs_subband=int(d["Nfreqs_subband"]),
            sefd_jy=d.get("sefd_jy"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "ConversionPlan":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------- headers
def _scalar(header: h5py.Group, name: str, path: str | Path) -> Any:
    try:
        value = header[name][()]
    except KeyError as exc:
        raise InputFileError(f"{path}: UVH5 header has no {name!r}") from exc
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode()
    return value


def _array(header: h5py.Group, name: str, path: str | Path) -> np.ndarray:
    try:
        return np.asarray(header[name][()])
    except KeyError as exc:
        raise InputFileError(f"{path}: UVH5 header has no {name!r}") from exc


def _strings(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def _extra_keywords(header: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "extra_keywords" not in header:
        return out
    for key, dset in header["extra_keywords"].items():
        value = dset[()]
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _check_data_extent(fh: h5py.File, path: Path, size: int) -> None:
    """Raise if the visibility datasets reach past the end of the file (truncation)."""
    for name in ("visdata", "flags", "nsamples"):
        try:
            dset = fh["Data"][name]
        except KeyError as exc:
            raise InputFileError(f"{path}: UVH5 file has no Data/{name} dataset") from exc
        offset = dset.id.get_offset()
        if offset is not None:
            end = offset + dset.id.get_storage_size()
            if end > size:
                raise InputFileError(
                    f"{path}: file is truncated: Data/{name} ends at byte {end} "
                    f"but the file has {size} bytes"
                )


def read_header(path: str | os.PathLike) -> SubbandHeader:
    """Read the metadata of one UVH5 subband file (no visibilities).

    Raises
    ------
    InputFileError
        If the file is missing, not HDF5, truncated, or lacks required header
        items; the message names the file.
    """
    path = Path(path).absolute()
    name = parse_subband_filename(path)
    try:
        size = path.stat().st_size
        with h5py.File(path, "r") as fh:
            hdr = fh["Header"]
            _check_data_extent(fh, path, size)
            Nfreqs = int(_scalar(hdr, "Nfreqs", path))
            freq = _array(hdr, "freq_array", path).reshape(-1).astype(np.float64)
            cw = np.abs(_array(hdr, "channel_width", path).reshape(-1).astype(np.float64))
            itime = _array(hdr, "integration_time", path).reshape(-1)
            time_array = _array(hdr, "time_array", path).reshape(-1)
            extra = _extra_keywords(hdr)
            if "phase_center_catalog" in hdr:
                types = set()
                for cat in hdr["phase_center_catalog"].values():
                    if "cat_type" in cat:
                        ct = cat["cat_type"][()]
                        types.add(ct.decode() if isinstance(ct, bytes) else str(ct))
                unprojected = types == {"unprojected"}
            elif "phase_type" in hdr:
                unprojected = _scalar(hdr, "phase_type", path) == "drift"
            else:
                unprojected = True
            lat = float(_scalar(hdr, "latitude", path))
            lon = float(_scalar(hdr, "longitude", path))
            alt = float(_scalar(hdr, "altitude", path))
            diam = np.asarray(hdr["antenna_diameters"][()], dtype=float) if "antenna_diameters" in hdr else None
            header = SubbandHeader(
                path=str(path),
                subband=name.subband,
                size_bytes=size,
                Nants_data=int(_scalar(hdr, "Nants_data", path)),
                Nants_telescope=int(_scalar(hdr, "Nants_telescope", path)),
                Nbls=int(_scalar(hdr, "Nbls", path)),
                Nblts=int(_scalar(hdr, "Nblts", path)),
                Ntimes=int(_scalar(hdr, "Ntimes", path)),
                Nfreqs=Nfreqs,
                Npols=int(_scalar(hdr, "Npols", path)),
                freq_array=freq,
                channel_width=float(cw[0]) if cw.size else float("nan"),
                integration_time=float(np.median(itime)),
                unique_times=np.unique(time_array),
                ant_1_array=_array(hdr, "ant_1_array", path).astype(np.int32),
                ant_2_array=_array(hdr, "ant_2_array", path).astype(np.int32),
                antenna_numbers=_array(hdr, "antenna_numbers", path).astype(np.int32),
                antenna_names=_strings(_array(hdr, "antenna_names", path)),
                antenna_positions=_array(hdr, "antenna_positions", path).astype(np.float64),
                antenna_diameters=diam,
                telescope_name=str(_scalar(hdr, "telescope_name", path)),
                telescope_lla=(math.radians(lat), math.radians(lon), alt),
                polarization_array=_array(hdr, "polarization_array", path).astype(np.int32),
                phase_center_dec=float(extra.get("phase_center_dec", float("nan"))),
                unprojected=bool(unprojected),
                vis_units=str(_scalar(hdr, "vis_units", path)) if "vis_units" in hdr else "UNCALIB",
                extra_keywords=extra,
            )
    except FileNotFoundError as exc:
        raise InputFileError(f"{path}: no such file") from exc
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read as HDF5 (corrupt or truncated?): {exc}") from exc
    except KeyError as exc:
        raise InputFileError(f"{path}: not a UVH5 file (missing {exc})") from exc
    _check_self_consistent(header)
    return header


def _check_self_consistent(h: SubbandHeader) -> None:
    p = h.path
    if not math.isfinite(h.phase_center_dec):
        raise InputFileError(f"{p}: header has no 'phase_center_dec' extra keyword (pointing declination)")
    if not h.unprojected:
        raise InputFileError(f"{p}: data are phased; DSA-110 files must be unprojected (drift-scan) data")
    if h.freq_array.size != h.Nfreqs:
        raise InputFileError(f"{p}: freq_array has {h.freq_array.size} channels but Nfreqs = {h.Nfreqs}")
    if h.Nfreqs > 1:
        steps = np.abs(np.diff(h.freq_array))
        if np.max(np.abs(steps - h.channel_width)) > FREQ_TOLERANCE_HZ:
            raise InputFileError(f"{p}: channels are not contiguous at the channel width {h.channel_width} Hz")
    if h.Nblts != h.Nbls * h.Ntimes or h.unique_times.size != h.Ntimes:
        raise InputFileError(
            f"{p}: baseline-time axis is not rectangular (Nblts={h.Nblts}, Nbls={h.Nbls}, Ntimes={h.Ntimes})"
        )
    if h.ant_1_array.size != h.Nblts:
        raise InputFileError(f"{p}: ant_1_array has {h.ant_1_array.size} entries, Nblts = {h.Nblts}")
    unknown = set(h.polarization_array.tolist()) - set(CASA_POL)
    if unknown:
        raise InputFileError(f"{p}: unsupported polarizations {sorted(unknown)}")


# ---------------------------------------------------------------------------- group checks
def _disagree(h: SubbandHeader, ref: SubbandHeader, what: str, mine: Any, theirs: Any) -> InputFileError:
    return InputFileError(
        f"{h.path}: {what} disagrees with the rest of its group: {mine} here, "
        f"{theirs} in {Path(ref.path).name}"
    )


def _reference_header(headers: Sequence[SubbandHeader], key) -> SubbandHeader:
    """The header whose value of ``key`` most files share (the odd one out is blamed)."""
    values = [key(h) for h in headers]
    best = max(range(len(headers)), key=lambda i: sum(1 for v in values if v == values[i]))
    return headers[best]


def check_group(headers: Sequence[SubbandHeader]) -> None:
    """Check that subband headers describe one group; raise naming the odd file.

    Checks antenna count, numbers and positions, telescope location,
    polarizations, pointing declination, channel count and width,
    integration time, number of integrations and their times, and the
    baseline order.
    """
    scalar_checks = [
        ("antenna count (Nants_data)", lambda h: h.Nants_data),
        ("pointing declination (deg)", lambda h: round(math.degrees(h.phase_center_dec), 4)),
        ("channel width (Hz)", lambda h: round(h.channel_width, 3)),
        ("integration time (s)", lambda h: round(h.integration_time, 4)),
        ("channel count (Nfreqs)", lambda h: h.Nfreqs),
        ("baseline count (Nbls)", lambda h: h.Nbls),
        ("integration count (Ntimes)", lambda h: h.Ntimes),
        ("polarizations", lambda h: tuple(h.polarization_array.tolist())),
        ("antenna numbers", lambda h: tuple(h.antenna_numbers.tolist())),
    ]
    for what, key in scalar_checks:
        ref = _reference_header(headers, key)
        for h in headers:
            if key(h) != key(ref):
                mine, theirs = key(h), key(ref)
                if what == "antenna numbers":
                    mine, theirs = f"{len(mine)} antennas", f"{len(theirs)} antennas"
                raise _disagree(h, ref, what, mine, theirs)
    ref = headers[0]
    for h in headers[1:]:
        if abs(h.phase_center_dec - ref.phase_center_dec) > DEC_TOLERANCE_RAD:
            raise _disagree(h, ref, "pointing declination (rad)", h.phase_center_dec, ref.phase_center_dec)
        dpos = np.max(np.abs(h.antenna_positions - ref.antenna_positions))
        if dpos > POSITION_TOLERANCE_M:
            raise _disagree(h, ref, "antenna positions", f"offsets up to {dpos:.3f} m", "reference positions")
        if not (np.array_equal(h.ant_1_array, ref.ant_1_array) and np.array_equal(h.ant_2_array, ref.ant_2_array)):
            raise _disagree(h, ref, "baseline order (ant_1_array/ant_2_array)", "a different order", "reference order")
        dt = np.max(np.abs(h.unique_times - ref.unique_times)) * 86400.0
        if dt > TIME_TOLERANCE_S:
            raise _disagree(h, ref, "integration times", f"offset by {dt:.2f} s", f"within {TIME_TOLERANCE_S} s")
        dlat = abs(h.telescope_lla[0] - ref.telescope_lla[0]) * 6.4e6
        if dlat > 1.0:
            raise _disagree(h, ref, "telescope location", h.telescope_lla, ref.telescope_lla)


def _frequency_grid(headers: Sequence[SubbandHeader]) -> float:
    """Lowest channel frequency of the full 16-subband grid; every subband must sit on it."""
    ref = headers[0]
    nf, cw = ref.Nfreqs, ref.channel_width
    starts = []
    for h in headers:
        asc = np.sort(h.freq_array)
        starts.append(asc[0] - (NSUBBANDS - 1 - h.subband) * nf * cw)
    start = float(np.median(starts))
    for h in headers:
        expect = start + cw * ((NSUBBANDS - 1 - h.subband) * nf + np.arange(nf))
        off = np.max(np.abs(np.sort(h.freq_array) - expect))
        if off > FREQ_TOLERANCE_HZ:
            raise InputFileError(
                f"{h.path}: frequencies {h.freq_array.min() / 1e6:.4f}-{h.freq_array.max() / 1e6:.4f} MHz "
                f"are off the group's subband grid by {off / 1e3:.1f} kHz (sb{h.subband:02d} expected "
                f"{expect[0] / 1e6:.4f}-{expect[-1] / 1e6:.4f} MHz; sb00 is the highest subband)"
            )
    return start


# ---------------------------------------------------------------------------- phase center
def phase_center_icrs(time_jd: float, dec_app: float, telescope_lla: tuple[float, float, float]) -> tuple[float, float, float]:
    """ICRS (RA, Dec) of the meridian at ``time_jd`` and apparent declination ``dec_app``.

    "Apparent" is the topocentric apparent frame of date that pyuvdata's
    phasing uses (ERFA; true equator and equinox, the frame of the apparent
    LST): the meridian is where the apparent RA equals the apparent LST. The
    conversion to ICRS is pyuvdata's ``transform_app_to_icrs``, the exact
    inverse of what ``UVData.phase()`` and :func:`contimg.conversion.geometry.phased_uvw`
    apply, so the phase center sits on the meridian at ``time_jd`` to
    rounding. (ICRS and apparent RA differ by ~0.33 deg in 2025, mostly
    precession.)

    Parameters
    ----------
    time_jd
        The time (JD, UTC), e.g. the middle of the group.
    dec_app
        Apparent declination (radians), e.g. the files' ``phase_center_dec``.
    telescope_lla
        Geodetic latitude, longitude (radians) and altitude (m) of the array.

    Returns
    -------
    ra, dec, lst
        ICRS right ascension and declination and the apparent LST (radians).
    """
    from pyuvdata.utils.phasing import transform_app_to_icrs

    from contimg.conversion.geometry import earth_location, lst_for_times, offline_iers

    t = np.array([time_jd], dtype=float)
    lst = float(lst_for_times(t, telescope_lla)[0])
    with offline_iers():
        ra, dec = transform_app_to_icrs(
            time_array=t, app_ra=np.array([lst]), app_dec=np.array([dec_app]),
            telescope_loc=earth_location(telescope_lla),
        )
    return float(np.atleast_1d(ra)[0]) % (2 * math.pi), float(np.atleast_1d(dec)[0]), lst


def _optional_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def _planned_ms(ref: SubbandHeader, *, freq_start: float, times: np.ndarray,
                phase_center: tuple[float, float]) -> MsModel:
    """The model of the MS the conversion writes from ``ref``'s header (see :attr:`ConversionPlan.ms`)."""
    from contimg.conversion.geometry import earth_location, lst_for_times
    from contimg.conversion.msio import TELESCOPE_NAME

    loc = earth_location(ref.telescope_lla)
    xyz = np.array([loc.x.to_value("m"), loc.y.to_value("m"), loc.z.to_value("m")])
    numbers = ref.antenna_numbers.astype(int)
    nant = int(numbers.max()) + 1  # the MS has an ANTENNA row for every number up to the largest
    given = ref.antenna_diameters if ref.antenna_diameters is not None else np.full(numbers.size, 4.65)
    positions = np.zeros((nant, 3))
    positions[numbers] = ref.antenna_positions
    diameters = np.full(nant, float(np.median(given)))
    diameters[numbers] = given
    names = [f"unused-{i}" for i in range(nant)]
    for n, name in zip(numbers, ref.antenna_names):
        names[n] = name
    nfreqs = NSUBBANDS * ref.Nfreqs
    return MsModel(
        path=None,
        Nants_data=np.union1d(ref.ant_1_array, ref.ant_2_array).size, Nants_telescope=nant, Nbls=ref.Nbls,
        Nblts=ref.Nblts, Nfreqs=nfreqs, Npols=ref.Npols, Ntimes=ref.Ntimes,
        freq_array=freq_start + ref.channel_width * np.arange(nfreqs), channel_width=ref.channel_width,
        polarization_array=np.array(sorted(ref.polarization_array.tolist(), key=CASA_POL.__getitem__)),
        time_array=times, lst_array=lst_for_times(times, ref.telescope_lla), integration_time=ref.integration_time,
        antenna_numbers=np.arange(nant), antenna_names=tuple(names), antenna_positions=positions,
        antenna_diameters=diameters, telescope_name=TELESCOPE_NAME, telescope_location=xyz,
        phase_center_ra=phase_center[0], phase_center_dec=phase_center[1], phase_center_frame="ICRS",
        pointing=Pointing("drift", 0.0, ref.phase_center_dec, (float(xyz[0]), float(xyz[1]), float(xyz[2])),
                          "UVH5 headers: meridian drift at the apparent phase_center_dec"),
    )


def default_group_id(headers: Sequence[SubbandHeader]) -> str:
    """The earliest file-name timestamp of the group, e.g. ``2025-10-02T10:02:45``."""
    stamps = sorted(parse_subband_filename(h.path).timestamp for h in headers)
    return stamps[0].strftime("%Y-%m-%dT%H:%M:%S")


def plan_group(files: Sequence[str | os.PathLike], *, group_id: str | None = None) -> ConversionPlan:
    """Read the headers of a subband group, check them and plan its conversion.

    Parameters
    ----------
    files
        One to sixteen UVH5 subband files of one group (any order).
    group_id
        Name of the group used in messages and products; default the earliest
        file-name timestamp.

    Raises
    ------
    InputFileError
        If a file is unreadable or truncated, two files claim the same
        subband, or a file's metadata disagrees with the rest of the group
        (the message names the file and the quantity).
    """
    if not files:
        raise InputFileError("no subband files given")
    headers = [read_header(f) for f in files]
    seen: dict[int, str] = {}
    for h in headers:
        if h.subband in seen:
            raise InputFileError(f"{h.path}: subband sb{h.subband:02d} given twice (also {seen[h.subband]})")
        seen[h.subband] = h.path
    headers.sort(key=lambda h: h.subband)
    check_group(headers)
    group_id = group_id or default_group_id(headers)
    freq_start = _frequency_grid(headers)
    ref = headers[0]
    # averages relative to one epoch: a JD carries only ~20 us of float64 resolution
    t0 = float(ref.unique_times[0])
    times = t0 + np.mean([h.unique_times - t0 for h in headers], axis=0)
    mids = [0.5 * ((h.unique_times[0] - t0) + (h.unique_times[-1] - t0)) for h in headers]
    time_mid = t0 + float(np.mean(mids))
    ra, dec, _ = phase_center_icrs(time_mid, ref.phase_center_dec, ref.telescope_lla)
    ms = _planned_ms(ref, freq_start=freq_start, times=times, phase_center=(ra, dec))
    try:
        ms.check()
    except InputFileError as exc:
        raise InputFileError(f"group {group_id} ({ref.path} ...): {exc}") from exc
    plan = ConversionPlan(
        group_id=group_id,
        files={h.subband: h.path for h in headers},
        file_sizes={h.subband: h.size_bytes for h in headers},
        ms=ms,
        Nfreqs_subband=ref.Nfreqs,
        sefd_jy=_optional_float(ref.extra_keywords.get("sefd_jy")),
    )
    log.info(
        "group %s: %d subband(s)%s, %d antennas, %d integrations, phase center ICRS "
        "RA %.5f Dec %.5f deg",
        group_id, len(headers),
        f" (missing {', '.join(f'sb{s:02d}' for s in plan.missing_subbands)})" if plan.missing_subbands else "",
        ms.Nants_data, ms.Ntimes, math.degrees(ra), math.degrees(dec),
    )
    return plan
