"""Finding subband files and deciding when one is complete.

A file is *complete* when both

1. its size and modification time have not changed for ``stable_s`` seconds of
   our own observation, or its modification time is at least ``stable_s`` old
   (a file found at start-up, or one whose writer paused); and
2. its content passes :func:`content_problem`: it opens read-only as HDF5 with
   HDF5 file locking on (a writer that still holds it open makes the open
   fail), HDF5 accepts it (a file shorter than the end-of-file address stored
   in its superblock, i.e. a truncated or half-copied file, does not open), and
   it is a UVH5 file whose ``Header`` gives ``Nblts``, ``Nfreqs`` and ``Npols``
   and whose ``Data/visdata``, ``Data/flags`` and ``Data/nsamples`` have the
   shape those imply.

The content check reads headers and dataset shapes only, never the
visibilities. A file that is stable but fails it is checked again after
another ``stable_s``; so a copy that pauses for longer than ``stable_s``
halfway is not registered until the rest has arrived. Writers that write under
a temporary name and rename into place are honoured because temporary names do
not match the subband file name pattern.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contimg.naming import is_subband_filename

log = logging.getLogger(__name__)

HEADER_DIMENSIONS: tuple[str, ...] = ("Nblts", "Nfreqs", "Npols")
"""UVH5 ``Header`` items that fix the shape of the ``Data`` datasets."""

DATA_DATASETS: tuple[str, ...] = ("visdata", "flags", "nsamples")
"""UVH5 ``Data`` datasets whose shape the content check verifies."""


def scan_directory(directory: Path) -> list[Path]:
    """Every subband file (``*_sbNN.hdf5``) directly in ``directory``, sorted by name."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(Path(e.path) for e in entries if e.is_file() and is_subband_filename(e.name))


def _open_readonly(path: Path):
    """``h5py.File(path, "r")`` with HDF5 file locking on where the filesystem supports locks.

    ``best-effort`` locking takes the lock (and fails while a writer holds
    it) but, unlike plain ``True``, does not refuse every file on a filesystem
    without lock support (some NFS mounts). ``HDF5_USE_FILE_LOCKING=FALSE`` in
    the environment turns locking off whatever is asked here.
    """
    import h5py

    try:
        return h5py.File(path, "r", locking="best-effort")
    except ValueError as exc:  # h5py/HDF5 too old for best-effort locking
        if "locking" not in str(exc):
            raise
        return h5py.File(path, "r", locking=True)


def _header_int(header, name: str) -> int | None:
    """The integer ``Header/<name>`` (a scalar dataset), or None if absent or not an integer."""
    import h5py
    import numpy as np

    item = header.get(name)
    if not isinstance(item, h5py.Dataset):
        return None
    value = np.asarray(item[()]).reshape(-1)
    if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
        return None
    return int(value[0])


def _check_uvh5_layout(fh, size: int) -> str | None:
    """Why the open UVH5 file ``fh`` of ``size`` bytes is not complete, or None."""
    import h5py

    header = fh.get("Header")
    if not isinstance(header, h5py.Group):
        return "no UVH5 Header group"
    dims: dict[str, int] = {}
    for name in HEADER_DIMENSIONS:
        value = _header_int(header, name)
        if value is None:
            return f"UVH5 header has no integer {name!r}"
        dims[name] = value
    nblts, nfreqs, npols = dims["Nblts"], dims["Nfreqs"], dims["Npols"]
    allowed = {(nblts, nfreqs, npols), (nblts, 1, nfreqs, npols)}  # UVH5 >= 1.0; legacy spw axis of length 1
    data = fh.get("Data")
    if not isinstance(data, h5py.Group):
        return "no UVH5 Data group"
    shapes = {}
    for name in DATA_DATASETS:
        dset = data.get(name)
        if not isinstance(dset, h5py.Dataset):
            return f"no Data/{name} dataset"
        if dset.shape not in allowed:
            return (f"Data/{name} has shape {dset.shape}, header implies "
                    f"(Nblts, Nfreqs, Npols) = {(nblts, nfreqs, npols)}")
        shapes[name] = dset.shape
        if dset.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS and dset.size:
            offset = dset.id.get_offset()
            if offset is None:
                return f"Data/{name} has no data written yet"
            end = offset + dset.id.get_storage_size()
            if end > size:
                return f"Data/{name} ends at byte {end} but the file has {size} bytes"
    if len(set(shapes.values())) > 1:
        return f"Data datasets differ in shape: {shapes}"
    return None


