"""The producer: find subband files, register them, enqueue each complete group exactly once.

It runs without Celery: publishing is the ``enqueue`` callable it is given
(``workers.canvas.enqueue_group`` in production, a list's ``append`` in tests).

One pass (:meth:`Producer.step`):

1. files nominated by the watcher or a scan are checked for completeness and
   the complete ones registered (:func:`~contimg.db.groups.register_file`);
2. complete and timed-out ``collecting`` groups are promoted (or failed) in one
   transaction (the exactly-once gate), then published;
3. failed groups whose error names one of their files, when that file has
   changed since it was registered and is now complete, are made pending again
   and published (:meth:`Producer.retry_changed_files`, every
   ``rescan_interval_s``);
4. ``pending`` groups never recorded as published (a crash between commit and
   publish) are published again with their stored run token.

On start-up the incoming directory is scanned, so files that arrived while
the producer was down are found; the scan is repeated every
``rescan_interval_s`` so that a missed notification costs a delay, never a file.
A file that is ignored (a bad name, a subband its group already has) is
reported once per producer process and not tried again by it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from contimg.config import IngestSettings, Settings
from contimg.db import run_transaction
from contimg.errors import InputFileError, TransientError
from contimg.db.states import utcnow
from contimg.ingest.files import StabilityTracker, completeness_problem, scan_directory
from contimg.db.groups import (
    FailedGroup,
    Outcome,
    Registration,
    failed_groups_naming_files,
    known_paths,
    promote_due_groups,
    register_file,
    reopen_failed_group,
)
from contimg.ingest.watch import DirectoryWatcher
from contimg.naming import TIMESTAMP_FORMAT, parse_subband_filename
from contimg.db.groups import Enqueue, publish, publish_unpublished

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one producer pass did."""

    registered: list[Registration] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    republished: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    """Failed groups published again because a file they failed on is now complete."""

    def __bool__(self) -> bool:
        return bool(self.registered or self.enqueued or self.failed or self.republished or self.retried)


