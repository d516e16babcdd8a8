"""The run protocol in the database (no Celery): claim, stages, completion, failure, housekeeping."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from contimg.db import GroupState, session_scope
from contimg.db.models import ObservationGroup, StageTiming
from contimg.db import groups
from contimg.pipeline import housekeeping

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)


@pytest.fixture
def settings(db_settings):
    """Settings on a migrated database: SQLite, and PostgreSQL when CONTIMG_TEST_POSTGRES_URL is set."""
    return db_settings


def _pending_group(settings, key="2025-10-02T10:02:45") -> str:
    with session_scope(settings) as s:
        g = ObservationGroup(group_key=key, timestamp=T0, state=GroupState.COLLECTING, nsubbands=16)
        s.add(g)
        s.flush()
        return groups.make_pending(g)


def _converting_run(settings, key="2025-10-02T10:02:45") -> tuple[str, str]:
    """A group claimed by a new run that started its convert stage: (key, token)."""
    token = _pending_group(settings, key)
    groups.claim(settings, key, token)
    groups.stage_started(settings, key, token, "convert")
    return key, token


def _publisher():
    """(the list of publications, an ``enqueue`` that appends to it)."""
    published = []
    return published, lambda *a: published.append(a)


def _group(settings, key="2025-10-02T10:02:45") -> ObservationGroup:
    with session_scope(settings, readonly=True) as s:
        return s.scalar(select(ObservationGroup).where(ObservationGroup.group_key == key))


def test_a_run_is_claimed_once_and_stale_runs_are_fenced_off(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    assert not groups.claim(settings, key, "another-token")
    assert groups.claim(settings, key, token)
    assert not groups.claim(settings, key, token)  # duplicate delivery
    groups.stage_started(settings, key, token, "convert")
    groups.stage_started(settings, key, token, "convert")  # redelivered task: still one row
    with pytest.raises(groups.StaleRunError):
        groups.check_current(settings, key, "another-token")
    seconds = groups.stage_finished(settings, key, token, "convert")
    assert seconds >= 0
    assert groups.complete(settings, key, token)
    assert not groups.complete(settings, key, token)  # idempotent
    g = _group(settings)
    assert g.state is GroupState.COMPLETED and g.attempt == 1 and g.current_stage is None
    with session_scope(settings, readonly=True) as s:
        rows = s.scalars(select(StageTiming)).all()
    assert [(r.stage, r.status, r.attempt) for r in rows] == [("convert", "ok", 1)]
    with pytest.raises(groups.StaleRunError):
        groups.check_current(settings, key, token)  # the run is over


def test_failure_is_recorded_once_and_only_for_the_current_run(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    groups.claim(settings, key, token)
    groups.stage_started(settings, key, token, "convert")
    assert not groups.fail(settings, key, "old run's error", token="superseded")
    assert groups.fail(settings, key, "plan: InputFileError: x_sb05.hdf5 is truncated", token=token)
    assert not groups.fail(settings, key, "the errback again", token=token)
    g = _group(settings)
    assert g.state is GroupState.FAILED and "x_sb05.hdf5" in g.error_message
    with session_scope(settings, readonly=True) as s:
        assert [t.status for t in s.scalars(select(StageTiming))] == ["failed"]


def test_stale_runs_are_requeued_then_failed(settings):
    published, enqueue = _publisher()
    key, token = _converting_run(settings)
    groups.hold(settings, key, token, worker="w1@host#1")
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert groups.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1) == {"requeued": [], "failed": []}
    report = groups.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1, now=later)
    assert report == {"requeued": [key], "failed": []}
    g = _group(settings)
    assert g.state is GroupState.PENDING and g.retry_count == 1 and g.task_id != token and g.enqueued_at
    assert published == [(key, g.task_id, "convert")]
    with pytest.raises(groups.StaleRunError):  # the lost run's stragglers cannot touch the group
        groups.check_current(settings, key, token)
    assert groups.claim(settings, key, g.task_id)
    groups.hold(settings, key, g.task_id, worker="w1@host#1")
    report = groups.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1,
                                  now=later + timedelta(hours=2))
    assert report == {"requeued": [], "failed": [key]}
    assert "after 1 re-enqueues" in _group(settings).error_message


def test_a_run_is_lost_when_its_worker_or_node_is_gone_not_while_it_waits_in_a_queue(settings):
    published, enqueue = _publisher()
    key, token = _converting_run(settings)
    groups.hold(settings, key, token, worker="a@h#1", node="node-a")
    later = datetime.now(timezone.utc) + timedelta(seconds=60)
    both = groups.Liveness(workers=frozenset({"a@h#1"}), nodes=frozenset({"node-a"}))
    kw = {"stale_s": 3600, "max_retries": 3, "grace_s": 30}
    assert groups.requeue_stale(settings, enqueue, alive=both, now=later, **kw)["requeued"] == []
    # the worker restarted (a new instance) but the node lives: the run it held is lost all the same
    other = groups.Liveness(workers=frozenset({"a@h#2"}), nodes=frozenset({"node-a"}))
    assert groups.requeue_stale(settings, enqueue, alive=other, now=later - timedelta(seconds=45), **kw) == \
        {"requeued": [], "failed": []}  # within the grace period of the last beat
    assert groups.requeue_stale(settings, enqueue, alive=other, now=later, **kw)["requeued"] == [key]
    g = _group(settings)
    assert g.worker is None and g.node is None and published[-1] == (key, g.task_id, "convert")
    with session_scope(settings, readonly=True) as s:
        assert [t.status for t in s.scalars(select(StageTiming))] == ["lost"]
    # a run whose convert stage finished and whose next task waits in a shared queue: not lost, however long
    token = g.task_id
    groups.claim(settings, key, token)
    groups.stage_started(settings, key, token, "convert")
    groups.stage_finished(settings, key, token, "convert")
    groups.unhold(settings, key, token, worker="a@h#1", node=True)
    much_later = later + timedelta(hours=5)
    nobody = groups.Liveness(workers=frozenset(), nodes=frozenset())
    assert groups.requeue_stale(settings, enqueue, alive=nobody, now=much_later, **kw)["requeued"] == []
    # held by a dead worker after convert finished: re-planned from the next stage
    groups.hold(settings, key, token, worker="b@h#1")
    assert groups.requeue_stale(settings, enqueue, alive=nobody, now=much_later, **kw)["requeued"] == [key]
    assert published[-1] == (key, _group(settings).task_id, "calibrate")


def test_a_broker_failure_hands_the_run_back_unpublished(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    groups.claim(settings, key, token)
    groups.stage_started(settings, key, token, "convert")
    groups.stage_finished(settings, key, token, "convert")
    assert groups.hand_back(settings, key, token, "OperationalError: Connection refused")
    assert not groups.hand_back(settings, key, token, "again")  # superseded: nothing changes
    g = _group(settings)
    assert g.state is GroupState.PENDING and g.enqueued_at is None and g.retry_count == 0
    assert g.current_stage == "calibrate" and g.task_id != token
    published = []
    assert groups.publish_unpublished(settings, lambda *a: published.append(a)) == [key]
    assert published == [(key, g.task_id, "calibrate")]


def test_beats_reach_only_current_runs_and_claim_unheld_ones(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    groups.claim(settings, key, token)
    before = _group(settings).heartbeat_at
    time.sleep(0.01)
    assert groups.beat(settings, [(key, "superseded")]) == 0
    assert groups.beat(settings, [(key, token)], worker="w@h#9") == 1
    g = _group(settings)
    assert g.heartbeat_at > before and g.worker == "w@h#9"
    groups.hold(settings, key, token, worker="x@h#1")
    groups.beat(settings, [(key, token)])
    assert groups.holders(_group(settings)) == {"w@h#9", "x@h#1"}
    groups.unhold(settings, key, token, worker="w@h#9")
    groups.unhold(settings, key, token, worker="x@h#1")
    assert _group(settings).worker is None


def test_staging_clean_up_spares_running_groups(settings):
    staging = settings.paths.staging
    for name in ("2025-10-02T100245", "2025-10-01T000000"):
        (staging / name).mkdir(parents=True)
        part = staging / name / "sb00.part"
        part.write_bytes(b"x")
        old = time.time() - 7200
        os.utime(part, (old, old))
    token = _pending_group(settings)
    groups.claim(settings, "2025-10-02T10:02:45", token)
    removed = housekeeping.clean_staging(settings, max_age_s=3600)
    assert removed == ["2025-10-01T000000"]
    assert (staging / "2025-10-02T100245").exists()


def test_nightly_job_scores_nothing_without_photometry(settings, caplog):
    result = housekeeping.nightly_variability(settings)
    assert result["status"] == "skipped"
    assert "nothing scored" in caplog.text
