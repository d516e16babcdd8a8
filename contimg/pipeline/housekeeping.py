"""Periodic care of the cluster's state, run by beat (and callable directly).

* runs whose worker died (``in_progress`` without a heartbeat for
  ``ingest.stale_in_progress_s``) are re-enqueued, at most ``ingest.max_retries`` times;
* ``collecting`` groups past their timeout are promoted or failed even when the
  producer is down (the same transaction-gated code the producer uses);
* ``pending`` runs that were never published are published;
* staging directories of parts left by crashed runs are removed once older
  than :data:`STAGING_MAX_AGE_S` and their group is not running;
* the groups failed here (out of retries, timed out) are notified (:mod:`contimg.pipeline.alerts`).
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import ObservationGroup, Photometry
from contimg.pipeline.alerts import groups_failed

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

STAGING_MAX_AGE_S = 6 * 3600.0
"""Parts older than this whose group is not in progress are removed."""

NIGHTLY_ENTRY_POINT = ("contimg.pipeline.nightly", "run_nightly")
"""``run_nightly(settings) -> dict``: the nightly variability scoring (:mod:`contimg.pipeline.nightly`)."""


def liveness(settings: Settings) -> tuple[groups.Liveness | None, Any]:
    """Who is alive, from the workers' presence in Redis; ``(None, None)`` if Redis cannot be read.

    Returns
    -------
    tuple
        The :class:`~contimg.db.groups.Liveness` and the
        :class:`~contimg.cluster.nodes.PresenceRegistry` it was read from.
    """
    import redis

    from contimg.cluster.nodes import PresenceRegistry
    from contimg.secrets import mask_text

    try:
        registry = PresenceRegistry(settings.broker_url, ttl_s=settings.celery.presence_ttl_s)
        present = registry.alive()
    except redis.RedisError as exc:
        log.warning("housekeeping: cannot read worker presence (%s); judging runs by their heartbeat only",
                    mask_text(str(exc), [settings.broker_url]))
        return None, None
    alive = groups.Liveness(workers=frozenset(present),
                            nodes=frozenset(p.node for p in present.values() if p.node))
    return alive, registry


def sweep(settings: Settings, *, enqueue: groups.Enqueue, staging_max_age_s: float = STAGING_MAX_AGE_S) -> dict[str, Any]:
    """One housekeeping pass; returns what it did.

    Lost runs (their worker or node gone, or a hung step) are re-planned on
    live workers; the queues of nodes that are gone are deleted once none of
    their runs is current (their messages belong to superseded runs).

    Parameters
    ----------
    settings
        The pipeline settings (database, broker, ``ingest`` and ``celery`` timeouts, staging path).
    enqueue
        Publisher ``enqueue(group_key, token, from_stage)`` for re-planned, promoted and unpublished runs.
    staging_max_age_s
        Age (s, of the newest file) after which a staging directory of a group that is not pending or in
        progress is removed.

    Returns
    -------
    dict
        Group keys ``requeued``, ``failed`` (out of retries), ``promoted`` and ``timed_out`` (collecting
        groups), ``republished``; ``staging_removed`` (directory names) and ``node_queues_removed``
        (``{queue: messages dropped}``; empty when Redis presence cannot be read).
    """
    from contimg.db.groups import promote_due_groups

    ingest = settings.ingest
    alive, registry = liveness(settings)
    stale = groups.requeue_stale(settings, enqueue, stale_s=ingest.stale_in_progress_s,
                                 max_retries=ingest.max_retries, alive=alive,
                                 grace_s=settings.celery.presence_ttl_s)
    dropped = clean_node_queues(settings, registry, alive) if alive is not None else {}
    decisions = run_transaction(settings, lambda s: promote_due_groups(s, ingest))
    groups_failed(settings, {**_errors(settings, stale["failed"]), **decisions.failed})
    for item in decisions.promoted:
        groups.publish(settings, item, enqueue)
    republished = groups.publish_unpublished(settings, enqueue, grace_s=max(60.0, 3 * ingest.poll_interval_s))
    removed = clean_staging(settings, max_age_s=staging_max_age_s)
    report = {**stale, "promoted": [p.group_key for p in decisions.promoted], "timed_out": list(decisions.failed),
              "republished": republished, "staging_removed": removed, "node_queues_removed": dropped}
    if any(report.values()):
        log.info("housekeeping: %s", report)
    return report


def _errors(settings: Settings, keys: list[str]) -> dict[str, str]:
    """Group key → its recorded error message, for the groups ``keys``."""
    if not keys:
        return {}
    rows = run_transaction(settings, lambda s: s.execute(
        select(ObservationGroup.group_key, ObservationGroup.error_message)
        .where(ObservationGroup.group_key.in_(keys))).all(), readonly=True)
    return {k: e or "failed" for k, e in rows}


def clean_node_queues(settings: Settings, registry: Any, alive: groups.Liveness) -> dict[str, int]:
    """Delete the queues of nodes that are gone and hold no current run; returns ``{queue: messages dropped}``.

    Redis errors are not raised: the listing failing returns ``{}``, a queue failing to delete is skipped.

    Parameters
    ----------
    settings
        The pipeline settings (its database says which nodes hold a run in progress).
    registry
        The :class:`~contimg.cluster.nodes.PresenceRegistry` (Redis) the queues are listed and deleted through.
    alive
        The live workers and nodes (:func:`liveness`); queues of nodes in ``alive.nodes`` are kept.

    Returns
    -------
    dict of str to int
        The deleted queues (``<prefix><node>``) and how many messages each held.
    """
    from contimg.cluster.nodes import NODE_QUEUE_PREFIX

    import redis

    try:
        orphans = registry.orphan_node_queues(set(alive.nodes))
    except redis.RedisError:
        return {}
    if not orphans:
        return {}
    pinned = run_transaction(settings, groups.nodes_in_use, readonly=True)
    dropped = {}
    for queue in orphans:
        if queue.removeprefix(NODE_QUEUE_PREFIX) in pinned:
            continue  # a current run still counts on it: the sweep re-plans that run first
        try:
            dropped[queue] = registry.delete_node_queue(queue)
        except redis.RedisError:
            continue
        log.warning("housekeeping: node %s is gone; deleted its queue (%d message(s) of superseded runs)",
                    queue.removeprefix(NODE_QUEUE_PREFIX), dropped[queue])
    return dropped


def clean_staging(settings: Settings, *, max_age_s: float) -> list[str]:
    """Remove per-group staging directories older than ``max_age_s`` whose group is not running."""
    root = settings.paths.staging
    if not root.is_dir():
        return []

    running = {k.replace(":", "").replace("/", "_")
               for k in run_transaction(settings, groups.active_group_keys, readonly=True)}
    now = time.time()
    removed = []
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name in running:
            continue
        newest = max((p.stat().st_mtime for p in entry.rglob("*")), default=entry.stat().st_mtime)
        if now - newest >= max_age_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
            log.info("removed stale staging directory %s", entry)
    return removed


def nightly_variability(settings: Settings) -> dict[str, Any]:
    """Run the variability library's nightly scoring, if it exists and there is photometry.

    With no photometry in the database yet (a fresh installation, or runs that
    end before the photometry stage) there is nothing to score: the job says so
    and does nothing (it never invents scores).
    """
    module_name, func_name = NIGHTLY_ENTRY_POINT
    try:
        entry = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError):
        log.warning("nightly variability: %s.%s cannot be imported; nothing scored",
                    module_name, func_name)
        return {"status": "skipped", "reason": f"{module_name}.{func_name} not available"}
    n = run_transaction(settings, lambda s: s.scalar(select(func.count()).select_from(Photometry)), readonly=True)
    if not n:
        log.warning("nightly variability: no photometry in the database yet; nothing scored")
        return {"status": "skipped", "reason": "no photometry"}
    result = entry(settings)
    log.info("nightly variability: %s", result)
    return {"status": "ok", "result": result}


SWEEP_LOCK_KEY = "contimg:sweep-lock"
"""Redis key held by the one sweeper that runs a pass (two beats started by mistake never sweep at once)."""


class Sweeper:
    """Runs :func:`sweep` every ``ingest.sweep_interval_s`` in a thread of its own (the beat process's).

    The sweep never waits behind busy worker slots: it is not a task. A Redis
    lock lets one sweeper run a pass at a time; a pass that fails (the broker
    or the database away) is logged and tried again at the next period.

    Parameters
    ----------
    settings
        The settings (database, broker, ``ingest`` section).
    enqueue
        Publishes a group's run (``workers.canvas.enqueue_group``).
    """

    def __init__(self, settings: Settings, *, enqueue: groups.Enqueue):
        import threading
        import uuid

        self.settings = settings
        self.enqueue = enqueue
        self.interval_s = settings.ingest.sweep_interval_s
        self.stopping = threading.Event()
        self._me = uuid.uuid4().hex
        self._client: redis.Redis | None = None
        self._thread = threading.Thread(target=self._run, name="contimg-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        self._thread.start()
        log.info("stale-run sweeper started (every %.0f s)", self.interval_s)
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=30)

    def run_once(self) -> dict[str, Any] | None:
        """One pass if this sweeper gets the lock; returns the report (None if another sweeper holds it)."""
        import redis

        if self._client is None:  # one connection pool for every pass; it reconnects after a broker restart
            self._client = redis.Redis.from_url(self.settings.broker_url, socket_timeout=5, socket_connect_timeout=5)
        client = self._client
        ttl_ms = int(max(self.interval_s * 4, 60.0) * 1000)
        if not client.set(SWEEP_LOCK_KEY, self._me, nx=True, px=ttl_ms):
            if client.get(SWEEP_LOCK_KEY) != self._me.encode():
                return None
            client.pexpire(SWEEP_LOCK_KEY, ttl_ms)
        return sweep(self.settings, enqueue=self.enqueue)

    def _run(self) -> None:
        from contimg.secrets import mask_text

        while not self.stopping.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - broker or database away: try again next period
                log.warning("stale-run sweep failed (%s); retrying in %.0f s",
                            mask_text(f"{type(exc).__name__}: {exc}", [self.settings.broker_url,
                                                                       self.settings.database]),
                            self.interval_s)
