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
from typing import Any

NAME = "db"
HELP = "create/upgrade the database schema (upgrade), show its revision (current), verify it (check)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "current", "check"], help="what to do")
    parser.add_argument("--url", help="database URL (default: the configured one)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for the database server to accept connections "
                             "(e.g. a PostgreSQL container that is still starting)")


def run(args: argparse.Namespace, settings) -> int:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from contimg.db import current_revision, head_revision, init_db, safe_url, schema_differences

    target = args.url or settings
    url = safe_url(target)
    head = head_revision()
    _wait_for_server(target, args.wait)
    if args.action == "upgrade":
        before = current_revision(target)
        after = init_db(target)
        report: dict[str, Any] = {"database": url, "before": before, "revision": after, "head": head}
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


def _wait_for_server(target, timeout_s: float) -> None:
    """Return once the database accepts a connection; retry for up to ``timeout_s``."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from contimg.db import get_engine, safe_url
    from contimg.errors import TransientError

    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with get_engine(target).connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0]
            if time.monotonic() >= deadline:
                waited = f" within {timeout_s:.0f} s" if timeout_s > 0 else ""
                raise TransientError(
                    f"database {safe_url(target)} did not accept connections{waited}: {reason}") from exc
            if attempt == 1:
                logging.getLogger(__name__).info("waiting up to %.0f s for database %s: %s",
                                                 timeout_s, safe_url(target), reason)
            time.sleep(1.0)


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
