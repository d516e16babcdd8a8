"""Running a casatasks task with contimg's error handling."""

from __future__ import annotations

import logging
from pathlib import Path

from contimg.errors import ExternalToolError

log = logging.getLogger(__name__)

__all__ = ["run_task"]


def _tasks():
    from contimg import casa_env

    return casa_env.casatasks()


def run_task(name: str, ms: Path, **kwargs) -> None:
    """Run a casatasks task; CASA errors become :class:`ExternalToolError` naming the MS."""
    task = getattr(_tasks(), name)
    log.debug("casatasks.%s(%s)", name, ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
    try:
        result = task(**kwargs)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise ExternalToolError(f"{ms}: casatasks.{name} failed: {exc}") from exc
    if result is False:
        raise ExternalToolError(f"{ms}: casatasks.{name} reported failure (see the CASA log)")
