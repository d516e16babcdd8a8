"""Reads and writes of the pipeline's state, each on a caller's :class:`~sqlalchemy.orm.Session`.

The caller owns the transaction (:func:`contimg.db.session_scope`); these
functions only flush. Every write is idempotent where the pipeline needs it to
be: registering the same file twice, rerunning a stage, re-recording a product.

A group may be passed as the :class:`~contimg.db.models.ObservationGroup`, its
integer id or its key (``"2025-10-02T10:02:45"``). Functions that change a group
re-read and lock its row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite every write transaction already holds the database's write lock), so
check-then-act sequences are safe between processes.

Times are timezone-aware UTC; ``now`` arguments exist so that tests and
housekeeping can use one clock.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contimg.db._upsert import insert_ignore, upsert_rows
from contimg.db.models import ObservationGroup, StageTiming, SubbandFile
from contimg.db.states import GroupState, apply_transition, utcnow
from contimg.errors import InputFileError, InvalidTransitionError, NotFoundError

log = logging.getLogger(__name__)

GroupRef = ObservationGroup | int | str
"""A group, its id or its key."""


# =========================================================================== groups
def find_group(session: Session, group: GroupRef, *, for_update: bool = False) -> ObservationGroup | None:
    """The group with this id or key (or the row of this object), or None."""
    if isinstance(group, ObservationGroup):
        if group.id is None:  # pending object, not yet flushed
            return group
        cond = ObservationGroup.id == group.id
    elif isinstance(group, int):
        cond = ObservationGroup.id == group
    elif isinstance(group, str):
        cond = ObservationGroup.group_key == group
    else:
        raise TypeError(f"expected an ObservationGroup, an id or a key, got {type(group).__name__}")
    stmt = select(ObservationGroup).where(cond)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).one_or_none()


def get_group(session: Session, group: GroupRef, *, for_update: bool = False) -> ObservationGroup:
    """Like :func:`find_group`, but raises :class:`~contimg.errors.NotFoundError` naming the group."""
    found = find_group(session, group, for_update=for_update)
    if found is None:
        name = group.group_key if isinstance(group, ObservationGroup) else group
        raise NotFoundError(f"no observation group {name!r} in the database")
    return found


def upsert_group(session: Session, *, key: str, timestamp: datetime) -> tuple[ObservationGroup, bool]:
    """The group with ``key``, created in ``collecting`` if absent.

    Safe against a concurrent insert of the same key. If the group exists and
    ``timestamp`` is earlier than its own, the group's timestamp moves to it (the
    group timestamp is the earliest file time).

    Returns
    -------
    (group, created)
    """
    created = insert_ignore(
        session, ObservationGroup.__table__,
        {"group_key": key, "timestamp": timestamp, "state": GroupState.COLLECTING},
        keys=["group_key"],
    )
    group = get_group(session, key, for_update=True)
    if not created and timestamp < group.timestamp:
        group.timestamp = timestamp
        session.flush()
    return group, created


def find_group_near(
    session: Session,
    timestamp: datetime,
    *,
    tolerance_s: float,
    states: Collection[GroupState] | None = None,
) -> ObservationGroup | None:
    """The group whose timestamp is closest to ``timestamp``, within ``tolerance_s`` (or None).

    Parameters
    ----------
    states
        Only consider groups in these states (default: any).
    """
    tol = timedelta(seconds=tolerance_s)
    stmt = select(ObservationGroup).where(
        ObservationGroup.timestamp >= timestamp - tol, ObservationGroup.timestamp <= timestamp + tol
    )
    if states is not None:
        stmt = stmt.where(ObservationGroup.state.in_(list(states)))
    candidates = session.scalars(stmt).all()
    if not candidates:
        return None
    return min(candidates, key=lambda g: (abs((g.timestamp - timestamp).total_seconds()), g.id))


def add_subband_file(
    session: Session,
    *,
    group: GroupRef,
    subband: int,
    path: str,
    size_bytes: int | None = None,
    file_timestamp: datetime | None = None,
) -> tuple[SubbandFile, bool]:
    """Register one subband file of ``group``; registering the same file again changes nothing.

    Updates the group's ``nsubbands``.

    Returns
    -------
    (subband_file, created)

    Raises
    ------
    InputFileError
        If ``path`` is already registered as another group's or subband's file,
        or the group already has a different file for ``subband``; the message
        names both files.
    """
    grp = get_group(session, group, for_update=True)
    path = str(path)
    existing = session.scalars(
        select(SubbandFile).where(
            or_(SubbandFile.path == path,
                (SubbandFile.group_id == grp.id) & (SubbandFile.subband == subband))
        )
    ).all()
    for row in existing:
        if row.path == path and row.group_id == grp.id and row.subband == subband:
            if size_bytes is not None and row.size_bytes != size_bytes:
                row.size_bytes = size_bytes
            return row, False
        if row.path == path:
            raise InputFileError(
                f"{path}: already registered as subband {row.subband} of group id {row.group_id}, "
                f"not subband {subband} of group {grp.group_key}"
            )
        raise InputFileError(
            f"{path}: group {grp.group_key} already has {row.path} as subband {subband:02d}"
        )
    row = SubbandFile(group_id=grp.id, subband=subband, path=path, size_bytes=size_bytes,
                      file_timestamp=file_timestamp)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:  # a concurrent writer registered it first (PostgreSQL)
        raise InputFileError(f"{path}: registered concurrently for group {grp.group_key}: {exc.orig}") from exc
    grp.nsubbands = session.scalar(
        select(func.count()).select_from(SubbandFile).where(SubbandFile.group_id == grp.id)
    )
    grp.updated_at = utcnow()
    session.flush()
    return row, True


def transition_group(
    session: Session,
    group: GroupRef,
    to_state: GroupState,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> ObservationGroup:
    """Lock the group's row and move it to ``to_state`` (see :func:`contimg.db.states.apply_transition`).

    Raises
    ------
    InvalidTransitionError
        If the state machine forbids the change; the message names the group and both states.
    NotFoundError
        If there is no such group.
    """
    grp = get_group(session, group, for_update=True)
    apply_transition(grp, to_state, error=error, now=now)
    session.flush()
    return grp


def claim_group(
    session: Session,
    group: GroupRef,
    *,
    from_states: Collection[GroupState],
    to_state: GroupState,
    error: str | None = None,
    now: datetime | None = None,
) -> ObservationGroup | None:
    """Move the group to ``to_state`` only if it is in one of ``from_states``; else return None.

    The gate for exactly-once work: of several processes claiming the same
    group (``collecting → pending`` in the producer, ``pending → in_progress`` in
    a worker) exactly one gets the group back.
    """
    grp = get_group(session, group, for_update=True)
    if grp.state not in set(from_states):
        return None
    apply_transition(grp, to_state, error=error, now=now)
    session.flush()
    return grp


def mark_failed(session: Session, group: GroupRef, error: str, *, now: datetime | None = None) -> ObservationGroup:
    """Move the group to ``failed`` with ``error``; idempotent for a group already failed.

    A group that already failed keeps its first error message (an error
    callback may fire once per failed task of a chord). The running stage
    timing, if any, is marked failed.

    Raises
    ------
    InvalidTransitionError
        If the group has completed (a late failure report contradicts it).
    """
    now = now or utcnow()
    grp = get_group(session, group, for_update=True)
    if grp.state is GroupState.FAILED:
        log.info("group %s already failed (%s); ignoring later error: %s", grp.group_key, grp.error_message, error)
        return grp
    apply_transition(grp, GroupState.FAILED, error=error, now=now)
    for timing in session.scalars(
        select(StageTiming).where(StageTiming.group_id == grp.id, StageTiming.attempt == max(grp.attempt, 1),
                                  StageTiming.status == "running")
    ):
        timing.status = "failed"
        timing.finished_at = now
        timing.seconds = (now - timing.started_at).total_seconds()
    session.flush()
    return grp


def record_enqueue(session: Session, group: GroupRef, *, task_id: str, now: datetime | None = None) -> ObservationGroup:
    """Record that the group's run was published to the broker as ``task_id``.

    Raises
    ------
    InvalidTransitionError
        If the group is not ``pending`` or ``in_progress``.
    """
    grp = get_group(session, group, for_update=True)
    if grp.state not in (GroupState.PENDING, GroupState.IN_PROGRESS):
        raise InvalidTransitionError(
            f"group {grp.group_key}: cannot record task {task_id} for a group in state {grp.state.value}"
        )
    grp.task_id = task_id
    grp.enqueued_at = now or utcnow()
    grp.updated_at = grp.enqueued_at
    session.flush()
    return grp


def heartbeat(session: Session, group: GroupRef, *, stage: str | None = None,
              now: datetime | None = None) -> ObservationGroup:
    """Record a sign of life of the group's worker (and its current stage, if given)."""
    now = now or utcnow()
    grp = get_group(session, group, for_update=True)
    grp.heartbeat_at = now
    grp.updated_at = now
    if stage is not None:
        grp.current_stage = stage
    session.flush()
    return grp


