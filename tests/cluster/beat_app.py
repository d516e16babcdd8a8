"""A Celery app for the beat test: the production app with a one-second ping job added."""

from __future__ import annotations

from workers.app import app

app.conf.beat_schedule = {
    "ping": {"task": "contimg.housekeeping.ping", "schedule": 1.0, "args": ("beat",)},
}
