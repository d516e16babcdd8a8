"""Helpers shared by the cluster tests (imported as ``cluster_helpers``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from contimg.cluster import EmbeddedCluster
from contimg.db import session_scope
from contimg.db.models import ObservationGroup
from contimg.naming import format_subband_filename, parse_subband_filename

HERE = Path(__file__).resolve().parent

CLUSTER_ENV = {
    "CONTIMG_INGEST__STABLE_S": "0.3",
    "CONTIMG_INGEST__POLL_INTERVAL_S": "0.5",
    "CONTIMG_INGEST__GROUP_TIMEOUT_S": "6",
    "CONTIMG_INGEST__MIN_SUBBANDS": "12",
    "CONTIMG_LOG_LEVEL": "INFO",
}

FAST_RECOVERY = {
    "CONTIMG_INGEST__STALE_IN_PROGRESS_S": "20",
    "CONTIMG_INGEST__SWEEP_INTERVAL_S": "1",
    "CONTIMG_CONVERSION__TIMEOUT_S": "15",
    "CONTIMG_CALIBRATION__TIMEOUT_S": "15",
    "CONTIMG_IMAGING__TIMEOUT_S": "8",
    "CONTIMG_PHOTOMETRY__TIMEOUT_S": "15",
    "CONTIMG_CELERY__PRESENCE_INTERVAL_S": "1",
    "CONTIMG_CELERY__PRESENCE_TTL_S": "4",
}
"""Short liveness settings (presence, sweep, stale threshold, and the step time limits below it) for fault tests."""

CONVERT_ONLY = {"CONTIMG_CELERY__LAST_STAGE": "convert"}
"""Runs end after conversion: the tests of ingest, the run protocol and faults need no calibration or imaging
(``test_end_to_end.py::test_a_night_through_the_whole_chain`` runs the whole chain)."""


def drop_group(incoming: Path, paths: list[Path], start: datetime, *, subbands: set[int] | None = None,
               corrupt: int | None = None, wrong: int | None = None) -> str:
    """Copy a simulated group into ``incoming`` under new names starting at ``start``.

    Each file keeps its jitter relative to the group's first file; files
    appear atomically (hidden name, then rename) as the real writer's do.
    ``corrupt`` truncates that subband's copy to a third (an incomplete file:
    never registered); ``wrong`` writes the next subband's data under that
    subband's name (a complete file that conversion refuses). Returns the group key.
    """
    stamps = {p: parse_subband_filename(p) for p in paths}
    if subbands is not None:
        stamps = {p: s for p, s in stamps.items() if s.subband in subbands}
    t0 = min(s.timestamp for s in stamps.values())
    for path, name in stamps.items():
        new = incoming / format_subband_filename(start + (name.timestamp - t0), name.subband)
        tmp = incoming / f".{new.name}.partial"
        source = path
        if wrong == name.subband:
            source = next(p for p, s in stamps.items() if s.subband == (name.subband + 1) % 16)
        shutil.copyfile(source, tmp)
        if corrupt == name.subband:
            size = tmp.stat().st_size
            with tmp.open("r+b") as f:
                f.truncate(size // 3)
        os.replace(tmp, new)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str, poll_s: float = 0.3):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def groups(settings) -> dict[str, ObservationGroup]:
    """Every group, with its files, timings and MSs loaded."""
    with session_scope(settings, readonly=True) as s:
        rows = s.scalars(select(ObservationGroup).options(
            selectinload(ObservationGroup.stage_timings), selectinload(ObservationGroup.measurement_sets),
            selectinload(ObservationGroup.subband_files))).all()
        return {g.group_key: g for g in rows}


def finished(settings, keys: list[str]) -> dict[str, ObservationGroup] | None:
    """The groups if all of ``keys`` are completed or failed, else None."""
    g = groups(settings)
    if all(k in g and g[k].state.value in ("completed", "failed") for k in keys):
        return g
    return None


def timestamp(day: int, minute: int = 0) -> datetime:
    """Distinct group start times for distinct tests (groups are ~309 s apart)."""
    return datetime(2025, 7, day, 10, 0, 0, tzinfo=timezone.utc) + timedelta(minutes=minute)


def dump_logs(cluster: EmbeddedCluster) -> str:
    return "\n".join(f"===== {p.name}\n{p.log_text()[-4000:]}" for p in cluster.processes)

def wait_finished(cluster: EmbeddedCluster, keys: list[str], *, timeout_s: float = 180) -> dict[str, ObservationGroup]:
    """Wait until every group in ``keys`` is completed or failed; print the processes' logs if not."""
    settings = cluster.settings()
    try:
        return wait_for(lambda: finished(settings, keys), timeout_s=timeout_s, what=f"groups {keys}")
    except BaseException:
        print(dump_logs(cluster))
        raise


def nodes_of_groups(cluster: EmbeddedCluster) -> dict[str, set[str]]:
    """For each group, the nodes that wrote its parts (from the workers' logs)."""
    import re

    pattern = re.compile(r"group (\S+): part \S+ written on node (\S+)")
    out: dict[str, set[str]] = {}
    for proc in cluster.processes:
        for key, node in pattern.findall(proc.log_text()):
            out.setdefault(key, set()).add(node)
    return out


def needs_root() -> None:
    """Skip unless this process can make private mount namespaces (root, unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("nodes with private staging need root and unshare (as in CI)")
