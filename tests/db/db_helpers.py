"""Rows for the engine and state-machine tests, which need a group row, not the producer's logic."""

from __future__ import annotations

from datetime import datetime

from contimg.db import GroupState
from contimg.db.models import ObservationGroup


def add_group(session, key: str, timestamp: datetime) -> ObservationGroup:
    """Insert a ``collecting`` group row and flush it."""
    group = ObservationGroup(group_key=key, timestamp=timestamp, state=GroupState.COLLECTING, nsubbands=0,
                             attempt=0, retry_count=0)
    session.add(group)
    session.flush()
    return group
