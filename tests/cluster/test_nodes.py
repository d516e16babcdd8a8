"""Several tmpfs nodes on one machine, and the faults a cluster meets while work is in flight.

Each node is a worker in its own mount namespace with a private RAM disk at the
same staging path (``unshare -m`` + ``mount -t tmpfs``, as containers or hosts
have), so a group whose parts were spread over two nodes could not be combined.
Beat runs the stale-run sweeper; presence and sweep periods are short.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import redis

from cluster_helpers import (
    FAST_RECOVERY,
    HERE,
    drop_group,
    groups,
    needs_root,
    nodes_of_groups,
    timestamp,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.integration


def _status(cluster) -> dict:
    out = subprocess.run([sys.executable, "-m", "contimg", "status", "--json"], env=cluster.env(),
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_groups_spread_over_three_nodes_each_group_on_one(make_cluster, sim_groups):
    needs_root()
    cluster = make_cluster("nodes", **FAST_RECOVERY)
    for k in range(3):
        cluster.start_worker(f"node{k}", concurrency=1, private_staging="256m")
    cluster.start_producer()
    cluster.start_beat()
    settings = cluster.settings()
    status = _status(cluster)
    assert len({n["node"] for n in status["nodes"]}) == 3, status["nodes"]
    keys = [drop_group(settings.paths.incoming, sim_groups[i % 2], timestamp(13, 5 * i)) for i in range(10)]
    got = wait_finished(cluster, keys, timeout_s=420)
    for key in keys:
        g = got[key]
        assert g.state.value == "completed", g.error_message
        assert g.attempt == 1 and g.retry_count == 0 and len(g.measurement_sets) == 1
        assert g.worker is None and g.node is None
    where = nodes_of_groups(cluster)
    assert all(len(where[k]) == 1 for k in keys), where  # every group's parts on one node
    assert len(set().union(*where.values())) >= 2, where  # and the groups spread over the nodes
    # the parts lived in the nodes' private RAM disks: nothing in the host's staging directory
    assert not any(p for p in settings.paths.staging.rglob("*") if p.name != ".contimg-node")


def test_a_node_killed_mid_chord_is_replanned_on_a_live_node(make_cluster, sim_groups, tmp_path):
    """The node holding a group's parts dies (SIGKILL, RAM disk gone): the sweep re-plans the group once,
    on the other node, and deletes the dead node's queue."""
    needs_root()
    marker = tmp_path / "hung-pid"
    cluster = make_cluster("node-death", **FAST_RECOVERY, CONTIMG_TEST_HANG_SUBBAND="3",
                           CONTIMG_TEST_MARKER=str(marker))
    nodes = [cluster.start_worker(f"node{k}", app="fault_app", extra_path=[HERE], concurrency=2,
                                  private_staging="256m", supervised=False) for k in range(2)]
    cluster.start_producer()
    cluster.start_beat()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(14, 0))
    wait_for(marker.exists, timeout_s=120, what="the write of sb03 to start")
    hung = int(wait_for(lambda: marker.read_text().strip(), timeout_s=10, what="the hung pid"))
    dead = next(n for n in nodes if hung in n.children())
    dead_node = groups(settings)[key].node
    assert dead_node
    first_token = groups(settings)[key].task_id
    dead.stop(sig=signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: groups(settings)[key].task_id != first_token, timeout_s=90, what="the group to be re-planned")
    recovery_s = time.monotonic() - killed_at
    got = wait_finished(cluster, [key], timeout_s=240)
    g = got[key]
    assert g.state.value == "completed", g.error_message
    assert g.attempt == 2 and g.retry_count == 1 and len(g.measurement_sets) == 1
    assert recovery_s < 60, recovery_s
    assert sorted((t.attempt, t.status) for t in g.stage_timings) == [(1, "lost"), (2, "ok")]
    client = redis.Redis.from_url(cluster.broker_url)
    wait_for(lambda: not client.exists(f"convert@{dead_node}", f"_kombu.binding.convert@{dead_node}"),
             timeout_s=60, what="the dead node's queue to be deleted")
    where = nodes_of_groups(cluster)
    assert where[key] - {dead_node}, where  # the surviving node wrote the parts of the second run


