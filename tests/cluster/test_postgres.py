"""The cluster on PostgreSQL: producer and worker processes sharing one PostgreSQL schema."""

from __future__ import annotations

import pytest

from cluster_helpers import drop_group, dump_logs, finished, timestamp, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]  # the protocol on PostgreSQL is also covered by tests/pipeline and tests/ingest


def test_groups_complete_on_postgresql(make_cluster, sim_groups, postgres_schemas):
    from contimg.db import init_db

    url = postgres_schemas()
    init_db(url)
    cluster = make_cluster("pg", CONTIMG_DATABASE_URL=url)
    cluster.start_worker(concurrency=2)
    cluster.start_producer()
    settings = cluster.settings()
    assert settings.database == url
    keys = [drop_group(settings.paths.incoming, paths, timestamp(20, 5 * i)) for i, paths in enumerate(sim_groups)]
    try:
        got = wait_for(lambda: finished(settings, keys), timeout_s=180, what=f"groups {keys}")
    except BaseException:
        print(dump_logs(cluster))
        raise
    for key in keys:
        g = got[key]
        assert g.state.value == "completed", g.error_message
        assert g.attempt == 1 and len(g.measurement_sets) == 1
        assert [(t.stage, t.status) for t in g.stage_timings] == [("convert", "ok")]
