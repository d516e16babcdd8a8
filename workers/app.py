"""The Celery application: Redis broker and backend, JSON only, safe long tasks.

Settings are read once, at import, from ``CONTIMG_*`` (see :mod:`contimg.config`).
Workers are started with ``contimg worker`` (or ``celery -A workers.app worker``).

Choices that matter for hour-long CASA tasks:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is
  redelivered, not lost; every task is idempotent so a rerun is harmless.
* ``worker_prefetch_multiplier = 1``: a worker reserves one task per process, so a
  long task never holds a queue of others hostage.
* Redis ``visibility_timeout`` above the longest task, or Redis would redeliver a
  task that is still running.
* ``worker_max_memory_per_child`` instead of ``max_tasks_per_child=1`` (NOTES: the
  latter doubles a chord's time through CASA re-imports).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, setup_logging
from kombu import Exchange, Queue

from contimg.config import Settings, load_settings
from contimg.pipeline.stages import CONTROL_QUEUE, QUEUES, REGISTRY, task_routes, task_time_limits

log = logging.getLogger(__name__)

STAGE_QUEUES = tuple(q for q in QUEUES if q != CONTROL_QUEUE)
"""One queue per pipeline stage, in the order data flows (from the stage registry)."""

ALL_QUEUES = QUEUES

STAGE_TASKS = tuple(task for stage in REGISTRY for task in stage.steps)
"""The tasks doing a stage's work; each gets its stage's hard time limit (``Settings.step_time_limits``)."""

TASK_ROUTES = task_routes()


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration derived from contimg settings.

    Parameters
    ----------
    settings
        The validated settings; only the broker/backend URLs and the
        ``celery`` section are used.
    """
    c = settings.celery
    transport = {
        "visibility_timeout": c.visibility_timeout_s,
        # make a broker restart survivable: retry publishing instead of failing
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 10,
    }
    # publishing (a chain's next step, a retry, a chord's body) waits out a broker restart
    retry_s = c.publish_retry_s
    publish_policy = {"max_retries": max(3, int(retry_s / 2.0)), "interval_start": 0.5, "interval_step": 0.5,
                      "interval_max": 2.0}
    annotations = {name: {"time_limit": limit} for name, limit in task_time_limits(settings).items()}
    return {
        "broker_url": settings.broker_url,
        "task_publish_retry": True,
        "task_publish_retry_policy": publish_policy,
        "task_annotations": annotations,
        "result_backend": settings.result_backend_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_memory_per_child": c.max_memory_per_child_mb * 1024,  # KiB
        "worker_concurrency": c.concurrency or None,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": c.visibility_timeout_s,
                                             "retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "result_expires": c.result_expires_s,
        "result_extended": True,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_backend_base_sleep_between_retries_ms": 200,
        "result_backend_max_sleep_between_retries_ms": 5000,
        "result_chord_join_timeout": 30.0,
        "result_chord_retry_interval": 1.0,
        "redis_backend_health_check_interval": 10,
        "task_default_queue": CONTROL_QUEUE,
        # one direct exchange and routing key per queue: a message routed to one queue lands in that queue only
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES],
        "task_default_exchange": CONTROL_QUEUE,
        "task_default_routing_key": CONTROL_QUEUE,
        "task_routes": TASK_ROUTES,
        "task_create_missing_queues": False,
        # a failing subband write reports to the run's error callback at once
        "task_allow_error_cb_on_chord_header": True,
        # redbeat: one lock in Redis so a second beat never fires the same job
        "redbeat_redis_url": settings.broker_url,
        "redbeat_key_prefix": "contimg:redbeat",
        "redbeat_lock_timeout": 60,
        "beat_max_loop_interval": 5,
    }


def create_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app (tasks and beat schedule registered)."""
    settings = settings or load_settings()
    app = Celery("contimg", include=["workers.tasks", "beat.jobs"])
    app.config_from_object(celery_config(settings))
    app.conf.contimg_settings = settings
    from beat.schedule import beat_schedule

    app.conf.beat_schedule = beat_schedule(settings)
    import workers.presence  # noqa: F401 - node queue, presence and heartbeats of this app's workers

    return app


@setup_logging.connect
def _setup_logging(loglevel=None, **_: Any) -> None:
    from contimg.logging_setup import configure_logging

    configure_logging(loglevel if isinstance(loglevel, str) else "INFO")


@worker_process_init.connect
def _worker_process_init(**_: Any) -> None:
    """Per-child set-up after fork: fresh DB engine, CASA logs out of the cwd, offline astropy.

    astropy would try to download IERS-A tables on first use of a time frame
    (seconds of timeout on an offline node): workers use the bundled tables.
    """
    from astropy.utils import iers

    from contimg import casa_env

    iers.conf.auto_download = False

    settings = app.conf.contimg_settings
    casa_env.configure_environment(settings.paths.state / "casa-logs")
    from contimg import pipeline

    pipeline.reset_engine()
    log.debug("worker child %d ready", os.getpid())


app = create_app()
