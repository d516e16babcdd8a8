"""``contimg worker``: a Celery worker serving some or all pipeline queues."""

from __future__ import annotations

import argparse

NAME = "worker"
HELP = "run a Celery worker (all queues by default; --queues convert on tmpfs nodes)"


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
    from workers.app import ALL_QUEUES, app

    queues = [q.strip() for q in (args.queues or ",".join(ALL_QUEUES)).split(",") if q.strip()]
    unknown = sorted(set(queues) - set(ALL_QUEUES))
    if unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
    argv = ["worker", "-Q", ",".join(queues), "--loglevel", args.loglevel or settings.log_level,
            "--without-gossip", "--without-mingle", "-P", "prefork"]
    concurrency = args.concurrency if args.concurrency is not None else settings.celery.concurrency
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if args.hostname:
        argv += ["-n", args.hostname]
    app.worker_main(argv=argv)
    return 0
