"""Library-side orchestration of a group's run, without Celery.

* :mod:`contimg.pipeline.stages` -- the stages, in order, in one place;
* the group's state lives in the group store, :mod:`contimg.db.groups`
  (publishing, claiming, stage timings, completion and failure: the
  exactly-once protocol);
* :mod:`contimg.pipeline.convert` -- the conversion stage for a group key;
* :mod:`contimg.pipeline.housekeeping` -- stale runs, timeouts, staging clean-up.

The Celery tasks in ``workers/tasks.py`` are thin wrappers over these functions.
"""

from __future__ import annotations

from contimg.pipeline.stages import STAGES, stages_from


def reset_engine() -> None:
    """Forget database engines inherited across a fork (called in each worker child)."""
    from contimg.db.engine import _reset_after_fork

    _reset_after_fork()


__all__ = ["STAGES", "reset_engine", "stages_from"]
