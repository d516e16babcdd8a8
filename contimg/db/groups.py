"""The group store: every read and write of a group's state, in one place.

Producer, workers, beat, reprocessing, ``contimg status`` and the Python API
all go through these functions; nothing else writes ``observation_groups``,
``subband_files`` or ``stage_timings``. Three parts:

**Lookups**: :func:`find_group`, :func:`get_group` (by object, id or key) and
:func:`transition_group` (a checked move of the state machine,
:mod:`contimg.db.states`).

**Registration** (the producer): grouping files by timestamp and promoting
groups. A file belongs to the existing group whose timestamp (its earliest
file time) is nearest to the file's own, if within ``tolerance_s``; otherwise it
starts a new group. A group's key is the earliest file time among its files
(it follows earlier arrivals while the group is collecting, and is frozen once
the group is enqueued). A group is *due* when it has all 16 subbands, or when
it has waited ``group_timeout_s`` since its first file was registered: then it
is promoted to ``pending`` if it has at least ``min_subbands`` files, and failed
with the reason otherwise. A group that failed because one of its files was
incomplete (the error message names the file) is found by
:func:`failed_groups_naming_files`; when the producer sees that file changed
and complete, :func:`reopen_failed_group` records the file's new size and makes
the group ``pending`` again from the first stage, in one transaction.

**Runs** (the exactly-once protocol shared by the producer, the workers, beat
and reprocessing). It knows nothing of Celery: publishing is an ``enqueue``
callable.

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

Functions taking a :class:`~sqlalchemy.orm.Session` work in the caller's
transaction; functions taking ``db`` (a URL, engine or settings) run their own
(:func:`contimg.db.run_transaction`, retried on lock contention).
"""

from __future__ import annotations

import enum
import logging
import socket
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from contimg.db.engine import run_transaction
from contimg.db.models import ObservationGroup, StageTiming, SubbandFile
from contimg.db.states import GroupState, apply_transition, utcnow
from contimg.errors import ContimgError, InvalidTransitionError, NotFoundError
from contimg.naming import NSUBBANDS, TIMESTAMP_FORMAT, parse_subband_filename
from contimg.pipeline.stages import STAGES, stages_from

if TYPE_CHECKING:
    from contimg.config import IngestSettings

log = logging.getLogger(__name__)


# =========================================================================== lookups
GroupRef = ObservationGroup | int | str
"""A group, its id or its key."""


class UnknownGroupError(NotFoundError):
    """No group with this key (or id) exists."""


def find_group(session: Session, group: GroupRef, *, for_update: bool = False) -> ObservationGroup | None:
    """The group with this id or key (or the row of this object), or None.

    Parameters
    ----------
    session
        The caller's session; the function works in its transaction.
    group
        The group object, its id (``int``) or its key (``str``); an object not yet flushed (no id) is returned
        as is. Anything else raises :class:`TypeError`.
    for_update
        Lock the row (``SELECT ... FOR UPDATE``) and refresh an already loaded object from the database.

    Returns
    -------
    ObservationGroup or None
        The group's row, or None if no group has this id or key.
    """
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
    """Like :func:`find_group`, but raises :class:`UnknownGroupError` naming the group.

    Parameters
    ----------
    session
        The caller's session; the function works in its transaction.
    group
        The group object, its id (``int``) or its key (``str``).
    for_update
        Lock the row (``SELECT ... FOR UPDATE``) and refresh an already loaded object from the database.

    Returns
    -------
    ObservationGroup
        The group's row.
    """
    found = find_group(session, group, for_update=for_update)
    if found is None:
        name = group.group_key if isinstance(group, ObservationGroup) else group
        raise UnknownGroupError(f"group {name}: no such group in the database")
    return found


