"""The calibration stage's single entry point: :func:`calibrate_ms`.

For one converted group (one MS):

1. read the MS's metadata and choose the calibrator in the beam
   (:mod:`.select`), recording the choice on the MS's database row;
2. *calibrator group*: write MODEL_DATA from every catalogue source near the
   pointing track (:mod:`.model`), solve K (optional), B and G on a
   time-averaged copy (:mod:`.solve`), plot the solutions (:mod:`.qa`) and
   register the tables as the calibration set ``<MS name>`` with validity
   windows (:mod:`.registry`);
   *science group* (or a calibrator group whose solve failed its checks, the
   reason kept in ``solve_error``): look up the valid set closest in time
   (none: the MS cannot be calibrated,
   :class:`~contimg.calibration.registry.NoValidCalibration`);
3. apply the set (:mod:`.apply`): CORRECTED_DATA, and record on the MS's row
   which set was applied (``stage = 'calibrated'``).

Rerunning is idempotent: the model is recomputed, tables of the same names are
replaced, the registry rows are updated in place, CORRECTED_DATA rewritten.

Database transactions are short and never span CASA work (on SQLite a
writing transaction holds the database's write lock), so the function takes
the database *target* (URL, engine or settings), not a session.

Example
-------
>>> from contimg.calibration import calibrate_ms
>>> outcome = calibrate_ms("group.ms", database=settings, calibration=settings.calibration,
...                        caltable_dir=settings.paths.caltables, scratch_dir=settings.paths.staging)  # doctest: +SKIP
>>> outcome.mode, outcome.calibration_set  # doctest: +SKIP
('solved', '2025-10-02T10:02:45')
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contimg.calibration.apply import apply_tables
from contimg.calibration.model import brighter_than, write_model_data
from contimg.calibration.msmeta import read_ms_meta
from contimg.calibration.qa import plot_solutions
from contimg.calibration.registry import (
    NoValidCalibration,
    ValidSet,
    check_window,
    find_valid_set,
    register_solution,
)
from contimg.calibration.select import choose_calibrator, sources_near_track
from contimg.calibration.solve import SolveError, solve_calibrator

log = logging.getLogger(__name__)

__all__ = ["CalibrationOutcome", "calibrate_ms"]


@dataclass
class CalibrationOutcome:
    """What :func:`calibrate_ms` did; JSON-serialisable through :meth:`to_dict`."""

    ms_path: str
    mode: str
    """``solved`` (calibrator group: solved and applied its own tables) or ``applied`` (science group)."""
    calibration_set: str
    calibration_set_id: int
    tables: list[str]
    calibrator_name: str | None = None
    calibrator_beam_response: float | None = None
    refant: str | None = None
    n_model_sources: int = 0
    flagged_fraction: dict[str, float] = field(default_factory=dict)
    """Flagged solution fraction per solved table type."""
    data_flagged_fraction: float = 0.0
    """Fraction of cross-correlations flagged after the apply."""
    plots: dict[str, str] = field(default_factory=dict)
    solve_error: str | None = None
    """Why a calibrator group's solve failed (the registry's valid set was applied instead)."""
    qa_verdict: str | None = None
    """The calibration gate's verdict on the set this group solved (None: it solved none)."""
    qa_reasons: list[str] = field(default_factory=list)
    solve_skipped: str | None = None
    """Why a group with a usable calibrator applied another group's set (its transit is solved there)."""
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record_ms(database, ms_path: Path, **fields: Any) -> int:
    from contimg.db import session_scope
    from contimg.db.products import upsert_measurement_set

    with session_scope(database) as s:
        ms = upsert_measurement_set(s, path=str(ms_path), **fields)
        if ms.group is not None and "calibrator_name" in fields:
            ms.group.calibrator_name = fields["calibrator_name"]
            ms.group.calibrator_beam_response = fields.get("calibrator_beam_response")
        return ms.id


def _previous_bandpass(database, *, before_mjd: float, name: str) -> str | None:
    """The B table of the active set solved last before ``before_mjd`` (another set than ``name``)."""
    from sqlalchemy import select

    from contimg.db import session_scope
    from contimg.db.models import CalibrationSet, CalTableType

    with session_scope(database, readonly=True) as s:
        sets = s.scalars(select(CalibrationSet).where(CalibrationSet.active.is_(True), CalibrationSet.name != name,
                                                      CalibrationSet.solve_mjd < before_mjd)
                         .order_by(CalibrationSet.solve_mjd.desc())).all()
        for cs in sets:
            for t in cs.tables:
                if t.table_type == CalTableType.B and t.active and Path(t.path).exists():
                    return t.path
    return None


