"""The calibration stage: the database side of :mod:`contimg.calibration`, for one MS or one group.

:func:`calibrate_ms` calibrates one MS: it reads the catalogue near the
pointing track and the registry, records the MS row, and calls the science
(:mod:`contimg.calibration`: the calibrator choice, the solve and its gate,
the apply), which never touches the database. Transactions are short and
never span CASA work (on SQLite a writing transaction holds the database's
write lock), so it takes the database *target* (URL, engine or settings), not
a session.

:func:`calibrate` runs the stage for a group, by key: it finds the group's
Measurement Set, checks that its run is still the group's current one,
records the stage's timing; :func:`waited_s` tells the caller how long the
group has been waiting for a valid calibration set (a science group may be
processed before the night's calibrator group is solved; the Celery task
retries it until ``settings.calibration.wait_for_solution_s``).

Example
-------
>>> from contimg.pipeline.calibrate import calibrate_ms
>>> outcome = calibrate_ms("group.ms", database=settings, calibration=settings.calibration,
...                        caltable_dir=settings.paths.caltables, scratch_dir=settings.paths.staging)  # doctest: +SKIP
>>> outcome.mode, outcome.calibration_set  # doctest: +SKIP
('solved', '2025-10-02T10:02:45')
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.calibration.calibrate import (
    CalibrationOutcome,
    CalibrationQaFailed,
    solve_and_judge,
    transit_elsewhere,
)
from contimg.calibration.registry import (
    NoValidCalibration,
    ValidSet,
    check_window,
    choose_valid_set,
    table_rows,
    valid_set_of,
)
from contimg.calibration.select import search_box, sources_near_track
from contimg.calibration.solve import SolveError
from contimg.config import Settings
from contimg.db import groups, run_transaction, session_scope
from contimg.db.models import CalibrationSet, CalTableType, MeasurementSet, ObservationGroup, StageTiming
from contimg.db.states import utcnow
from contimg.errors import InputFileError
from contimg.pipeline.alerts import qa_failed

if TYPE_CHECKING:
    from contimg.calibration.model import PointSources
    from contimg.msmodel import MsModel
    from contimg.calibration.solve import SolveResult

log = logging.getLogger(__name__)

STAGE = "calibrate"


def group_ms(settings: Settings, group_key: str) -> tuple[int, Path]:
    """The id and path of the group's Measurement Set.

    Raises
    ------
    InputFileError
        If the group has no recorded MS, or its directory no longer exists.
    """

    def _find(session: Session) -> tuple[int, str] | None:
        row = session.execute(
            select(MeasurementSet.id, MeasurementSet.path).join(ObservationGroup)
            .where(ObservationGroup.group_key == group_key).order_by(MeasurementSet.id.desc())).first()
        return None if row is None else (row[0], row[1])

    found = run_transaction(settings, _find, readonly=True)
    if found is None:
        raise InputFileError(f"group {group_key}: no Measurement Set recorded (was it converted?)")
    ms_id, path = found
    if not Path(path).is_dir():
        raise InputFileError(f"group {group_key}: Measurement Set {path} is recorded but does not exist")
    return ms_id, Path(path)


def calibrate(settings: Settings, group_key: str, token: str, *, fallback_solve: bool = False) -> dict[str, Any]:
    """Start (or resume) the stage, calibrate the group's MS, end the stage.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``calibration``, ``qa``, caltable and staging paths).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; the stage is recorded only while it is the group's current in-progress run.
    fallback_solve
        Let a group past the calibrator's transit solve itself when no valid set exists (the Celery task sets
        it once ``calibration.wait_for_solution_s`` is over).

    Returns
    -------
    dict
        :meth:`contimg.calibration.CalibrationOutcome.to_dict` plus ``seconds``
        (the stage's work; time deferred for a calibration set is recorded as its wait).

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    contimg.calibration.NoValidCalibration
        If no calibration set is valid for the group (yet).
    """
    from contimg.calibration import NoValidCalibration

    groups.stage_started(settings, group_key, token, STAGE)
    _, ms = group_ms(settings, group_key)
    try:
        outcome = calibrate_ms(ms, database=settings, calibration=settings.calibration,
                               caltable_dir=settings.paths.caltables, scratch_dir=settings.paths.staging,
                               fallback_solve=fallback_solve, qa=settings.qa)
    except NoValidCalibration:  # deferred: until it is asked again the stage waits, it does not work
        groups.stage_paused(settings, group_key, token, STAGE)
        raise
    seconds = groups.stage_finished(settings, group_key, token, STAGE)
    log.info("group %s: calibration %s with set %s (stage %.1f s)", group_key, outcome.mode,
             outcome.calibration_set, seconds)
    return {**outcome.to_dict(), "seconds": seconds}


def catalogue_near_track(session: Session, ms: MsModel, *, calibrators_only: bool = False,
                         radius_deg: float | None = None) -> PointSources:
    """The catalogue sources with a flux near the group's pointing track (:mod:`contimg.calibration.select`).

    Parameters
    ----------
    session
        An open session (the ``sources`` table).
    ms
        The group's MS model (:func:`contimg.msmodel.read_ms`).
    calibrators_only
        Only sources flagged ``is_calibrator``.
    radius_deg
        Largest distance (deg) from the track; None: the default of :func:`~contimg.calibration.select.search_box`.

    Returns
    -------
    PointSources
        Positions (deg), 1.4 GHz fluxes (Jy) and spectral indices, ordered by name.
    """
    from contimg.db.science import catalogue_in_box

    box = search_box(ms, radius_deg=radius_deg)
    return sources_near_track(catalogue_in_box(session, box, calibrators_only=calibrators_only), ms,
                              radius_deg=box.radius_deg)


def find_valid_set(session: Session, *, start_mjd: float, end_mjd: float) -> ValidSet | None:
    """The registered calibration set to apply to data spanning ``[start_mjd, end_mjd]``, or None.

    The rule is :func:`contimg.calibration.registry.choose_valid_set`, over the active sets.

    Parameters
    ----------
    session
        An open session.
    start_mjd, end_mjd
        The data's time span (MJD).

    Returns
    -------
    ValidSet or None
    """
    from contimg.db.products import active_calibration_sets

    return choose_valid_set(active_calibration_sets(session), start_mjd=start_mjd, end_mjd=end_mjd)


def register_solution(session: Session, *, name: str, solution: SolveResult, calibrator_name: str, solve_mjd: float,
                      bandpass_validity_h: float, gain_validity_h: float, source_ms_id: int | None = None,
                      qa: dict[str, Any] | None = None) -> CalibrationSet:
    """Record (or re-record) the tables of one solve as the active calibration set ``name``.

    Windows from :func:`contimg.calibration.registry.table_rows`, rows by
    :func:`contimg.db.products.register_calibration_set` (same name: updated in place).

    Parameters
    ----------
    session
        An open session; rows are flushed, not committed.
    name
        The calibration set's name.
    solution
        The solve's tables and statistics.
    calibrator_name
        The calibrator solved on.
    solve_mjd
        Centre of the validity windows (MJD): the calibrator group's mid-time.
    bandpass_validity_h, gain_validity_h
        Half-widths (h) of the K/B and G windows.
    source_ms_id
        Database id of the MS solved on (None: unknown).
    qa
        JSON-ready QA record of the set; None stores none.

    Returns
    -------
    CalibrationSet
        The set's row with its tables (its ``qa_verdict`` is left for the caller to set).
    """
    from contimg.db.products import register_calibration_set

    rows = table_rows(solution, solve_mjd=solve_mjd, bandpass_validity_h=bandpass_validity_h,
                      gain_validity_h=gain_validity_h)
    return register_calibration_set(session, name=name, calibrator_name=calibrator_name, solve_mjd=solve_mjd,
                                    tables=rows, source_ms_id=source_ms_id, qa=qa)


def _record_ms(database: Any, ms_path: Path, **fields: Any) -> int:
    from contimg.db.products import upsert_measurement_set

    with session_scope(database) as s:
        ms = upsert_measurement_set(s, path=str(ms_path), **fields)
        if ms.group is not None and "calibrator_name" in fields:
            ms.group.calibrator_name = fields["calibrator_name"]
            ms.group.calibrator_beam_response = fields.get("calibrator_beam_response")
        return ms.id


def _previous_bandpass(database: Any, *, before_mjd: float, name: str) -> str | None:
    """The B table of the active set solved last before ``before_mjd`` (another set than ``name``)."""
    with session_scope(database, readonly=True) as s:
        sets = s.scalars(select(CalibrationSet).where(CalibrationSet.active.is_(True), CalibrationSet.name != name,
                                                      CalibrationSet.solve_mjd < before_mjd)
                         .order_by(CalibrationSet.solve_mjd.desc())).all()
        for cs in sets:
            for t in cs.tables:
                if t.table_type == CalTableType.B and t.active and Path(t.path).exists():
                    return t.path
    return None


def _valid_set(database: Any, ms: MsModel) -> ValidSet | None:
    with session_scope(database, readonly=True) as s:
        return find_valid_set(s, start_mjd=ms.start_mjd, end_mjd=ms.end_mjd)


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
    group never came, or failed). Rerunning is idempotent: the model is
    recomputed, tables of the same names are replaced, the registry rows are
    updated in place, CORRECTED_DATA rewritten.

    Parameters
    ----------
    ms_path
        The converted MS (one field, one spectral window).
    database
        Database target for :func:`contimg.db.session_scope` (URL, engine or settings); when it is the settings
        (the stage, ``contimg calibrate``), a set that fails the calibration gate is notified (``qa_failed``).
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
    from contimg.calibration.apply import apply_tables
    from contimg.calibration.select import choose_calibrator
    from contimg.config import QaSettings
    from contimg.conversion.msio import ensure_imaging_columns
    from contimg.msmodel import read_ms
    from contimg.verdict import jsonable

    ms_path = Path(ms_path)
    qa = qa if qa is not None else QaSettings()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ms = read_ms(ms_path)  # read once: selection, model, solve and registry all use it
    ensure_imaging_columns(ms_path)  # an MS from elsewhere may lack MODEL_DATA, CORRECTED_DATA, ...
    with session_scope(database, readonly=True) as s:
        choice = choose_calibrator(catalogue_near_track(s, ms, calibrators_only=True), ms,
                                   min_beam_response=calibration.min_beam_response,
                                   min_calibrator_flux_jy=calibration.min_calibrator_flux_jy)
        sources = catalogue_near_track(s, ms) if choice is not None else None
    ms_id = _record_ms(database, ms_path, start_mjd=ms.start_mjd, end_mjd=ms.end_mjd,
                       calibrator_name=choice.name if choice else None,
                       calibrator_beam_response=choice.beam_response if choice else None)
    timings["select"] = round(time.perf_counter() - t0, 3)

    extra: dict[str, Any] = {}
    chosen, mode = None, "applied"
    elsewhere = transit_elsewhere(choice, calibration)
    if elsewhere is not None:
        chosen = _valid_set(database, ms)
        if chosen is None and fallback_solve:
            log.warning("%s: %s, but no solution came within the wait; solving here instead", ms_path, elsewhere)
        elif chosen is None:
            raise NoValidCalibration(f"{ms_path}: {elsewhere}; no valid calibration set for MJD "
                                     f"{ms.start_mjd:.5f}-{ms.end_mjd:.5f} yet")
        else:
            log.info("%s: %s; applying set %s", ms_path, elsewhere, chosen.name)
            extra = {"solve_skipped": elsewhere}
    if choice is not None and chosen is None:
        name = set_name or ms_path.name.removesuffix(".ms")
        try:
            assert sources is not None
            solved = solve_and_judge(
                ms, choice=choice, sources=sources, calibration=calibration, qa=qa,
                caltable_dir=caltable_dir, scratch_dir=scratch_dir, name=name,
                previous_bandpass=_previous_bandpass(database, before_mjd=ms.mid_mjd, name=name), timings=timings)
        except SolveError as exc:
            # a failed solve (e.g. too many flagged solutions) leaves the group a science group
            log.warning("%s: %s; applying the registry's valid set instead", ms_path, exc)
            if isinstance(exc, CalibrationQaFailed) and isinstance(database, Settings):  # the stage, the CLI
                qa_failed(database, product="calibration", name=name, reasons=exc.verdict.reasons,
                          data={"ms": str(ms_path), "calibrator": choice.name,
                                "figures": jsonable(exc.verdict.figures)})
            extra = {"solve_error": str(exc)}
        else:
            with session_scope(database) as s:
                calset = register_solution(
                    s, name=name, solution=solved.solution, calibrator_name=choice.name, solve_mjd=ms.mid_mjd,
                    bandpass_validity_h=calibration.bandpass_validity_h, gain_validity_h=calibration.gain_validity_h,
                    source_ms_id=ms_id, qa=jsonable(solved.qa_record))
                calset.qa_verdict = solved.verdict.status
                chosen = valid_set_of(calset)
            extra, mode = solved.outcome_fields, "solved"
    if chosen is None:
        chosen = _valid_set(database, ms)
        if chosen is None:
            reason = extra.get("solve_error") or "no calibrator in the beam"
            raise NoValidCalibration(
                f"{ms_path}: {reason} and no valid calibration set for MJD "
                f"{ms.start_mjd:.5f}-{ms.end_mjd:.5f}"
            )

    check_window(chosen, start_mjd=ms.start_mjd, end_mjd=ms.end_mjd, ms_path=str(ms_path))
    t1 = time.perf_counter()
    applied = apply_tables(ms_path, [(k, p) for k, p, _, _ in chosen.tables])
    timings["apply"] = round(time.perf_counter() - t1, 3)
    _record_ms(database, ms_path, stage="calibrated", calibration_set_id=chosen.id)
    timings["total"] = round(time.perf_counter() - t0, 3)
    outcome = CalibrationOutcome(
        ms_path=str(ms_path.absolute()), mode=mode, calibration_set=chosen.name, calibration_set_id=chosen.id,
        tables=[p for _, p, _, _ in chosen.tables], calibrator_name=choice.name if choice else None,
        calibrator_beam_response=choice.beam_response if choice else None,
        data_flagged_fraction=applied.flagged_fraction, timings_s=timings, **extra,
    )
    log.info("%s: calibration %s with set %s in %.1f s", ms_path, mode, chosen.name, timings["total"])
    return outcome


def waited_s(settings: Settings, group_key: str, token: str, *, now: datetime | None = None) -> float:
    """Seconds since this run's attempt at the stage started (0 if it has not).

    Measured from the stage timing's ``started_at``, which a retried task
    does not reset, so it counts the whole wait for a calibration set.

    Parameters
    ----------
    settings
        The pipeline settings (its database).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; must be the group's current in-progress run.
    now
        The current time (timezone-aware UTC; default :func:`contimg.db.states.utcnow`), for tests.

    Returns
    -------
    float
        Seconds waited (never negative).

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current in-progress run.
    """

    def _started(session: Session) -> datetime | None:
        group = groups._current(session, group_key, token)  # noqa: SLF001 - the same fencing check
        return session.scalar(select(StageTiming.started_at).where(
            StageTiming.group_id == group.id, StageTiming.stage == STAGE, StageTiming.attempt == group.attempt))

    started = run_transaction(settings, _started)
    if started is None:
        return 0.0
    return max(0.0, ((now or utcnow()) - started).total_seconds())


def retry_delay_s(waited: float, *, limit_s: float, stale_s: float, poll_s: float = 10.0,
                  first_s: float = 5.0) -> float | None:
    """How long to wait before asking again for a calibration set; None when the wait is over.

    The delay doubles with the time already waited (``first_s``, then about
    the time waited so far) up to ``poll_s``, never passes the remaining
    budget, and stays under a third of ``stale_s`` so that the housekeeping
    sweep, which re-enqueues runs without a heartbeat for ``stale_s``, does
    not mistake a waiting group for a lost one (every retry beats the heart).

    The cap is what the science groups of a transit lose once the transit's
    set is registered: without it the delay had grown to ~40 s by the time a
    full-scale transit was solved (~90 s after conversion) and a waiting group
    came to image after the groups behind it (``benchmarks/night.py``). An ask
    costs well under a second of a worker slot (a database query and the MS's
    calibrator response), so a 10 s poll over a 30 min wait is ~1 % of a slot.

    Parameters
    ----------
    waited
        Seconds already waited (:func:`waited_s`).
    limit_s
        The whole wait allowed (``settings.calibration.wait_for_solution_s``), in seconds.
    stale_s
        The sweep's staleness limit (``settings.ingest.stale_in_progress_s``), in seconds.
    poll_s
        The longest delay (``settings.calibration.wait_poll_s``), in seconds.
    first_s
        The first delay (s).

    Returns
    -------
    float or None
        The delay in seconds (at least 1 s, even when less of the budget remains), or None once ``waited``
        reaches ``limit_s``.
    """
    remaining = limit_s - waited
    if remaining <= 0:
        return None
    return max(1.0, min(max(first_s, waited), poll_s, remaining, stale_s / 3))
