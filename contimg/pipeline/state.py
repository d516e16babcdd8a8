"""A group's run in the database: publishing, claiming, stage timings, completion, failure.

This is the exactly-once protocol shared by the producer, the workers, beat and
reprocessing. It knows nothing of Celery: publishing is an ``enqueue`` callable.

The *run token* is the group's ``task_id``: it is written in the same
transaction that makes the group ``pending`` and is used as the Celery task id
of the run's first task. Every task of the run carries it and checks it against
the database before doing anything (a fencing token), so

* a run published twice (a crash between publishing and recording the
  publication, then the sweep) is claimed once: ``pending → in_progress`` is
  conditional on the token, and the second copy finds the group already
  ``in_progress`` and stops;
* a run that was superseded (re-enqueued after a lost worker, or reprocessed)
  can no longer touch the group: its tasks find another token and stop.

``pending`` groups that were never published (``enqueued_at`` is null) are
published again by :func:`publish_unpublished`, with the *same* token.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.db import GroupState, apply_transition, run_transaction
from contimg.db.models import ObservationGroup, StageTiming
from contimg.db.states import utcnow
from contimg.errors import ContimgError, InvalidTransitionError, PermanentError
from contimg.pipeline.stages import STAGES, stages_from

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str, str], Any]
"""``enqueue(group_key, run_token, from_stage)`` publishes a group's run; raises on failure."""


class StaleRunError(ContimgError):
    """The task belongs to a run that is no longer the group's current one: stop quietly."""


class UnknownGroupError(PermanentError):
    """No group with this key exists."""


def new_run_token() -> str:
    """A fresh run token (also the Celery id of the run's first task)."""
    return str(uuid.uuid4())


def _get_group(session: Session, group_key: str, *, lock: bool = True) -> ObservationGroup:
    stmt = select(ObservationGroup).where(ObservationGroup.group_key == group_key)
    if lock:
        stmt = stmt.with_for_update()
    group = session.scalar(stmt)
    if group is None:
        raise UnknownGroupError(f"group {group_key}: no such group in the database")
    return group


def make_pending(group: ObservationGroup, *, from_stage: str | None = None) -> str:
    """Move ``group`` to ``pending`` with a new run token (in the caller's transaction).

    ``current_stage`` records where the run starts. Returns the token.
    """
    stage = stages_from(from_stage)[0]
    apply_transition(group, GroupState.PENDING)
    group.task_id = new_run_token()
    group.current_stage = stage
    return group.task_id


@dataclass(frozen=True)
class Published:
    """One publication of a group's run."""

    group_key: str
    token: str
    from_stage: str


def publish(db: Any, published: Published, enqueue: Enqueue) -> None:
    """Call ``enqueue`` for a pending run, then record ``enqueued_at``.

    A crash between the two leaves ``enqueued_at`` null; the sweep publishes
    the same token again, and the claim lets only one copy run.
    """
    enqueue(published.group_key, published.token, published.from_stage)

    def _mark(session: Session) -> None:
        group = _get_group(session, published.group_key)
        if group.task_id == published.token and group.enqueued_at is None:
            group.enqueued_at = utcnow()

    run_transaction(db, _mark)
    log.info("group %s enqueued (run %s, from %s)", published.group_key, published.token, published.from_stage)


def publish_unpublished(db: Any, enqueue: Enqueue, *, grace_s: float = 0.0, now: datetime | None = None) -> list[str]:
    """Publish every ``pending`` group not yet recorded as enqueued; returns their keys.

    Parameters
    ----------
    grace_s
        Leave alone groups made pending less than this long ago (their
        publisher may be about to record the publication).
    """
    cutoff = (now or utcnow()) - timedelta(seconds=grace_s)

    def _find(session: Session) -> list[Published]:
        rows = session.scalars(
            select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.PENDING,
                   ObservationGroup.enqueued_at.is_(None),
                   ObservationGroup.updated_at <= cutoff)
            .order_by(ObservationGroup.timestamp)
            .with_for_update()
        ).all()
        out = []
        for group in rows:
            if group.task_id is None:
                group.task_id = new_run_token()
            out.append(Published(group.group_key, group.task_id, group.current_stage or STAGES[0]))
        return out

    todo = run_transaction(db, _find)
    for item in todo:
        log.warning("group %s is pending but was never published: publishing run %s", item.group_key, item.token)
        publish(db, item, enqueue)
    return [item.group_key for item in todo]


def claim(db: Any, group_key: str, token: str) -> bool:
    """``pending → in_progress`` for run ``token``; False if this run must not proceed.

    True exactly once per run. A duplicate delivery of the run's first task,
    or a superseded run, gets False.
    """

    def _claim(session: Session) -> bool:
        group = _get_group(session, group_key)
        if group.task_id != token:
            log.warning("group %s: run %s is not current (current %s); not claiming", group_key, token, group.task_id)
            return False
        if group.state is not GroupState.PENDING:
            log.warning("group %s: run %s already claimed (state %s); duplicate delivery ignored",
                        group_key, token, group.state.value)
            return False
        apply_transition(group, GroupState.IN_PROGRESS)
        return True

    return run_transaction(db, _claim)


def _current(session: Session, group_key: str, token: str) -> ObservationGroup:
    group = _get_group(session, group_key)
    if group.task_id != token or group.state is not GroupState.IN_PROGRESS:
        raise StaleRunError(
            f"group {group_key}: run {token} is not the current in-progress run "
            f"(state {group.state.value}, run {group.task_id})")
    return group


def check_current(db: Any, group_key: str, token: str) -> None:
    """Raise :class:`StaleRunError` unless ``token`` is the group's in-progress run; beats the heart."""

    def _check(session: Session) -> None:
        _current(session, group_key, token).heartbeat_at = utcnow()

    run_transaction(db, _check)


