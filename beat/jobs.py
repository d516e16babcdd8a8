"""Scheduled jobs: thin tasks over :mod:`contimg.pipeline.housekeeping` and the variability library."""

from __future__ import annotations

import logging
from typing import Any

from workers.app import app

log = logging.getLogger(__name__)


@app.task(name="contimg.housekeeping.sweep", acks_late=True)
def housekeeping_sweep() -> dict[str, Any]:
    """Re-enqueue stale runs, apply the ingest timeout policy, publish lost runs, clean staging."""
    from contimg.pipeline.housekeeping import sweep
    from workers.canvas import enqueue_group

    return sweep(app.conf.contimg_settings, enqueue=enqueue_group)


@app.task(name="contimg.variability.nightly", acks_late=True)
def nightly_variability() -> dict[str, Any]:
    """The nightly variability scoring (see :func:`contimg.pipeline.housekeeping.nightly_variability`)."""
    from contimg.pipeline.housekeeping import nightly_variability as run

    return run(app.conf.contimg_settings)


@app.task(name="contimg.housekeeping.retention", acks_late=True)
def retention() -> dict[str, Any]:
    """Delete the imaging products ``settings.retention`` does not keep (:mod:`contimg.pipeline.retention`)."""
    from contimg.pipeline.retention import apply_retention

    return apply_retention(app.conf.contimg_settings).to_dict()


@app.task(name="contimg.mosaic.nightly", acks_late=True)
def nightly_mosaic() -> dict[str, Any]:
    """The previous UTC day's mosaic (see :func:`contimg.pipeline.mosaic.run_nightly_mosaic`)."""
    from contimg.pipeline.mosaic import run_nightly_mosaic

    return run_nightly_mosaic(app.conf.contimg_settings)


@app.task(name="contimg.housekeeping.ping")
def ping(tag: str = "") -> dict[str, Any]:
    """Record a fire in Redis (used to prove that only one beat fires a job)."""
    import os
    import socket
    import time

    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    client.rpush("contimg:beat-fires", f"{tag}|{socket.gethostname()}|{os.getpid()}|{time.time():.3f}")
    return {"tag": tag}
