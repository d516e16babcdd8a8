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

Lookup (:func:`choose_valid_set`): among active sets whose *every* active table
covers the whole time range of the MS, the one solved closest in time to the
MS (in real-time processing that is the newest set); between sets as near,
the better QA verdict (pass before warn), then the newest. A set the
calibration gate failed is never registered (:mod:`contimg.calibration.gate`). No valid set means the MS cannot be calibrated: :class:`NoValidCalibration`.

This module holds the rules, on plain values; the rows are read and written by
:mod:`contimg.db.products` (``register_calibration_set``,
``active_calibration_sets``, ``set_calibration_set_active``), and
:func:`contimg.pipeline.calibrate.register_solution` /
:func:`~contimg.pipeline.calibrate.find_valid_set` join the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contimg.calibration.solve import APPLY_ORDER, SolveResult
from contimg.errors import DeferredError

log = logging.getLogger(__name__)

__all__ = ["NoValidCalibration", "ValidSet", "check_window", "choose_valid_set", "table_rows", "valid_set_of",
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
    """Half-width (hours) of a table type's validity window.

    Parameters
    ----------
    table_type
        ``'K'``, ``'B'`` or ``'G'``.
    bandpass_validity_h
        Half-width (h) for K and B tables (and any type other than G).
    gain_validity_h
        Half-width (h) for G tables.

    Returns
    -------
    float
        The half-width (h) of the window centred on the solve time.
    """
    return gain_validity_h if table_type == "G" else bandpass_validity_h


def table_rows(solution: SolveResult, *, solve_mjd: float, bandpass_validity_h: float,
               gain_validity_h: float) -> list[dict[str, Any]]:
    """The calibration-table records of one solve: type, path, apply order, validity window and statistics.

    Parameters
    ----------
    solution
        The solve's tables (``{type: path}``) and per-table solution statistics.
    solve_mjd
        Centre of the validity windows (MJD): the calibrator group's mid-time.
    bandpass_validity_h
        Half-width (h) of the K and B tables' windows.
    gain_validity_h
        Half-width (h) of the G table's window.

    Returns
    -------
    list of dict
        One per table: ``table_type``, ``path``, ``apply_order``, ``valid_start_mjd``, ``valid_end_mjd``,
        ``flagged_fraction``, ``n_solutions``, ``n_expected`` (the last three None without statistics).
    """
    rows = []
    for kind, path in solution.tables.items():
        half = validity_hours(kind, bandpass_validity_h=bandpass_validity_h, gain_validity_h=gain_validity_h)
        st = solution.stats.get(kind)
        rows.append(dict(
            table_type=kind, path=path, apply_order=APPLY_ORDER[kind],
            valid_start_mjd=solve_mjd - half / _HOURS_PER_DAY, valid_end_mjd=solve_mjd + half / _HOURS_PER_DAY,
            flagged_fraction=st.flagged_fraction if st else None, n_solutions=st.n_solutions if st else None,
            n_expected=st.n_expected if st else None))
    return rows


def _kind(table: Any) -> str:
    return str(getattr(table.table_type, "value", table.table_type))


def choose_valid_set(sets: Iterable[Any], *, start_mjd: float, end_mjd: float) -> ValidSet | None:
    """The calibration set to apply to data spanning ``[start_mjd, end_mjd]``, or None.

    See the module docstring for the rule. A set qualifies only if it has a B
    and a G table and every active table's window covers the whole span.

    Parameters
    ----------
    sets
        The active sets: objects with ``id``, ``name``, ``calibrator_name``, ``solve_mjd``, ``qa_verdict`` and
        ``tables`` (each with ``table_type``, ``path``, ``apply_order``, ``valid_start_mjd``,
        ``valid_end_mjd``, ``active``), e.g. the rows of :func:`contimg.db.products.active_calibration_sets`.
    start_mjd
        Start of the data's time span (MJD).
    end_mjd
        End of the data's time span (MJD).

    Returns
    -------
    ValidSet or None
        The chosen set's id, name, calibrator, solve MJD and active tables in apply order; None if no
        set covers the span.
    """
    mid = 0.5 * (start_mjd + end_mjd)
    best: tuple[tuple[float, int, int], Any] | None = None
    for cs in sets:
        tables = [t for t in cs.tables if t.active]
        kinds = {_kind(t) for t in tables}
        if not {"B", "G"} <= kinds:
            continue
        if not all(t.valid_start_mjd <= start_mjd and t.valid_end_mjd >= end_mjd for t in tables):
            continue
        ref = cs.solve_mjd if cs.solve_mjd is not None else 0.5 * (tables[0].valid_start_mjd + tables[0].valid_end_mjd)
        key = (round(abs(ref - mid), 6), _QA_RANK.get(cs.qa_verdict, 1), -cs.id)
        if best is None or key < best[0]:
            best = (key, cs)
    if best is None:
        return None
    return valid_set_of(best[1])


def valid_set_of(cs: Any) -> ValidSet:
    """A calibration set (a row of ``calibration_sets`` with its tables) as the :class:`ValidSet` applied.

    Parameters
    ----------
    cs
        An object with ``id``, ``name``, ``calibrator_name``, ``solve_mjd`` and ``tables`` (as for
        :func:`choose_valid_set`).

    Returns
    -------
    ValidSet
        Its active tables in apply order.
    """
    tables = sorted((t for t in cs.tables if t.active), key=lambda t: t.apply_order)
    return ValidSet(id=cs.id, name=cs.name, calibrator_name=cs.calibrator_name, solve_mjd=cs.solve_mjd,
                    tables=[(_kind(t), t.path, t.valid_start_mjd, t.valid_end_mjd) for t in tables])


def check_window(valid: ValidSet, *, start_mjd: float, end_mjd: float, ms_path: str) -> None:
    """Refuse (:class:`NoValidCalibration`) to apply a set with a table whose window misses the MS's span.

    Parameters
    ----------
    valid
        The set about to be applied.
    start_mjd
        Start of the MS's time span (MJD).
    end_mjd
        End of the MS's time span (MJD).
    ms_path
        The MS, named in the error message.

    Raises
    ------
    NoValidCalibration
        If any of the set's tables is not valid over the whole ``[start_mjd, end_mjd]``.
    """
    for kind, path, lo, hi in valid.tables:
        if lo > start_mjd or hi < end_mjd:
            raise NoValidCalibration(
                f"{ms_path}: {kind} table {path} of set {valid.name} is valid for MJD {lo:.5f}-{hi:.5f}, "
                f"not for the data's {start_mjd:.5f}-{end_mjd:.5f}"
            )