def stage_started(db: Any, group_key: str, token: str, stage: str) -> None:
    """Record that ``stage`` started (idempotent for a redelivered task)."""

    def _start(session: Session) -> None:
        group = _current(session, group_key, token)
        now = utcnow()
        group.current_stage = stage
        group.heartbeat_at = now
        timing = session.scalar(select(StageTiming).where(
            StageTiming.group_id == group.id, StageTiming.stage == stage, StageTiming.attempt == group.attempt))
        if timing is None:
            session.add(StageTiming(group_id=group.id, stage=stage, attempt=group.attempt, started_at=now,
                                    status="running", hostname=socket.gethostname()))

    run_transaction(db, _start)


def stage_finished(db: Any, group_key: str, token: str, stage: str) -> float:
    """Record that ``stage`` finished; returns its duration in seconds."""

    def _finish(session: Session) -> float:
        group = _current(session, group_key, token)
        now = utcnow()
        group.heartbeat_at = now
        timing = session.scalar(select(StageTiming).where(
            StageTiming.group_id == group.id, StageTiming.stage == stage, StageTiming.attempt == group.attempt))
        if timing is None:  # started before a crash that lost the row: record what we know
            timing = StageTiming(group_id=group.id, stage=stage, attempt=group.attempt, started_at=now)
            session.add(timing)
        timing.finished_at = now
        timing.seconds = (now - timing.started_at).total_seconds()
        timing.status = "ok"
        timing.hostname = socket.gethostname()
        return timing.seconds

    return run_transaction(db, _finish)


def complete(db: Any, group_key: str, token: str) -> bool:
    """``in_progress → completed`` for run ``token``; False if already done (idempotent)."""

    def _complete(session: Session) -> bool:
        group = _get_group(session, group_key)
        if group.task_id == token and group.state is GroupState.COMPLETED:
            return False
        group = _current(session, group_key, token)
        apply_transition(group, GroupState.COMPLETED)
        group.current_stage = None
        return True

    done = run_transaction(db, _complete)
    if done:
        log.info("group %s completed", group_key)
    return done


def fail(db: Any, group_key: str, error: str, *, token: str | None = None) -> bool:
    """Mark the group ``failed`` with ``error``; idempotent.

    With ``token``, only if that run is still the group's current, unfinished
    one (a superseded run's failure changes nothing). Running stage timings
    are marked failed. Returns True if the state changed.
    """

    def _fail(session: Session) -> bool:
        group = _get_group(session, group_key)
        if token is not None and group.task_id != token:
            log.info("group %s: failure of superseded run %s ignored: %s", group_key, token, error)
            return False
        if group.state in (GroupState.FAILED, GroupState.COMPLETED):
            return False
        now = utcnow()
        for timing in group.stage_timings:
            if timing.attempt == group.attempt and timing.status == "running":
                timing.status = "failed"
                timing.finished_at = now
                timing.seconds = (now - timing.started_at).total_seconds()
        apply_transition(group, GroupState.FAILED, error=error[:4000])
        return True

    changed = run_transaction(db, _fail)
    if changed:
        log.error("group %s failed: %s", group_key, error)
    return changed


def requeue_stale(db: Any, enqueue: Enqueue, *, stale_s: float, max_retries: int,
                  now: datetime | None = None) -> dict[str, list[str]]:
    """Re-enqueue ``in_progress`` groups without a heartbeat for ``stale_s`` (lost workers).

    The run restarts at the stage it was in (every stage is idempotent) with a
    new token, so the lost run's stragglers cannot interfere. After
    ``max_retries`` re-enqueues the group fails instead.

    Returns
    -------
    dict
        ``{"requeued": [...], "failed": [...]}`` group keys.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=stale_s)

    def _sweep(session: Session) -> tuple[list[Published], list[str]]:
        rows = session.scalars(
            select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.IN_PROGRESS,
                   ObservationGroup.heartbeat_at <= cutoff)
            .with_for_update()
        ).all()
        requeued, failed = [], []
        for group in rows:
            if (group.retry_count or 0) >= max_retries:
                apply_transition(group, GroupState.FAILED,
                                 error=f"group {group.group_key}: no sign of life for {stale_s:.0f} s in stage "
                                       f"{group.current_stage} after {group.retry_count} re-enqueues; giving up")
                failed.append(group.group_key)
                continue
            stage = group.current_stage if group.current_stage in STAGES else STAGES[0]
            token = make_pending(group, from_stage=stage)
            requeued.append(Published(group.group_key, token, stage))
        return requeued, failed

    requeued, failed = run_transaction(db, _sweep)
    for item in requeued:
        log.warning("group %s: worker lost (no heartbeat for %.0f s); re-enqueued from %s",
                    item.group_key, stale_s, item.from_stage)
        publish(db, item, enqueue)
    return {"requeued": [p.group_key for p in requeued], "failed": failed}


def request_reprocess(db: Any, group_keys: Sequence[str], *, from_stage: str | None = None) -> list[Published]:
    """Make finished groups ``pending`` again with new run tokens (publish them afterwards).

    Raises
    ------
    UnknownGroupError
        If a key does not exist (nothing is changed).
    InvalidTransitionError
        If a group is still collecting or already queued/running.
    """
    stages_from(from_stage)

    def _request(session: Session) -> list[Published]:
        out = []
        for key in group_keys:
            group = _get_group(session, key)
            if group.state not in (GroupState.COMPLETED, GroupState.FAILED):
                raise InvalidTransitionError(
                    f"group {key}: cannot reprocess a group that is {group.state.value}; "
                    "only completed or failed groups can be reprocessed")
            token = make_pending(group, from_stage=from_stage)
            out.append(Published(key, token, group.current_stage))
        return out

    return run_transaction(db, _request)
