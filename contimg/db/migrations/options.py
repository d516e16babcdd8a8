"""Options shared by ``env.py`` and :func:`contimg.db.migrate.schema_differences`."""

from __future__ import annotations

from typing import Any


def migration_context_options(dialect_name: str) -> dict[str, Any]:
    """Alembic ``context.configure`` options for a dialect."""
    return {
        # the default comparisons, plus CHECK constraints compared by name (all are named:
        # see models.NAMING_CONVENTION)
        "autogenerate_plugins": ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname"],
        "compare_type": True,
        "compare_server_default": False,
        "render_as_batch": dialect_name == "sqlite",
    }
