"""The beat schedule: nightly variability scoring, the nightly mosaic and, every hour, retention of imaging
products.

The housekeeping sweep (lost runs, timed-out groups, unpublished runs, staging)
is not on this schedule: ``contimg beat`` runs it in a thread of its own
(:class:`contimg.pipeline.housekeeping.Sweeper`), so that busy workers can
never starve it.

Run with ``contimg beat``, which uses ``redbeat.RedBeatScheduler``: the schedule
lives in Redis under a lock, so a second beat started by mistake waits for the
lock and fires nothing.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from contimg.config import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The schedule for ``settings`` (times from ``settings.variability``, ``settings.mosaic`` and
    ``settings.retention``)."""
    v = settings.variability
    m = settings.mosaic
    return {
        "nightly-variability": {
            "task": "contimg.variability.nightly",
            "schedule": crontab(hour=v.nightly_hour_utc, minute=v.nightly_minute),
        },
        "retention": {
            "task": "contimg.housekeeping.retention",
            "schedule": crontab(minute=settings.retention.minute),
        },
        "nightly-mosaic": {
            "task": "contimg.mosaic.nightly",
            "schedule": crontab(hour=m.hour_utc, minute=m.minute),
        },
    }
