"""The database layer: typed models, engines and sessions, migrations, the group store.

Public entry points::

    from contimg.db import init_db, session_scope, GroupState
    from contimg.db import groups

    init_db(settings)                      # create/upgrade the schema (Alembic), idempotent
    with session_scope(settings) as s:     # one transaction
        reg = groups.register_file(s, path, tolerance_s=60)
    groups.request_reprocess(settings, ["2025-10-02T10:02:45"], from_stage="image")

* :mod:`contimg.db.models` -- the tables (SQLAlchemy 2.0 typed models);
* :mod:`contimg.db.states` -- :class:`GroupState` and the allowed transitions;
* :mod:`contimg.db.engine` -- :func:`get_engine`, :func:`session_scope`, :func:`run_transaction`;
* :mod:`contimg.db.migrate` -- :func:`init_db` and revision helpers;
* :mod:`contimg.db.groups` -- the group store: registration, promotion, the run protocol
  (publish, claim, stage timings, heartbeats, completion, failure, requeue, reprocessing);
* :mod:`contimg.db.products` -- Measurement Sets, calibration tables, images;
* :mod:`contimg.db.science` -- sources, photometry, variability statistics, ESE candidates (bulk).

Importing this package imports SQLAlchemy but not Alembic (loaded by ``init_db``).
"""

from contimg.db.engine import (
    DatabaseBusyError,
    NestedWriteError,
    dispose_engine,
    dispose_engines,
    get_engine,
    reset_after_fork,
    run_transaction,
    safe_url,
    session_scope,
)
from contimg.db.migrate import current_revision, head_revision, init_db, schema_differences
from contimg.db.states import ALLOWED_TRANSITIONS, GroupState, apply_transition, check_transition

__all__ = [
    "DatabaseBusyError",
    "NestedWriteError",
    "ALLOWED_TRANSITIONS",
    "GroupState",
    "apply_transition",
    "check_transition",
    "current_revision",
    "dispose_engine",
    "dispose_engines",
    "get_engine",
    "head_revision",
    "init_db",
    "reset_after_fork",
    "run_transaction",
    "safe_url",
    "schema_differences",
    "session_scope",
]
