"""The group state machine: every allowed transition, forbidden ones, and their bookkeeping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import product

import pytest

from contimg.db import session_scope
from contimg.db import groups as q

from db_helpers import add_group
from contimg.db.models import ObservationGroup
from contimg.db.states import (
    ALLOWED_TRANSITIONS,
    GroupState,
    apply_transition,
    can_transition,
    check_transition,
)
from contimg.errors import InvalidTransitionError, PermanentError

C, P, I, D, F = (GroupState.COLLECTING, GroupState.PENDING, GroupState.IN_PROGRESS,
                 GroupState.COMPLETED, GroupState.FAILED)

# Written out independently of the module: the specification of the lifecycle.
EXPECTED_ALLOWED = {
    (C, P), (C, F),
    (P, I), (P, F),
    (I, D), (I, F), (I, P),
    (D, P),
    (F, P),
}
FORBIDDEN = sorted(set(product(GroupState, GroupState)) - EXPECTED_ALLOWED, key=lambda t: (t[0].value, t[1].value))
T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)


def test_table_matches_specification():
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED_ALLOWED
    assert set(ALLOWED_TRANSITIONS) == set(GroupState)


def test_values_are_what_the_database_stores():
    assert [s.value for s in GroupState] == ["collecting", "pending", "in_progress", "completed", "failed"]
    assert str(GroupState.IN_PROGRESS) == "in_progress"


@pytest.mark.parametrize(("a", "b"), FORBIDDEN, ids=lambda s: s.value)
def test_forbidden_transition_raises_naming_group_and_states(a, b):
    assert not can_transition(a, b)
    with pytest.raises(InvalidTransitionError) as info:
        check_transition("2025-10-02T10:02:45", a, b)
    msg = str(info.value)
    assert "2025-10-02T10:02:45" in msg and f"from {a.value} to {b.value}" in msg
    assert isinstance(info.value, PermanentError)


def _group(state: GroupState) -> ObservationGroup:
    return ObservationGroup(group_key="2025-10-02T10:02:45", timestamp=T0, state=state, attempt=1,
                            retry_count=0, nsubbands=16)


def test_forbidden_transition_changes_nothing():
    group = _group(D)
    with pytest.raises(InvalidTransitionError):
        apply_transition(group, I)
    assert group.state is D and group.attempt == 1


def test_failure_needs_a_message():
    with pytest.raises(ValueError, match="error message"):
        apply_transition(_group(I), F)


def test_bookkeeping_through_a_lifecycle():
    g = _group(C)
    g.attempt = 0
    t = [T0 + timedelta(minutes=k) for k in range(8)]
    apply_transition(g, P, now=t[0])
    g.task_id, g.enqueued_at = "run-1", t[0]
    apply_transition(g, I, now=t[1])
    assert (g.attempt, g.started_at, g.heartbeat_at, g.finished_at) == (1, t[1], t[1], None)
    apply_transition(g, P, now=t[2])                       # lost worker: requeue
    assert (g.retry_count, g.task_id, g.enqueued_at) == (1, None, None)
    apply_transition(g, I, now=t[3])
    assert g.attempt == 2
    apply_transition(g, F, error="corrupt sb03", now=t[4])
    assert (g.finished_at, g.error_message) == (t[4], "corrupt sb03")
    apply_transition(g, P, now=t[5])                       # reprocess
    assert (g.retry_count, g.error_message, g.finished_at) == (0, None, None)
    apply_transition(g, I, now=t[6])
    apply_transition(g, D, now=t[7])
    assert (g.state, g.attempt, g.finished_at, g.updated_at) == (D, 3, t[7], t[7])


def _path_to(state: GroupState) -> list[GroupState]:
    """States to pass through from collecting to ``state``."""
    return {C: [], P: [P], I: [P, I], D: [P, I, D], F: [F]}[state]


@pytest.mark.parametrize(("a", "b"), sorted(EXPECTED_ALLOWED, key=lambda t: (t[0].value, t[1].value)),
                         ids=lambda s: s.value)
def test_every_allowed_transition_in_the_database(db_url, a, b):
    with session_scope(db_url) as s:
        group = add_group(s, "2025-10-02T10:02:45", T0)
        for step in _path_to(a):
            q.transition_group(s, group, step, error="setup" if step is F else None)
    with session_scope(db_url) as s:
        q.transition_group(s, "2025-10-02T10:02:45", b, error="boom" if b is F else None)
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, "2025-10-02T10:02:45")
        assert g.state is b
        assert g.updated_at.tzinfo is not None


@pytest.mark.parametrize(("a", "b"), [(C, I), (C, D), (P, D), (D, F), (F, I), (D, D)], ids=lambda s: s.value)
def test_forbidden_transition_in_the_database_is_rolled_back(db_url, a, b):
    with session_scope(db_url) as s:
        group = add_group(s, "k", T0)
        for step in _path_to(a):
            q.transition_group(s, group, step, error="setup" if step is F else None)
    with pytest.raises(InvalidTransitionError, match=f"group k: cannot go from {a.value} to {b.value}"):
        with session_scope(db_url) as s:
            q.transition_group(s, "k", b, error="x")
    with session_scope(db_url, readonly=True) as s:
        assert q.get_group(s, "k").state is a