def _solve_and_register(ms_path: Path, *, meta, choice, sources, ms_id: int, database, calibration, qa, caltable_dir,
                        scratch_dir, name: str, timings: dict[str, float]) -> tuple[ValidSet, dict[str, Any]]:
    """Model, solve, judge, plot and register; returns the new set and the outcome's solve fields.

    Raises
    ------
    SolveError
        If the solve, or the calibration gate (:mod:`.gate`), fails: the set is not registered.
    """
    from contimg.calibration.gate import bandpass_scatter, judge_calibration
    from contimg.db import session_scope
    from contimg.verdict import jsonable

    t1 = time.perf_counter()
    sources = brighter_than(sources, meta, calibration.model_min_flux_jy, keep=(choice.name,))
    model = write_model_data(ms_path, sources, meta=meta)
    timings["model"] = round(time.perf_counter() - t1, 3)
    t1 = time.perf_counter()
    solution = solve_calibrator(
        ms_path, out_dir=caltable_dir, prefix=name, scratch_dir=scratch_dir, do_k=calibration.do_k,
        refant=calibration.refant, max_flagged_fraction=calibration.max_flagged_fraction, meta=meta,
    )
    timings["solve"] = round(time.perf_counter() - t1, 3)
    previous = _previous_bandpass(database, before_mjd=meta.mid_mjd, name=name)
    verdict = judge_calibration(
        flagged={k: v.flagged_fraction for k, v in solution.stats.items()}, snr=solution.snr,
        agreement=solution.model_agreement,
        scatter=bandpass_scatter(solution.tables["B"], previous) if previous and "B" in solution.tables else None,
        max_flagged_fraction=calibration.max_flagged_fraction, qa=qa,
        dead_antennas=solution.stats["G"].antennas_without_data if "G" in solution.stats else None,
        n_antennas=meta.Nants)
    if verdict.failed:
        raise SolveError(f"{ms_path}: calibration QA failed: {'; '.join(verdict.reasons)}")
    if verdict.reasons:
        log.warning("%s: calibration QA %s", ms_path, verdict.summary())
    t1 = time.perf_counter()
    plots = plot_solutions(solution.tables, refant=solution.refant, freq_hz=meta.freq_array)
    timings["qa"] = round(time.perf_counter() - t1, 3)
    qa_record = {
        "ms": str(ms_path), "refant": solution.refant, "calibrator": choice.name,
        "calibrator_flux_jy": choice.flux_jy, "beam_response": choice.beam_response,
        "model_sources": model.n_sources, "model_apparent_flux_jy": model.total_apparent_flux_jy,
        "stats": {k: asdict(v) for k, v in solution.stats.items()}, "plots": plots,
        "timings_s": solution.timings_s, "verdict": verdict.status, "reasons": verdict.reasons,
        "figures": verdict.figures,
    }
    with session_scope(database) as s:
        calset = register_solution(
            s, name=name, solution=solution, calibrator_name=choice.name, solve_mjd=meta.mid_mjd,
            bandpass_validity_h=calibration.bandpass_validity_h, gain_validity_h=calibration.gain_validity_h,
            source_ms_id=ms_id, qa=jsonable(qa_record),
        )
        calset.qa_verdict = verdict.status
        own = ValidSet(id=calset.id, name=calset.name, calibrator_name=calset.calibrator_name,
                       solve_mjd=calset.solve_mjd,
                       tables=[(t.table_type.value, t.path, t.valid_start_mjd, t.valid_end_mjd)
                               for t in sorted(calset.tables, key=lambda t: t.apply_order)])
    extra = dict(refant=solution.refant, n_model_sources=model.n_sources, plots=plots, qa_verdict=verdict.status,
                 qa_reasons=verdict.reasons, flagged_fraction={k: v.flagged_fraction for k, v in solution.stats.items()})
    return own, extra


