"""The run protocol in the database (no Celery): claim, stages, completion, failure, housekeeping."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from contimg.db import GroupState, session_scope
from contimg.db.models import ObservationGroup, StageTiming
from contimg.pipeline import housekeeping, state

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
        return state.make_pending(g)


def _group(settings, key="2025-10-02T10:02:45") -> ObservationGroup:
    with session_scope(settings, readonly=True) as s:
        return s.scalar(select(ObservationGroup).where(ObservationGroup.group_key == key))


def test_a_run_is_claimed_once_and_stale_runs_are_fenced_off(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    assert not state.claim(settings, key, "another-token")
    assert state.claim(settings, key, token)
    assert not state.claim(settings, key, token)  # duplicate delivery
    state.stage_started(settings, key, token, "convert")
    state.stage_started(settings, key, token, "convert")  # redelivered task: still one row
    with pytest.raises(state.StaleRunError):
        state.check_current(settings, key, "another-token")
    seconds = state.stage_finished(settings, key, token, "convert")
    assert seconds >= 0
    assert state.complete(settings, key, token)
    assert not state.complete(settings, key, token)  # idempotent
    g = _group(settings)
    assert g.state is GroupState.COMPLETED and g.attempt == 1 and g.current_stage is None
    with session_scope(settings, readonly=True) as s:
        rows = s.scalars(select(StageTiming)).all()
    assert [(r.stage, r.status, r.attempt) for r in rows] == [("convert", "ok", 1)]
    with pytest.raises(state.StaleRunError):
        state.check_current(settings, key, token)  # the run is over


def test_failure_is_recorded_once_and_only_for_the_current_run(settings):
    key = "2025-10-02T10:02:45"
    token = _pending_group(settings)
    state.claim(settings, key, token)
    state.stage_started(settings, key, token, "convert")
    assert not state.fail(settings, key, "old run's error", token="superseded")
    assert state.fail(settings, key, "plan: InputFileError: x_sb05.hdf5 is truncated", token=token)
    assert not state.fail(settings, key, "the errback again", token=token)
    g = _group(settings)
    assert g.state is GroupState.FAILED and "x_sb05.hdf5" in g.error_message
    with session_scope(settings, readonly=True) as s:
        assert [t.status for t in s.scalars(select(StageTiming))] == ["failed"]


def test_stale_runs_are_requeued_then_failed(settings):
    key = "2025-10-02T10:02:45"
    published = []
    enqueue = lambda *a: published.append(a)  # noqa: E731
    token = _pending_group(settings)
    state.claim(settings, key, token)
    state.stage_started(settings, key, token, "convert")
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert state.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1) == {"requeued": [], "failed": []}
    report = state.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1, now=later)
    assert report == {"requeued": [key], "failed": []}
    g = _group(settings)
    assert g.state is GroupState.PENDING and g.retry_count == 1 and g.task_id != token and g.enqueued_at
    assert published == [(key, g.task_id, "convert")]
    with pytest.raises(state.StaleRunError):  # the lost run's stragglers cannot touch the group
        state.check_current(settings, key, token)
    assert state.claim(settings, key, g.task_id)
    report = state.requeue_stale(settings, enqueue, stale_s=3600, max_retries=1,
                                 now=later + timedelta(hours=2))
    assert report == {"requeued": [], "failed": [key]}
    assert "after 1 re-enqueues" in _group(settings).error_message


def test_staging_clean_up_spares_running_groups(settings):
    staging = settings.paths.staging
    for name in ("2025-10-02T100245", "2025-10-01T000000"):
        (staging / name).mkdir(parents=True)
        part = staging / name / "sb00.part"
        part.write_bytes(b"x")
        old = time.time() - 7200
        os.utime(part, (old, old))
    token = _pending_group(settings)
    state.claim(settings, "2025-10-02T10:02:45", token)
    removed = housekeeping.clean_staging(settings, max_age_s=3600)
    assert removed == ["2025-10-01T000000"]
    assert (staging / "2025-10-02T100245").exists()


def test_nightly_job_scores_nothing_without_photometry(settings, caplog):
    result = housekeeping.nightly_variability(settings)
    assert result["status"] == "skipped"
    assert "nothing scored" in caplog.text
