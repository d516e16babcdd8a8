"""Periodic care of the cluster's state, run by beat (and callable directly).

* runs whose worker died (``in_progress`` without a heartbeat for
  ``ingest.stale_in_progress_s``) are re-enqueued, at most ``ingest.max_retries`` times;
* ``collecting`` groups past their timeout are promoted or failed even when the
  producer is down (the same transaction-gated code the producer uses);
* ``pending`` runs that were never published are published;
* staging directories of parts left by crashed runs are removed once older
  than :data:`STAGING_MAX_AGE_S` and their group is not running.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from contimg.config import Settings
from contimg.db import GroupState, run_transaction
from contimg.db.models import ObservationGroup, Photometry
from contimg.pipeline import state

log = logging.getLogger(__name__)

STAGING_MAX_AGE_S = 6 * 3600.0
"""Parts older than this whose group is not in progress are removed."""

NIGHTLY_ENTRY_POINT = ("contimg.variability.nightly", "run_nightly")
"""``run_nightly(settings) -> dict``: the variability library's nightly scoring."""


def sweep(settings: Settings, *, enqueue: state.Enqueue, staging_max_age_s: float = STAGING_MAX_AGE_S) -> dict[str, Any]:
    """One housekeeping pass; returns what it did."""
    from contimg.ingest.registry import promote_due_groups

    ingest = settings.ingest
    stale = state.requeue_stale(settings, enqueue, stale_s=ingest.stale_in_progress_s,
                                max_retries=ingest.max_retries)
    decisions = run_transaction(settings, lambda s: promote_due_groups(s, ingest))
    for item in decisions.promoted:
        state.publish(settings, item, enqueue)
    republished = state.publish_unpublished(settings, enqueue, grace_s=max(60.0, 3 * ingest.poll_interval_s))
    removed = clean_staging(settings, max_age_s=staging_max_age_s)
    report = {**stale, "promoted": [p.group_key for p in decisions.promoted], "timed_out": list(decisions.failed),
              "republished": republished, "staging_removed": removed}
    if any(report.values()):
        log.info("housekeeping: %s", report)
    return report


def clean_staging(settings: Settings, *, max_age_s: float) -> list[str]:
    """Remove per-group staging directories older than ``max_age_s`` whose group is not running."""
    root = settings.paths.staging
    if not root.is_dir():
        return []

    def _running(session) -> set[str]:
        keys = session.scalars(select(ObservationGroup.group_key)
                               .where(ObservationGroup.state.in_([GroupState.IN_PROGRESS, GroupState.PENDING])))
        return {k.replace(":", "").replace("/", "_") for k in keys}

    running = run_transaction(settings, _running, readonly=True)
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
