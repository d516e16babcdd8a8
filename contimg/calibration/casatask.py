"""Running a casatasks task with contimg's error handling (:func:`contimg.tools.run_casa_task`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_task"]


def run_task(name: str, ms: Path, **kwargs) -> None:
    """Run a casatasks task; CASA's errors become classified contimg errors naming the MS (:mod:`contimg.tools`)."""
    from contimg.tools import run_casa_task

    run_casa_task(name, ms, **kwargs)
