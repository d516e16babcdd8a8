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

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from contimg.db import GroupState, apply_transition, run_transaction
from contimg.db.models import ObservationGroup, StageTiming
from contimg.db.states import utcnow
from contimg.errors import ContimgError, InvalidTransitionError, PermanentError
from contimg.pipeline.stages import STAGES, stages_from

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str, str], Any]
"""``enqueue(group_key, run_token, from_stage)`` publishes a group's run; raises on failure."""


WORKER_IDENTITY: str | None = None
"""This process's worker id when it is a cluster worker (set at worker start); recorded in stage timings."""


def _host() -> str:
    return WORKER_IDENTITY or socket.gethostname()


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


def holders(group: ObservationGroup) -> set[str]:
    """The workers holding a task of the group's current run (see :attr:`ObservationGroup.worker`)."""
    return {w for w in (group.worker or "").split(",") if w}


def _set_holders(group: ObservationGroup, workers: set[str]) -> None:
    group.worker = ",".join(sorted(workers)) or None


def hold(db: Any, group_key: str, token: str, *, worker: str, node: str | None = None) -> None:
    """Record that ``worker`` runs (or holds for later) a task of run ``token``; beats the heart.

    Parameters
    ----------
    worker
        The worker id (:func:`contimg.cluster.nodes.new_worker_id`), added to the run's holders.
    node
        The node whose staging will hold the run's conversion (set by planning); None keeps it.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's in-progress run.
    """

    def _hold(session: Session) -> None:
        group = _current(session, group_key, token)
        _set_holders(group, holders(group) | {worker})
        if node is not None:
            group.node = node
        group.heartbeat_at = utcnow()

    run_transaction(db, _hold)


def unhold(db: Any, group_key: str, token: str, *, worker: str, node: bool = False) -> None:
    """``worker``'s task of run ``token`` is over (done, failed or retried later): it no longer holds the run.

    With ``node``, the run's conversion has left its node's staging. When no
    worker holds the run, its next task waits in a queue. A superseded run
    changes nothing.
    """

    def _unhold(session: Session) -> None:
        group = _get_group(session, group_key)
        if group.task_id != token or group.state is not GroupState.IN_PROGRESS:
            return
        _set_holders(group, holders(group) - {worker})
        if node:
            group.node = None
        group.heartbeat_at = utcnow()

    run_transaction(db, _unhold)


def beat(db: Any, runs: Sequence[tuple[str, str]], *, worker: str | None = None) -> int:
    """Beat the heart of each ``(group_key, token)`` that is still its group's in-progress run.

    Called every few seconds by each worker's main process for the tasks it
    holds (running, or waiting for their countdown), so long steps (WSClean,
    CASA, combine) show a live heartbeat however long they take. With
    ``worker``, the runs become held by ``worker`` too (a task retried with a
    countdown that this worker received). Returns how many groups were beaten.
    """
    if not runs:
        return 0

    def _beat(session: Session) -> int:
        now = utcnow()
        n = 0
        for key, token in runs:
            current = (ObservationGroup.group_key == key, ObservationGroup.task_id == token,
                       ObservationGroup.state == GroupState.IN_PROGRESS)
            if worker is None:
                n += session.execute(update(ObservationGroup).where(*current)
                                     .values(heartbeat_at=now)).rowcount or 0
                continue
            group = session.scalar(select(ObservationGroup).where(*current).with_for_update())
            if group is not None:
                group.heartbeat_at = now
                _set_holders(group, holders(group) | {worker})
                n += 1
        return n

    return run_transaction(db, _beat)


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
                                    status="running", hostname=_host()))

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
        timing.hostname = _host()
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


def _abandon_timings(group: ObservationGroup, status: str, now: datetime) -> None:
    """End the current attempt's ``running`` stage timings with ``status`` (``failed``, ``lost``)."""
    for timing in group.stage_timings:
        if timing.attempt == group.attempt and timing.status == "running":
            timing.status = status
            timing.finished_at = now
            timing.seconds = (now - timing.started_at).total_seconds()


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
        _abandon_timings(group, "failed", utcnow())
        apply_transition(group, GroupState.FAILED, error=error[:4000])
        return True

    changed = run_transaction(db, _fail)
    if changed:
        log.error("group %s failed: %s", group_key, error)
    return changed


def resume_stage(group: ObservationGroup) -> str:
    """The stage a re-planned run starts at: the current one, or the next if the current one finished."""
    stage = group.current_stage if group.current_stage in STAGES else STAGES[0]
    done = {t.stage for t in group.stage_timings if t.attempt == group.attempt and t.status == "ok"}
    rest = [s for s in stages_from(stage) if s not in done]
    return rest[0] if rest else stage


@dataclass(frozen=True)
class Liveness:
    """Who is alive, from the workers' presence (:class:`contimg.cluster.nodes.PresenceRegistry`)."""

    workers: frozenset[str]
    """Worker ids present."""
    nodes: frozenset[str]
    """Nodes with at least one worker present."""


