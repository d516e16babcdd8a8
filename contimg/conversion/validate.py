"""Validation of a converted Measurement Set against its plan.

Checks (each a named entry of the :class:`ValidationReport`):

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

from contimg.errors import ValidationError

if TYPE_CHECKING:
    from contimg.conversion.plan import ConversionPlan

log = logging.getLogger(__name__)

UVW_TOLERANCE_REL = 5e-5
"""Largest allowed UVW error relative to the baseline length (10 arcsec of orientation)."""
PHASE_CENTER_TOLERANCE_RAD = 1e-9
FREQ_TOLERANCE_HZ = 1.0
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

    path = str(Path(path))
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
        rep.add("rows", nrows == plan.Nblts, f"{nrows} rows, expected {plan.Nblts}")
        if nrows == 0 or lacking:
            _raise(rep)
        field_ids = np.unique(tb.getcol("FIELD_ID"))
        ddids = np.unique(tb.getcol("DATA_DESC_ID"))
        with tables.table(path + "/FIELD", ack=False) as ft:
            nfield = ft.nrows()
            pdir = ft.getcol("PHASE_DIR")[:, 0, :]
            ref = ft.getcolkeyword("PHASE_DIR", "MEASINFO").get("Ref")
        with tables.table(path + "/SPECTRAL_WINDOW", ack=False) as st:
            nspw = st.nrows()
            freqs = st.getcell("CHAN_FREQ", 0) if nspw else np.array([])
        dra = (pdir[0, 0] - plan.phase_center_ra + np.pi) % (2 * np.pi) - np.pi if nfield else np.inf
        ddec = pdir[0, 1] - plan.phase_center_dec if nfield else np.inf
        off = math.hypot(dra * math.cos(plan.phase_center_dec), ddec)
        rep.add(
            "phase_center",
            nfield == 1 and nspw == 1 and list(field_ids) == [0] and list(ddids) == [0]
            and ref == "ICRS" and off < PHASE_CENTER_TOLERANCE_RAD,
            f"{nfield} field(s) ({ref}), {nspw} spectral window(s), field ids {field_ids.tolist()}, "
            f"data descriptions {ddids.tolist()}, offset from plan {math.degrees(off) * 3600:.2e} arcsec",
        )
        expect = plan.freq_array
        rep.Nfreqs = int(freqs.size)
        if freqs.size:
            rep.freq_min_hz, rep.freq_max_hz = float(freqs.min()), float(freqs.max())
        ok = freqs.size == expect.size and bool(np.all(np.diff(freqs) > 0)) and \
            float(np.max(np.abs(freqs - expect))) <= FREQ_TOLERANCE_HZ
        rep.add("frequencies", ok,
                f"{freqs.size} channels (expected {expect.size}), "
                f"{rep.freq_min_hz / 1e6:.4f}-{rep.freq_max_hz / 1e6:.4f} MHz, "
                f"{'ascending' if np.all(np.diff(freqs) > 0) else 'NOT ascending'}")

        uvw = tb.getcol("UVW")
        try:
            diff = np.linalg.norm(uvw - _casacore_uvw(path), axis=1)
            how = "vs casacore -mscal.uvwj2000()"
        except RuntimeError as exc:  # derivedmscal unavailable: fall back to lengths
            log.warning("casacore could not recompute UVW (%s); checking baseline lengths only", exc)
            diff = _length_error(path, tb, uvw)
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


def _length_error(path: str, tb, uvw: np.ndarray) -> np.ndarray:
    from casacore import tables

    with tables.table(path + "/ANTENNA", ack=False) as at:
        pos = at.getcol("POSITION")
    a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
    lengths = np.linalg.norm(pos[a2] - pos[a1], axis=1)
    return np.abs(np.linalg.norm(uvw, axis=1) - lengths)


def _check_data(rep: ValidationReport, tb, plan: "ConversionPlan", present: Sequence[int] | None) -> list[int]:
    nbl = plan.Nbls
    mid = (plan.Ntimes // 2) * nbl
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
            f"{plan.Ntimes // 2}, autocorrelations flagged")
    return found


def _raise(rep: ValidationReport) -> None:
    raise ValidationError(f"group {rep.group_id}: {rep.ms_path} failed validation: {rep.summary()}")