def content_problem(path: Path) -> str | None:
    """Why ``path`` is not (yet) a complete UVH5 file, or None if it is.

    Cheap: opens the file read-only (HDF5 file locking on, see
    :func:`_open_readonly`) and reads the header dimensions and the
    ``Data`` datasets' shapes, never the visibilities.

    Parameters
    ----------
    path
        The subband file.

    Returns
    -------
    str or None
        None if the file is complete, else a short reason (for debug logs),
        e.g. ``"held open by a writer (HDF5 file lock)"`` or ``"does not open
        as HDF5: ... truncated file: eof = ..., stored_eof = ..."``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "no such file"
    if size == 0:
        return "empty"
    try:
        fh = _open_readonly(path)
    except BlockingIOError:
        return "held open by a writer (HDF5 file lock)"
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as exc:  # h5py reports a truncated file (stored_eof > eof) as OSError
        return f"does not open as HDF5: {exc}"
    try:
        with fh:
            return _check_uvh5_layout(fh, size)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        return f"unreadable UVH5 header or datasets: {exc}"


def opens_as_hdf5(path: Path) -> bool:
    """True if ``path`` opens read-only as HDF5 with a UVH5 ``Header`` group.

    HDF5 file locking is left on, so a file that a writer still holds open
    does not open here. :func:`content_problem` checks much more.
    """
    import h5py

    try:
        with _open_readonly(Path(path)) as f:
            return isinstance(f.get("Header"), h5py.Group)
    except (OSError, ValueError):
        return False


def completeness_problem(path: Path, *, stable_s: float, wall_clock: Callable[[], float] = time.time) -> str | None:
    """One-shot completeness check: why ``path`` is not complete now, or None.

    For a file seen once (no observation history), stability is judged by
    its modification time: it must be at least ``stable_s`` old. Then
    :func:`content_problem` must pass.

    Parameters
    ----------
    path
        The subband file (UVH5).
    stable_s
        Minimum age of its modification time (s) before its content is checked.
    wall_clock
        Current Unix time (s), compared with the file's mtime (injectable for tests).

    Returns
    -------
    str or None
        Why the file is not complete yet (``"no such file"``, ``"modified 0.3 s ago ..."`` or a
        :func:`content_problem` reason), or None if it is complete.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "no such file"
    age = wall_clock() - st.st_mtime_ns / 1e9
    if age < stable_s:
        return f"modified {max(age, 0.0):.1f} s ago (< stable_s = {stable_s:g} s)"
    return content_problem(path)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float
    """When (monotonic clock) the size and mtime were last seen to change, or the last failed content check."""
    reason: str | None = None
    """Why the last content check failed (logged when it changes)."""


@dataclass
class StabilityTracker:
    """Tracks candidate files until they are complete (see the module docstring).

    Parameters
    ----------
    stable_s
        How long size and mtime must stay unchanged before the content is
        checked; also the wait before checking again a file that failed.
    clock
        Monotonic clock (injectable for tests).
    wall_clock
        Wall clock used to compare with file modification times.
    content_check
        ``content_check(path)`` returns why the file is incomplete, or None
        (default :func:`content_problem`).
    """

    stable_s: float
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    content_check: Callable[[Path], str | None] = content_problem
    _seen: dict[Path, _Seen] = field(default_factory=dict)

    def add(self, path: Path) -> None:
        """Start (or keep) watching ``path``."""
        self._seen.setdefault(Path(path), _Seen(-1, -1, self.clock()))

    def discard(self, path: Path) -> None:
        """Stop watching ``path``."""
        self._seen.pop(Path(path), None)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, path: object) -> bool:
        return Path(path) in self._seen  # type: ignore[arg-type]

    def incomplete(self) -> dict[Path, str]:
        """Watched files whose last content check failed, with the reason."""
        return {p: seen.reason for p, seen in self._seen.items() if seen.reason}

    def reason(self, path: Path) -> str | None:
        """Why the last content check of a watched ``path`` failed (None if it never failed)."""
        seen = self._seen.get(Path(path))
        return seen.reason if seen is not None else None

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
                # unchanged for stable_s before we looked (start-up, or a writer that paused)
                stable = self.wall_clock() - st.st_mtime_ns / 1e9 >= self.stable_s
            else:
                stable = now - seen.since >= self.stable_s
            if not stable:
                continue
            reason = "empty" if st.st_size == 0 else self.content_check(path)
            if reason is None:
                done.append(path)
                continue
            if reason != seen.reason:
                log.debug("%s is stable but not complete: %s", path, reason)
            seen.reason = reason
            seen.since = now  # check again after another stable_s
        for path in done:
            del self._seen[path]
        return done