def lost_reason(group: ObservationGroup, *, now: datetime, stale_s: float, grace_s: float,
                alive: Liveness | None) -> str | None:
    """Why an ``in_progress`` run is lost, or None if it may still be alive.

    * the presence of a worker holding one of its tasks expired (the worker or its node died), or
    * its conversion's node has no worker left, or
    * it is held (by a worker or a node) but its heartbeat stopped ``stale_s`` ago (a hung step, or a
      task lost in the moment between its end and its acknowledgement).

    A run whose next task waits in a shared queue (no worker, no node) is not
    lost: the message is in the broker. ``grace_s`` protects runs whose
    holder was recorded a moment ago. Without ``alive`` (presence unknown)
    only the heartbeat rule applies.
    """
    beat = group.heartbeat_at or group.updated_at
    age = (now - beat).total_seconds() if beat is not None else float("inf")
    held = holders(group)
    if alive is not None and age > grace_s:
        gone = sorted(held - alive.workers)
        if gone:
            return f"its worker {', '.join(gone)} is gone"
        if group.node and group.node not in alive.nodes:
            return f"its node {group.node} is gone"
    if (held or group.node) and age > stale_s:
        return f"no heartbeat for {age:.0f} s"
    return None


def requeue_stale(db: Any, enqueue: Enqueue, *, stale_s: float, max_retries: int,
                  alive: Liveness | None = None, grace_s: float = 30.0,
                  now: datetime | None = None) -> dict[str, list[str]]:
    """Re-enqueue ``in_progress`` runs that are lost (see :func:`lost_reason`).

    The run restarts at the stage it was in (or the next one, if that stage
    had finished: every stage is idempotent) with a new token, so the lost
    run's stragglers cannot interfere; its running stage timings are marked
    ``lost``. After ``max_retries`` re-enqueues the group fails instead.

    Returns
    -------
    dict
        ``{"requeued": [...], "failed": [...]}`` group keys.
    """
    now = now or utcnow()
    # every rule of lost_reason needs a heartbeat older than grace_s or stale_s: runs beating now are not locked
    quiet_since = now - timedelta(seconds=min(grace_s, stale_s))

    def _sweep(session: Session) -> tuple[list[Published], list[str]]:
        rows = session.scalars(
            select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.IN_PROGRESS,
                   func.coalesce(ObservationGroup.heartbeat_at, ObservationGroup.updated_at) <= quiet_since)
            .with_for_update()
        ).all()
        requeued, failed = [], []
        for group in rows:
            reason = lost_reason(group, now=now, stale_s=stale_s, grace_s=grace_s, alive=alive)
            if reason is None:
                continue
            _abandon_timings(group, "lost", now)
            if (group.retry_count or 0) >= max_retries:
                apply_transition(group, GroupState.FAILED,
                                 error=f"group {group.group_key}: run lost in stage {group.current_stage} "
                                       f"({reason}) after {group.retry_count} re-enqueues; giving up")
                failed.append(group.group_key)
                continue
            stage = resume_stage(group)
            log.warning("group %s: run %s lost in stage %s (%s); re-planning from %s", group.group_key,
                        group.task_id, group.current_stage, reason, stage)
            token = make_pending(group, from_stage=stage)
            requeued.append(Published(group.group_key, token, stage))
        return requeued, failed

    requeued, failed = run_transaction(db, _sweep)
    for item in requeued:
        publish(db, item, enqueue)
    return {"requeued": [p.group_key for p in requeued], "failed": failed}


def hand_back(db: Any, group_key: str, token: str, reason: str) -> bool:
    """Give run ``token`` back to the database after a broker failure: ``pending``, unpublished.

    A task whose work succeeded but whose next step could not be published
    (the broker was down longer than the publish retries) must not fail the
    group: the run is made ``pending`` again with a new token at the stage
    where it stands, and :func:`publish_unpublished` (the sweep, the producer)
    publishes it once the broker is back. Not counted as a retry. Returns
    True if the run was handed back (False if it was not current).
    """

    def _back(session: Session) -> str | None:
        group = _get_group(session, group_key)
        if group.task_id != token or group.state is not GroupState.IN_PROGRESS:
            return None
        retries = group.retry_count or 0
        _abandon_timings(group, "lost", utcnow())
        stage = resume_stage(group)
        make_pending(group, from_stage=stage)
        group.retry_count = retries
        return stage

    stage = run_transaction(db, _back)
    if stage is not None:
        log.warning("group %s: run %s handed back after a broker failure (%s); it is published again from %s "
                    "when the broker answers", group_key, token, reason, stage)
    return stage is not None


def request_reprocess(db: Any, group_keys: Sequence[str], *, from_stage: str | None = None,
                      tier: str | None = None) -> list[Published]:
    """Make finished groups ``pending`` again with new run tokens (publish them afterwards).

    ``tier`` is the imaging tier of the new run (kept on the group, ``imaging_tier``); None goes back
    to the settings' tier.

    Raises
    ------
    UnknownGroupError
        If a key does not exist (nothing is changed).
    InvalidTransitionError
        If a group is still collecting or already queued/running.
    """
    stages_from(from_stage)
    if tier is not None:
        from contimg.imaging.tiers import tier_parameters

        tier_parameters(tier)  # an unknown tier: ConfigError naming the known ones

    def _request(session: Session) -> list[Published]:
        out = []
        for key in group_keys:
            group = _get_group(session, key)
            if group.state not in (GroupState.COMPLETED, GroupState.FAILED):
                raise InvalidTransitionError(
                    f"group {key}: cannot reprocess a group that is {group.state.value}; "
                    "only completed or failed groups can be reprocessed")
            group.imaging_tier = tier
            token = make_pending(group, from_stage=from_stage)
            out.append(Published(key, token, group.current_stage))
        return out

    return run_transaction(db, _request)
