"""Pipeline-state queries on SQLite and PostgreSQL: idempotent writes, constraints, housekeeping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from contimg.db import GroupState, session_scope
from contimg.db import products
from contimg.db import queries as q
from contimg.db.models import (
    CalTableType,
    Image,
    MeasurementSet,
    ObservationGroup,
    StageTiming,
    SubbandFile,
)
from contimg.errors import InputFileError, InvalidTransitionError, NotFoundError

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
KEY = "2025-10-02T10:02:45"


def _count(s, model) -> int:
    return s.scalar(select(func.count()).select_from(model))


def _new_group(url, key=KEY, ts=T0, states=()):
    with session_scope(url) as s:
        g, _ = q.upsert_group(s, key=key, timestamp=ts)
        for st in states:
            q.transition_group(s, g, st, error="x" if st is GroupState.FAILED else None)
        return g.id


# --------------------------------------------------------------------------- groups and files
def test_upsert_group_is_idempotent_and_keeps_earliest_time(db_url):
    with session_scope(db_url) as s:
        g, created = q.upsert_group(s, key=KEY, timestamp=T0 + timedelta(seconds=2))
        assert created and g.state is GroupState.COLLECTING and g.nsubbands == 0
    with session_scope(db_url) as s:
        g2, created = q.upsert_group(s, key=KEY, timestamp=T0)
        assert not created and g2.id == g.id and g2.timestamp == T0
        g3, created = q.upsert_group(s, key=KEY, timestamp=T0 + timedelta(seconds=5))
        assert not created and g3.timestamp == T0
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, ObservationGroup) == 1
        assert q.get_group(s, KEY).timestamp == T0


def test_get_group_by_id_key_and_unknown(db_url):
    gid = _new_group(db_url)
    with session_scope(db_url, readonly=True) as s:
        assert q.get_group(s, gid).group_key == KEY
        assert q.get_group(s, KEY).id == gid
        assert q.find_group(s, "1999-01-01T00:00:00") is None
        with pytest.raises(NotFoundError, match="1999-01-01T00:00:00"):
            q.get_group(s, "1999-01-01T00:00:00")


def test_find_group_near(db_url):
    _new_group(db_url, key="a", ts=T0)
    _new_group(db_url, key="b", ts=T0 + timedelta(seconds=309), states=[GroupState.PENDING])
    with session_scope(db_url, readonly=True) as s:
        assert q.find_group_near(s, T0 + timedelta(seconds=3), tolerance_s=60).group_key == "a"
        assert q.find_group_near(s, T0 + timedelta(seconds=300), tolerance_s=60).group_key == "b"
        assert q.find_group_near(s, T0 + timedelta(seconds=150), tolerance_s=60) is None
        assert q.find_group_near(s, T0 + timedelta(seconds=300), tolerance_s=60,
                                 states=[GroupState.COLLECTING]) is None


def test_add_subband_file_is_idempotent(db_url):
    gid = _new_group(db_url)
    for _ in range(2):
        with session_scope(db_url) as s:
            for sb in range(4):
                q.add_subband_file(s, group=gid, subband=sb, path=f"/in/{KEY}_sb{sb:02d}.hdf5", size_bytes=10)
    with session_scope(db_url) as s:
        _, created = q.add_subband_file(s, group=KEY, subband=0, path=f"/in/{KEY}_sb00.hdf5")
        assert not created
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, SubbandFile) == 4
        g = q.get_group(s, gid)
        assert g.nsubbands == 4
        assert [f.subband for f in g.subband_files] == [0, 1, 2, 3]
        assert g.subband_files[0].discovered_at.tzinfo is not None


def test_conflicting_subband_files_are_refused(db_url):
    gid = _new_group(db_url)
    other = _new_group(db_url, key="other", ts=T0 + timedelta(seconds=309))
    with session_scope(db_url) as s:
        q.add_subband_file(s, group=gid, subband=3, path="/in/a_sb03.hdf5")
    with pytest.raises(InputFileError, match="already has /in/a_sb03.hdf5 as subband 03"):
        with session_scope(db_url) as s:
            q.add_subband_file(s, group=gid, subband=3, path="/in/b_sb03.hdf5")
    with pytest.raises(InputFileError, match="/in/a_sb03.hdf5: already registered"):
        with session_scope(db_url) as s:
            q.add_subband_file(s, group=other, subband=3, path="/in/a_sb03.hdf5")
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, SubbandFile) == 1


def test_unique_subband_per_group_is_enforced_by_the_schema(db_url):
    gid = _new_group(db_url)
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


def test_deleting_a_group_deletes_its_files_and_timings(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    with session_scope(db_url) as s:
        q.add_subband_file(s, group=gid, subband=0, path="/x/0")
        q.start_stage(s, gid, "convert")
    with session_scope(db_url) as s:  # database-level ON DELETE CASCADE, not only the ORM's
        s.execute(ObservationGroup.__table__.delete().where(ObservationGroup.id == gid))
    with session_scope(db_url, readonly=True) as s:
        assert _count(s, SubbandFile) == 0 and _count(s, StageTiming) == 0


def test_invalid_state_value_is_refused_by_the_schema(db_url):
    from sqlalchemy import text

    _new_group(db_url)
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as s:
            s.execute(text("UPDATE observation_groups SET state = 'lost'"))


# --------------------------------------------------------------------------- claims and failures
def test_claim_group_is_a_gate(db_url):
    gid = _new_group(db_url)
    with session_scope(db_url) as s:
        assert q.claim_group(s, gid, from_states=[GroupState.COLLECTING], to_state=GroupState.PENDING)
    with session_scope(db_url) as s:
        assert q.claim_group(s, gid, from_states=[GroupState.COLLECTING], to_state=GroupState.PENDING) is None
        q.record_enqueue(s, gid, task_id="run-1")
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, gid)
        assert (g.state, g.task_id) == (GroupState.PENDING, "run-1") and g.enqueued_at is not None


def test_record_enqueue_needs_a_queued_group(db_url):
    gid = _new_group(db_url)
    with pytest.raises(InvalidTransitionError, match="collecting"):
        with session_scope(db_url) as s:
            q.record_enqueue(s, gid, task_id="t")


def test_mark_failed_is_idempotent_and_fails_the_running_stage(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    with session_scope(db_url) as s:
        q.start_stage(s, gid, "convert", hostname="node1")
    with session_scope(db_url) as s:
        q.mark_failed(s, gid, "sb03: truncated file")
    with session_scope(db_url) as s:
        q.mark_failed(s, gid, "a second report")
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, gid)
        assert g.state is GroupState.FAILED and g.error_message == "sb03: truncated file"
        (timing,) = g.stage_timings
        assert timing.status == "failed" and timing.seconds is not None and timing.seconds >= 0


def test_completed_group_cannot_be_marked_failed(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS, GroupState.COMPLETED])
    with pytest.raises(InvalidTransitionError):
        with session_scope(db_url) as s:
            q.mark_failed(s, gid, "late")


# --------------------------------------------------------------------------- stage timings
def test_rerunning_a_stage_does_not_duplicate_timings(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    t = [T0 + timedelta(seconds=k) for k in (0, 10, 20, 45)]
    with session_scope(db_url) as s:
        q.start_stage(s, gid, "convert", hostname="a", now=t[0])
    with session_scope(db_url) as s:  # the task is retried: same attempt, same row
        q.start_stage(s, gid, "convert", hostname="b", now=t[1])
        q.finish_stage(s, gid, "convert", now=t[3])
    with session_scope(db_url) as s:
        q.record_stage_timing(s, gid, "calibrate", started_at=t[0], finished_at=t[2], hostname="c")
        q.record_stage_timing(s, gid, "calibrate", started_at=t[1], finished_at=t[2], hostname="c")
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, gid)
        by_stage = {x.stage: x for x in g.stage_timings}
        assert len(g.stage_timings) == 2
        conv = by_stage["convert"]
        assert (conv.hostname, conv.status, conv.seconds, conv.attempt) == ("b", "ok", 35.0, 1)
        assert by_stage["calibrate"].seconds == 10.0
        assert g.current_stage == "convert" and g.heartbeat_at == t[3]
        stats = q.stage_statistics(s)
        assert stats["convert"] == {"count": 1, "mean_s": 35.0, "max_s": 35.0}


def test_a_new_attempt_keeps_the_old_timings(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    with session_scope(db_url) as s:
        q.start_stage(s, gid, "convert")
        q.transition_group(s, gid, GroupState.PENDING)   # worker lost
        q.transition_group(s, gid, GroupState.IN_PROGRESS)
        q.start_stage(s, gid, "convert")
    with session_scope(db_url, readonly=True) as s:
        assert sorted(x.attempt for x in q.get_group(s, gid).stage_timings) == [1, 2]


def test_finishing_a_stage_never_started_is_an_error(db_url):
    gid = _new_group(db_url, states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    with pytest.raises(NotFoundError, match="'image' was not started"):
        with session_scope(db_url) as s:
            q.finish_stage(s, gid, "image")


# --------------------------------------------------------------------------- housekeeping and status
def test_stale_in_progress_groups_are_requeued_then_failed(db_url):
    now = T0 + timedelta(hours=3)
    fresh = _new_group(db_url, key="fresh", states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    stale = _new_group(db_url, key="stale", ts=T0 + timedelta(seconds=309),
                       states=[GroupState.PENDING, GroupState.IN_PROGRESS])
    with session_scope(db_url) as s:
        q.heartbeat(s, fresh, now=now - timedelta(minutes=5))
        q.heartbeat(s, stale, stage="image", now=now - timedelta(hours=2))
    with session_scope(db_url, readonly=True) as s:
        assert [g.group_key for g in q.find_stale_in_progress(s, older_than_s=3600, now=now)] == ["stale"]
    for retry in (1, 2):
        with session_scope(db_url) as s:
            requeued, failed = q.requeue_stale(s, older_than_s=3600, max_retries=2, now=now)
            assert [g.group_key for g in requeued] == ["stale"] and failed == []
            assert requeued[0].retry_count == retry and requeued[0].task_id is None
        with session_scope(db_url) as s:
            assert [g.group_key for g in q.find_unpublished_pending(s, now=now)] == ["stale"]
            q.record_enqueue(s, "stale", task_id=f"run-{retry}", now=now)
            q.transition_group(s, "stale", GroupState.IN_PROGRESS, now=now - timedelta(hours=2))
    with session_scope(db_url) as s:
        requeued, failed = q.requeue_stale(s, older_than_s=3600, max_retries=2, now=now)
        assert requeued == [] and [g.group_key for g in failed] == ["stale"]
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, "stale")
        assert g.state is GroupState.FAILED and "giving up after 2 re-enqueues" in g.error_message
        assert q.get_group(s, "fresh").state is GroupState.IN_PROGRESS


def test_timed_out_collecting_groups(db_url):
    _new_group(db_url)
    with session_scope(db_url, readonly=True) as s:
        created = q.get_group(s, KEY).created_at
        assert q.find_timed_out_collecting(s, older_than_s=900, now=created + timedelta(seconds=899)) == []
        found = q.find_timed_out_collecting(s, older_than_s=900, now=created + timedelta(seconds=901))
        assert [g.group_key for g in found] == [KEY]


def test_counts_latest_and_range(db_url):
    states = [[], [GroupState.PENDING], [GroupState.PENDING, GroupState.IN_PROGRESS],
              [GroupState.PENDING, GroupState.IN_PROGRESS, GroupState.COMPLETED], [GroupState.FAILED],
              [GroupState.FAILED]]
    for k, st in enumerate(states):
        _new_group(db_url, key=f"g{k}", ts=T0 + timedelta(seconds=309 * k), states=st)
    with session_scope(db_url, readonly=True) as s:
        counts = q.counts_by_state(s)
        assert counts == {GroupState.COLLECTING: 1, GroupState.PENDING: 1, GroupState.IN_PROGRESS: 1,
                          GroupState.COMPLETED: 1, GroupState.FAILED: 2}
        latest = q.latest_groups(s, limit=3)
        assert [g.group_key for g in latest] == ["g5", "g4", "g3"]
        assert latest[0].stage_timings == []  # loaded: no lazy load needed after the session
        assert [g.group_key for g in q.latest_groups(s, states=[GroupState.FAILED])] == ["g5", "g4"]
        in_range = q.groups_between(s, T0 + timedelta(seconds=300), T0 + timedelta(seconds=930))
        assert [g.group_key for g in in_range] == ["g1", "g2", "g3"]
        with pytest.raises(ValueError, match="empty time range"):
            q.groups_between(s, T0, T0 - timedelta(seconds=1))
    assert [t.stage_timings for t in latest] == [[], [], []]  # usable after the session closed


# --------------------------------------------------------------------------- products
def test_measurement_sets_and_images_are_recorded_once(db_url):
    gid = _new_group(db_url)
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
                                       path=f"/cal/{name}.G", valid_start_mjd=mjd - 0.25, valid_end_mjd=mjd + 0.25)
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
