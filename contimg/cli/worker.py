"""``contimg worker``: a Celery worker serving some or all pipeline queues."""

from __future__ import annotations

import argparse
import logging

NAME = "worker"
log = logging.getLogger(__name__)
HELP = ("run a Celery worker (all queues by default; --queues convert on tmpfs nodes, which also consume "
        "their node's own queue)")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-Q", "--queues", default=None,
                        help="comma-separated queues: convert, calibrate, image, photometry, housekeeping "
                             "(default: all)")
    parser.add_argument("-c", "--concurrency", type=int, default=None,
                        help="worker processes (default: settings.celery.concurrency, 0 = one per core)")
    parser.add_argument("-n", "--hostname", default=None, help="node name, e.g. convert1@%%h")
    parser.add_argument("--loglevel", default=None, help="Celery log level (default: the contimg log level)")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.errors import ConfigError
    from contimg.pipeline.stages import QUEUES

    queues = [q.strip() for q in (args.queues or ",".join(QUEUES)).split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    from workers.app import app
    argv = ["worker", "-Q", ",".join(queues), "--loglevel", args.loglevel or settings.log_level,
            "--without-gossip", "--without-mingle", "-P", "prefork"]
    concurrency = args.concurrency if args.concurrency is not None else settings.celery.concurrency
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if args.hostname:
        argv += ["-n", args.hostname]
    watch = _UnrecoverableWatch()
    logging.getLogger("celery.worker.worker").addHandler(watch)
    try:
        app.worker_main(argv=argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if watch.seen and code == 0:
        # Celery logs "Unrecoverable error" (e.g. after losing the broker mid-task) and may still exit 0:
        # exit non-zero so that a supervisor (systemd Restart=on-failure, compose) starts it again.
        log.critical("worker stopped after an unrecoverable error; exiting with status 1 so it is restarted")
        code = 1
    return code


class _UnrecoverableWatch(logging.Handler):
    """Notices Celery's "Unrecoverable error" log record."""

    def __init__(self) -> None:
        super().__init__(level=logging.CRITICAL)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if "Unrecoverable error" in str(record.msg):
            self.seen = True
