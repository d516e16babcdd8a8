"""``contimg reprocess``: run finished groups again, by id or time range, optionally from a stage."""

from __future__ import annotations

import argparse

from contimg.imaging.tiers import TIERS

NAME = "reprocess"
HELP = "reprocess groups (by key or time range), optionally from a given stage, and wait for them"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("groups", nargs="*", help="group keys, e.g. 2025-10-02T10:02:45")
    parser.add_argument("--start", help="reprocess every group with a timestamp at or after this (ISO UTC)")
    parser.add_argument("--end", help="... and at or before this (ISO UTC)")
    parser.add_argument("--from-stage", default=None, help="first stage to run (default: the first)")
    parser.add_argument("--tier", default=None, choices=sorted(TIERS),
                        help="imaging tier of these runs, e.g. after an image failed its QA (default: "
                             "settings.imaging.tier)")
    parser.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="wait up to SECONDS for the groups to finish and report their states")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.api import reprocess
    from contimg.errors import ConfigError

    if args.groups and (args.start or args.end):
        raise ConfigError("give group keys or --start/--end, not both")
    if args.groups:
        handles = reprocess(args.groups, from_stage=args.from_stage, tier=args.tier, settings=settings)
    elif args.start or args.end:
        handles = reprocess(start=args.start, end=args.end, from_stage=args.from_stage, tier=args.tier,
                            settings=settings)
    else:
        raise ConfigError("nothing to reprocess: give group keys or --start/--end")
    for h in handles:
        print(f"{h.group_key}: enqueued (run {h.token})")
    if args.wait is None:
        return 0
    bad = 0
    for h in handles:
        final = h.wait(timeout=args.wait)
        print(f"{h.group_key}: {final}" + (f" ({h.error})" if h.error else ""))
        bad += final != "completed"
    return 1 if bad else 0
