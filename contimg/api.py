"""The Python entry points for operators and notebooks.

>>> from contimg.api import reprocess                          # doctest: +SKIP
>>> handles = reprocess(["2025-10-02T10:02:45"])              # doctest: +SKIP
>>> [h.wait(timeout=600) for h in handles]                    # doctest: +SKIP
['completed']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from contimg.config import Settings, load_settings
from contimg.db import GroupState, groups, run_transaction
from contimg.db.groups import Enqueue, UnknownGroupError
from contimg.errors import PermanentError

log = logging.getLogger(__name__)

__all__ = ["GroupHandle", "ReprocessError", "UnknownGroupError", "configured_publisher", "reprocess"]


class ReprocessError(PermanentError, ValueError):
    """A reprocessing request is malformed (bad time range, nothing selected, both ids and a range)."""


@dataclass
class GroupHandle:
    """A handle on one group's (re)processing run.

    ``token`` is the run token, which is also the Celery id of the run's first
    task (:attr:`async_result`).
    """

    group_key: str
    token: str
    settings: Settings = field(repr=False)
    state: str | None = None
    error: str | None = None

    def refresh(self) -> str:
        """Read the group's state from the database; returns it."""

        def _read(session) -> tuple[str, str | None, str | None]:
            g = groups.get_group(session, self.group_key)
            return g.state.value, g.error_message, g.task_id

        self.state, self.error, current = run_transaction(self.settings, _read, readonly=True)
        if current not in (None, self.token) and self.state in ("pending", "in_progress"):
            log.info("group %s: run %s was superseded by run %s", self.group_key, self.token, current)
        return self.state

    def done(self) -> bool:
        return self.refresh() in (GroupState.COMPLETED.value, GroupState.FAILED.value)

    def wait(self, timeout: float | None = None, *, poll_s: float = 0.5) -> str:
        """Wait until the group is ``completed`` or ``failed``; returns that state.

        Raises
        ------
        TimeoutError
            If it is still running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"group {self.group_key} is still {self.state} after {timeout} s")
            time.sleep(poll_s)
        return self.state  # type: ignore[return-value]

    @property
    def async_result(self) -> Any:
        """The Celery ``AsyncResult`` of the run's first task (read from the settings' result backend)."""
        from celery import Celery

        app = Celery("contimg-client", broker=self.settings.broker_url, backend=self.settings.result_backend_url)
        app.conf.update(result_serializer="json", accept_content=["json"], result_accept_content=["json"])
        return app.AsyncResult(self.token)


def configured_publisher(settings: Settings) -> Enqueue:
    """The publisher named by ``settings.celery.publisher`` (``module:function``), bound to ``settings``.

    The library does not import the Celery application: the publisher is injected, by the caller
    (``reprocess(enqueue=...)``) or by this setting (default ``workers.canvas:enqueue_group``, which
    publishes a run's canvas to ``settings``' broker).

    Raises
    ------
    ConfigError
        If the setting does not name an importable callable.
    """
    import importlib
    from functools import partial

    from contimg.errors import ConfigError

    name = settings.celery.publisher
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"CONTIMG_CELERY__PUBLISHER={name!r} does not name a publisher ({exc})") from exc
    if not callable(fn):
        raise ConfigError(f"CONTIMG_CELERY__PUBLISHER={name!r} is not callable")
    return partial(fn, settings=settings)


def _parse_time(value: str | datetime, what: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ReprocessError(f"{what}={value!r} is not an ISO time such as 2025-10-02T10:00:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def select_groups(settings: Settings, *, start: str | datetime | None, end: str | datetime | None) -> list[str]:
    """Keys of the groups whose timestamp lies in ``[start, end]`` (either may be open).

    Parameters
    ----------
    settings
        The pipeline settings; its database is queried (read-only).
    start, end
        Inclusive bounds: ISO strings (e.g. ``"2025-10-02T10:00:00"``) or datetimes, taken as UTC when naive;
        None leaves that end open.

    Returns
    -------
    list of str
        The matching group keys, oldest first (empty when none match).

    Raises
    ------
    ReprocessError
        A bound that is not an ISO time, or ``start`` after ``end``.
    """
    lo = _parse_time(start, "start") if start is not None else None
    hi = _parse_time(end, "end") if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise ReprocessError(f"empty time range: start {lo.isoformat()} is after end {hi.isoformat()}")

    return run_transaction(settings, lambda s: groups.group_keys_between(s, lo, hi), readonly=True)


def reprocess(
    group_ids: str | Sequence[str] | None = None,
    *,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    from_stage: str | None = None,
    tier: str | None = None,
    settings: Settings | None = None,
    enqueue: Enqueue | None = None,
) -> list[GroupHandle]:
    """Reprocess completed or failed groups, optionally from a given stage.

    Parameters
    ----------
    group_ids
        One group key or a list of them (e.g. ``"2025-10-02T10:02:45"``).
    start, end
        Alternatively, every group whose timestamp lies in this range (ISO
        strings or datetimes, UTC when naive).
    from_stage
        The first stage to run (default: the first stage).
    tier
        Imaging tier of these runs (e.g. ``"deep"``, or ``"quicklook"`` after a diverged image); default:
        ``settings.imaging.tier``.
    settings
        Default: :func:`contimg.config.load_settings`.
    enqueue
        Publisher ``enqueue(group_key, token, from_stage)`` (default: :func:`configured_publisher`, the
        Celery canvas).

    Returns
    -------
    list of GroupHandle
        One per group; ``handle.wait(timeout)`` returns the final state.

    Raises
    ------
    ReprocessError
        Malformed or empty selection.
    UnknownGroupError
        A key that does not exist (nothing is enqueued).
    InvalidTransitionError
        A group that is still collecting, pending or in progress.
    PermanentError
        An unknown stage.
    """
    settings = settings or load_settings()
    if group_ids is not None and (start is not None or end is not None):
        raise ReprocessError("give group ids or a time range, not both")
    if group_ids is None:
        if start is None and end is None:
            raise ReprocessError("nothing selected: give group ids or a time range (start/end)")
        keys = select_groups(settings, start=start, end=end)
        if not keys:
            raise ReprocessError(f"no groups between {start} and {end}")
    else:
        keys = [group_ids] if isinstance(group_ids, str) else list(group_ids)
        if not keys:
            raise ReprocessError("empty list of group ids")
    if enqueue is None:
        enqueue = configured_publisher(settings)
    published = groups.request_reprocess(settings, keys, from_stage=from_stage, tier=tier)
    handles = []
    for item in published:
        groups.publish(settings, item, enqueue)
        handles.append(GroupHandle(item.group_key, item.token, settings))
    return handles