# =========================================================================== stage timings
def start_stage(
    session: Session,
    group: GroupRef,
    stage: str,
    *,
    hostname: str | None = None,
    now: datetime | None = None,
) -> StageTiming:
    """Record that ``stage`` started for the group's current attempt; set its current stage.

    Rerunning a stage within the same attempt (a retried task) restarts the
    same row instead of adding one.
    """
    now = now or utcnow()
    grp = heartbeat(session, group, stage=stage, now=now)
    attempt = max(grp.attempt, 1)
    upsert_rows(
        session, StageTiming.__table__,
        [{"group_id": grp.id, "stage": stage, "attempt": attempt, "started_at": now,
          "finished_at": None, "seconds": None, "status": "running", "hostname": hostname}],
        keys=["group_id", "stage", "attempt"],
        update=["started_at", "finished_at", "seconds", "status", "hostname"],
    )
    return _timing(session, grp.id, stage, attempt)


def finish_stage(
    session: Session,
    group: GroupRef,
    stage: str,
    *,
    status: str = "ok",
    now: datetime | None = None,
) -> StageTiming:
    """Record the end of ``stage`` (``status`` ``ok`` or ``failed``) in the current attempt.

    Raises
    ------
    NotFoundError
        If the stage was never started in this attempt.
    """
    now = now or utcnow()
    grp = heartbeat(session, group, now=now)
    timing = _timing(session, grp.id, stage, max(grp.attempt, 1))
    timing.finished_at = now
    timing.seconds = (now - timing.started_at).total_seconds()
    timing.status = status
    session.flush()
    return timing


