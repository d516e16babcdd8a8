"""The producer's database work: registering files, grouping them, promoting groups.

Grouping: a file belongs to the existing group whose timestamp (its earliest
file time) is nearest to the file's own, if within ``tolerance_s``; otherwise it
starts a new group. A group's key is the earliest file time among its files
(it follows earlier arrivals while the group is collecting, and is frozen once
the group is enqueued). A group is *due* when it has all 16
subbands, or when it has waited ``group_timeout_s`` since its first file was
registered: then it is promoted to ``pending`` if it has at least
``min_subbands`` files, and failed with the reason otherwise.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contimg.config import IngestSettings
from contimg.db import GroupState, apply_transition
from contimg.db.models import ObservationGroup, SubbandFile
from contimg.db.states import utcnow
from contimg.naming import NSUBBANDS, TIMESTAMP_FORMAT, parse_subband_filename
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


def counts_by_state(session: Session) -> dict[str, int]:
    """Number of groups in each state (every state present, zeros included)."""
    out = {s.value: 0 for s in GroupState}
    for state, n in session.execute(select(ObservationGroup.state, func.count()).group_by(ObservationGroup.state)):
        out[GroupState(state).value] = n
    return out
