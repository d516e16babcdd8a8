"""Creating and upgrading the schema with the Alembic migrations shipped in the package.

The migrations live in ``contimg/db/migrations``; :func:`alembic_config` builds
the Alembic configuration in code, so neither the CLI nor the workers need an
``alembic.ini`` (one is shipped for developers who run ``alembic`` by hand, see
``contimg/db/alembic.ini``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from contimg.db.engine import database_url, get_engine, safe_url, session_scope
from contimg.errors import PermanentError

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config
    from sqlalchemy import MetaData

    from contimg.config import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(target: str | URL | Settings | None = None) -> Config:
    """An Alembic configuration for the package's migrations (and ``target``'s database)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if target is not None:
        url = database_url(target).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision of the shipped migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError(f"no Alembic revisions in {MIGRATIONS_DIR}")
    return head


def init_db(target: str | URL | Settings) -> str:
    """Create or upgrade the schema to the newest migration; idempotent.

    Safe to call from several processes at once: on SQLite the migration runs
    inside one ``BEGIN IMMEDIATE`` transaction (SQLite DDL is transactional); on
    PostgreSQL it holds a transaction-level advisory lock.

    Parameters
    ----------
    target
        Database URL or settings. For SQLite the parent directory is created.

    Returns
    -------
    str
        The revision the database is at (the head).

    Raises
    ------
    PermanentError
        If the database carries a revision these migrations do not know (it
        was upgraded by a newer contimg).
    sqlalchemy.exc.OperationalError
        If the server cannot be reached (``contimg db upgrade --wait`` retries).
    """
    from alembic import command
    from alembic.util.exc import CommandError

    engine = get_engine(target)
    cfg = alembic_config(target)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except CommandError as exc:  # e.g. a revision written by a newer contimg
        raise PermanentError(f"database {safe_url(engine)}: cannot upgrade the schema: {exc}") from exc
    rev = current_revision(target)
    log.info("database %s at revision %s", safe_url(engine), rev)
    return rev or ""


def current_revision(target: str | URL | Settings) -> str | None:
    """The revision the database is at, or None if it has no schema yet."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(target).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_differences(target: str | URL | Settings, *, metadata: MetaData | None = None) -> list[Any]:
    """Differences between the models and the database's schema (empty when they agree).

    The equivalent of ``alembic check``: run on a database upgraded to head, an
    empty list proves that the migrations create exactly what the models describe
    (tables, columns and their types and nullability, indexes, unique, foreign-key
    and CHECK constraints). ``metadata`` replaces the models' (for tests).
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from contimg.db.migrations.options import migration_context_options
    from contimg.db.models import Base

    with session_scope(target, readonly=True) as session:
        conn = session.connection()
        ctx = MigrationContext.configure(conn, opts=migration_context_options(conn.dialect.name))
        return list(compare_metadata(ctx, Base.metadata if metadata is None else metadata))
