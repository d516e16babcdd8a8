"""Validation of a converted Measurement Set against its plan.

The written MS is read once with :func:`contimg.msmodel.read_ms` (which
refuses more than one field, spectral window or data description, a phase
centre not in ICRS/J2000, channels not ascending and inconsistent metadata:
the ``model`` check fails with its message) and its model compared with the
plan's (``plan.ms``). Checks (each a named entry of the :class:`ValidationReport`):

``columns``
    DATA, MODEL_DATA, CORRECTED_DATA, FLAG, WEIGHT_SPECTRUM, SIGMA_SPECTRUM and
    UVW exist; DATA is in Jy.
``rows``
    one row per baseline and integration of the plan.
``phase_center``
    one FIELD row (ICRS) equal to the plan's phase center, one spectral window
    and one data description used by every row: a single phase center for the
    whole band.
``frequencies``
    the expected number of channels, ascending, on the plan's grid (coverage
    reported).
``model``
    the rest of the model as planned: baselines, integrations (centres within
    :data:`TIME_TOLERANCE_S`), correlations, antennas with data and ANTENNA
    rows, names and positions (within :data:`POSITION_TOLERANCE_M`), channel
    width, integration time, telescope name and location.
``uvw``
    UVW agrees with the antenna positions: casacore recomputes every row's UVW
    independently from the ANTENNA table, TIME and the FIELD direction (TaQL
    ``mscal.uvwj2000()``). Note that casacore's derived UVW has the opposite
    sign to the UVW that CASA and WSClean expect in the MS (proved by imaging
    an off-centre source in ``tests/conversion``), so we compare with its
    negative. The largest difference is reported; relative to the baseline
    length it must stay below :data:`UVW_TOLERANCE_REL`. Expect ~1e-5: our
    UVW follow pyuvdata's phasing toward the *apparent* (aberrated) position,
    casacore's the J2000 mean position; a wrong antenna, time or phase center
    gives errors of order 1.
``data``
    in the middle integration every present subband has non-zero unflagged
    cross-correlations, missing subbands are fully flagged and
    autocorrelations are flagged.

Any failure raises :class:`~contimg.errors.ValidationError` naming the group,
the MS and the failed checks.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from contimg.errors import InputFileError, ValidationError

if TYPE_CHECKING:
    from contimg.conversion.plan import ConversionPlan
    from contimg.msmodel import MsModel

log = logging.getLogger(__name__)

UVW_TOLERANCE_REL = 5e-5
"""Largest allowed UVW error relative to the baseline length (10 arcsec of orientation)."""
PHASE_CENTER_TOLERANCE_RAD = 1e-9
FREQ_TOLERANCE_HZ = 1.0
TIME_TOLERANCE_S = 1e-3
"""Largest allowed difference between a written and a planned integration centre or integration time."""
POSITION_TOLERANCE_M = 1e-3
"""Largest allowed difference between a written and a planned antenna or array position."""
REQUIRED_COLUMNS = ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "UVW")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_ms`."""

    ms_path: str
    group_id: str
    checks: list[Check] = field(default_factory=list)
    uvw_max_error_m: float = float("nan")
    freq_min_hz: float = float("nan")
    freq_max_hz: float = float("nan")
    Nfreqs: int = 0
    present_subbands: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record the outcome of one check.

        Parameters
        ----------
        name
            Short name of the check (e.g. ``"uvw"``).
        ok
            Whether it passed (any truthy value).
        detail
            What was found, shown by :meth:`summary` when the check failed.
        """
        self.checks.append(Check(name, bool(ok), detail))

    def summary(self) -> str:
        failed = [c for c in self.checks if not c.ok]
        if failed:
            return "FAILED " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return f"valid (uvw max error {self.uvw_max_error_m * 1e3:.2f} mm, {self.Nfreqs} channels " \
               f"{self.freq_min_hz / 1e6:.3f}-{self.freq_max_hz / 1e6:.3f} MHz)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _casacore_uvw(path: str) -> np.ndarray:
    """UVW recomputed by casacore from the ANTENNA and FIELD tables (J2000, m)."""
    from casacore import tables

    with tables.table(path, ack=False) as tb:  # noqa: F841 - TaQL reads it as $tb
        res = tables.taql("select mscal.uvwj2000() as U from $tb")
        return -res.getcol("U")


def validate_ms(
    path: str | os.PathLike,
    *,
    plan: "ConversionPlan",
    present_subbands: Sequence[int] | None,
) -> ValidationReport:
    """Validate a converted MS; raise :class:`ValidationError` if any check fails.

    The MS is read once with :func:`contimg.msmodel.read_ms` and its model compared with the plan's
    (``plan.ms``); the columns, the UVW recomputed by casacore and one integration's data are read
    from the table itself.

    Parameters
    ----------
    path
        The Measurement Set.
    plan
        The plan it was converted from.
    present_subbands
        Subbands that must hold data (the others must be flagged); ``None``
        infers them from the flags.

    Returns
    -------
    The report (also when valid), with the largest UVW error and the coverage.
    """
    from casacore import tables

    from contimg.msmodel import read_ms

    path = str(Path(path))
    want = plan.ms
    rep = ValidationReport(ms_path=path, group_id=plan.group_id)
    try:
        tb = tables.table(path, ack=False)
    except RuntimeError as exc:
        raise ValidationError(f"group {plan.group_id}: {path} cannot be opened as a table: {exc}") from exc
    with tb:
        cols = set(tb.colnames())
        lacking = [c for c in REQUIRED_COLUMNS if c not in cols]
        units = tb.getcolkeyword("DATA", "QuantumUnits") if "DATA" in cols else None
        units = list(np.atleast_1d(units)) if units is not None else []
        units = [str(u) for u in units]
        rep.add("columns", not lacking and units == ["Jy"],
                f"missing {lacking}" if lacking else f"DATA units {units}")
        nrows = tb.nrows()
        rep.add("rows", nrows == want.Nblts, f"{nrows} rows, expected {want.Nblts}")
        if nrows == 0 or lacking:
            _raise(rep)
        try:
            ms = read_ms(path)
        except InputFileError as exc:  # more than one field or window, not ICRS, inconsistent ...
            rep.add("model", False, str(exc))
            _raise(rep)
        _check_phase_center(rep, ms, want)
        _check_frequencies(rep, ms, want)
        _check_model(rep, ms, want)

        assert ms.uvw_array is not None  # read_ms reads the rows
        uvw = np.asarray(ms.uvw_array)
        try:
            diff = np.linalg.norm(uvw - _casacore_uvw(path), axis=1)
            how = "vs casacore -mscal.uvwj2000()"
        except RuntimeError as exc:  # derivedmscal unavailable: fall back to lengths
            log.warning("casacore could not recompute UVW (%s); checking baseline lengths only", exc)
            diff = _length_error(ms)
            how = "baseline lengths vs ANTENNA positions"
        length = np.linalg.norm(uvw, axis=1)
        err = float(np.max(diff)) if diff.size else 0.0
        rel = float(np.max(diff[length > 1] / length[length > 1])) if np.any(length > 1) else 0.0
        rep.uvw_max_error_m = err
        rep.add("uvw", rel < UVW_TOLERANCE_REL, f"max error {err * 1e3:.2f} mm, {rel:.1e} of the baseline ({how})")

        rep.present_subbands = _check_data(rep, tb, plan, present_subbands)
    if not rep.ok:
        _raise(rep)
    log.info("group %s: %s %s", plan.group_id, path, rep.summary())
    return rep


def _check_phase_center(rep: ValidationReport, ms: "MsModel", want: "MsModel") -> None:
    """One field (ICRS) at the planned phase centre (read_ms has refused several fields or windows)."""
    dra = (ms.phase_center_ra - want.phase_center_ra + np.pi) % (2 * np.pi) - np.pi
    off = math.hypot(dra * math.cos(want.phase_center_dec), ms.phase_center_dec - want.phase_center_dec)
    rep.add("phase_center", ms.phase_center_frame == "ICRS" and off < PHASE_CENTER_TOLERANCE_RAD,
            f"1 field ({ms.phase_center_frame}), 1 spectral window, offset from plan "
            f"{math.degrees(off) * 3600:.2e} arcsec")


def _check_frequencies(rep: ValidationReport, ms: "MsModel", want: "MsModel") -> None:
    freqs, expect = ms.freq_array, want.freq_array
    rep.Nfreqs = int(freqs.size)
    rep.freq_min_hz, rep.freq_max_hz = ms.freq_min, ms.freq_max
    ok = freqs.size == expect.size and float(np.max(np.abs(freqs - expect))) <= FREQ_TOLERANCE_HZ
    rep.add("frequencies", ok, f"{freqs.size} channels (expected {expect.size}), "
            f"{rep.freq_min_hz / 1e6:.4f}-{rep.freq_max_hz / 1e6:.4f} MHz, ascending")


def _check_model(rep: ValidationReport, ms: "MsModel", want: "MsModel") -> None:
    """The rest of the written MS's model against the plan's: axes, times, antennas, site, polarizations."""
    problems = []
    for name in ("Nbls", "Ntimes", "Npols", "Nants_data", "Nants_telescope"):
        if getattr(ms, name) != getattr(want, name):
            problems.append(f"{name} {getattr(ms, name)} (planned {getattr(want, name)})")
    if ms.polarization_array.tolist() != want.polarization_array.tolist():
        problems.append(f"polarizations {ms.polarization_array.tolist()} (planned {want.polarization_array.tolist()})")
    if abs(ms.channel_width - want.channel_width) > FREQ_TOLERANCE_HZ * 1e-3:
        problems.append(f"channel width {ms.channel_width} Hz (planned {want.channel_width})")
    if abs(ms.integration_time - want.integration_time) > TIME_TOLERANCE_S:
        problems.append(f"integration time {ms.integration_time} s (planned {want.integration_time})")
    if ms.Ntimes == want.Ntimes:
        dt = float(np.max(np.abs(ms.time_array - want.time_array))) * 86400.0
        if dt > TIME_TOLERANCE_S:
            problems.append(f"integration centres off the plan's by up to {dt:.2e} s")
    if ms.Nants_telescope == want.Nants_telescope:
        if list(ms.antenna_names) != list(want.antenna_names):
            problems.append("antenna names differ from the plan's")
        dpos = float(np.max(np.abs((ms.antenna_positions + ms.telescope_location)
                                   - (want.antenna_positions + want.telescope_location))))
        if dpos > POSITION_TOLERANCE_M:
            problems.append(f"antenna positions off the plan's by up to {dpos * 1e3:.2f} mm")
    dloc = float(np.linalg.norm(ms.telescope_location - want.telescope_location))
    if dloc > POSITION_TOLERANCE_M:
        problems.append(f"telescope location {dloc * 1e3:.2f} mm from the plan's")
    if ms.telescope_name != want.telescope_name:
        problems.append(f"telescope {ms.telescope_name!r} (planned {want.telescope_name!r})")
    rep.add("model", not problems, "; ".join(problems) if problems else
            f"{ms.Nants_data} antennas with data, {ms.Nbls} baselines, {ms.Ntimes} integrations, "
            f"{ms.Npols} correlations as planned")


def _length_error(ms: "MsModel") -> np.ndarray:
    assert ms.uvw_array is not None and ms.ant_1_array is not None and ms.ant_2_array is not None
    pos = ms.antenna_positions
    lengths = np.linalg.norm(pos[ms.antenna_index(ms.ant_2_array)] - pos[ms.antenna_index(ms.ant_1_array)], axis=1)
    return np.abs(np.linalg.norm(ms.uvw_array, axis=1) - lengths)


def _check_data(rep: ValidationReport, tb, plan: "ConversionPlan", present: Sequence[int] | None) -> list[int]:
    nbl = plan.ms.Nbls
    mid = (plan.ms.Ntimes // 2) * nbl
    times = tb.getcol("TIME", mid, nbl)
    if np.ptp(times) > 0:  # not time-major: take any block of rows
        mid = 0
    data = tb.getcol("DATA", mid, nbl)
    flags = tb.getcol("FLAG", mid, nbl)
    a1, a2 = tb.getcol("ANTENNA1", mid, nbl), tb.getcol("ANTENNA2", mid, nbl)
    auto = a1 == a2
    problems = []
    if auto.any() and not flags[auto].all():
        problems.append("autocorrelations not flagged")
    cross = ~auto
    nsb = plan.Nfreqs_subband
    found = []
    for sb in range(16):
        c0 = plan.channel_offset(sb)
        f = flags[cross, c0:c0 + nsb]
        d = data[cross, c0:c0 + nsb]
        has = bool((~f).any())
        if has:
            found.append(sb)
            if not np.any(d[~f] != 0):
                problems.append(f"sb{sb:02d} unflagged data all zero")
            if not np.all(np.isfinite(d[~f])):
                problems.append(f"sb{sb:02d} has non-finite data")
    if present is not None:
        lacking = sorted(set(present) - set(found))
        extra = sorted(set(found) - set(present))
        if lacking:  # a subband the correlator flagged entirely is not a conversion error
            log.warning("group %s: %s has no unflagged data in %s", plan.group_id, rep.ms_path,
                        ", ".join(f"sb{s:02d}" for s in lacking))
        if extra:
            problems.append("missing subband(s) not flagged: " + ", ".join(f"sb{s:02d}" for s in extra))
    if not found:
        problems.append("no unflagged data at all")
    rep.add("data", not problems,
            "; ".join(problems) if problems else f"{len(found)} subband(s) with data in integration "
            f"{plan.ms.Ntimes // 2}, autocorrelations flagged")
    return found


def _raise(rep: ValidationReport) -> None:
    raise ValidationError(f"group {rep.group_id}: {rep.ms_path} failed validation: {rep.summary()}")
