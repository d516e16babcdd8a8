"""Monitoring: Flower behind basic auth, worker queue validation."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from cluster_helpers import wait_for
from contimg.cluster import free_port

pytestmark = pytest.mark.integration


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_flower_requires_the_configured_basic_auth(make_cluster):
    cluster = make_cluster("flower", CONTIMG_MONITORING__FLOWER_USER="ops",
                           CONTIMG_MONITORING__FLOWER_PASSWORD="s3cret")
    port = free_port()
    flower = cluster._spawn("flower", [sys.executable, "-m", "contimg", "flower", "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: _get(url) != 0, timeout_s=60, what="flower to listen")
    assert _get(url) == 401
    assert _get(url, ("ops", "wrong")) == 401
    assert _get(url, ("ops", "s3cret")) == 200
    # Prometheus metrics (worker and task names) are behind the same auth; the health check is open on purpose
    metrics = f"http://127.0.0.1:{port}/metrics"
    assert _get(metrics) == 401
    assert _get(metrics, ("ops", "wrong")) == 401
    assert _get(metrics, ("ops", "s3cret")) == 200
    assert _get(f"http://127.0.0.1:{port}/healthcheck") == 200
    assert flower.alive()
    log = flower.log_text()
    assert "s3cret" not in log
    assert "FLOWER_PASSWORD" not in log  # a configured password draws no default-password warning


def test_flower_warns_about_the_default_password(make_cluster):
    cluster = make_cluster("flower-default")
    assert "CONTIMG_MONITORING__FLOWER_PASSWORD" not in cluster.env()
    port = free_port()
    flower = cluster._spawn("flower", [sys.executable, "-m", "contimg", "flower", "--port", str(port)])
    flower.wait_for_log("set CONTIMG_MONITORING__FLOWER_PASSWORD", timeout_s=60)
    line = next(x for x in flower.log_text().splitlines() if "CONTIMG_MONITORING__FLOWER_PASSWORD" in x)
    assert "WARNING" in line and "default" in line
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/") != 0, timeout_s=60, what="flower to listen")
    assert _get(f"http://127.0.0.1:{port}/metrics") == 401
    assert _get(f"http://127.0.0.1:{port}/metrics", ("contimg", "contimg")) == 200
    assert flower.alive()


def test_worker_refuses_unknown_queues(make_cluster):
    cluster = make_cluster("queues")
    out = subprocess.run([sys.executable, "-m", "contimg", "worker", "--queues", "convert,imaging"],
                         env=cluster.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "unknown queue(s) imaging" in out.stderr


def test_each_stage_queue_receives_only_its_own_tasks(make_cluster):
    """Bindings as a worker declares them: a task routed to one queue lands in that queue only."""
    import redis

    from workers.app import ALL_QUEUES
    from workers.canvas import app_for

    cluster = make_cluster("routing")
    worker = cluster.start_worker(concurrency=1)
    worker.stop()  # its queue bindings stay declared in Redis
    client = redis.Redis.from_url(cluster.broker_url)
    assert {client.llen(q) for q in ALL_QUEUES} == {0}
    app = app_for(cluster.settings())
    for name, queue in [("contimg.convert.write_part", "convert"), ("contimg.group.start", "housekeeping"),
                        ("contimg.calibrate.solve", "calibrate"), ("contimg.image.make", "image"),
                        ("contimg.photometry.measure", "photometry")]:
        before = {q: client.llen(q) for q in ALL_QUEUES}
        app.send_task(name, kwargs={})
        after = {q: client.llen(q) for q in ALL_QUEUES}
        assert {q: after[q] - before[q] for q in ALL_QUEUES} == {q: int(q == queue) for q in ALL_QUEUES}, name
