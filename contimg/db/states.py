"""The lifecycle of an observation group: its states and the allowed transitions.

This module is the ONE place that says which state changes are legal and what a
change does to a group's bookkeeping columns (timestamps, attempt and retry
counters, error message). Everything else -- the producer, the workers, beat
housekeeping, reprocessing -- goes through :func:`apply_transition` (usually via
:func:`contimg.db.groups.transition_group`).

::

    collecting  → pending | failed
    pending     → in_progress | failed
    in_progress → completed | failed | pending   (re-enqueue after a lost worker)
    completed   → pending                        (reprocess)
    failed      → pending                        (reprocess)

``collecting``
    subband files are arriving; the group is not yet complete.
``pending``
    complete (or timed out with enough subbands); enqueued or about to be.
``in_progress``
    a worker runs its stages (``current_stage`` says which).
``completed``
    every stage finished.
``failed``
    a permanent error, a timed-out incomplete group, or too many lost workers;
    ``error_message`` says why.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from contimg.errors import InvalidTransitionError

if TYPE_CHECKING:  # pragma: no cover
    from contimg.db.models import ObservationGroup


class GroupState(str, enum.Enum):
    """State of an observation group; the value is what the database stores."""

    COLLECTING = "collecting"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


ALLOWED_TRANSITIONS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.COLLECTING: frozenset({GroupState.PENDING, GroupState.FAILED}),
    GroupState.PENDING: frozenset({GroupState.IN_PROGRESS, GroupState.FAILED}),
    GroupState.IN_PROGRESS: frozenset(
        {GroupState.COMPLETED, GroupState.FAILED, GroupState.PENDING}
    ),
    GroupState.COMPLETED: frozenset({GroupState.PENDING}),
    GroupState.FAILED: frozenset({GroupState.PENDING}),
}
"""For each state, the states a group may move to. Staying in a state is not a transition."""

TERMINAL_STATES: frozenset[GroupState] = frozenset({GroupState.COMPLETED, GroupState.FAILED})
"""States in which no work is under way or expected (a group leaves them only by reprocessing)."""

ACTIVE_STATES: frozenset[GroupState] = frozenset({GroupState.PENDING, GroupState.IN_PROGRESS})
"""States in which a group has been, or is being, handed to the cluster."""


def can_transition(from_state: GroupState, to_state: GroupState) -> bool:
    """True if a group in ``from_state`` may move to ``to_state``."""
    return GroupState(to_state) in ALLOWED_TRANSITIONS[GroupState(from_state)]


def check_transition(group: str, from_state: GroupState, to_state: GroupState) -> None:
    """Raise unless ``from_state → to_state`` is allowed.

    Parameters
    ----------
    group
        How to name the group in the error message (its key or id).
    from_state, to_state
        The current and the requested state.

    Raises
    ------
    InvalidTransitionError
        Naming the group, both states and the states that are allowed.
    """
    from_state = GroupState(from_state)
    to_state = GroupState(to_state)
    if to_state not in ALLOWED_TRANSITIONS[from_state]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[from_state]))
        raise InvalidTransitionError(
            f"group {group}: cannot go from {from_state.value} to {to_state.value} "
            f"(allowed from {from_state.value}: {allowed or 'nothing'})"
        )


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of time the database stores)."""
    return datetime.now(timezone.utc)


def apply_transition(
    group: ObservationGroup,
    to_state: GroupState,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> ObservationGroup:
    """Move ``group`` to ``to_state`` and update its bookkeeping, in memory.

    The caller commits (and should hold the row: see
    :func:`contimg.db.groups.transition_group`). What each target state does:

    ``pending``
        Clears ``task_id``, ``enqueued_at``, ``finished_at`` and
        ``error_message`` (a new run will be published). From ``in_progress``
        (a lost worker) it increments ``retry_count``; from ``completed`` or
        ``failed`` (reprocessing) it resets ``retry_count`` to 0.
    ``in_progress``
        Sets ``started_at`` and ``heartbeat_at``, increments ``attempt`` (stage
        timings are kept per attempt), clears ``finished_at``.
    ``completed``
        Sets ``finished_at``; clears ``error_message``.
    ``failed``
        Sets ``finished_at`` and ``error_message`` (``error`` is required).

    Every target but ``in_progress`` also clears ``worker`` and ``node``; ``updated_at`` is always set.

    Parameters
    ----------
    group
        The group to change (its ``state`` is the origin of the transition).
    to_state
        The state to move to (a :class:`GroupState` or its value).
    error
        The error message; required when ``to_state`` is ``failed``, ignored otherwise.
    now
        Time written to the bookkeeping columns (default: now, UTC).

    Returns
    -------
    ObservationGroup
        ``group`` itself, changed.

    Raises
    ------
    InvalidTransitionError
        If the state machine does not allow the change (nothing is modified).
    ValueError
        If ``to_state`` is ``failed`` and no ``error`` is given.
    """
    to_state = GroupState(to_state)
    from_state = GroupState(group.state)
    check_transition(group.group_key, from_state, to_state)
    if to_state is GroupState.FAILED and not error:
        raise ValueError(f"group {group.group_key}: a failure needs an error message")
    now = now or utcnow()

    if to_state is GroupState.PENDING:
        if from_state is GroupState.IN_PROGRESS:
            group.retry_count = (group.retry_count or 0) + 1
        elif from_state in TERMINAL_STATES:
            group.retry_count = 0
        group.task_id = None
        group.enqueued_at = None
        group.finished_at = None
        group.error_message = None
    elif to_state is GroupState.IN_PROGRESS:
        group.attempt = (group.attempt or 0) + 1
        group.started_at = now
        group.heartbeat_at = now
        group.finished_at = None
    elif to_state is GroupState.COMPLETED:
        group.finished_at = now
        group.error_message = None
    elif to_state is GroupState.FAILED:
        group.finished_at = now
        group.error_message = error

    if to_state is not GroupState.IN_PROGRESS:  # nobody holds a run that is queued, finished or failed
        group.worker = None
        group.node = None
    group.state = to_state
    group.updated_at = now
    return group
