"""The producer's database work: registering files, grouping them, promoting groups.

Grouping: a file belongs to the existing group whose timestamp (its earliest
file time) is nearest to the file's own, if within ``tolerance_s``; otherwise it
starts a new group. A group's key is the earliest file time among its files
(it follows earlier arrivals while the group is collecting, and is frozen once
the group is enqueued). A group is *due* when it has all 16
subbands, or when it has waited ``group_timeout_s`` since its first file was
registered: then it is promoted to ``pending`` if it has at least
``min_subbands`` files, and failed with the reason otherwise.

Retrying after a file changed: a group that failed because one of its files
was incomplete (the error message names the file) is found by
:func:`failed_groups_naming_files`; when the producer sees that file changed
and complete, :func:`reopen_failed_group` records the file's new size and makes
the group ``pending`` again from the first stage, in one transaction.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from contimg.config import IngestSettings
from contimg.db import GroupState, apply_transition
from contimg.db.models import ObservationGroup, SubbandFile
from contimg.db.states import utcnow
from contimg.naming import NSUBBANDS, TIMESTAMP_FORMAT, parse_subband_filename
from contimg.pipeline.stages import STAGES
from contimg.pipeline.state import Published, make_pending

log = logging.getLogger(__name__)


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


def promote_due_groups(session: Session, settings: IngestSettings, *, now: datetime | None = None) -> Decisions:
    """Promote complete or timed-out collecting groups; fail timed-out groups that are too small.

    The ``collecting → pending`` transition and the run token are written in
    the caller's transaction, which is the exactly-once gate: only the
    transaction that moves the group out of ``collecting`` publishes it.
    """
    now = now or utcnow()
    timeout_cutoff = now - timedelta(seconds=settings.group_timeout_s)
    rows = session.scalars(
        select(ObservationGroup)
        .where(ObservationGroup.state == GroupState.COLLECTING)
        .where((ObservationGroup.nsubbands >= NSUBBANDS) | (ObservationGroup.created_at <= timeout_cutoff))
        .order_by(ObservationGroup.timestamp)
        .with_for_update()
    ).all()
    promoted: list[Published] = []
    failed: dict[str, str] = {}
    for group in rows:
        n = group.nsubbands or 0
        if n >= NSUBBANDS:
            token = make_pending(group)
            promoted.append(Published(group.group_key, token, group.current_stage))
            continue
        have = {f.subband for f in group.subband_files}
        missing = ", ".join(f"sb{sb:02d}" for sb in range(NSUBBANDS) if sb not in have)
        waited = (now - group.created_at).total_seconds()
        if n >= settings.min_subbands:
            log.warning("group %s: timed out after %.0f s with %d/%d subbands (missing %s); processing it anyway",
                        group.group_key, waited, n, NSUBBANDS, missing)
            token = make_pending(group)
            promoted.append(Published(group.group_key, token, group.current_stage))
        else:
            reason = (f"group {group.group_key}: only {n} of {NSUBBANDS} subbands after waiting {waited:.0f} s "
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
    starting at ``from_stage`` (as :func:`contimg.pipeline.state.request_reprocess`
    does). Nothing changes, and None is returned, if the group is no longer
    the failure seen (its state or ``finished_at`` differ: someone else
    reprocessed it meanwhile).

    Parameters
    ----------
    group_key
        The failed group.
    finished_at
        Its ``finished_at`` when it was found (:attr:`FailedGroup.finished_at`).
    sizes
        New size in bytes of each changed file, by path.
    from_stage
        Where the new run starts.
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
    return Published(group.group_key, token, group.current_stage)


def counts_by_state(session: Session) -> dict[str, int]:
    """Number of groups in each state (every state present, zeros included)."""
    out = {s.value: 0 for s in GroupState}
    for state, n in session.execute(select(ObservationGroup.state, func.count()).group_by(ObservationGroup.state)):
        out[GroupState(state).value] = n
    return out
