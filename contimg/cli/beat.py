"""``contimg beat``: the scheduler (nightly variability, housekeeping) with a Redis lock."""

from __future__ import annotations

import argparse

NAME = "beat"
HELP = "run the beat scheduler and the stale-run sweeper (redbeat: a second beat waits for the lock and fires nothing)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default=None, help="Celery log level (default: the contimg log level)")


def run(args: argparse.Namespace, settings) -> int:
    """Start the stale-run sweeper thread, then Celery beat (which blocks until stopped).

    The sweeper runs in this process, never as a task queued behind busy
    workers; Celery beat fires the nightly job. A beat that loses the broker
    for good exits non-zero, so its supervisor restarts it.
    """
    from contimg.pipeline.housekeeping import Sweeper
    from workers.app import app
    from workers.canvas import enqueue_group

    sweeper = Sweeper(settings, enqueue=enqueue_group).start()
    try:
        app.start(argv=["beat", "-S", "redbeat.RedBeatScheduler", "--loglevel", args.loglevel or settings.log_level])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sweeper.stop()
    return 0
