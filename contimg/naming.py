"""DSA-110 subband file names: ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``.

``sb00`` is the highest-frequency subband; a group is the 16 files written for
one ~309 s drift-scan interval, whose timestamps jitter by a few seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from contimg.errors import InputFileError

NSUBBANDS = 16
"""Number of subbands in a complete DSA-110 group."""

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

_NAME_RE = re.compile(
    r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(?P<sb>\d{2})\.hdf5",
    re.ASCII,
)
"""The whole name (used with ``fullmatch``: ``$`` would accept a trailing newline); ASCII digits only."""


@dataclass(frozen=True, slots=True)
class SubbandFileName:
    """The parsed name of one subband file."""

    timestamp: datetime
    """UTC time in the file name (timezone-aware)."""
    subband: int
    """Subband index, 0 (highest frequency) to 15."""

    @property
    def name(self) -> str:
        return format_subband_filename(self.timestamp, self.subband)


def parse_subband_filename(path: str | Path) -> SubbandFileName:
    """Parse a subband file name.

    Parameters
    ----------
    path
        A path or bare file name such as ``2025-10-02T10:02:45_sb03.hdf5``.

    Raises
    ------
    InputFileError
        If the name does not follow the DSA-110 pattern or the subband index is
        out of range; the message names the file.
    """
    name = Path(path).name
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise InputFileError(
            f"{path}: not a DSA-110 subband file name "
            "(expected YYYY-MM-DDTHH:MM:SS_sbNN.hdf5)"
        )
    subband = int(match["sb"])
    if subband >= NSUBBANDS:
        raise InputFileError(
            f"{path}: subband index {subband} is out of range 0..{NSUBBANDS - 1}"
        )
    try:
        ts = datetime.strptime(match["ts"], TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise InputFileError(f"{path}: invalid timestamp in file name: {exc}") from exc
    return SubbandFileName(timestamp=ts, subband=subband)


def is_subband_filename(path: str | Path) -> bool:
    """True if ``path``'s name looks like a subband file (no range checks)."""
    return _NAME_RE.fullmatch(Path(path).name) is not None


def format_subband_filename(timestamp: datetime, subband: int) -> str:
    """The file name DSA-110 writes for ``subband`` of the group at ``timestamp``."""
    if not 0 <= subband < NSUBBANDS:
        raise ValueError(f"subband index {subband} is out of range 0..{NSUBBANDS - 1}")
    if timestamp.tzinfo is not None:
        timestamp = timestamp.astimezone(timezone.utc).replace(tzinfo=None)
    return f"{timestamp.strftime(TIMESTAMP_FORMAT)}_sb{subband:02d}.hdf5"
