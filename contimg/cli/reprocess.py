"""``contimg reprocess``: run finished groups again, by id or time range, optionally from a stage."""

from __future__ import annotations

import argparse
import json
import time

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
                        help="wait up to SECONDS for the groups to finish and report their states (a progress "
                             "bar of groups done on a terminal)")
    parser.add_argument("--json", action="store_true", help="print the runs (and their states) as one JSON document")


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
    if not args.json:
        for h in handles:
            print(f"{h.group_key}: enqueued (run {h.token})")
    if args.wait is not None:
        _wait(handles, args.wait, quiet=args.json)
    doc = reprocess_document(handles, waited=args.wait is not None)
    if args.json:
        print(json.dumps(doc, indent=1))
    return 1 if doc["n_failed"] or doc["n_unfinished"] else 0


def _wait(handles: list, timeout_s: float, *, quiet: bool, poll_s: float = 0.5) -> None:
    """Poll the groups until every one is completed or failed, or ``timeout_s`` passed; a bar of groups done."""
    from contimg.cli._progress import bar, wanted

    deadline = time.monotonic() + timeout_s
    pending = list(handles)
    with bar("waiting for the groups", total=len(handles), enabled=wanted(machine_output=quiet),
             unit="groups") as b:
        while pending:
            for h in list(pending):
                if h.done():
                    pending.remove(h)
                    b.advance()
                    if not quiet:
                        b.log(f"{h.group_key}: {h.state}" + (f" ({h.error})" if h.error else ""))
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
    if not quiet:
        for h in pending:
            print(f"{h.group_key}: still {h.state} after {timeout_s:g} s")


def reprocess_document(handles: list, *, waited: bool) -> dict:
    """The JSON document of ``contimg reprocess``: each group's run and state, and the counts.

    Parameters
    ----------
    handles
        The :class:`contimg.api.GroupHandle` of each run (refreshed by the wait, if any).
    waited
        Whether the command waited for the groups (else their states are those after enqueuing).

    Returns
    -------
    dict
        ``groups`` (``group_key``, ``run``, ``state``, ``error``), ``n_groups``, ``n_completed``, ``n_failed``,
        ``n_unfinished`` (still pending or running; 0 when it did not wait).
    """
    rows = [{"group_key": h.group_key, "run": h.token, "state": h.state or "pending", "error": h.error}
            for h in handles]
    return {
        "groups": rows, "n_groups": len(rows),
        "n_completed": sum(r["state"] == "completed" for r in rows),
        "n_failed": sum(r["state"] == "failed" for r in rows),
        "n_unfinished": sum(r["state"] not in ("completed", "failed") for r in rows) if waited else 0,
    }