def calibrate_ms(
    ms_path: str | Path,
    *,
    database: Any,
    calibration: Any,
    caltable_dir: str | Path,
    scratch_dir: str | Path,
    set_name: str | None = None,
    fallback_solve: bool = False,
    qa: Any = None,
) -> CalibrationOutcome:
    """Calibrate one group's MS: solve if it holds a calibrator transit, else apply the registry's valid set.

    A calibrator transit is solved once, on the group that holds it (its best
    response reaches ``calibration.transit_fraction`` of the response at
    transit); a neighbouring group that sees the calibrator past its transit
    applies that group's set and, until it is registered, raises
    :class:`NoValidCalibration` (the cluster retries it, waiting up to
    ``calibration.wait_for_solution_s``). ``calibration.resolve_low_response``
    makes every group with a usable calibrator solve, as before;
    ``fallback_solve`` lets this group solve once the wait is over (the transit
    group never came, or failed).

    Parameters
    ----------
    ms_path
        The converted MS (one field, one spectral window).
    database
        Database target for :func:`contimg.db.session_scope` (URL, engine or settings).
    calibration
        ``settings.calibration`` (:class:`contimg.config.CalibrationSettings`).
    caltable_dir
        Where tables and QA plots are written (``settings.paths.caltables``).
    scratch_dir
        Fast scratch space for the time-averaged copy (``settings.paths.staging``).
    set_name
        Name of the calibration set a calibrator group registers (default: the MS's name without ``.ms``).
    fallback_solve
        Solve on a usable calibrator past its transit when no valid set exists (see above).
    qa
        ``settings.qa``, the calibration gate's thresholds (default: the built-in ones).

    Returns
    -------
    CalibrationOutcome

    Raises
    ------
    NoValidCalibration
        A science group, or a calibrator group whose solve failed (too many
        flagged solutions), with no valid calibration set.
    contimg.errors.InputFileError, contimg.errors.ExternalToolError
        An unreadable MS or a failing CASA task.
    """
    from contimg.db import session_scope

    from contimg.config import QaSettings

    ms_path = Path(ms_path)
    qa = qa if qa is not None else QaSettings()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    meta = read_ms_meta(ms_path)
    from contimg.conversion.msio import ensure_imaging_columns

    ensure_imaging_columns(ms_path)  # an MS from elsewhere may lack MODEL_DATA, CORRECTED_DATA, ...
    with session_scope(database, readonly=True) as s:
        choice = choose_calibrator(s, meta, min_beam_response=calibration.min_beam_response,
                                   min_calibrator_flux_jy=calibration.min_calibrator_flux_jy)
        sources = sources_near_track(s, meta) if choice is not None else None
    ms_id = _record_ms(database, ms_path, start_mjd=meta.start_mjd, end_mjd=meta.end_mjd,
                       calibrator_name=choice.name if choice else None,
                       calibrator_beam_response=choice.beam_response if choice else None)
    timings["select"] = round(time.perf_counter() - t0, 3)

    extra: dict[str, Any]
    chosen, mode, extra = None, "applied", {}
    waiting_for_transit = None
    if choice is not None and choice.transit_fraction < calibration.transit_fraction \
            and not calibration.resolve_low_response:
        waiting_for_transit = (f"calibrator {choice.name} is past its transit here (response "
                               f"{choice.beam_response:.2f}, {choice.transit_response:.2f} at transit): "
                               "the group holding its transit solves it")
        with session_scope(database, readonly=True) as s:
            chosen = find_valid_set(s, start_mjd=meta.start_mjd, end_mjd=meta.end_mjd)
        if chosen is None and fallback_solve:
            log.warning("%s: %s, but no solution came within the wait; solving here instead", ms_path,
                        waiting_for_transit)
        elif chosen is None:
            raise NoValidCalibration(f"{ms_path}: {waiting_for_transit}; no valid calibration set for MJD "
                                     f"{meta.start_mjd:.5f}-{meta.end_mjd:.5f} yet")
        else:
            log.info("%s: %s; applying set %s", ms_path, waiting_for_transit, chosen.name)
            extra = {"solve_skipped": waiting_for_transit}
    if choice is not None and chosen is None:
        try:
            chosen, extra = _solve_and_register(
                ms_path, meta=meta, choice=choice, sources=sources, ms_id=ms_id, database=database,
                calibration=calibration, qa=qa, caltable_dir=caltable_dir, scratch_dir=scratch_dir,
                name=set_name or ms_path.name.removesuffix(".ms"), timings=timings,
            )
            mode = "solved"
        except SolveError as exc:
            # a failed solve (e.g. too many flagged solutions) leaves the group a science group
            log.warning("%s: %s; applying the registry's valid set instead", ms_path, exc)
            extra = {"solve_error": str(exc)}
    if chosen is None:
        with session_scope(database, readonly=True) as s:
            chosen = find_valid_set(s, start_mjd=meta.start_mjd, end_mjd=meta.end_mjd)
        if chosen is None:
            reason = extra.get("solve_error") or "no calibrator in the beam"
            raise NoValidCalibration(
                f"{ms_path}: {reason} and no valid calibration set for MJD "
                f"{meta.start_mjd:.5f}-{meta.end_mjd:.5f}"
            )

    check_window(chosen, start_mjd=meta.start_mjd, end_mjd=meta.end_mjd, ms_path=str(ms_path))
    t1 = time.perf_counter()
    applied = apply_tables(ms_path, [(k, p) for k, p, _, _ in chosen.tables])
    timings["apply"] = round(time.perf_counter() - t1, 3)
    _record_ms(database, ms_path, stage="calibrated", calibration_set_id=chosen.id)
    timings["total"] = round(time.perf_counter() - t0, 3)
    outcome = CalibrationOutcome(
        ms_path=str(ms_path), mode=mode, calibration_set=chosen.name, calibration_set_id=chosen.id,
        tables=[p for _, p, _, _ in chosen.tables], calibrator_name=choice.name if choice else None,
        calibrator_beam_response=choice.beam_response if choice else None,
        data_flagged_fraction=applied.flagged_fraction, timings_s=timings, **extra,
    )
    log.info("%s: calibration %s with set %s in %.1f s", ms_path, mode, chosen.name, timings["total"])
    return outcome
