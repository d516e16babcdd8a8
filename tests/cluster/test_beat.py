"""Two beat processes started by mistake: redbeat's lock lets only one fire."""

from __future__ import annotations

import time

import pytest
import redis

from cluster_helpers import HERE, wait_for

pytestmark = pytest.mark.integration


def test_two_beats_fire_each_job_once(make_cluster):
    cluster = make_cluster("beat")
    client = redis.Redis.from_url(cluster.broker_url)
    first = cluster.start_beat("beat1", app="beat_app", extra_path=[HERE])
    wait_for(lambda: client.llen("housekeeping") >= 2, timeout_s=60, what="the first beat to fire")
    second = cluster.start_beat("beat2", app="beat_app", extra_path=[HERE])
    wait_for(lambda: "beat: Starting..." in second.log_text(), timeout_s=60, what="the second beat to start")
    n0, t0 = client.llen("housekeeping"), time.monotonic()
    time.sleep(8)
    fires = client.llen("housekeeping") - n0
    elapsed = time.monotonic() - t0
    # a 1 s job: one scheduler fires ~elapsed times, two unlocked schedulers twice that
    assert elapsed - 3 <= fires <= elapsed + 2, (fires, elapsed)
    assert first.alive() and second.alive()
    assert "Acquired lock" not in second.log_text()
    # the lock holder stops cleanly: the other takes over and the job keeps firing once per period
    first.stop()
    wait_for(lambda: "Acquired lock" in second.log_text() or "beat: Acquired lock" in second.log_text(),
             timeout_s=90, what="the second beat to take the lock")
    n1 = client.llen("housekeeping")
    time.sleep(4)
    assert 2 <= client.llen("housekeeping") - n1 <= 6
