"""The calibration registry: sets of K/B/G tables with validity windows, and their lookup.

A *calibration set* is the tables solved together on one calibrator transit
(:class:`~contimg.db.models.CalibrationSet`); they are applied together, never
mixed with another set's tables (a G table is only meaningful with the B table
it was solved through).

Validity windows (MJD), centred on the solve time (the calibrator group's mid-time):

* K and B: ``± settings.calibration.bandpass_validity_h`` (default 24 h: the
  bandpass and delays of the analogue chain change slowly);
* G: ``± settings.calibration.gain_validity_h`` (default 6 h: complex gains
  drift with temperature; the next calibrator transit replaces them).

Lookup (:func:`find_valid_set`): among active sets whose *every* active table
covers the whole time range of the MS, the one solved closest in time to the
MS (in real-time processing that is the newest set); between sets as near,
the better QA verdict (pass before warn), then the newest. A set the
calibration gate failed is never registered (:mod:`contimg.calibration.gate`). No valid set means the MS cannot be calibrated: :class:`NoValidCalibration`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.calibration.solve import APPLY_ORDER, SolveResult
from contimg.db.models import CalibrationSet, CalTableType
from contimg.errors import DeferredError

log = logging.getLogger(__name__)

__all__ = ["NoValidCalibration", "ValidSet", "check_window", "find_valid_set", "register_solution", "set_active",
           "validity_hours"]

_HOURS_PER_DAY = 24.0
_QA_RANK: dict[str | None, int] = {"pass": 0, "warn": 1}
"""Between sets solved equally near in time, a passed set beats a warned one (a failed set is never registered)."""


class NoValidCalibration(DeferredError):
    """No registered calibration set is valid for an MS (the message names the MS and the time).

    Deferred, not permanent: the set may be solved later (its calibrator's group may still come).
    """


@dataclass(frozen=True)
class ValidSet:
    """A calibration set chosen for an MS: its id, name and tables in apply order."""

    id: int
    name: str
    calibrator_name: str | None
    solve_mjd: float | None
    tables: list[tuple[str, str, float, float]]
    """``(type, path, valid_start_mjd, valid_end_mjd)`` in apply order."""


def validity_hours(table_type: str, *, bandpass_validity_h: float, gain_validity_h: float) -> float:
    """Half-width (hours) of a table type's validity window."""
    return gain_validity_h if table_type == "G" else bandpass_validity_h


def register_solution(
    session: Session,
    *,
    name: str,
    solution: SolveResult,
    calibrator_name: str,
    solve_mjd: float,
    bandpass_validity_h: float,
    gain_validity_h: float,
    source_ms_id: int | None = None,
    qa: dict[str, Any] | None = None,
) -> CalibrationSet:
    """Record (or re-record) the tables of one solve as the active calibration set ``name``.

    Re-registering the same name updates the rows in place (idempotent
    reruns); tables of a type the new solution lacks (e.g. K after rerunning
    without ``do_k``) are deleted from the set.
    """
    from contimg.db.products import upsert_calibration_set, upsert_calibration_table

    calset = upsert_calibration_set(session, name=name, calibrator_name=calibrator_name, solve_mjd=solve_mjd,
                                    active=True, qa=qa)
    for row in list(calset.tables):
        if row.table_type.value not in solution.tables:
            session.delete(row)
    session.flush()
    for kind, path in solution.tables.items():
        half = validity_hours(kind, bandpass_validity_h=bandpass_validity_h, gain_validity_h=gain_validity_h)
        st = solution.stats.get(kind)
        upsert_calibration_table(
            session, calibration_set=calset, table_type=kind, path=path, apply_order=APPLY_ORDER[kind],
            valid_start_mjd=solve_mjd - half / _HOURS_PER_DAY, valid_end_mjd=solve_mjd + half / _HOURS_PER_DAY,
            active=True, source_ms_id=source_ms_id, calibrator_name=calibrator_name,
            flagged_fraction=st.flagged_fraction if st else None, n_solutions=st.n_solutions if st else None,
            n_expected=st.n_expected if st else None,
        )
    session.flush()
    session.refresh(calset)
    log.info("registered calibration set %s (%s) solved at MJD %.5f", name,
             ", ".join(t.table_type.value for t in calset.tables), solve_mjd)
    return calset


def find_valid_set(session: Session, *, start_mjd: float, end_mjd: float) -> ValidSet | None:
    """The calibration set to apply to data spanning ``[start_mjd, end_mjd]``, or None.

    See the module docstring for the rule. A set qualifies only if it has a B
    and a G table and every active table's window covers the whole span.
    """
    mid = 0.5 * (start_mjd + end_mjd)
    sets = session.scalars(select(CalibrationSet).where(CalibrationSet.active.is_(True))).all()
    best: tuple[tuple[float, int, int], CalibrationSet] | None = None
    for cs in sets:
        tables = [t for t in cs.tables if t.active]
        kinds = {t.table_type for t in tables}
        if not {CalTableType.B, CalTableType.G} <= kinds:
            continue
        if not all(t.valid_start_mjd <= start_mjd and t.valid_end_mjd >= end_mjd for t in tables):
            continue
        ref = cs.solve_mjd if cs.solve_mjd is not None else 0.5 * (tables[0].valid_start_mjd + tables[0].valid_end_mjd)
        key = (round(abs(ref - mid), 6), _QA_RANK.get(cs.qa_verdict, 1), -cs.id)
        if best is None or key < best[0]:
            best = (key, cs)
    if best is None:
        return None
    cs = best[1]
    tables = sorted((t for t in cs.tables if t.active), key=lambda t: t.apply_order)
    return ValidSet(id=cs.id, name=cs.name, calibrator_name=cs.calibrator_name, solve_mjd=cs.solve_mjd,
                    tables=[(t.table_type.value, t.path, t.valid_start_mjd, t.valid_end_mjd) for t in tables])


def set_active(session: Session, name: str, active: bool) -> None:
    """Switch a calibration set on or off (a bad set is deactivated, never deleted)."""
    from contimg.errors import NotFoundError

    cs = session.scalars(select(CalibrationSet).where(CalibrationSet.name == name)).one_or_none()
    if cs is None:
        raise NotFoundError(f"calibration set {name!r} does not exist")
    cs.active = active
    session.flush()


def check_window(valid: ValidSet, *, start_mjd: float, end_mjd: float, ms_path: str) -> None:
    """Refuse (:class:`NoValidCalibration`) to apply a set with a table whose window misses the MS's span."""
    for kind, path, lo, hi in valid.tables:
        if lo > start_mjd or hi < end_mjd:
            raise NoValidCalibration(
                f"{ms_path}: {kind} table {path} of set {valid.name} is valid for MJD {lo:.5f}-{hi:.5f}, "
                f"not for the data's {start_mjd:.5f}-{end_mjd:.5f}"
            )
