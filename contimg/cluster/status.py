"""What ``contimg status`` shows: groups by state, the latest groups with stage timings, queue lengths."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from contimg.config import Settings
from contimg.db import run_transaction
from contimg.db.models import ObservationGroup

log = logging.getLogger(__name__)

QUEUES = ("convert", "calibrate", "image", "photometry", "housekeeping")
"""The Celery queues (same names as ``workers.app.ALL_QUEUES``, without importing Celery)."""


def queue_lengths(broker_url: str, queues: tuple[str, ...] = QUEUES) -> dict[str, int | None]:
    """``LLEN`` of each queue's Redis list (None for every queue if Redis cannot be reached)."""
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        pipe = client.pipeline()
        for q in queues:
            pipe.llen(q)
        return dict(zip(queues, (int(n) for n in pipe.execute())))
    except redis.RedisError as exc:
        log.warning("cannot read queue lengths from %s: %s", broker_url, exc)
        return {q: None for q in queues}


def collect_status(settings: Settings, *, latest: int = 10) -> dict[str, Any]:
    """A JSON-serialisable snapshot of the pipeline's state."""
    from contimg.ingest.registry import counts_by_state

    def _read(session) -> dict[str, Any]:
        groups = session.scalars(
            select(ObservationGroup).options(selectinload(ObservationGroup.stage_timings),
                                             selectinload(ObservationGroup.measurement_sets))
            .order_by(ObservationGroup.timestamp.desc()).limit(latest)).all()
        return {
            "counts": counts_by_state(session),
            "groups": [group_summary(g) for g in groups],
        }

    out = run_transaction(settings, _read, readonly=True)
    out["queues"] = queue_lengths(settings.broker_url)
    return out


def group_summary(g: ObservationGroup) -> dict[str, Any]:
    """One group as a dict: state, stage, subbands, timings of its latest attempt, products."""
    timings = {t.stage: {"seconds": t.seconds, "status": t.status, "host": t.hostname}
               for t in g.stage_timings if t.attempt == g.attempt}
    return {
        "group": g.group_key,
        "state": g.state.value,
        "stage": g.current_stage,
        "nsubbands": g.nsubbands,
        "attempt": g.attempt,
        "retries": g.retry_count,
        "error": g.error_message,
        "timings": timings,
        "products": [m.path for m in g.measurement_sets],
        "started": g.started_at.isoformat() if g.started_at else None,
        "finished": g.finished_at.isoformat() if g.finished_at else None,
    }


def format_status(status: dict[str, Any]) -> str:
    """The status as text for operators."""
    lines = ["groups: " + ", ".join(f"{k} {v}" for k, v in status["counts"].items())]
    q = status["queues"]
    lines.append("queues: " + ", ".join(f"{k} {'?' if v is None else v}" for k, v in q.items()))
    if status["groups"]:
        lines.append("")
        lines.append(f"{'group':<21}{'state':<13}{'stage':<11}{'sb':>3}  timings")
    for g in status["groups"]:
        t = " ".join(f"{s}={v['seconds']:.1f}s" if v["seconds"] is not None else f"{s}={v['status']}"
                     for s, v in g["timings"].items())
        lines.append(f"{g['group']:<21}{g['state']:<13}{(g['stage'] or '-'):<11}{g['nsubbands']:>3}  {t or '-'}")
        if g["error"]:
            lines.append(f"{'':<21}error: {g['error'][:200]}")
    return "\n".join(lines)
