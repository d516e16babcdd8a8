"""Finding subband files and deciding when one is complete.

A file is *complete* when its size and modification time have not changed for
``stable_s`` seconds of our own observation, or when it opens as valid HDF5
while HDF5 file locking is on (a writer that still holds it open makes the open
fail) and it is at least ``stable_s`` old by its modification time. Files
found at start-up whose modification time is older than ``stable_s`` are
therefore complete at once.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from contimg.naming import is_subband_filename

log = logging.getLogger(__name__)


def scan_directory(directory: Path) -> list[Path]:
    """Every subband file (``*_sbNN.hdf5``) directly in ``directory``, sorted by name."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(Path(e.path) for e in entries if e.is_file() and is_subband_filename(e.name))


def opens_as_hdf5(path: Path) -> bool:
    """True if ``path`` opens read-only as HDF5 with a UVH5 ``Header`` group.

    HDF5 file locking is left on, so a file that a writer still holds open
    does not open here.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "Header" in f
    except (OSError, ValueError):
        return False


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class StabilityTracker:
    """Tracks candidate files until they are complete.

    Parameters
    ----------
    stable_s
        How long size and mtime must stay unchanged.
    clock
        Monotonic clock (injectable for tests).
    wall_clock
        Wall clock used to compare with file modification times.
    """

    stable_s: float
    clock: callable = time.monotonic
    wall_clock: callable = time.time
    _seen: dict[Path, _Seen] = field(default_factory=dict)

    def add(self, path: Path) -> None:
        """Start (or keep) watching ``path``."""
        self._seen.setdefault(Path(path), _Seen(-1, -1, self.clock()))

    def discard(self, path: Path) -> None:
        self._seen.pop(Path(path), None)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, path: object) -> bool:
        return Path(path) in self._seen  # type: ignore[arg-type]

    def pop_complete(self) -> list[Path]:
        """Check every watched file; return (and stop watching) the complete ones."""
        done: list[Path] = []
        now = self.clock()
        for path, seen in list(self._seen.items()):
            try:
                st = path.stat()
            except FileNotFoundError:
                log.debug("%s vanished before it was complete", path)
                del self._seen[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
                seen.size, seen.mtime_ns, seen.since = st.st_size, st.st_mtime_ns, now
                age = self.wall_clock() - st.st_mtime_ns / 1e9
                if st.st_size > 0 and age >= self.stable_s and opens_as_hdf5(path):
                    done.append(path)
                continue
            if st.st_size > 0 and now - seen.since >= self.stable_s:
                done.append(path)
        for path in done:
            del self._seen[path]
        return done
