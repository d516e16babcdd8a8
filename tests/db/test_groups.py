"""The group store on SQLite and PostgreSQL: registration, the run protocol, constraints, products.

These tests call the functions the producer, the workers and beat call (:mod:`contimg.db.groups`):
there is no second copy of the protocol to test instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from contimg.config import IngestSettings
from contimg.db import GroupState, groups, products, session_scope
from contimg.db.models import CalTableType, Image, MeasurementSet, ObservationGroup, StageTiming, SubbandFile
from contimg.errors import InvalidTransitionError, NotFoundError
from contimg.naming import format_subband_filename

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
KEY = "2025-10-02T10:02:45"


def _count(s, model) -> int:
    return s.scalar(select(func.count()).select_from(model))


def _file(root: Path, ts: datetime, sb: int, size: int = 10) -> Path:
    path = root / format_subband_filename(ts, sb)
    path.write_bytes(b"x" * size)
    return path


def _register(url, root: Path, ts: datetime = T0, subbands=range(16), tolerance_s: float = 60.0) -> list:
    with session_scope(url) as s:
        return [groups.register_file(s, _file(root, ts, sb), tolerance_s=tolerance_s) for sb in subbands]


def _pending(url, root: Path, ts: datetime = T0) -> groups.Published:
    """A complete group promoted to pending (not yet published)."""
    _register(url, root, ts)
    with session_scope(url) as s:
        (item,) = [p for p in groups.promote_due_groups(s, IngestSettings()).promoted]
    return item


def _running(url, root: Path, ts: datetime = T0) -> groups.Published:
    item = _pending(url, root, ts)
    groups.publish(url, item, lambda *a: None)
    assert groups.claim(url, item.group_key, item.token)
    return item


# --------------------------------------------------------------------------- registration
def test_registration_is_idempotent_and_the_key_is_the_earliest_file_time(db_url, tmp_path):
    later = _register(db_url, tmp_path, T0 + timedelta(seconds=2), subbands=[1, 2])
    assert [r.outcome for r in later] == [groups.Outcome.REGISTERED] * 2
    (early,) = _register(db_url, tmp_path, T0, subbands=[0])
    assert early.group_key == KEY and early.nsubbands == 3
    again = _register(db_url, tmp_path, T0, subbands=[0])
    assert [r.outcome for r in again] == [groups.Outcome.DUPLICATE]
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, ObservationGroup) == 1 and _count(s, SubbandFile) == 3
        g = groups.get_group(s, KEY)
        assert g.timestamp == T0 and g.nsubbands == 3 and g.state is GroupState.COLLECTING
        assert [f.subband for f in g.subband_files] == [0, 1, 2]
        assert g.subband_files[0].discovered_at.tzinfo is not None and g.subband_files[0].size_bytes == 10


def test_files_join_the_nearest_group_within_the_tolerance(db_url, tmp_path):
    _register(db_url, tmp_path, T0, subbands=[0])
    _register(db_url, tmp_path, T0 + timedelta(seconds=309), subbands=[0])
    (a,) = _register(db_url, tmp_path, T0 + timedelta(seconds=3), subbands=[1])
    (b,) = _register(db_url, tmp_path, T0 + timedelta(seconds=300), subbands=[1])
    (c,) = _register(db_url, tmp_path, T0 + timedelta(seconds=150), subbands=[2])
    assert a.group_key == KEY and b.group_key == "2025-10-02T10:07:45"  # the earlier file renames its group
    assert c.group_key == "2025-10-02T10:05:15"  # beyond 60 s of both: a group of its own


def test_a_second_file_for_a_subband_is_a_conflict(db_url, tmp_path):
    _register(db_url, tmp_path, T0, subbands=[3])
    (other,) = _register(db_url, tmp_path, T0 + timedelta(seconds=1), subbands=[3])
    assert other.outcome is groups.Outcome.CONFLICT and other.group_key == KEY
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, SubbandFile) == 1 and groups.get_group(s, KEY).nsubbands == 1


def test_get_group_by_id_key_and_unknown(db_url, tmp_path):
    _register(db_url, tmp_path, subbands=[0])
    with session_scope(db_url, readonly=True) as s:
        gid = groups.get_group(s, KEY).id
        assert groups.get_group(s, gid).group_key == KEY
        assert groups.find_group(s, "1999-01-01T00:00:00") is None
        with pytest.raises(groups.UnknownGroupError, match="1999-01-01T00:00:00") as err:
            groups.get_group(s, "1999-01-01T00:00:00")
        assert isinstance(err.value, NotFoundError)


def test_due_groups_are_promoted_or_failed(db_url, tmp_path):
    _register(db_url, tmp_path, T0)                                                    # complete
    _register(db_url, tmp_path, T0 + timedelta(seconds=309), subbands=range(12))      # enough, timed out
    _register(db_url, tmp_path, T0 + timedelta(seconds=618), subbands=range(4))       # too few, timed out
    _register(db_url, tmp_path, T0 + timedelta(seconds=927), subbands=range(4))       # too few, still waiting
    settings = IngestSettings(group_timeout_s=900, min_subbands=10)
    with session_scope(db_url, readonly=True) as s:
        created = {g.group_key: g.created_at for g in s.scalars(select(ObservationGroup))}
    with session_scope(db_url) as s:
        for key in ("2025-10-02T10:07:54", "2025-10-02T10:13:03"):  # their first file came 901 s ago
            groups.get_group(s, key).created_at = created[key] - timedelta(seconds=901)
    with session_scope(db_url) as s:
        decided = groups.promote_due_groups(s, settings)
    assert sorted(p.group_key for p in decided.promoted) == [KEY, "2025-10-02T10:07:54"]
    assert list(decided.failed) == ["2025-10-02T10:13:03"]
    assert "only 4 of 16 subbands" in decided.failed["2025-10-02T10:13:03"]
    with session_scope(db_url, readonly=True) as s:
        assert groups.counts_by_state(s) == {"collecting": 1, "pending": 2, "in_progress": 0, "completed": 0,
                                             "failed": 1}
    with session_scope(db_url) as s:  # promoted once: the gate of exactly-once publishing
        assert groups.promote_due_groups(s, settings).promoted == []


# --------------------------------------------------------------------------- schema
def test_unique_subband_per_group_is_enforced_by_the_schema(db_url, tmp_path):
    _register(db_url, tmp_path, subbands=[0])
    with session_scope(db_url, readonly=True) as s:
        gid = groups.get_group(s, KEY).id
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as s:
            s.add_all([SubbandFile(group_id=gid, subband=5, path="/x/1"),
                       SubbandFile(group_id=gid, subband=5, path="/x/2")])
    with pytest.raises(IntegrityError):  # subband index out of range (CHECK)
        with session_scope(db_url) as s:
            s.add(SubbandFile(group_id=gid, subband=16, path="/x/3"))
    with pytest.raises(IntegrityError):  # foreign key to a missing group (SQLite too: foreign_keys=ON)
        with session_scope(db_url) as s:
            s.add(SubbandFile(group_id=gid + 1000, subband=1, path="/x/4"))


def test_deleting_a_group_deletes_its_files_and_timings(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    groups.stage_started(db_url, item.group_key, item.token, "convert")
    with session_scope(db_url) as s:  # database-level ON DELETE CASCADE, not only the ORM's
        s.execute(ObservationGroup.__table__.delete().where(ObservationGroup.group_key == KEY))
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, SubbandFile) == 0 and _count(s, StageTiming) == 0


def test_invalid_state_value_is_refused_by_the_schema(db_url, tmp_path):
    from sqlalchemy import text

    _register(db_url, tmp_path, subbands=[0])
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as s:
            s.execute(text("UPDATE observation_groups SET state = 'lost'"))


# --------------------------------------------------------------------------- the run protocol
def test_a_run_is_published_and_claimed_once(db_url, tmp_path):
    item = _pending(db_url, tmp_path)
    published = []
    groups.publish(db_url, item, lambda *a: published.append(a))
    assert published == [(KEY, item.token, "convert")]
    with session_scope(db_url, readonly=True) as s:
        g = groups.get_group(s, KEY)
        assert (g.state, g.task_id) == (GroupState.PENDING, item.token) and g.enqueued_at is not None
    assert not groups.claim(db_url, KEY, "another-run")
    assert groups.claim(db_url, KEY, item.token)
    assert not groups.claim(db_url, KEY, item.token)  # a duplicate delivery


def test_a_stale_publication_records_nothing(db_url, tmp_path):
    item = _pending(db_url, tmp_path)
    groups.publish(db_url, groups.Published(KEY, "superseded", "convert"), lambda *a: None)
    with session_scope(db_url, readonly=True) as s:
        assert groups.get_group(s, KEY).enqueued_at is None
    assert groups.publish_unpublished(db_url, lambda *a: None) == [KEY]  # the sweep publishes the real run
    with session_scope(db_url, readonly=True) as s:
        assert groups.get_group(s, KEY).task_id == item.token


def test_failing_is_idempotent_and_fails_the_running_stage(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    groups.stage_started(db_url, KEY, item.token, "convert")
    assert groups.fail(db_url, KEY, "sb03: truncated file", token=item.token)
    assert not groups.fail(db_url, KEY, "a second report")
    with session_scope(db_url, readonly=True) as s:
        g = groups.get_group(s, KEY)
        assert g.state is GroupState.FAILED and g.error_message == "sb03: truncated file"
        (timing,) = g.stage_timings
        assert timing.status == "failed" and timing.seconds is not None and timing.seconds >= 0


def test_a_completed_group_is_not_failed_by_a_late_report(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    assert groups.complete(db_url, KEY, item.token)
    assert not groups.complete(db_url, KEY, item.token)  # idempotent
    assert not groups.fail(db_url, KEY, "late")
    with session_scope(db_url, readonly=True) as s:
        assert groups.get_group(s, KEY).state is GroupState.COMPLETED


def test_a_superseded_run_cannot_touch_the_group(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    with pytest.raises(groups.StaleRunError):
        groups.stage_started(db_url, KEY, "old-run", "convert")
    assert not groups.fail(db_url, KEY, "from the old run", token="old-run")
    with pytest.raises(groups.StaleRunError):
        groups.check_current(db_url, KEY, "old-run")
    groups.check_current(db_url, KEY, item.token)


def test_rerunning_a_stage_does_not_duplicate_timings(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    groups.stage_started(db_url, KEY, item.token, "convert")
    groups.stage_started(db_url, KEY, item.token, "convert")  # the task is redelivered: same attempt, same row
    seconds = groups.stage_finished(db_url, KEY, item.token, "convert")
    with session_scope(db_url, readonly=True) as s:
        g = groups.get_group(s, KEY)
        (conv,) = g.stage_timings
        assert (conv.stage, conv.status, conv.attempt) == ("convert", "ok", 1) and conv.seconds == seconds >= 0
        assert g.current_stage == "convert" and g.heartbeat_at is not None


def test_finishing_a_stage_whose_start_was_lost_records_it(db_url, tmp_path):
    """One rule: a stage that finished is recorded even if its start row was lost in a crash (zero length)."""
    item = _running(db_url, tmp_path)
    assert groups.stage_finished(db_url, KEY, item.token, "image") == 0.0
    with session_scope(db_url, readonly=True) as s:
        (timing,) = groups.get_group(s, KEY).stage_timings
        assert (timing.stage, timing.status) == ("image", "ok")


def test_a_new_attempt_keeps_the_old_timings(db_url, tmp_path):
    item = _running(db_url, tmp_path)
    groups.stage_started(db_url, KEY, item.token, "convert")
    groups.stage_finished(db_url, KEY, item.token, "convert")
    groups.complete(db_url, KEY, item.token)
    (again,) = groups.request_reprocess(db_url, [KEY], from_stage="convert")
    groups.publish(db_url, again, lambda *a: None)
    assert groups.claim(db_url, KEY, again.token)
    groups.stage_started(db_url, KEY, again.token, "convert")
    with session_scope(db_url, readonly=True) as s:
        assert sorted(t.attempt for t in groups.get_group(s, KEY).stage_timings) == [1, 2]
    with pytest.raises(InvalidTransitionError, match="in_progress"):
        groups.request_reprocess(db_url, [KEY])


def test_lost_runs_are_requeued_then_failed(db_url, tmp_path):
    fresh = _running(db_url, tmp_path, T0)
    stale = _running(db_url, tmp_path, T0 + timedelta(seconds=309))
    groups.stage_started(db_url, stale.group_key, stale.token, "image")
    groups.hold(db_url, stale.group_key, stale.token, worker="w1@node#1")
    groups.stage_started(db_url, fresh.group_key, fresh.token, "convert")
    with session_scope(db_url) as s:  # both heartbeats stopped two hours ago; only the held run is lost
        for item in (stale, fresh):   # (the other one's next task waits in a queue: the broker holds it)
            groups.get_group(s, item.group_key).heartbeat_at = groups.utcnow() - timedelta(hours=2)
    published = []
    for retry in (1, 2):
        out = groups.requeue_stale(db_url, lambda *a: published.append(a), stale_s=3600, max_retries=2)
        assert out == {"requeued": [stale.group_key], "failed": []}
        key, token, stage = published[-1]
        assert (key, stage) == (stale.group_key, "image")  # re-planned from the stage it was in
        assert groups.claim(db_url, key, token)
        groups.hold(db_url, key, token, worker=f"w{retry + 1}@node#1")
        with session_scope(db_url) as s:
            g = groups.get_group(s, key)
            assert g.retry_count == retry
            g.heartbeat_at = groups.utcnow() - timedelta(hours=2)
    out = groups.requeue_stale(db_url, lambda *a: None, stale_s=3600, max_retries=2)
    assert out == {"requeued": [], "failed": [stale.group_key]}
    with session_scope(db_url, readonly=True) as s:
        g = groups.get_group(s, stale.group_key)
        assert g.state is GroupState.FAILED and "after 2 re-enqueues; giving up" in g.error_message
        assert {t.status for t in g.stage_timings} == {"lost"}
        assert groups.get_group(s, fresh.group_key).state is GroupState.IN_PROGRESS


# --------------------------------------------------------------------------- products
def test_measurement_sets_and_images_are_recorded_once(db_url, tmp_path):
    _register(db_url, tmp_path, subbands=[0])
    with session_scope(db_url, readonly=True) as s:
        gid = groups.get_group(s, KEY).id
    for _ in range(2):
        with session_scope(db_url) as s:
            ms = products.upsert_measurement_set(s, path="/ms/a.ms", group=gid, start_mjd=60950.41, end_mjd=60950.4136,
                                                 validation={"ok": True, "nspw": 16})
            products.upsert_image(s, path="/img/a.fits", ms=ms, beam_major_arcsec=50.0, rms_jy=1e-3, backend="wsclean")
    with session_scope(db_url) as s:
        products.upsert_measurement_set(s, path="/ms/a.ms", stage="calibrated")
    with session_scope(db_url, readonly=True) as s:
        (ms,) = s.scalars(select(MeasurementSet)).all()
        assert (ms.group_id, ms.stage, ms.validation) == (gid, "calibrated", {"ok": True, "nspw": 16})
        (img,) = s.scalars(select(Image)).all()
        assert img.ms_id == ms.id and img.pb_corrected is False
    with pytest.raises(TypeError, match="no column"):
        with session_scope(db_url) as s:
            products.upsert_measurement_set(s, path="/ms/a.ms", nonsense=1)


def test_active_calibration_tables(db_url):
    with session_scope(db_url) as s:
        for name, mjd in (("cal1", 60950.0), ("cal2", 60951.0)):
            cs = products.upsert_calibration_set(s, name=name, calibrator_name="3C286", solve_mjd=mjd)
            products.upsert_calibration_table(s, calibration_set=cs, table_type="B", apply_order=1,
                                              path=f"/cal/{name}.B", valid_start_mjd=mjd - 1, valid_end_mjd=mjd + 1,
                                              flagged_fraction=0.01)
            products.upsert_calibration_table(s, calibration_set=cs, table_type=CalTableType.G, apply_order=2,
                                              path=f"/cal/{name}.G", valid_start_mjd=mjd - 0.25,
                                              valid_end_mjd=mjd + 0.25)
        cs = products.upsert_calibration_set(s, name="cal2")  # idempotent
        products.upsert_calibration_table(s, calibration_set=cs, table_type="G", apply_order=2, path="/cal/cal2.G",
                                          valid_start_mjd=60950.75, valid_end_mjd=60951.25)
    with session_scope(db_url, readonly=True) as s:
        assert [t.path for t in products.active_calibration_tables(s, mjd=60950.1)] == ["/cal/cal1.B", "/cal/cal1.G"]
        assert [t.path for t in products.active_calibration_tables(s, mjd=60950.8)] == ["/cal/cal2.B", "/cal/cal2.G"]
        assert [t.path for t in products.active_calibration_tables(s, mjd=60950.4)] == ["/cal/cal1.B"]
        assert [t.path for t in products.active_calibration_tables(s, mjd=60950.5)] == ["/cal/cal2.B"]  # tie: newest
        assert products.active_calibration_tables(s, mjd=60960.0) == []
    with pytest.raises(IntegrityError):  # flagged fraction outside [0, 1] (CHECK)
        with session_scope(db_url) as s:
            cs = products.upsert_calibration_set(s, name="cal3")
            products.upsert_calibration_table(s, calibration_set=cs, table_type="K", apply_order=0, path="/cal/k",
                                              valid_start_mjd=1.0, valid_end_mjd=2.0, flagged_fraction=1.5)


def test_stage_timings_split_queue_wait_from_work(db_url, tmp_path, monkeypatch):
    """A conversion that waited 160 s for workers and worked 3.5 s is recorded as 3.5 s of work, 160 s of wait.

    Before the split, ``seconds`` ran from the plan's start to the combine's end: the subband writes' time in
    the node's queue counted as conversion (``convert=163.4s`` in ``contimg status``).
    """
    from contimg.cluster.status import format_timing, group_summary

    clock = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    monkeypatch.setattr(groups, "utcnow", lambda: clock[0])

    def later(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    item = _pending(db_url, tmp_path)
    groups.publish(db_url, item, lambda *a: None)  # enqueued at t = 0
    later(100.0)
    assert groups.claim(db_url, KEY, item.token)
    groups.stage_started(db_url, KEY, item.token, "convert")  # a worker plans it at t = 100
    later(0.5)
    groups.stage_paused(db_url, KEY, item.token, "convert")  # the subband writes wait in the node's queue
    later(60.0)
    groups.stage_resumed(db_url, KEY, item.token, "convert")  # the first part is written at t = 160.5
    groups.stage_resumed(db_url, KEY, item.token, "convert")  # a parallel part: no new wait
    later(3.0)
    assert groups.stage_finished(db_url, KEY, item.token, "convert") == pytest.approx(3.5)
    later(20.0)  # calibration waits 20 s in its queue, then works 2 s
    groups.stage_started(db_url, KEY, item.token, "calibrate")
    later(2.0)
    assert groups.stage_finished(db_url, KEY, item.token, "calibrate") == pytest.approx(2.0)
    with session_scope(db_url, readonly=True) as s:
        summary = group_summary(groups.get_group(s, KEY))
    conv, cal = summary["timings"]["convert"], summary["timings"]["calibrate"]
    assert conv["seconds"] == pytest.approx(3.5) and conv["wait_seconds"] == pytest.approx(160.0)
    assert cal["seconds"] == pytest.approx(2.0) and cal["wait_seconds"] == pytest.approx(20.0)
    assert format_timing("convert", conv) == "convert 3.5 s (waited 160 s)"


def test_a_stage_that_fails_while_paused_counts_the_pause_as_wait(db_url, tmp_path, monkeypatch):
    clock = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    monkeypatch.setattr(groups, "utcnow", lambda: clock[0])
    item = _running(db_url, tmp_path)
    groups.stage_started(db_url, KEY, item.token, "convert")
    clock[0] += timedelta(seconds=1)
    groups.stage_paused(db_url, KEY, item.token, "convert")
    clock[0] += timedelta(seconds=30)
    assert groups.fail(db_url, KEY, "a part failed", token=item.token)
    with session_scope(db_url, readonly=True) as s:
        (timing,) = groups.get_group(s, KEY).stage_timings
        assert timing.status == "failed" and timing.seconds == pytest.approx(1.0)
        assert timing.wait_seconds == pytest.approx(30.0) and timing.paused_at is None