def test_redis_restart_while_the_chain_publishes_fails_nothing(make_cluster, sim_groups, tmp_path):
    """Redis goes away just as a task finishes and Celery publishes the chain's next step."""
    marker = tmp_path / "combined"
    cluster = make_cluster("publish", **FAST_RECOVERY, CONTIMG_TEST_PAUSE_AFTER_COMBINE="2",
                           CONTIMG_TEST_MARKER=str(marker))
    cluster.start_worker(app="fault_app", extra_path=[HERE], concurrency=2)
    cluster.start_producer()
    cluster.start_beat()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(15, 0))
    wait_for(marker.exists, timeout_s=120, what="the combine to finish", poll_s=0.05)
    cluster.redis.stop()  # the combine returns in 2 s and its chain step is published into a dead broker
    time.sleep(10)
    cluster.redis.start()
    got = wait_finished(cluster, [key], timeout_s=240)
    g = got[key]
    assert g.state.value == "completed", g.error_message
    assert len(g.measurement_sets) == 1


def test_a_run_waiting_in_a_queue_longer_than_the_stale_threshold_is_left_alone(make_cluster, sim_groups):
    """After conversion the group waits for a calibrate worker for longer than the stale threshold (20 s):
    the sweep must not take the waiting run for a lost one."""
    cluster = make_cluster("queued", **FAST_RECOVERY, CONTIMG_CELERY__LAST_STAGE="calibrate",
                           CONTIMG_CALIBRATION__WAIT_FOR_SOLUTION_S="1")
    cluster.start_worker("converter", queues=["convert", "housekeeping"], concurrency=2)
    cluster.start_producer()
    cluster.start_beat()
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(16, 0))
    wait_for(lambda: any(t.stage == "convert" and t.status == "ok" for t in groups(settings)[key].stage_timings)
             if key in groups(settings) else False, timeout_s=120, what="the conversion")
    time.sleep(30)
    g = groups(settings)[key]
    assert g.state.value == "in_progress" and g.attempt == 1 and g.retry_count == 0, (g.state, g.error_message)
    assert g.worker is None and g.node is None  # nobody holds it: its calibrate task is in the queue
    cluster.start_worker("calibrator", queues=["calibrate"], concurrency=1)
    got = wait_finished(cluster, [key], timeout_s=180)
    g = got[key]
    # a science group with no calibration set: it fails for that reason, in its first attempt
    assert g.state.value == "failed" and "NoValidCalibration" in g.error_message
    assert g.attempt == 1 and g.retry_count == 0


def test_worker_presence_and_nodes_in_status(make_cluster):
    needs_root()
    cluster = make_cluster("presence", **FAST_RECOVERY)
    a = cluster.start_worker("node-a", concurrency=1, private_staging="64m", supervised=False)
    cluster.start_worker("general", queues=["calibrate", "image", "photometry", "housekeeping"], concurrency=1)
    status = wait_for(lambda: (s := _status(cluster)) and len(s["nodes"]) == 2 and s, timeout_s=30,
                      what="two workers present")
    by_name = {n["hostname"].split("@")[0]: n for n in status["nodes"]}
    assert by_name["node-a"]["node"] and "convert@" + by_name["node-a"]["node"] in by_name["node-a"]["queues"]
    assert 0 < by_name["node-a"]["staging_free_bytes"] <= 64 * 2**20
    assert by_name["general"]["node"] is None
    a.stop(sig=signal.SIGKILL)
    wait_for(lambda: len(_status(cluster)["nodes"]) == 1, timeout_s=30, what="the killed worker's presence to expire")
