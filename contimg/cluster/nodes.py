"""Nodes and worker presence: where a group's conversion lives, and who is alive.

A *node* is the place that holds a staging directory: a host, or a container
with its own RAM disk. A group's subband parts are written to one node's
staging and combined there, so every convert worker consumes, besides the
shared ``convert`` queue (where a group's planning task waits), a queue of its
own node (:func:`node_queue_name`) that receives the group's chord.

A node is recognised by a small file in its staging directory
(:data:`NODE_ID_FILE`, written by the first worker that starts there): workers
that share the staging directory share the node (and its queue); containers
or hosts with private RAM disks are different nodes, with no configuration
beyond the staging directory itself.

Every worker announces its *presence* in Redis (:class:`PresenceRegistry`):
a key with a time-to-live that its main process refreshes, holding the
worker's name, its node, its queues and the free staging space. The
stale-run sweep reads it: a run whose worker or node is no longer present is
re-planned on a live one within ``celery.presence_ttl_s`` plus one sweep.

Nothing here imports Celery.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contimg.errors import TransientError

log = logging.getLogger(__name__)

NODE_ID_FILE = ".contimg-node"
"""File in a staging directory naming the node that owns it."""

NODE_QUEUE_PREFIX = "convert@"
"""A node's own conversion queue is ``convert@<node id>``."""

PRESENCE_PREFIX = "contimg:presence:"
"""Redis keys ``contimg:presence:<worker id>`` (JSON, with a time-to-live)."""


class NodeFullError(TransientError):
    """This node's staging cannot hold the group: another node should take it."""


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "node"


def node_identity(staging: Path) -> str:
    """The id of the node owning ``staging`` (created on first use: ``<host>-<8 hex>``).

    Parameters
    ----------
    staging
        The staging directory (created if missing).

    Returns
    -------
    str
        The node id, the same for every process that sees this staging directory.
    """
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / NODE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    candidate = f"{_clean(socket.gethostname())}-{uuid.uuid4().hex[:8]}"
    tmp = staging / f".{NODE_ID_FILE}.{os.getpid()}"
    tmp.write_text(candidate + "\n")
    try:
        os.link(tmp, path)  # atomic: the first writer wins, the others read its id
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    node = path.read_text().strip()
    log.info("staging %s belongs to node %s", staging, node)
    return node


def node_queue_name(node: str) -> str:
    """The conversion queue of ``node``."""
    return f"{NODE_QUEUE_PREFIX}{node}"


def staging_free_bytes(staging: Path) -> int:
    """Free bytes in the staging directory's file system (0 if it does not exist)."""
    try:
        return int(shutil.disk_usage(staging).free)
    except OSError:
        return 0


def group_staging_bytes(files: Iterable[str | os.PathLike], *, margin: float) -> int:
    """Staging space a group's parts need: its subband files' bytes times ``margin``."""
    total = 0
    for f in files:
        try:
            total += os.stat(f).st_size
        except OSError:
            continue
    return int(total * margin)


def check_room(staging: Path, need_bytes: int, *, node: str, group_key: str) -> None:
    """Raise :class:`NodeFullError` if ``staging`` has less than ``need_bytes`` free.

    Parameters
    ----------
    staging
        This node's staging directory (a missing directory counts as 0 bytes free).
    need_bytes
        Bytes the group's parts need (see :func:`group_staging_bytes`).
    node
        This node's name, for the error message.
    group_key
        The group being planned, for the error message.

    Raises
    ------
    NodeFullError
        Transient: the group is declined here and planned again, by this or another node.
    """
    free = staging_free_bytes(staging)
    if free < need_bytes:
        raise NodeFullError(f"node {node}: staging {staging} has {free / 1e9:.2f} GB free, group {group_key} "
                            f"needs {need_bytes / 1e9:.2f} GB; declining it for another node")


@dataclass
class Presence:
    """What a worker announces about itself."""

    worker: str
    """Unique id of this worker process: ``<celery node name>#<instance>`` (a restart is a new worker)."""
    hostname: str
    """The Celery node name (``name@host``)."""
    node: str | None
    """The node whose staging it uses (convert workers), else None."""
    queues: list[str] = field(default_factory=list)
    staging: str | None = None
    staging_free_bytes: int | None = None
    pid: int = 0
    concurrency: int | None = None
    active: list[str] = field(default_factory=list)
    """Group keys this worker is working on (running or waiting to run)."""
    at: float = 0.0
    """Unix time of the announcement."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Presence":
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def new_worker_id(hostname: str) -> str:
    """A worker id for a Celery node name: unique per process start."""
    return f"{hostname}#{uuid.uuid4().hex[:8]}"


class PresenceRegistry:
    """Worker presence in Redis: announce, withdraw, list the living.

    Parameters
    ----------
    redis_url
        The broker's Redis.
    ttl_s
        Time-to-live of an announcement.
    """

    def __init__(self, redis_url: str, *, ttl_s: float):
        import redis

        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def announce(self, presence: Presence) -> None:
        presence.at = time.time()
        self.client.set(PRESENCE_PREFIX + presence.worker, presence.to_json(), px=int(self.ttl_s * 1000))

    def withdraw(self, worker: str) -> None:
        self.client.delete(PRESENCE_PREFIX + worker)

    def alive(self) -> dict[str, Presence]:
        """Every worker present now, by worker id.

        Raises
        ------
        redis.RedisError
            If Redis cannot be read (the caller must then not conclude that anyone is dead).
        """
        keys = list(self.client.scan_iter(match=PRESENCE_PREFIX + "*", count=500))
        out: dict[str, Presence] = {}
        if not keys:
            return out
        for key, value in zip(keys, self.client.mget(keys)):
            if value is None:
                continue
            try:
                p = Presence.from_json(value)
            except (ValueError, TypeError):
                log.warning("ignoring malformed presence %s", key)
                continue
            out[p.worker] = p
        return out

    def orphan_node_queues(self, live_nodes: set[str]) -> list[str]:
        """Node queues (with messages or bindings in Redis) of nodes that are not present."""
        names: set[str] = set()
        for key in self.client.scan_iter(match=f"_kombu.binding.{NODE_QUEUE_PREFIX}*", count=500):
            names.add(key.decode().removeprefix("_kombu.binding."))
        for key in self.client.scan_iter(match=f"{NODE_QUEUE_PREFIX}*", count=500):
            name = key.decode()
            if self.client.type(key) == b"list":
                names.add(name)
        return sorted(n for n in names if n.removeprefix(NODE_QUEUE_PREFIX) not in live_nodes)

    def delete_node_queue(self, queue: str) -> int:
        """Delete a node queue's messages and binding; returns how many messages were dropped."""
        n = int(self.client.llen(queue) or 0)
        self.client.delete(queue, f"_kombu.binding.{queue}")
        return n


def presence_summary(presences: dict[str, Presence]) -> list[dict[str, Any]]:
    """Presences as JSON-able dicts, sorted by node and worker (for ``contimg status``)."""
    rows = [asdict(p) for p in presences.values()]
    return sorted(rows, key=lambda r: (r["node"] or "", r["hostname"]))
