"""Child-process side of the concurrent-writer test (imported by spawned processes; not a test module)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
SHARED_KEY = "shared"


def write_many(url: str, worker: int, n_transactions: int, barrier) -> dict:
    """Do ``n_transactions`` small write transactions; return counts and timing.

    Each transaction registers a new group with a file and a stage timing, and
    increments the shared group's ``retry_count`` by read-modify-write (a lost
    update would show up as a final count below the number of transactions).
    """
    from contimg.db import GroupState, groups, run_transaction
    from contimg.db.models import StageTiming, SubbandFile
    from db_helpers import add_group

    def one(k: int):
        def txn(session):
            ts = T0 + timedelta(seconds=309 * (worker * n_transactions + k))
            group = add_group(session, f"w{worker}-{k:04d}", ts)
            session.add(SubbandFile(group_id=group.id, subband=k % 16, path=f"/in/w{worker}/{k}_sb{k % 16:02d}.hdf5"))
            groups.transition_group(session, group, GroupState.PENDING)
            groups.transition_group(session, group, GroupState.IN_PROGRESS)
            session.add(StageTiming(group_id=group.id, stage="convert", attempt=1, started_at=ts,
                                    finished_at=ts + timedelta(seconds=3), seconds=3.0, status="ok",
                                    hostname=f"pid{os.getpid()}"))
            shared = groups.get_group(session, SHARED_KEY, for_update=True)
            shared.retry_count = shared.retry_count + 1
        return txn

    barrier.wait(timeout=120)
    t0 = time.perf_counter()
    for k in range(n_transactions):
        run_transaction(url, one(k), attempts=3)
    return {"worker": worker, "seconds": time.perf_counter() - t0}


def child_main(url: str, worker: int, n_transactions: int, barrier, results) -> None:
    try:
        results.put(write_many(url, worker, n_transactions, barrier))
    except BaseException as exc:  # report every failure to the parent
        results.put({"worker": worker, "error": f"{type(exc).__name__}: {exc}"})
        raise
