"""The beat schedule: nightly variability scoring and housekeeping.

Run with ``contimg beat``, which uses ``redbeat.RedBeatScheduler``: the schedule
lives in Redis under a lock, so a second beat started by mistake waits for the
lock and fires nothing.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from contimg.config import Settings

HOUSEKEEPING_INTERVAL_S = 60.0
"""Period of the housekeeping sweep (stale runs, timed-out groups, staging)."""


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The schedule for ``settings`` (nightly time from ``settings.variability``)."""
    v = settings.variability
    return {
        "nightly-variability": {
            "task": "contimg.variability.nightly",
            "schedule": crontab(hour=v.nightly_hour_utc, minute=v.nightly_minute),
        },
        "housekeeping": {
            "task": "contimg.housekeeping.sweep",
            "schedule": HOUSEKEEPING_INTERVAL_S,
            "options": {"expires": HOUSEKEEPING_INTERVAL_S},
        },
    }
