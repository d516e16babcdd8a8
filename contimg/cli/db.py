"""``contimg db upgrade|current|check``: the database schema.

``upgrade``
    create the schema or bring it to the newest migration (idempotent);
``current``
    show the database's revision and the newest one;
``check``
    exit 1 unless the database is at the newest revision and its schema is
    exactly what the models describe (the equivalent of ``alembic check``).

The database is the configured one (``CONTIMG_DATABASE_URL``, default SQLite
under ``CONTIMG_DATA_ROOT``) unless ``--url`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

NAME = "db"
HELP = "create/upgrade the database schema (upgrade), show its revision (current), verify it (check)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "current", "check"], help="what to do")
    parser.add_argument("--url", help="database URL (default: the configured one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace, settings) -> int:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from contimg.db import current_revision, head_revision, init_db, safe_url, schema_differences

    target = args.url or settings
    url = safe_url(target)
    head = head_revision()
    if args.action == "upgrade":
        before = current_revision(target)
        after = init_db(target)
        report = {"database": url, "before": before, "revision": after, "head": head}
        text = (f"database {url}: already at revision {after} (head)" if before == after
                else f"database {url}: upgraded from {before or 'empty'} to {after} (head)")
        return _emit(args, report, text, 0)

    current = current_revision(target)
    if args.action == "current":
        state = "up to date" if current == head else ("no schema: run 'contimg db upgrade'" if current is None
                                                       else "behind: run 'contimg db upgrade'")
        report = {"database": url, "revision": current, "head": head, "up_to_date": current == head}
        return _emit(args, report, f"database {url}: revision {current or 'none'}, head {head} ({state})", 0)

    # check
    problems: list[str] = []
    if current != head:
        problems.append(f"revision {current or 'none'} is not the head {head}: run 'contimg db upgrade'")
    else:
        problems.extend(_describe(d) for d in schema_differences(target))
    report = {"database": url, "revision": current, "head": head, "ok": not problems, "problems": problems}
    if problems:
        text = f"database {url}: schema check FAILED\n  " + "\n  ".join(problems)
        return _emit(args, report, text, 1, stream=sys.stderr)
    return _emit(args, report, f"database {url}: revision {head} (head), schema matches the models", 0)


def _describe(diff) -> str:
    """A readable line for one Alembic autogenerate difference."""
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return "; ".join(_describe(d) for d in diff)
    kind = diff[0]
    rest = ", ".join(str(getattr(x, "name", x)) for x in diff[1:] if x is not None)
    return f"{kind}: {rest}"


def _emit(args: argparse.Namespace, report: dict, text: str, status: int, *, stream=None) -> int:
    if args.json:
        print(json.dumps(report))
    else:
        print(text, file=stream or sys.stdout)
    return status