def transition_group(
    session: Session,
    group: GroupRef,
    to_state: GroupState,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> ObservationGroup:
    """Lock the group's row and move it to ``to_state`` (see :func:`contimg.db.states.apply_transition`).

    Parameters
    ----------
    session
        The caller's session; the change is flushed, not committed.
    group
        The group object, its id (``int``) or its key (``str``).
    to_state
        The state to move to.
    error
        The error message; required when ``to_state`` is ``failed``, ignored otherwise.
    now
        Time written to the bookkeeping columns (``started_at``, ``finished_at``, ``updated_at`` ...;
        default: now, UTC).

    Returns
    -------
    ObservationGroup
        The locked group, in its new state.

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


def latest_groups(session: Session, *, limit: int = 20, with_products: bool = False) -> list[ObservationGroup]:
    """The newest groups (by timestamp) with their stage timings loaded (and their MSs and images).

    Parameters
    ----------
    session
        The caller's session; the function works in its transaction.
    limit
        How many groups at most.
    with_products
        Also load each group's Measurement Sets and their images.

    Returns
    -------
    list of ObservationGroup
        Newest first (by timestamp, then id).
    """
    from contimg.db.models import MeasurementSet

    opts = [selectinload(ObservationGroup.stage_timings)]
    if with_products:
        opts.append(selectinload(ObservationGroup.measurement_sets).selectinload(MeasurementSet.images))
    return list(session.scalars(select(ObservationGroup).options(*opts)
                                .order_by(ObservationGroup.timestamp.desc(), ObservationGroup.id.desc())
                                .limit(limit)))


def subband_paths(session: Session, group_key: str) -> list[str]:
    """The group's registered subband files, by subband."""
    return list(session.scalars(select(SubbandFile.path).join(ObservationGroup)
                                .where(ObservationGroup.group_key == group_key).order_by(SubbandFile.subband)))


def active_group_keys(session: Session) -> list[str]:
    """Keys of the groups queued or running (``pending`` or ``in_progress``)."""
    return list(session.scalars(select(ObservationGroup.group_key).where(
        ObservationGroup.state.in_([GroupState.IN_PROGRESS, GroupState.PENDING]))))


def nodes_in_use(session: Session) -> set[str]:
    """Nodes whose staging holds the conversion of a run in progress."""
    return set(session.scalars(select(ObservationGroup.node).where(
        ObservationGroup.state == GroupState.IN_PROGRESS, ObservationGroup.node.is_not(None))))


def group_keys_between(session: Session, start: datetime | None, end: datetime | None) -> list[str]:
    """Keys of the groups whose timestamp lies in ``[start, end]`` (either end may be open), oldest first.

    Parameters
    ----------
    session
        The caller's session; the function works in its transaction.
    start
        Earliest group timestamp included (UTC); None: no lower bound.
    end
        Latest group timestamp included (UTC); None: no upper bound.

    Returns
    -------
    list of str
        The group keys, by timestamp.
    """
    stmt = select(ObservationGroup.group_key).order_by(ObservationGroup.timestamp)
    if start is not None:
        stmt = stmt.where(ObservationGroup.timestamp >= start)
    if end is not None:
        stmt = stmt.where(ObservationGroup.timestamp <= end)
    return list(session.scalars(stmt))


# =========================================================================== runs
Enqueue = Callable[[str, str, str], Any]
"""``enqueue(group_key, run_token, from_stage)`` publishes a group's run; raises on failure."""


WORKER_IDENTITY: str | None = None
"""This process's worker id when it is a cluster worker (set at worker start); recorded in stage timings."""


def _host() -> str:
    return WORKER_IDENTITY or socket.gethostname()


class StaleRunError(ContimgError):
    """The task belongs to a run that is no longer the group's current one: stop quietly."""


def new_run_token() -> str:
    """A fresh run token (also the Celery id of the run's first task)."""
    return str(uuid.uuid4())


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


def _published(group: ObservationGroup, token: str) -> Published:
    """The publication of the run :func:`make_pending` just gave ``group`` (token ``token``)."""
    assert group.current_stage is not None  # make_pending sets it
    return Published(group.group_key, token, group.current_stage)


def publish(db: Any, published: Published, enqueue: Enqueue) -> None:
    """Call ``enqueue`` for a pending run, then record ``enqueued_at``.

    A crash between the two leaves ``enqueued_at`` null; the sweep publishes
    the same token again, and the claim lets only one copy run.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    published
        The run to publish (group key, run token, first stage), as returned by :func:`promote_due_groups`,
        :func:`request_reprocess` or :func:`reopen_failed_group` once their transaction has committed.
    enqueue
        The publishing callable (:data:`Enqueue`, e.g. :func:`workers.canvas.enqueue_group`); if it raises,
        the exception propagates and ``enqueued_at`` stays null. ``enqueued_at`` is only set if the group
        still has this token and none was recorded.
    """
    enqueue(published.group_key, published.token, published.from_stage)

    def _mark(session: Session) -> None:
        group = get_group(session, published.group_key, for_update=True)
        if group.task_id == published.token and group.enqueued_at is None:
            group.enqueued_at = utcnow()

    run_transaction(db, _mark)
    log.info("group %s enqueued (run %s, from %s)", published.group_key, published.token, published.from_stage)


def publish_unpublished(db: Any, enqueue: Enqueue, *, grace_s: float = 0.0, now: datetime | None = None) -> list[str]:
    """Publish every ``pending`` group not yet recorded as enqueued; returns their keys.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    enqueue
        The publishing callable (:data:`Enqueue`); each run is published with its existing token.
    grace_s
        Leave alone groups made pending less than this long ago (their
        publisher may be about to record the publication).
    now
        The time ``grace_s`` is counted back from (default: now, UTC).

    Returns
    -------
    list of str
        Keys of the groups published, oldest timestamp first.
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

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).

    Returns
    -------
    bool
        True if this call moved the group to ``in_progress`` (the run may proceed); False if ``token`` is not
        the group's run or the group is no longer ``pending``.
    """

    def _claim(session: Session) -> bool:
        group = get_group(session, group_key, for_update=True)
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
    group = get_group(session, group_key, for_update=True)
    if group.task_id != token or group.state is not GroupState.IN_PROGRESS:
        raise StaleRunError(
            f"group {group_key}: run {token} is not the current in-progress run "
            f"(state {group.state.value}, run {group.task_id})")
    return group


def check_current(db: Any, group_key: str, token: str) -> None:
    """Raise :class:`StaleRunError` unless ``token`` is the group's in-progress run; beats the heart.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).
    """

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

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).
    worker
        The worker id to remove from the run's holders.
    node
        Also clear the run's node (set after a successful combine: the parts no longer need its staging).
    """

    def _unhold(session: Session) -> None:
        group = get_group(session, group_key, for_update=True)
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
    countdown that this worker received).

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    runs
        ``(group_key, token)`` pairs; a pair whose token is no longer its group's in-progress run is skipped.
    worker
        Also add this worker id to the holders of each beaten run; None only updates ``heartbeat_at``.

    Returns
    -------
    int
        How many groups were beaten.
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
                result = session.execute(update(ObservationGroup).where(*current).values(heartbeat_at=now))
                n += result.rowcount or 0  # type: ignore[attr-defined]  # CursorResult at runtime
                continue
            group = session.scalar(select(ObservationGroup).where(*current).with_for_update())
            if group is not None:
                group.heartbeat_at = now
                _set_holders(group, holders(group) | {worker})
                n += 1
        return n

    return run_transaction(db, _beat)


def stage_started(db: Any, group_key: str, token: str, stage: str) -> None:
    """Record that ``stage`` started (idempotent for a redelivered task).

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).
    stage
        The stage name (:data:`contimg.pipeline.stages.STAGES`); it becomes the group's ``current_stage``, and a
        ``running`` stage timing of the current attempt is added unless one exists.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's in-progress run.
    """

    def _start(session: Session) -> None:
        group = _current(session, group_key, token)
        now = utcnow()
        group.current_stage = stage
        group.heartbeat_at = now
        timing = _timing(session, group, stage)
        if timing is None:
            queued = _ready_since(group, now)
            session.add(StageTiming(group_id=group.id, stage=stage, attempt=group.attempt, queued_at=queued,
                                    started_at=now, wait_seconds=_seconds(queued, now), status="running",
                                    hostname=_host()))
        else:  # a redelivered or retried task: the stage works again
            _resume(timing, now)

    run_transaction(db, _start)


def _timing(session: Session, group: ObservationGroup, stage: str) -> StageTiming | None:
    return session.scalar(select(StageTiming).where(
        StageTiming.group_id == group.id, StageTiming.stage == stage, StageTiming.attempt == group.attempt))


def _seconds(since: datetime | None, until: datetime) -> float:
    return max((until - since).total_seconds(), 0.0) if since is not None else 0.0


def _ready_since(group: ObservationGroup, now: datetime) -> datetime:
    """When the group's next stage became ready: the latest end of a stage of this attempt, else the run's
    publication (its claim if it was never recorded as published)."""
    ends = [t.finished_at for t in group.stage_timings
            if t.attempt == group.attempt and t.status == "ok" and t.finished_at is not None]
    since = max(ends) if ends else (group.enqueued_at or group.started_at or now)
    return min(since, now)


def _resume(timing: StageTiming, now: datetime) -> None:
    """End a pause of ``timing``: the time since it was paused is wait."""
    if timing.paused_at is not None:
        timing.wait_seconds = (timing.wait_seconds or 0.0) + _seconds(timing.paused_at, now)
        timing.paused_at = None


def _work_seconds(timing: StageTiming, now: datetime) -> float:
    """The stage's work until ``now``: its time since it was queued (started, for rows without) less its waits."""
    if timing.paused_at is not None:  # ended while paused (a failure, a lost run): the pause was wait
        _resume(timing, now)
    if timing.queued_at is None:
        return _seconds(timing.started_at, now)
    return max(_seconds(timing.queued_at, now) - (timing.wait_seconds or 0.0), 0.0)


