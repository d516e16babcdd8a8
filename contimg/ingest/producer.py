"""The producer: find subband files, register them, enqueue each complete group exactly once.

It runs without Celery: publishing is the ``enqueue`` callable it is given
(``workers.canvas.enqueue_group`` in production, a list's ``append`` in tests).

One pass (:meth:`Producer.step`):

1. files nominated by the watcher or a scan are checked for completeness and
   the complete ones registered (:func:`~contimg.ingest.registry.register_file`);
2. complete and timed-out ``collecting`` groups are promoted (or failed) in one
   transaction (the exactly-once gate), then published;
3. ``pending`` groups never recorded as published (a crash between commit and
   publish) are published again with their stored run token.

On start-up the incoming directory is scanned, so files that arrived while
the producer was down are found; the scan is repeated every
``rescan_interval_s`` so that a missed notification costs a delay, never a file.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from contimg.config import IngestSettings
from contimg.db import run_transaction
from contimg.errors import InputFileError, TransientError
from contimg.ingest.files import StabilityTracker, scan_directory
from contimg.ingest.registry import Outcome, Registration, known_paths, promote_due_groups, register_file
from contimg.ingest.watch import DirectoryWatcher
from contimg.pipeline.state import Enqueue, publish, publish_unpublished

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one producer pass did."""

    registered: list[Registration] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    republished: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.registered or self.enqueued or self.failed or self.republished)


class Producer:
    """Watches the incoming directory and enqueues complete groups.

    Parameters
    ----------
    db
        Database target (settings or URL) for :func:`contimg.db.session_scope`.
    incoming
        The incoming directory.
    settings
        The ``ingest`` section of the settings.
    enqueue
        ``enqueue(group_key, run_token, from_stage)``: publishes a group's run.
    rescan_interval_s
        Period of the safety rescan of the incoming directory.
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
        self._last_scan = float("-inf")

    # ----------------------------------------------------------------- discovery
    def nominate(self, paths: list[Path]) -> None:
        """Consider ``paths`` (from events or a scan) for registration."""
        for path in paths:
            path = Path(path).absolute()
            if str(path) not in self._known and path.parent == self.incoming:
                self.tracker.add(path)

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
                reg = run_transaction(self.db, lambda s, p=path: register_file(
                    s, p, tolerance_s=self.settings.tolerance_s))
            except InputFileError as exc:
                log.error("ignoring %s: %s", path, exc)
                self._known.add(str(path))
                continue
            except IntegrityError as exc:  # another producer (started by mistake) registered it first
                log.warning("%s was registered concurrently by another process: %s", path, exc.orig)
                self._known.add(str(path))
                continue
            except (TransientError, OSError) as exc:
                log.warning("could not register %s yet (%s); will retry", path, exc)
                self.tracker.add(path)
                continue
            self._known.add(str(path))
            if reg.outcome is not Outcome.DUPLICATE:
                report.registered.append(reg)
        decisions = run_transaction(self.db, lambda s: promote_due_groups(s, self.settings))
        report.failed.update(decisions.failed)
        for item in decisions.promoted:
            publish(self.db, item, self.enqueue)
            report.enqueued.append(item.group_key)
        report.republished = publish_unpublished(self.db, self.enqueue, grace_s=self.unpublished_grace_s)
        return report

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
                    log.info("producer: %d file(s) registered, enqueued %s, failed %s, republished %s",
                             len(report.registered), report.enqueued or "-", list(report.failed) or "-",
                             report.republished or "-")
        finally:
            if watcher is not None:
                watcher.stop()
            log.info("producer stopped")


def _is_connection_error(exc: BaseException) -> bool:
    """True for broker connection failures (kombu/redis raise their own types)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"OperationalError", "ConnectionError", "TimeoutError", "RedisError"})
