"""``contimg producer``: watch the incoming directory and enqueue complete groups."""

from __future__ import annotations

import argparse

NAME = "producer"
HELP = "watch the incoming directory, register subband files and enqueue complete groups"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="scan, register and enqueue once, then exit")
    parser.add_argument("--polling", action="store_true", help="use the polling observer (network filesystems)")


def run(args: argparse.Namespace, settings) -> int:
    import signal
    import threading

    from contimg.db import init_db
    from contimg.ingest import Producer
    from workers.canvas import enqueue_group

    ingest = settings.ingest.model_copy(update={"polling": True}) if args.polling else settings.ingest
    settings.paths.ensure()
    init_db(settings)
    producer = Producer(db=settings, incoming=settings.paths.incoming, settings=ingest, enqueue=enqueue_group)
    if args.once:
        producer.scan()
        report = producer.step()
        print(f"registered {len(report.registered)} file(s); enqueued {report.enqueued}; failed {list(report.failed)}")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    producer.run(stop)
    return 0
