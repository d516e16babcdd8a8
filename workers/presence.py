"""A worker's node queue, presence and heartbeats (Celery signals; the logic is in :mod:`contimg.cluster.nodes`).

At start-up (``celeryd_after_setup``, in the main process, before the pool
forks) every worker gets a unique id; a worker that consumes ``convert`` also
learns its node from its staging directory and consumes the node's own queue
(``convert@<node>``), to which the planning task sends each group's chord.

Once ready (``worker_ready``) the main process runs :class:`PresenceThread`:
every ``celery.presence_interval_s`` it announces the worker in Redis (with a
time-to-live of ``celery.presence_ttl_s``) and beats the heartbeat of every
group whose task it holds, running or waiting for a countdown. The main
process never runs task code, so the beat goes on however long a WSClean or
CASA step takes, and stops when the worker dies.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from kombu import Exchange, Queue

log = logging.getLogger(__name__)

_thread: "PresenceThread | None" = None


def node_queue(name: str) -> Queue:
    """The declaration of a node's queue: its own direct exchange and routing key, like the stage queues."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


@celeryd_after_setup.connect
def _setup_worker(sender: str, instance: Any, **_: Any) -> None:
    from contimg.cluster.nodes import new_worker_id, node_identity, node_queue_name

    from contimg.db import groups

    app = instance.app
    app.conf.contimg_worker_id = new_worker_id(str(sender))
    groups.WORKER_IDENTITY = app.conf.contimg_worker_id
    app.conf.contimg_node = None
    if "convert" in app.amqp.queues.consume_from:
        settings = app.conf.contimg_settings
        node = node_identity(settings.paths.staging)
        queue = node_queue(node_queue_name(node))
        app.amqp.queues.select_add(queue)
        app.conf.contimg_node = node
        log.info("worker %s converts on node %s (staging %s, queue %s)", app.conf.contimg_worker_id, node,
                 settings.paths.staging, queue.name)


def _runs(requests) -> list[tuple[str, str]]:
    out = []
    for request in requests:
        try:
            kwargs = request.kwargs or {}
        except Exception:  # noqa: BLE001 - a request being torn down
            continue
        key, token = kwargs.get("group_key"), kwargs.get("token")
        if key and token:
            out.append((key, token))
    return out


def _snapshot(collection) -> list:
    for _ in range(5):  # the consumer thread may change it while we copy
        try:
            return list(collection)
        except RuntimeError:
            continue
    return []


class PresenceThread(threading.Thread):
    """Announce this worker and beat its groups' heartbeats until stopped."""

    def __init__(self, app: Any, consumer: Any):
        super().__init__(name="contimg-presence", daemon=True)
        self.app = app
        self.consumer = consumer
        self.stopping = threading.Event()
        settings = app.conf.contimg_settings
        self.settings = settings
        self.interval_s = settings.celery.presence_interval_s
        self._warned: set[str] = set()

    def _presence(self, runs: list[tuple[str, str]]):
        from contimg.cluster.nodes import Presence, staging_free_bytes

        conf = self.app.conf
        node = conf.contimg_node
        staging = self.settings.paths.staging
        return Presence(
            worker=conf.contimg_worker_id, hostname=self.consumer.hostname, node=node,
            queues=sorted(self.app.amqp.queues.consume_from), staging=str(staging) if node else None,
            staging_free_bytes=staging_free_bytes(staging) if node else None, pid=os.getpid(),
            concurrency=getattr(self.consumer.controller, "concurrency", None),
            active=sorted({key for key, _ in runs}))

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            from contimg.secrets import mask_text

            log.warning("presence: cannot %s: %s (will keep trying)", what,
                        mask_text(str(exc), [self.settings.broker_url, self.settings.database]))
            self._warned.add(what)

    def step(self, registry) -> None:
        from celery.worker import state as worker_state

        from contimg.db import groups

        held = _runs(_snapshot(worker_state.requests.values()))
        scheduled = _runs(_snapshot(getattr(worker_state, "scheduled_requests", ())))
        try:
            registry.announce(self._presence(held))
            self._warned.discard("announce")
        except Exception as exc:  # noqa: BLE001 - Redis down: announce again next time
            self._warn_once("announce", exc)
        try:
            groups.beat(self.settings, sorted(set(held) - set(scheduled)))
            groups.beat(self.settings, sorted(set(scheduled)), worker=self.app.conf.contimg_worker_id)
            self._warned.discard("beat")
        except Exception as exc:  # noqa: BLE001 - database busy or down: beat again next time
            self._warn_once("beat", exc)

    def run(self) -> None:
        from contimg.cluster.nodes import PresenceRegistry

        registry = PresenceRegistry(self.settings.broker_url, ttl_s=self.settings.celery.presence_ttl_s)
        while True:
            self.step(registry)
            if self.stopping.wait(self.interval_s):
                break
        try:
            registry.withdraw(self.app.conf.contimg_worker_id)
        except Exception:  # noqa: BLE001 - it expires by itself
            pass


@worker_ready.connect
def _start_presence(sender: Any, **_: Any) -> None:
    global _thread
    app = sender.app
    if getattr(app.conf, "contimg_worker_id", None) is None or _thread is not None:
        return
    _thread = PresenceThread(app, sender)
    _thread.start()


@worker_shutdown.connect
def _stop_presence(**_: Any) -> None:
    global _thread
    if _thread is not None:
        _thread.stopping.set()
        _thread.join(timeout=10)
        _thread = None
