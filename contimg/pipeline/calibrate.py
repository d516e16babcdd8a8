"""The calibration stage for one group, by key: solve (calibrator group) or apply (science group).

A thin layer over :func:`contimg.calibration.calibrate_ms`: it finds the
group's Measurement Set in the database, checks that its run is still the
group's current one, records the stage's timing, and tells the caller how long
the group has been waiting for a valid calibration set (a science group may be
processed before the night's calibrator group is solved; the Celery task
retries it until ``settings.calibration.wait_for_solution_s``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import MeasurementSet, ObservationGroup, StageTiming
from contimg.db.states import utcnow
from contimg.errors import InputFileError

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

    Returns
    -------
    dict
        :meth:`contimg.calibration.CalibrationOutcome.to_dict` plus ``seconds``
        (the stage's duration, waiting included).

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    contimg.calibration.NoValidCalibration
        If no calibration set is valid for the group (yet).
    """
    from contimg.calibration import calibrate_ms

    groups.stage_started(settings, group_key, token, STAGE)
    _, ms = group_ms(settings, group_key)
    outcome = calibrate_ms(ms, database=settings, calibration=settings.calibration,
                           caltable_dir=settings.paths.caltables, scratch_dir=settings.paths.staging,
                           fallback_solve=fallback_solve, qa=settings.qa)
    seconds = groups.stage_finished(settings, group_key, token, STAGE)
    log.info("group %s: calibration %s with set %s (stage %.1f s)", group_key, outcome.mode,
             outcome.calibration_set, seconds)
    return {**outcome.to_dict(), "seconds": seconds}


def waited_s(settings: Settings, group_key: str, token: str, *, now: datetime | None = None) -> float:
    """Seconds since this run's attempt at the stage started (0 if it has not).

    Measured from the stage timing's ``started_at``, which a retried task
    does not reset, so it counts the whole wait for a calibration set.
    """

    def _started(session: Session) -> datetime | None:
        group = groups._current(session, group_key, token)  # noqa: SLF001 - the same fencing check
        return session.scalar(select(StageTiming.started_at).where(
            StageTiming.group_id == group.id, StageTiming.stage == STAGE, StageTiming.attempt == group.attempt))

    started = run_transaction(settings, _started)
    if started is None:
        return 0.0
    return max(0.0, ((now or utcnow()) - started).total_seconds())


def retry_delay_s(waited: float, *, limit_s: float, stale_s: float, first_s: float = 5.0) -> float | None:
    """How long to wait before asking again for a calibration set; None when the wait is over.

    The delay doubles with the time already waited (``first_s``, then about
    the time waited so far), never passes the remaining budget, and stays
    under a third of ``stale_s`` so that the housekeeping sweep, which
    re-enqueues runs without a heartbeat for ``stale_s``, does not mistake a
    waiting group for a lost one (every retry beats the heart).
    """
    remaining = limit_s - waited
    if remaining <= 0:
        return None
    return max(1.0, min(max(first_s, waited), remaining, stale_s / 3))
