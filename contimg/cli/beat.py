"""``contimg beat``: the scheduler (nightly variability, housekeeping) with a Redis lock."""

from __future__ import annotations

import argparse

NAME = "beat"
HELP = "run the beat scheduler (redbeat: a second beat waits for the lock and fires nothing)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default=None, help="Celery log level (default: the contimg log level)")


def run(args: argparse.Namespace, settings) -> int:
    from workers.app import app

    app.start(argv=["beat", "-S", "redbeat.RedBeatScheduler", "--loglevel", args.loglevel or settings.log_level])
    return 0
