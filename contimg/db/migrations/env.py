"""Alembic environment of contimg.

Used in two ways:

* programmatically by :func:`contimg.db.init_db`, which passes an open
  connection in ``config.attributes["connection"]``;
* by developers running ``alembic -c contimg/db/alembic.ini ...``, with the
  database given by ``-x url=...``, else ``sqlalchemy.url``, else the contimg
  settings (``CONTIMG_DATABASE_URL`` / ``CONTIMG_DATA_ROOT``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

from contimg.db.migrations.options import migration_context_options
from contimg.db.models import Base

config = context.config
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata

# Any 64-bit number unique to contimg: serialises concurrent upgrades on PostgreSQL.
_PG_ADVISORY_LOCK_KEY = 0x636F6E74696D67


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from contimg.config import load_settings

    return load_settings().database


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        **migration_context_options(connection.dialect.name),
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_ADVISORY_LOCK_KEY})
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    url = _url()
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        **migration_context_options(dialect),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from contimg.db.engine import get_engine

    with get_engine(_url()).connect() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
