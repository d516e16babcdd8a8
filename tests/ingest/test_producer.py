"""The producer library without Celery: grouping, completeness, timeouts, exactly-once."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from sqlalchemy import select

from contimg.config import IngestSettings
from contimg.db import GroupState, session_scope
from contimg.db.models import ObservationGroup, SubbandFile
from contimg.ingest.files import StabilityTracker, opens_as_hdf5
from contimg.ingest.producer import Producer
from contimg.naming import format_subband_filename
from contimg.db import groups

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)


def _write_minimal_uvh5(path: Path, sb: int = 0) -> Path:
    """The smallest file the producer's content check accepts: UVH5 dimensions and Data shapes."""
    with h5py.File(path, "w") as f:
        header = f.create_group("Header")
        header.attrs["subband"] = sb
        for name, value in (("Nblts", 1), ("Nfreqs", 1), ("Npols", 2), ("Nspws", 1)):
            header[name] = value
        data = f.create_group("Data")
        data["visdata"] = np.zeros((1, 1, 2), dtype=np.complex64)
        data["flags"] = np.zeros((1, 1, 2), dtype=bool)
        data["nsamples"] = np.ones((1, 1, 2), dtype=np.float32)
    return path


def _write(incoming: Path, ts: datetime, sb: int, *, age_s: float = 60.0) -> Path:
    path = _write_minimal_uvh5(incoming / format_subband_filename(ts, sb), sb)
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


@pytest.fixture
def env(tmp_path, db_url):
    """A producer factory on a migrated database (SQLite; PostgreSQL when configured)."""
    url = db_url
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    published: list[tuple[str, str, str]] = []
    settings = IngestSettings(stable_s=0.5, group_timeout_s=3600, min_subbands=12, tolerance_s=60)

    def make(**kw) -> Producer:
        s = settings.model_copy(update=kw)
        return Producer(db=url, incoming=incoming, settings=s, enqueue=lambda *a: published.append(a),
                        unpublished_grace_s=0.0)

    return url, incoming, published, make


def _groups(url):
    with session_scope(url, readonly=True) as s:
        return {g.group_key: (g.state, g.nsubbands, g.task_id, g.error_message)
                for g in s.scalars(select(ObservationGroup))}


def test_complete_group_with_jitter_is_enqueued_once(env):
    url, incoming, published, make = env
    for sb in range(16):
        _write(incoming, T0 + timedelta(seconds=sb % 3), sb)  # timestamps jitter by up to 2 s
    _write(incoming, T0 + timedelta(seconds=309), 0)  # first file of the next group
    producer = make()
    producer.scan()
    report = producer.step()
    assert report.enqueued == ["2025-10-02T10:02:45"]
    groups = _groups(url)
    assert groups["2025-10-02T10:02:45"][:2] == (GroupState.PENDING, 16)
    assert groups["2025-10-02T10:07:54"][:2] == (GroupState.COLLECTING, 1)
    assert published == [("2025-10-02T10:02:45", groups["2025-10-02T10:02:45"][2], "convert")]
    # the same files seen again (events, rescans, a restarted producer) change nothing
    for _ in range(2):
        again = make()
        again.scan()
        again.nominate(sorted(incoming.iterdir()))
        assert not again.step()
    assert len(published) == 1
    with session_scope(url, readonly=True) as s:
        assert len(s.scalars(select(SubbandFile)).all()) == 17


def test_incomplete_group_timeout_policy(env):
    url, incoming, published, make = env
    for sb in range(13):
        _write(incoming, T0, sb)
    for sb in range(5):
        _write(incoming, T0 + timedelta(seconds=600), sb)
    producer = make(group_timeout_s=1.0)
    producer.scan()
    assert not producer.step().enqueued  # too early: still collecting
    time.sleep(1.1)
    report = producer.step()
    assert report.enqueued == ["2025-10-02T10:02:45"]
    key = "2025-10-02T10:12:45"
    assert list(report.failed) == [key]
    state_, n, _, error = _groups(url)[key]
    assert state_ is GroupState.FAILED and n == 5
    assert "only 5 of 16 subbands" in error and "sb15" in error
    assert [p[0] for p in published] == ["2025-10-02T10:02:45"]