def stage_paused(db: Any, group_key: str, token: str, stage: str) -> None:
    """Record that ``stage`` waits again (its next task is queued): time until it resumes is wait, not work.

    The conversion pauses after planning while its subband writes wait in the node's queue; a calibration
    pauses while it is deferred for a calibration set.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``).
    stage
        The stage name; its timing of the current attempt is paused (nothing happens if it has none).

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's in-progress run.
    """

    def _pause(session: Session) -> None:
        group = _current(session, group_key, token)
        now = utcnow()
        group.heartbeat_at = now
        timing = _timing(session, group, stage)
        if timing is not None and timing.paused_at is None:
            timing.paused_at = now

    run_transaction(db, _pause)


def stage_resumed(db: Any, group_key: str, token: str, stage: str) -> None:
    """Check that ``token`` is current and end a pause of ``stage`` (see :func:`stage_paused`); beats the heart.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``).
    stage
        The stage name; the first of several parallel tasks resuming it ends the pause, the others change nothing.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's in-progress run.
    """

    def _go(session: Session) -> None:
        group = _current(session, group_key, token)
        now = utcnow()
        group.heartbeat_at = now
        timing = _timing(session, group, stage)
        if timing is not None:
            _resume(timing, now)

    run_transaction(db, _go)


def stage_finished(db: Any, group_key: str, token: str, stage: str) -> float:
    """Record that ``stage`` finished; returns its duration in seconds.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).
    stage
        The stage name; its stage timing of the current attempt is marked ``ok`` (created if a crash lost it).

    Returns
    -------
    float
        The stage's work in seconds: its time since it was queued less its waits (0 if its start had not been
        recorded).

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's in-progress run.
    """

    def _finish(session: Session) -> float:
        group = _current(session, group_key, token)
        now = utcnow()
        group.heartbeat_at = now
        timing = _timing(session, group, stage)
        if timing is None:  # started before a crash that lost the row: record what we know
            timing = StageTiming(group_id=group.id, stage=stage, attempt=group.attempt, started_at=now)
            session.add(timing)
        timing.seconds = _work_seconds(timing, now)
        timing.finished_at = now
        timing.status = "ok"
        timing.hostname = _host()
        return timing.seconds

    return run_transaction(db, _finish)