def record_stage_timing(
    session: Session,
    group: GroupRef,
    stage: str,
    *,
    started_at: datetime,
    finished_at: datetime,
    hostname: str | None = None,
    status: str = "ok",
) -> StageTiming:
    """Record a finished stage in one call (upsert on group, stage and current attempt)."""
    grp = get_group(session, group)
    attempt = max(grp.attempt, 1)
    upsert_rows(
        session, StageTiming.__table__,
        [{"group_id": grp.id, "stage": stage, "attempt": attempt, "started_at": started_at,
          "finished_at": finished_at, "seconds": (finished_at - started_at).total_seconds(),
          "status": status, "hostname": hostname}],
        keys=["group_id", "stage", "attempt"],
        update=["started_at", "finished_at", "seconds", "status", "hostname"],
    )
    return _timing(session, grp.id, stage, attempt)


def _timing(session: Session, group_id: int, stage: str, attempt: int) -> StageTiming:
    timing = session.scalars(
        select(StageTiming)
        .where(StageTiming.group_id == group_id, StageTiming.stage == stage, StageTiming.attempt == attempt)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if timing is None:
        raise NotFoundError(f"group id {group_id}: stage {stage!r} was not started in attempt {attempt}")
    return timing


# =========================================================================== housekeeping
def _cutoff(older_than_s: float, now: datetime | None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=older_than_s)


def find_stale_in_progress(session: Session, *, older_than_s: float,
                           now: datetime | None = None) -> list[ObservationGroup]:
    """``in_progress`` groups without a heartbeat for ``older_than_s`` (their worker is presumed lost)."""
    last = func.coalesce(ObservationGroup.heartbeat_at, ObservationGroup.updated_at)
    stmt = (select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.IN_PROGRESS, last < _cutoff(older_than_s, now))
            .order_by(ObservationGroup.timestamp))
    return list(session.scalars(stmt))


