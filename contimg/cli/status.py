"""``contimg status``: group counts by state, the latest groups with stage timings, queue lengths."""

from __future__ import annotations

import argparse
import json

NAME = "status"
HELP = "show groups by state, the latest groups with their stage timings, and queue lengths"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("-n", "--latest", type=int, default=10, help="how many recent groups to list")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.cluster.status import collect_status, format_status

    status = collect_status(settings, latest=args.latest)
    if args.json:
        print(json.dumps(status, indent=None, default=str))
    else:
        print(format_status(status))
    return 0