def complete(db: Any, group_key: str, token: str) -> bool:
    """``in_progress → completed`` for run ``token``; False if already done (idempotent).

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).

    Returns
    -------
    bool
        True if this call completed the group; False if run ``token`` had already completed it.

    Raises
    ------
    StaleRunError
        If ``token`` is neither the group's in-progress run nor its completed one.
    """

    def _complete(session: Session) -> bool:
        group = get_group(session, group_key, for_update=True)
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
            timing.seconds = _work_seconds(timing, now)
            timing.finished_at = now


def fail(db: Any, group_key: str, error: str, *, token: str | None = None) -> bool:
    """Mark the group ``failed`` with ``error``; idempotent.

    With ``token``, only if that run is still the group's current, unfinished
    one (a superseded run's failure changes nothing). Running stage timings
    are marked failed.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    error
        The reason, stored as the group's ``error_message`` (cut to 4000 characters).
    token
        Fail only if this run is still the group's current one; None fails the group whatever its run
        (any state but ``completed`` or ``failed``).

    Returns
    -------
    bool
        True if the state changed; False if the group had already finished or failed, or the run was superseded.
    """

    def _fail(session: Session) -> bool:
        group = get_group(session, group_key, for_update=True)
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

    Parameters
    ----------
    group
        An ``in_progress`` group; its ``heartbeat_at`` (else ``updated_at``), ``worker`` and ``node`` are read.
    now
        The current time (UTC), against which the heartbeat's age is measured.
    stale_s
        Heartbeat age (s) after which a held run is lost (``ingest.stale_in_progress_s``).
    grace_s
        Heartbeat age (s) below which the presence rules do not apply (the sweep passes
        ``celery.presence_ttl_s``).
    alive
        The workers and nodes present; None: presence unknown.

    Returns
    -------
    str or None
        The reason, for the log and the error message (e.g. ``its worker <id> is gone``,
        ``no heartbeat for 7300 s``), or None if the run may still be alive.
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

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    enqueue
        The publishing callable (:data:`Enqueue`) of the re-planned runs, called after the sweep's transaction.
    stale_s
        Heartbeat age (s) after which a held run is lost (``ingest.stale_in_progress_s``).
    max_retries
        Re-enqueues (``retry_count``) allowed before a lost run fails its group instead (``ingest.max_retries``).
    alive
        The workers and nodes present (:func:`contimg.pipeline.housekeeping.liveness`); None: presence unknown,
        only the heartbeat rule applies.
    grace_s
        Heartbeat age (s) below which the presence rules do not apply (see :func:`lost_reason`).
    now
        The current time (default: now, UTC).

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
    publishes it once the broker is back. Not counted as a retry.

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``, also the Celery id of the run's first task).
    reason
        What failed (``task: error``); only logged.

    Returns
    -------
    bool
        True if the run was handed back (False if it was not current).
    """

    def _back(session: Session) -> str | None:
        group = get_group(session, group_key, for_update=True)
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

    Parameters
    ----------
    db
        Database target (settings, URL or engine) for :func:`contimg.db.run_transaction`; the function runs (and
        retries) its own transaction.
    group_keys
        Keys of the groups to reprocess, in one transaction: all of them or none.
    from_stage
        The stage the new runs start at (None: the first); an unknown stage raises
        :class:`~contimg.errors.PermanentError`.
    tier
        Imaging tier of the new runs (see above); an unknown tier raises :class:`~contimg.errors.ConfigError`.

    Returns
    -------
    list of Published
        The new runs, in the order of ``group_keys``; pass each to :func:`publish`.

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
            group = get_group(session, key, for_update=True)
            if group.state not in (GroupState.COMPLETED, GroupState.FAILED):
                raise InvalidTransitionError(
                    f"group {key}: cannot reprocess a group that is {group.state.value}; "
                    "only completed or failed groups can be reprocessed")
            group.imaging_tier = tier
            token = make_pending(group, from_stage=from_stage)
            out.append(_published(group, token))
        return out

    return run_transaction(db, _request)


# =========================================================================== registration (the producer)
class Outcome(str, enum.Enum):
    """What registering a file did."""

    REGISTERED = "registered"
    DUPLICATE = "duplicate"
    """The same path was registered before."""
    CONFLICT = "conflict"
    """Another file already holds this subband of the group; ignored."""
    LATE = "late"
    """Registered, but its group had already been enqueued; it is not processed with it."""


@dataclass(frozen=True)
class Registration:
    path: Path
    outcome: Outcome
    group_key: str | None = None
    nsubbands: int = 0


def known_paths(session: Session) -> set[str]:
    """Paths of every registered subband file."""
    return set(session.scalars(select(SubbandFile.path)))


def _nearest_group(session: Session, ts: datetime, tolerance_s: float) -> ObservationGroup | None:
    lo, hi = ts - timedelta(seconds=tolerance_s), ts + timedelta(seconds=tolerance_s)
    candidates = session.scalars(
        select(ObservationGroup).where(ObservationGroup.timestamp >= lo, ObservationGroup.timestamp <= hi)
    ).all()
    if not candidates:
        return None
    return min(candidates, key=lambda g: abs((g.timestamp - ts).total_seconds()))


def register_file(session: Session, path: Path, *, tolerance_s: float) -> Registration:
    """Register one complete subband file and attach it to its group (idempotent).

    Parameters
    ----------
    session
        The caller's session; a new group is flushed (to get its id), nothing is committed.
    path
        The subband file (made absolute); it must exist, its size is recorded.
    tolerance_s
        Largest difference (s) between the file's timestamp and a group's timestamp for the file to join that
        group (``ingest.tolerance_s``); the nearest group within it is chosen, whatever its state.

    Returns
    -------
    Registration
        The absolute path, the :class:`Outcome`, and the group's key and number of subbands after this file
        (None and 0 for a duplicate).

    Raises
    ------
    InputFileError
        If the file name is not a DSA-110 subband name.
    """
    path = Path(path).absolute()
    name = parse_subband_filename(path)
    if session.scalar(select(SubbandFile.id).where(SubbandFile.path == str(path))) is not None:
        return Registration(path, Outcome.DUPLICATE)
    group = _nearest_group(session, name.timestamp, tolerance_s)
    if group is None:
        group = ObservationGroup(group_key=name.timestamp.strftime(TIMESTAMP_FORMAT), timestamp=name.timestamp,
                                 state=GroupState.COLLECTING, nsubbands=0, attempt=0, retry_count=0)
        session.add(group)
        session.flush()
        log.info("new group %s", group.group_key)
    else:
        session.refresh(group, with_for_update=True)
    taken = session.scalar(select(SubbandFile).where(SubbandFile.group_id == group.id,
                                                      SubbandFile.subband == name.subband))
    if taken is not None:
        log.warning("%s: group %s already has subband %02d from %s; ignoring this file",
                    path, group.group_key, name.subband, taken.path)
        return Registration(path, Outcome.CONFLICT, group.group_key, group.nsubbands)
    session.add(SubbandFile(group_id=group.id, subband=name.subband, path=str(path),
                            size_bytes=path.stat().st_size, file_timestamp=name.timestamp))
    group.nsubbands = (group.nsubbands or 0) + 1
    if name.timestamp < group.timestamp:
        group.timestamp = name.timestamp
        if group.state is GroupState.COLLECTING:
            # the key is the earliest file time (as conversion's default group id), whatever the arrival order
            old_key, group.group_key = group.group_key, name.timestamp.strftime(TIMESTAMP_FORMAT)
            log.debug("group %s renamed %s (earlier file %s)", old_key, group.group_key, path.name)
    if group.state is not GroupState.COLLECTING:
        log.warning("%s arrived after group %s was enqueued (state %s); it is recorded but not processed "
                    "with this run (reprocess the group to include it)", path, group.group_key, group.state.value)
        return Registration(path, Outcome.LATE, group.group_key, group.nsubbands)
    log.debug("registered %s in group %s (%d/%d)", path.name, group.group_key, group.nsubbands, NSUBBANDS)
    return Registration(path, Outcome.REGISTERED, group.group_key, group.nsubbands)


@dataclass(frozen=True)
class Decisions:
    """The result of :func:`promote_due_groups`."""

    promoted: list[Published]
    failed: dict[str, str]


def promote_due_groups(session: Session, settings: IngestSettings, *, now: datetime | None = None,
                       only: Collection[str] | None = None, final: bool = False) -> Decisions:
    """Promote complete or timed-out collecting groups; fail timed-out groups that are too small.

    The ``collecting → pending`` transition and the run token are written in
    the caller's transaction, which is the exactly-once gate: only the
    transaction that moves the group out of ``collecting`` publishes it.

    Parameters
    ----------
    session, settings
        The caller's transaction; ``settings.ingest``.
    now
        The time against which the group timeout is measured (default: now).
    only
        Consider only these group keys (default: every collecting group).
    final
        No more files will arrive (the serial path has registered a whole directory): decide on
        every considered group now instead of waiting for its timeout.

    Returns
    -------
    Decisions
        ``promoted``: the runs made ``pending``, to :func:`publish` after the commit; ``failed``: the reason
        by group key of the groups failed for having fewer than ``min_subbands`` files.
    """
    now = now or utcnow()
    timeout_cutoff = now - timedelta(seconds=settings.group_timeout_s)
    query = select(ObservationGroup).where(ObservationGroup.state == GroupState.COLLECTING)
    if not final:
        query = query.where((ObservationGroup.nsubbands >= NSUBBANDS) | (ObservationGroup.created_at <= timeout_cutoff))
    if only is not None:
        query = query.where(ObservationGroup.group_key.in_(list(only)))
    rows = session.scalars(query.order_by(ObservationGroup.timestamp).with_for_update()).all()
    promoted: list[Published] = []
    failed: dict[str, str] = {}
    for group in rows:
        n = group.nsubbands or 0
        if n >= NSUBBANDS:
            token = make_pending(group)
            promoted.append(_published(group, token))
            continue
        have = {f.subband for f in group.subband_files}
        missing = ", ".join(f"sb{sb:02d}" for sb in range(NSUBBANDS) if sb not in have)
        waited = (now - group.created_at).total_seconds()
        why = "with all its files registered" if final else f"after waiting {waited:.0f} s"
        if n >= settings.min_subbands:
            log.warning("group %s: %d/%d subbands %s (missing %s); processing it anyway",
                        group.group_key, n, NSUBBANDS, why, missing)
            token = make_pending(group)
            promoted.append(_published(group, token))
        else:
            reason = (f"group {group.group_key}: only {n} of {NSUBBANDS} subbands {why} "
                      f"(need at least {settings.min_subbands}); missing {missing}")
            apply_transition(group, GroupState.FAILED, error=reason)
            failed[group.group_key] = reason
            log.error("%s", reason)
    return Decisions(promoted, failed)


@dataclass(frozen=True)
class RegisteredFile:
    """A subband file as the database recorded it."""

    path: str
    size_bytes: int | None
    discovered_at: datetime
    """When the file (its current version, after a retry) was registered."""


@dataclass(frozen=True)
class FailedGroup:
    """A failed group whose error message names some of its files (see :func:`failed_groups_naming_files`)."""

    group_key: str
    finished_at: datetime | None
    """When it failed (also the guard of :func:`reopen_failed_group`)."""
    error: str
    files: tuple[RegisteredFile, ...]
    """All its registered files."""
    named: frozenset[str]
    """Paths of the files its error message names."""


def names_file(error: str, path: str) -> bool:
    """True if the error message ``error`` names the file ``path`` (its full path or its name)."""
    return path in error or Path(path).name in error


def failed_groups_naming_files(session: Session, *, since: datetime, max_file_retries: int) -> list[FailedGroup]:
    """Failed groups that may be retried because one of their files was incomplete.

    A group qualifies if it failed at or after ``since``, its error message
    names at least one of its registered files (:class:`~contimg.errors.InputFileError`
    messages start with the path), and it has not used up its retries: it
    has run (``attempt``) at most ``max_file_retries`` times beyond its
    first run. Reads only; the caller checks the files.

    Parameters
    ----------
    session
        A session (read-only is enough).
    since
        Only groups that failed (``finished_at``) at or after this time (UTC); the producer passes now minus
        ``ingest.retry_window_s``.
    max_file_retries
        Runs allowed beyond the first (``ingest.max_file_retries``); 0 or less returns nothing.

    Returns
    -------
    list of FailedGroup
        Oldest timestamp first.
    """
    if max_file_retries <= 0:
        return []
    rows = session.scalars(
        select(ObservationGroup)
        .where(ObservationGroup.state == GroupState.FAILED,
               ObservationGroup.finished_at >= since,
               ObservationGroup.error_message.is_not(None))
        .options(selectinload(ObservationGroup.subband_files))
        .order_by(ObservationGroup.timestamp)
    ).all()
    out: list[FailedGroup] = []
    for group in rows:
        if max((group.attempt or 0) - 1, 0) >= max_file_retries:
            continue
        error = group.error_message or ""
        named = frozenset(f.path for f in group.subband_files if names_file(error, f.path))
        if not named:
            continue
        files = tuple(RegisteredFile(f.path, f.size_bytes, f.discovered_at) for f in group.subband_files)
        out.append(FailedGroup(group.group_key, group.finished_at, error, files, named))
    return out


def reopen_failed_group(session: Session, group_key: str, *, finished_at: datetime | None,
                        sizes: Mapping[str, int], from_stage: str = STAGES[0]) -> Published | None:
    """Record the new sizes of changed files and make their failed group ``pending`` again.

    In the caller's transaction: ``size_bytes`` and ``discovered_at`` (now) of
    the files in ``sizes`` are updated and the group gets a new run token
    starting at ``from_stage`` (as :func:`request_reprocess`
    does). Nothing changes, and None is returned, if the group is no longer
    the failure seen (its state or ``finished_at`` differ: someone else
    reprocessed it meanwhile).

    Parameters
    ----------
    session
        The caller's session (its transaction; the group's row is locked).
    group_key
        The failed group.
    finished_at
        Its ``finished_at`` when it was found (:attr:`FailedGroup.finished_at`).
    sizes
        New size in bytes of each changed file, by path.
    from_stage
        Where the new run starts.

    Returns
    -------
    Published or None
        The new run, to :func:`publish` after the commit; None if nothing changed.
    """
    group = session.scalar(select(ObservationGroup).where(ObservationGroup.group_key == group_key)
                           .with_for_update())
    if group is None or group.state is not GroupState.FAILED or group.finished_at != finished_at:
        return None
    now = utcnow()
    for f in group.subband_files:
        if f.path in sizes:
            f.size_bytes = int(sizes[f.path])
            f.discovered_at = now
    token = make_pending(group, from_stage=from_stage)
    return _published(group, token)


def counts_by_state(session: Session) -> dict[str, int]:
    """Number of groups in each state (every state present, zeros included)."""
    out = {s.value: 0 for s in GroupState}
    for state, n in session.execute(select(ObservationGroup.state, func.count()).group_by(ObservationGroup.state)):
        out[GroupState(state).value] = n
    return out