def requeue_stale(
    session: Session,
    *,
    older_than_s: float,
    max_retries: int,
    now: datetime | None = None,
) -> tuple[list[ObservationGroup], list[ObservationGroup]]:
    """Send stale ``in_progress`` groups back to ``pending``, or fail those out of retries.

    Returns
    -------
    (requeued, failed)
        The requeued groups are ``pending`` with no ``task_id``: the caller
        publishes them (and calls :func:`record_enqueue`).
    """
    now = now or utcnow()
    requeued: list[ObservationGroup] = []
    failed: list[ObservationGroup] = []
    for stale in find_stale_in_progress(session, older_than_s=older_than_s, now=now):
        grp = get_group(session, stale.id, for_update=True)
        if grp.state is not GroupState.IN_PROGRESS:  # changed since the scan
            continue
        if grp.retry_count >= max_retries:
            mark_failed(session, grp, (
                f"worker lost {grp.retry_count + 1} times (no heartbeat for {older_than_s:.0f} s "
                f"in stage {grp.current_stage or '?'}, task {grp.task_id}); giving up after "
                f"{max_retries} re-enqueues"), now=now)
            failed.append(grp)
        else:
            log.warning("group %s: no heartbeat since %s in stage %s; re-enqueuing (retry %d of %d)",
                        grp.group_key, grp.heartbeat_at, grp.current_stage, grp.retry_count + 1, max_retries)
            apply_transition(grp, GroupState.PENDING, now=now)
            requeued.append(grp)
    session.flush()
    return requeued, failed


def find_unpublished_pending(session: Session, *, older_than_s: float = 0.0,
                             now: datetime | None = None) -> list[ObservationGroup]:
    """``pending`` groups never published (no ``task_id``) for at least ``older_than_s``."""
    stmt = (select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.PENDING, ObservationGroup.task_id.is_(None),
                   ObservationGroup.updated_at <= _cutoff(older_than_s, now))
            .order_by(ObservationGroup.timestamp))
    return list(session.scalars(stmt))


def find_timed_out_collecting(session: Session, *, older_than_s: float,
                              now: datetime | None = None) -> list[ObservationGroup]:
    """``collecting`` groups whose first file was registered at least ``older_than_s`` ago."""
    stmt = (select(ObservationGroup)
            .where(ObservationGroup.state == GroupState.COLLECTING,
                   ObservationGroup.created_at <= _cutoff(older_than_s, now))
            .order_by(ObservationGroup.timestamp))
    return list(session.scalars(stmt))


# =========================================================================== status
def counts_by_state(session: Session) -> dict[GroupState, int]:
    """Number of groups in every state (zero for states with none)."""
    counts = {state: 0 for state in GroupState}
    for state, n in session.execute(
        select(ObservationGroup.state, func.count()).group_by(ObservationGroup.state)
    ):
        counts[GroupState(state)] = n
    return counts


def latest_groups(session: Session, *, limit: int = 20,
                  states: Collection[GroupState] | None = None) -> list[ObservationGroup]:
    """The newest groups (by timestamp) with their stage timings and subband files loaded."""
    stmt = (select(ObservationGroup)
            .options(selectinload(ObservationGroup.stage_timings), selectinload(ObservationGroup.subband_files))
            .order_by(ObservationGroup.timestamp.desc(), ObservationGroup.id.desc())
            .limit(limit))
    if states is not None:
        stmt = stmt.where(ObservationGroup.state.in_(list(states)))
    return list(session.scalars(stmt))


def groups_between(session: Session, start: datetime, end: datetime) -> list[ObservationGroup]:
    """Groups whose timestamp lies in ``[start, end]``, oldest first."""
    if end < start:
        raise ValueError(f"empty time range: end {end.isoformat()} is before start {start.isoformat()}")
    stmt = (select(ObservationGroup)
            .where(ObservationGroup.timestamp >= start, ObservationGroup.timestamp <= end)
            .order_by(ObservationGroup.timestamp))
    return list(session.scalars(stmt))


def stage_statistics(session: Session, *, since: datetime | None = None) -> dict[str, dict[str, float]]:
    """Per stage: number of finished runs and their mean and maximum duration in seconds."""
    stmt = (select(StageTiming.stage, func.count(), func.avg(StageTiming.seconds), func.max(StageTiming.seconds))
            .where(StageTiming.seconds.is_not(None))
            .group_by(StageTiming.stage))
    if since is not None:
        stmt = stmt.where(StageTiming.started_at >= since)
    return {stage: {"count": n, "mean_s": float(mean), "max_s": float(mx)}
            for stage, n, mean, mx in session.execute(stmt)}
