"""File-system notifications for the incoming directory.

inotify through ``watchdog`` by default; the polling observer for network
filesystems (``settings.ingest.polling``), where inotify sees nothing of writes
made on other hosts. Events only *nominate* files: the producer still checks
completeness and rescans periodically, so a missed event delays a file by at
most one scan period and loses nothing.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import TYPE_CHECKING

from contimg.naming import is_subband_filename

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)


class DirectoryWatcher:
    """Puts the path of every created, modified or moved-in subband file on a queue.

    Parameters
    ----------
    directory
        The directory to watch (not recursive).
    polling
        Use watchdog's polling observer instead of inotify.
    poll_interval_s
        Scan period of the polling observer.
    """

    def __init__(self, directory: Path, *, polling: bool = False, poll_interval_s: float = 2.0):
        self.directory = Path(directory)
        self.polling = polling
        self.poll_interval_s = poll_interval_s
        self.events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler

        events = self.events

        class _Handler(FileSystemEventHandler):
            def _put(self, name: str) -> None:
                if is_subband_filename(name):
                    events.put(Path(name))

            def on_created(self, event):  # noqa: D401 - watchdog API
                if not event.is_directory:
                    self._put(event.src_path)

            def on_modified(self, event):
                if not event.is_directory:
                    self._put(event.src_path)

            def on_closed(self, event):
                if not event.is_directory:
                    self._put(event.src_path)

            def on_moved(self, event):
                if not event.is_directory:
                    self._put(event.dest_path)

        observer: BaseObserver
        if self.polling:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=self.poll_interval_s)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(_Handler(), str(self.directory), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching %s (%s)", self.directory, "polling" if self.polling else "inotify")

    def drain(self, timeout_s: float) -> list[Path]:
        """Wait up to ``timeout_s`` for a first event, then return all queued paths."""
        out: list[Path] = []
        try:
            out.append(self.events.get(timeout=timeout_s))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
