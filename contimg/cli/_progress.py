"""Progress bars and spinners for long commands, drawn with ``rich`` on standard error.

They appear only when standard error is a terminal and the command was not asked for ``--json`` (or another
machine-readable output on standard output); otherwise every call is a no-op, so logs and pipes stay clean and
JSON on standard output is never mixed with progress output.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def wanted(*, machine_output: bool = False) -> bool:
    """True if progress should be drawn: standard error is a terminal and the output is for people."""
    return not machine_output and sys.stderr.isatty()


class _Bar:
    """One task of a ``rich`` progress display (or nothing)."""

    def __init__(self, progress: Any | None, task: Any | None):
        self._progress = progress
        self._task = task

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        """Set the bar's position, total or description."""
        if self._progress is None:
            return
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        self._progress.update(self._task, **kw)

    def advance(self, n: float = 1) -> None:
        """Move the bar by ``n``."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def log(self, text: str) -> None:
        """A line above the bar (on standard error); plain ``print`` to standard error without a bar."""
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)


@contextmanager
def bar(description: str, *, total: float | None, enabled: bool, unit: str = "") -> Iterator[_Bar]:
    """A progress bar with count, elapsed and remaining time (a spinner with elapsed time if ``total`` is None).

    Parameters
    ----------
    description
        The text before the bar.
    total
        The count at completion; None for work of unknown length (an elapsed-time spinner).
    enabled
        Draw it (see :func:`wanted`); otherwise the bar's methods do nothing (``log`` prints to stderr).
    unit
        Word after the count, e.g. ``groups``.

    Yields
    ------
    _Bar
        ``update``, ``advance`` and ``log``.
    """
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))


def spinner(description: str, *, enabled: bool):
    """An elapsed-time spinner while ``description`` runs (:func:`bar` without a total)."""
    return bar(description, total=None, enabled=enabled)