class Producer:
    """Watches the incoming directory and enqueues complete groups.

    Parameters
    ----------
    db
        Database target (settings or URL) for :func:`contimg.db.session_scope`; with the settings, a group failed
        for too few subbands is notified (:func:`contimg.pipeline.alerts.groups_failed`).
    incoming
        The incoming directory.
    settings
        The ``ingest`` section of the settings.
    enqueue
        ``enqueue(group_key, run_token, from_stage)``: publishes a group's run.
    rescan_interval_s
        Period of the safety rescan of the incoming directory, and of the
        check for failed groups whose files changed.
    unpublished_grace_s
        A pending group must be unpublished this long before the sweep
        publishes it again.
    """

    def __init__(self, *, db: Any, incoming: Path, settings: IngestSettings, enqueue: Enqueue,
                 rescan_interval_s: float = 30.0, unpublished_grace_s: float = 10.0):
        self.db = db
        self.incoming = Path(incoming).absolute()
        self.settings = settings
        self.enqueue = enqueue
        self.rescan_interval_s = rescan_interval_s
        self.unpublished_grace_s = unpublished_grace_s
        self.tracker = StabilityTracker(settings.stable_s)
        self._known: set[str] = set()
        self._ignored: set[str] = set()
        """Paths ignored (and reported) once by this process: never nominated again."""
        self._last_scan = float("-inf")
        self._last_retry_check = float("-inf")

    # ----------------------------------------------------------------- discovery
    def nominate(self, paths: list[Path]) -> None:
        """Consider ``paths`` (from events or a scan) for registration."""
        for path in paths:
            path = Path(path).absolute()
            key = str(path)
            if key not in self._known and key not in self._ignored and path.parent == self.incoming:
                self.tracker.add(path)

    def _ignore(self, path: Path, level: int, message: str, *args: Any) -> None:
        """Log why ``path`` is ignored, once per process, and stop considering it."""
        key = str(path)
        if key in self._ignored:
            log.debug(message, *args)
            return
        self._ignored.add(key)
        self.tracker.discard(path)
        log.log(level, message, *args)

    def scan(self) -> int:
        """Nominate every unregistered subband file in the incoming directory; returns how many."""
        self._known = run_transaction(self.db, known_paths, readonly=True)
        before = len(self.tracker)
        self.nominate(scan_directory(self.incoming))
        self._last_scan = time.monotonic()
        return len(self.tracker) - before

    # ----------------------------------------------------------------- one pass
    def step(self) -> StepReport:
        """Register complete files, promote due groups, publish them; see the module docstring."""
        report = StepReport()
        if time.monotonic() - self._last_scan >= self.rescan_interval_s:
            self.scan()
        for path in self.tracker.pop_complete():
            try:
                reg = run_transaction(self.db, lambda s: register_file(  # called at once: no late binding
                    s, path, tolerance_s=self.settings.tolerance_s))
            except InputFileError as exc:
                self._ignore(path, logging.ERROR, "ignoring %s: %s", path, exc)
                continue
            except IntegrityError as exc:  # another producer (started by mistake) registered it first
                self._ignore(path, logging.WARNING, "%s was registered concurrently by another process: %s",
                             path, exc.orig)
                continue
            except (TransientError, OSError) as exc:
                log.warning("could not register %s yet (%s); will retry", path, exc)
                self.tracker.add(path)
                continue
            if reg.outcome is Outcome.CONFLICT:  # register_file logged why; not again from this process
                self._ignored.add(str(path))
                continue
            self._known.add(str(path))
            if reg.outcome is not Outcome.DUPLICATE:
                report.registered.append(reg)
        decisions = run_transaction(self.db, lambda s: promote_due_groups(s, self.settings))
        report.failed.update(decisions.failed)
        if decisions.failed and isinstance(self.db, Settings):  # the settings know where to notify
            from contimg.pipeline.alerts import groups_failed

            groups_failed(self.db, decisions.failed)
        for item in decisions.promoted:
            publish(self.db, item, self.enqueue)
            report.enqueued.append(item.group_key)
        self._report_left_behind([p.group_key for p in decisions.promoted] + list(decisions.failed))
        if time.monotonic() - self._last_retry_check >= self.rescan_interval_s:
            report.retried = self.retry_changed_files()
        report.republished = publish_unpublished(self.db, self.enqueue, grace_s=self.unpublished_grace_s)
        return report

    def _report_left_behind(self, group_keys: list[str]) -> None:
        """Name the files that were still incomplete when their group was enqueued (or failed) without them.

        Such a file (truncated, or still being written when the group timed
        out) is not processed with its group; if it becomes complete later and
        its group failed because of it, :meth:`retry_changed_files` retries the
        group.
        """
        if not group_keys:
            return
        stamps = {key: datetime.strptime(key, TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc) for key in group_keys}
        for path, reason in self.tracker.incomplete().items():
            try:
                name = parse_subband_filename(path)
            except InputFileError:
                continue
            for key, ts in stamps.items():
                if abs((name.timestamp - ts).total_seconds()) <= self.settings.tolerance_s:
                    self._ignore_once(path, logging.ERROR, "%s: still incomplete when group %s was enqueued without "
                                      "subband %02d (%s); it is not processed with the group", path, key,
                                      name.subband, reason)

    def _ignore_once(self, path: Path, level: int, message: str, *args: Any) -> None:
        """Log ``message`` once per process for ``path`` (which stays watched)."""
        key = f"left-behind:{path}"
        if key not in self._ignored:
            self._ignored.add(key)
            log.log(level, message, *args)

    # ----------------------------------------------------------------- retrying failed groups
    def retry_changed_files(self) -> list[str]:
        """Publish again failed groups whose files they failed on are now complete; returns their keys.

        Candidates are groups failed within ``ingest.retry_window_s`` whose
        error names one of their files and that have retries left
        (``ingest.max_file_retries``; see
        :func:`~contimg.db.groups.failed_groups_naming_files`). Every
        registered file of a candidate is stat'ed: it *changed* if its size
        differs from ``size_bytes`` or its modification time is later than
        its registration. The group is retried, from the first stage with a
        new run token, when a file named by the error changed and every
        changed file passes the completeness check
        (:func:`~contimg.ingest.files.completeness_problem`: unmodified for
        ``stable_s`` and complete content); the content check runs only for
        changed files.
        """
        self._last_retry_check = time.monotonic()
        since = utcnow() - timedelta(seconds=self.settings.retry_window_s)
        candidates = run_transaction(self.db, lambda s: failed_groups_naming_files(
            s, since=since, max_file_retries=self.settings.max_file_retries), readonly=True)
        retried: list[str] = []
        for group in candidates:
            changed = self._changed_files(group)
            named = sorted(p for p in changed if p in group.named)
            if not named:
                continue
            waiting = {p: r for p in changed if (r := completeness_problem(
                Path(p), stable_s=self.settings.stable_s)) is not None}
            if waiting:
                log.debug("group %s: changed file(s) not complete yet: %s", group.group_key, waiting)
                continue
            item = run_transaction(self.db, lambda s: reopen_failed_group(  # called at once: no late binding
                s, group.group_key, finished_at=group.finished_at, sizes=changed))
            if item is None:
                continue
            before = {f.path: f.size_bytes for f in group.files}
            log.warning("group %s failed on %s, which changed after it was registered (%s) and is now complete: "
                        "retrying the group from %s (run %s)", group.group_key, ", ".join(named),
                        "; ".join(f"{Path(p).name}: {before[p]} -> {changed[p]} bytes" for p in sorted(changed)),
                        item.from_stage, item.token)
            publish(self.db, item, self.enqueue)
            retried.append(item.group_key)
        return retried

    @staticmethod
    def _changed_files(group: FailedGroup) -> dict[str, int]:
        """Current size of each of the group's files that changed since it was registered, by path."""
        changed: dict[str, int] = {}
        for f in group.files:
            try:
                st = os.stat(f.path)
            except OSError:
                continue
            if st.st_size != f.size_bytes or st.st_mtime_ns / 1e9 > f.discovered_at.timestamp():
                changed[f.path] = st.st_size
        return changed

    # ----------------------------------------------------------------- service loop
    def run(self, stop: threading.Event, *, watch: bool = True) -> None:
        """Scan, then watch and step until ``stop`` is set.

        Transient failures (database locked, broker down) are logged and the
        pass is retried on the next tick: nothing is lost because every step
        starts again from the database and the directory.
        """
        self.incoming.mkdir(parents=True, exist_ok=True)
        watcher = None
        if watch:
            watcher = DirectoryWatcher(self.incoming, polling=self.settings.polling,
                                       poll_interval_s=self.settings.poll_interval_s)
            watcher.start()
        log.info("producer started on %s: %d file(s) waiting", self.incoming, self.scan())
        tick = min(self.settings.poll_interval_s, max(self.settings.stable_s / 2, 0.2))
        try:
            while not stop.is_set():
                if watcher is not None:
                    self.nominate(watcher.drain(tick))
                else:
                    stop.wait(tick)
                try:
                    report = self.step()
                except (TransientError, ConnectionError, OSError) as exc:
                    log.warning("producer pass failed, retrying: %s", exc)
                    stop.wait(self.settings.poll_interval_s)
                    continue
                except Exception as exc:  # noqa: BLE001 - broker errors come in many types
                    if _is_connection_error(exc):
                        log.warning("broker unavailable, retrying: %s", exc)
                        stop.wait(self.settings.poll_interval_s)
                        continue
                    raise
                if report:
                    log.info("producer: %d file(s) registered, enqueued %s, failed %s, republished %s, retried %s",
                             len(report.registered), report.enqueued or "-", list(report.failed) or "-",
                             report.republished or "-", report.retried or "-")
        finally:
            if watcher is not None:
                watcher.stop()
            log.info("producer stopped")


def _is_connection_error(exc: BaseException) -> bool:
    """True for broker connection failures (kombu/redis raise their own types)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"OperationalError", "ConnectionError", "TimeoutError", "RedisError"})
