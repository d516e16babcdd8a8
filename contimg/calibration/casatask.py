"""Running a casatasks task with contimg's error handling (:func:`contimg.tools.run_casa_task`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_task"]


def run_task(name: str, ms: Path, **kwargs) -> None:
    """Run a casatasks task; CASA's errors become classified contimg errors naming the MS (:mod:`contimg.tools`).

    Parameters
    ----------
    name
        The casatasks task (``bandpass``, ``gaincal``, ``applycal``, ``mstransform`` ...).
    ms
        The MS worked on, named in error messages only: pass it to the task itself as ``vis=`` in ``kwargs``.
    kwargs
        The task's arguments.

    Raises
    ------
    contimg.tools.ToolOutOfSpace, contimg.tools.ToolTableLocked
        Transient failures recognised in CASA's message (retried by the cluster).
    contimg.errors.ExternalToolError
        The task raised, or returned False.
    """
    from contimg.tools import run_casa_task

    run_casa_task(name, ms, **kwargs)
