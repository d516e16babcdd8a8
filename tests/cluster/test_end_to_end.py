"""Producer → Redis → worker processes → Measurement Sets on disk → states and timings in the DB.

These runs end after conversion (``celery.last_stage = convert``): they test ingest and the run
protocol. ``test_whole_chain.py`` runs convert → calibrate → image → photometry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from contimg.api import ReprocessError, UnknownGroupError, reprocess
from contimg.cluster import EmbeddedCluster
from contimg.errors import PermanentError
from cluster_helpers import CLUSTER_ENV, CONVERT_ONLY, drop_group, groups, timestamp, wait_finished, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    c = EmbeddedCluster(root, env={**CLUSTER_ENV, **CONVERT_ONLY, "CONTIMG_STAGING_DIR": str(root / "staging")}).start()
    try:
        c.start_worker(concurrency=2)
        c.start_producer()
        yield c
    finally:
        c.stop()


def test_groups_arrive_as_measurement_sets(cluster, sim_groups):
    settings = cluster.settings()
    keys = [drop_group(settings.paths.incoming, paths, timestamp(1, 5 * i)) for i, paths in enumerate(sim_groups)]
    got = wait_finished(cluster, keys)
    for key in keys:
        g = got[key]
        assert g.state.value == "completed", g.error_message
        assert g.nsubbands == 16 and g.attempt == 1 and g.current_stage is None
        assert [(t.stage, t.status, t.attempt) for t in g.stage_timings] == [("convert", "ok", 1)]
        assert g.stage_timings[0].seconds > 0
        assert g.started_at <= g.finished_at
        (ms,) = g.measurement_sets
        assert (ms.path.endswith(".ms") and (settings.paths.ms / ms.path.rsplit("/", 1)[-1] / "table.dat").exists())
        assert ms.stage == "converted" and ms.start_mjd < ms.end_mjd
    # parts were cleaned from staging
    assert not any(settings.paths.staging.rglob("*.part.h5"))
    # contimg status --json reports the same, and the queues are empty
    out = subprocess.run([sys.executable, "-m", "contimg", "status", "--json"], env=cluster.env(),
                         capture_output=True, text=True, timeout=60, check=True)
    status = json.loads(out.stdout)
    assert status["counts"]["completed"] >= 2
    assert status["queues"] == {"convert": 0, "calibrate": 0, "image": 0, "photometry": 0, "housekeeping": 0}
    listed = {g["group_key"]: g for g in status["groups"]}
    assert listed[keys[0]]["timings"]["convert"]["status"] == "ok"


def test_corrupt_file_fails_only_its_group(cluster, sim_groups):
    settings = cluster.settings()
    bad = drop_group(settings.paths.incoming, sim_groups[0], timestamp(2, 0), wrong=5)
    good = drop_group(settings.paths.incoming, sim_groups[1], timestamp(2, 5))
    got = wait_finished(cluster, [bad, good])
    assert got[good].state.value == "completed", got[good].error_message
    assert got[bad].state.value == "failed"
    bad_file = next(f.path for f in got[bad].subband_files if f.subband == 5)
    assert bad_file in got[bad].error_message
    assert not got[bad].measurement_sets


def test_a_truncated_file_is_never_registered_and_is_named(cluster, sim_groups):
    """A file that stays truncated is not complete: its group goes on without it after the group timeout
    (12 of 16 subbands suffice), and the producer names the file and why."""
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[1], timestamp(2, 10), corrupt=5)
    got = wait_finished(cluster, [key])
    g = got[key]
    assert g.state.value == "completed", g.error_message
    assert g.nsubbands == 15 and 5 not in {f.subband for f in g.subband_files}
    producer = next(p for p in cluster.processes if p.name == "producer")
    assert f"_sb05.hdf5: still incomplete when group {key} was enqueued without subband 05" in producer.log_text()


def test_incomplete_groups_follow_the_timeout_policy(cluster, sim_groups):
    settings = cluster.settings()
    enough = drop_group(settings.paths.incoming, sim_groups[0], timestamp(3, 0), subbands=set(range(13)))
    too_few = drop_group(settings.paths.incoming, sim_groups[1], timestamp(3, 5), subbands={0, 1, 2, 3})
    got = wait_finished(cluster, [enough, too_few])
    assert got[enough].state.value == "completed", got[enough].error_message
    assert got[enough].nsubbands == 13 and len(got[enough].measurement_sets) == 1
    assert got[too_few].state.value == "failed"
    assert "only 4 of 16 subbands" in got[too_few].error_message
    assert not got[too_few].stage_timings  # never enqueued


def test_reprocess_from_python(cluster, sim_groups):
    settings = cluster.settings()
    key = drop_group(settings.paths.incoming, sim_groups[0], timestamp(4, 0))
    wait_finished(cluster, [key])
    (handle,) = reprocess(key, from_stage="convert", settings=settings)
    assert handle.wait(timeout=180) == "completed"
    g = groups(settings)[key]
    assert g.attempt == 2 and g.retry_count == 0
    assert sorted((t.stage, t.attempt, t.status) for t in g.stage_timings) == [("convert", 1, "ok"), ("convert", 2, "ok")]
    assert len(g.measurement_sets) == 1  # the same MS, rewritten
    # by time range
    handles = reprocess(start="2025-07-04T09:59:00", end="2025-07-04T10:01:00", settings=settings)
    assert [h.group_key for h in handles] == [key]
    assert handles[0].wait(timeout=180) == "completed"
    # clear errors
    with pytest.raises(UnknownGroupError, match="2000-01-01T00:00:00"):
        reprocess("2000-01-01T00:00:00", settings=settings)
    with pytest.raises(ReprocessError, match="not an ISO time"):
        reprocess(start="yesterday", settings=settings)
    with pytest.raises(ReprocessError, match="start .* is after end"):
        reprocess(start="2025-07-05", end="2025-07-04", settings=settings)
    with pytest.raises(ReprocessError, match="no groups"):
        reprocess(start="1999-01-01", end="1999-01-02", settings=settings)
    with pytest.raises(PermanentError, match="unknown stage 'flag'"):
        reprocess(key, from_stage="flag", settings=settings)


def test_producer_restart_double_enqueues_nothing(cluster, sim_groups):
    settings = cluster.settings()
    producer = next(p for p in cluster.processes if p.name == "producer")
    incoming = settings.paths.incoming
    first = drop_group(incoming, sim_groups[0], timestamp(5, 0), subbands=set(range(8)))
    wait_for(lambda: first in groups(settings) and groups(settings)[first].nsubbands == 8, timeout_s=30,
             what="first half registered")
    producer.stop(sig=9)  # a crash, not a clean stop
    cluster.processes.remove(producer)
    drop_group(incoming, sim_groups[0], timestamp(5, 0), subbands=set(range(8, 16)))
    second = drop_group(incoming, sim_groups[1], timestamp(5, 5))
    restarted = cluster.start_producer("producer")
    got = wait_finished(cluster, [first, second])
    for key in (first, second):
        assert got[key].state.value == "completed", got[key].error_message
        assert got[key].attempt == 1 and got[key].nsubbands == 16
    # each run's first task was published once: its id (the run token) was received once
    worker_log = next(p for p in cluster.processes if p.name == "worker").log_text()
    for key in (first, second):
        assert worker_log.count(f"contimg.group.start[{got[key].task_id}] received") == 1
    time.sleep(2)  # a further producer pass changes nothing
    assert groups(settings)[second].attempt == 1
    assert restarted.alive()