def test_crash_between_commit_and_publish_is_swept_with_same_token(env):
    url, incoming, published, make = env
    for sb in range(16):
        _write(incoming, T0, sb)

    def crash(*_):
        raise ConnectionError("broker down")

    producer = make()
    producer.enqueue = crash
    producer.scan()
    with pytest.raises(ConnectionError):
        producer.step()
    st, _, token, _ = _groups(url)["2025-10-02T10:02:45"]
    assert st is GroupState.PENDING and token
    restarted = make()
    restarted.scan()
    report = restarted.step()
    assert report.republished == ["2025-10-02T10:02:45"] and not report.enqueued
    assert published == [("2025-10-02T10:02:45", token, "convert")]
    assert not make().step()  # recorded as published: never again
    # a duplicate publication is claimed only once
    assert groups.claim(url, "2025-10-02T10:02:45", token) is True
    assert groups.claim(url, "2025-10-02T10:02:45", token) is False


def test_file_still_being_written_waits(env, tmp_path):
    url, incoming, published, make = env
    path = incoming / format_subband_filename(T0, 3)
    path.write_bytes(b"partial")
    clock = [0.0]
    tracker = StabilityTracker(stable_s=2.0, clock=lambda: clock[0])
    tracker.add(path)
    assert tracker.pop_complete() == []  # fresh mtime, not HDF5
    clock[0] = 1.0
    with path.open("ab") as f:
        f.write(b"more")
    assert tracker.pop_complete() == []  # size changed
    clock[0] = 2.5
    assert tracker.pop_complete() == []  # stable only 1.5 s
    clock[0] = 3.1
    assert tracker.pop_complete() == []  # stable, but not an HDF5 file: checked again after stable_s
    assert not opens_as_hdf5(path)
    assert "does not open as HDF5" in tracker.reason(path)
    _write_minimal_uvh5(path, 3)  # the writer finishes the file
    clock[0] = 3.2
    assert tracker.pop_complete() == []  # size changed
    clock[0] = 5.3
    assert tracker.pop_complete() == [path]
    assert opens_as_hdf5(path)


def test_unparseable_names_are_ignored(env):
    url, incoming, published, make = env
    (incoming / "notes.txt").write_text("x")
    (incoming / "2025-10-02T10:02:45_sb16.hdf5").write_bytes(b"x" * 10)  # subband out of range
    producer = make()
    producer.scan()
    assert not producer.step()
    assert _groups(url) == {}


def test_group_key_is_the_earliest_file_time_whatever_the_arrival_order(env):
    url, incoming, published, make = env
    producer = make()
    for sb, dt in ((5, 2), (9, 1), (0, 0)):
        producer.nominate([_write(incoming, T0 + timedelta(seconds=dt), sb)])
        producer.step()
    assert list(_groups(url)) == ["2025-10-02T10:02:45"]


def test_reprocess_refuses_groups_that_are_not_finished(env):
    from contimg.errors import InvalidTransitionError

    url, incoming, published, make = env
    producer = make()
    producer.nominate([_write(incoming, T0, 0)])
    producer.step()
    with pytest.raises(InvalidTransitionError, match="2025-10-02T10:02:45: cannot reprocess a group that is collecting"):
        groups.request_reprocess(url, ["2025-10-02T10:02:45"])
    with pytest.raises(groups.UnknownGroupError, match="2000-01-01T00:00:00"):
        groups.request_reprocess(url, ["2000-01-01T00:00:00"])


def test_a_group_timed_out_by_the_producer_is_notified(tmp_path, db_settings):
    from contimg.config import NotifySettings
    from notify_helpers import WebhookReceiver

    hook = WebhookReceiver()
    try:
        settings = db_settings.model_copy(update={"notify": NotifySettings(webhook_url=hook.url, rate_limit_s=0)})
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        for sb in range(5):
            _write(incoming, T0, sb)
        producer = Producer(db=settings, incoming=incoming, enqueue=lambda *a: None, unpublished_grace_s=0.0,
                            settings=IngestSettings(stable_s=0.5, group_timeout_s=1.0, min_subbands=12))
        producer.scan()
        assert not producer.step().failed  # registered, still collecting
        time.sleep(1.1)
        assert list(producer.step().failed) == ["2025-10-02T10:02:45"]
        (body,) = hook.bodies
        assert body["kind"] == "group_failed" and body["data"]["group_key"] == "2025-10-02T10:02:45"
        assert "only 5 of 16 subbands" in body["data"]["error"]
    finally:
        hook.close()
