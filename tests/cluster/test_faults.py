"""Faults on a real cluster: a worker child SIGKILLed mid-write, Redis restarted mid-run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cluster_helpers import FAST_RECOVERY, HERE, drop_group, groups, timestamp, wait_finished, wait_for

pytestmark = pytest.mark.integration


def _assert_converted_once(g):
    assert g.state.value == "completed", g.error_message
    assert g.attempt == 1 and g.retry_count == 0
    assert [(t.stage, t.status) for t in g.stage_timings] == [("convert", "ok")]
    assert len(g.measurement_sets) == 1


def test_worker_child_killed_during_subband_write_still_completes_once(make_cluster, sim_groups, tmp_path):
    marker = tmp_path / "hung-pid"
    cluster = make_cluster("sigkill")
    # the fault is armed through the worker's environment: the first attempt at sb03 hangs mid-write
    cluster.extra_env.update({"CONTIMG_TEST_HANG_SUBBAND": "3", "CONTIMG_TEST_MARKER": str(marker)})
    worker = cluster.start_worker(app="fault_app", extra_path=[HERE], concurrency=2)
    cluster.start_producer()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(10, 0))
    wait_for(marker.exists, timeout_s=120, what="the write of sb03 to start")
    time.sleep(0.2)
    pid = int(marker.read_text())
    assert pid in worker.children()
    os.kill(pid, signal.SIGKILL)
    got = wait_finished(cluster, [key])
    _assert_converted_once(got[key])
    log = worker.log_text()
    assert "WorkerLostError" in log or "exited prematurely" in log or "signal 9" in log
    # the half-written part was replaced: the MS validated (combine checks it) and the parts are gone
    assert not any(p for p in settings.paths.staging.rglob("sb03*"))


def test_redis_restart_loses_no_group(make_cluster, sim_groups):
    cluster = make_cluster("redis-restart")
    cluster.start_worker(concurrency=2)
    cluster.start_producer()
    settings = cluster.settings()
    first = drop_group(settings.paths.incoming, sim_groups[0], timestamp(11, 0))
    wait_for(lambda: groups(settings).get(first) is not None and groups(settings)[first].stage_timings,
             timeout_s=60, what="the first group's conversion to start", poll_s=0.1)
    cluster.redis.stop()  # SIGTERM; the append-only file keeps every queued message
    second = drop_group(settings.paths.incoming, sim_groups[1], timestamp(11, 5))  # arrives while Redis is down
    time.sleep(3)
    cluster.redis.start()
    got = wait_finished(cluster, [first, second], timeout_s=240)
    for key in (first, second):
        g = got[key]
        assert g.state.value == "completed", g.error_message
        assert g.attempt == 1 and len(g.measurement_sets) == 1


def test_lost_worker_run_is_reenqueued_by_housekeeping(make_cluster, sim_groups, tmp_path):
    """A whole worker SIGKILLed mid-chord and restarted by its supervisor (a new worker on the same node):
    the dead worker's reserved message sits unacknowledged (until the Redis visibility timeout), its
    presence expires; housekeeping re-enqueues the run with a new token."""
    from workers.canvas import app_for

    marker = tmp_path / "hung-pid"
    cluster = make_cluster("lost-worker", **FAST_RECOVERY,
                           CONTIMG_TEST_HANG_SUBBAND="3", CONTIMG_TEST_MARKER=str(marker))
    worker = cluster.start_worker(app="fault_app", extra_path=[HERE], concurrency=2)
    cluster.start_producer()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(12, 0))
    wait_for(marker.exists, timeout_s=120, what="the write of sb03 to start")
    first_token = groups(settings)[key].task_id
    offset = len(worker.log_text())
    worker.stop(sig=signal.SIGKILL)  # main process and pool; the supervisor starts a new worker
    wait_for(lambda: worker.restarts >= 1 and worker.alive(), timeout_s=30, what="the supervisor to restart it")
    worker.wait_for_log(" ready.", timeout_s=90, start_offset=offset)
    # the other subbands are written by the new worker, sb03 stays reserved by the dead one, whose presence expires
    wait_for(lambda: (g := groups(settings)[key]).heartbeat_at is not None and
             (time.time() - g.heartbeat_at.timestamp()) > 5, timeout_s=120, what="the run to go quiet")
    assert groups(settings)[key].state.value == "in_progress"
    app = app_for(settings)
    report = app.send_task("contimg.housekeeping.sweep").get(timeout=60)
    assert report["requeued"] == [key]
    got = wait_finished(cluster, [key])
    g = got[key]
    assert g.state.value == "completed", g.error_message
    assert g.attempt == 2 and g.retry_count == 1 and g.task_id != first_token
    assert sorted((t.attempt, t.status) for t in g.stage_timings) == [(1, "lost"), (2, "ok")]
    assert len(g.measurement_sets) == 1
