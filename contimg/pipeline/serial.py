"""The serial path: process subband files through the stage registry in this process, without Redis or Celery.

``contimg run DIR|FILES`` (:func:`run_serial`) does what the producer and the cluster do, one group
after another:

1. registers the subband files in the database (grouped by timestamp within
   ``ingest.tolerance_s``, as the producer does; a file that is not a complete UVH5 subband file is
   reported with its reason and left out);
2. promotes the groups it registered: no more files will come, so a group with at least
   ``ingest.min_subbands`` subbands runs with what it has and a smaller one fails with the reason;
3. runs each group's stages (:data:`contimg.pipeline.stages.REGISTRY`, each stage's library
   function) under the same run protocol as the cluster (:mod:`contimg.db.groups`: claim, stage
   timings, complete or fail), in time order. A group that finds no valid calibration set yet is
   *deferred*: it runs again after the others (the calibrator's group may come later in the
   directory); if there is still none, it solves on its own data if the calibrator is in its beam
   (as a cluster group does when its wait ends), else it fails with the reason.

A failed group is recorded as failed with its reason (and notified: :mod:`contimg.pipeline.alerts`) and the
rest go on. The database and data
root are the settings' (embedded default: SQLite under the data root), so ``contimg status``,
``contimg reprocess`` and the photometry of the products work as they do after a cluster run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import ObservationGroup, SubbandFile
from contimg.errors import ContimgError, InputFileError
from contimg.pipeline.alerts import fail_group, groups_failed
from contimg.pipeline.stages import REGISTRY, stages_from, stages_until

__all__ = ["GroupOutcome", "SerialReport", "collect_files", "register_files", "run_group", "run_serial"]

log = logging.getLogger(__name__)


@dataclass
class GroupOutcome:
    """What happened to one group."""

    group_key: str
    state: str
    """``completed`` or ``failed``."""
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage run."""
    deferred: int = 0
    """Times the group was put back because no calibration set was valid yet."""
    ms_path: str | None = None
    """The Measurement Set this run wrote (None if it did not run the conversion)."""

    def to_dict(self) -> dict[str, Any]:
        return {"group_key": self.group_key, "state": self.state, "error": self.error, "ms_path": self.ms_path,
                "stages": {k: round(v, 2) for k, v in self.stages.items()}, "n_deferred": self.deferred}


@dataclass
class SerialReport:
    """The result of :func:`run_serial`."""

    registered: list[str] = field(default_factory=list)
    """Paths registered by this run."""
    ignored: dict[str, str] = field(default_factory=dict)
    """Path → why it was left out."""
    groups: list[GroupOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[GroupOutcome]:
        return [g for g in self.groups if g.state != "completed"]

    def to_dict(self) -> dict[str, Any]:
        return {"n_registered": len(self.registered), "ignored": self.ignored,
                "groups": [g.to_dict() for g in self.groups],
                "n_completed": sum(g.state == "completed" for g in self.groups), "n_failed": len(self.failed),
                "seconds": round(self.seconds, 1)}


def collect_files(inputs: Iterable[str | Path]) -> list[Path]:
    """The subband files named by ``inputs``: directories are scanned (``*_sbNN.hdf5`` directly in them).

    Raises
    ------
    InputFileError
        If an input does not exist.
    """
    from contimg.ingest.files import scan_directory

    out: list[Path] = []
    for item in inputs:
        path = Path(item).absolute()
        if path.is_dir():
            out.extend(scan_directory(path))
        elif path.exists():
            out.append(path)
        else:
            raise InputFileError(f"{path}: no such file or directory")
    return sorted(dict.fromkeys(out))


def register_files(settings: Settings, paths: Sequence[Path]) -> tuple[list[str], dict[str, str], list[str]]:
    """Register ``paths`` as the producer does; returns (registered paths, ignored path → reason, group keys).

    The group keys are those of every group holding one of ``paths`` (registered now or earlier).
    """
    from contimg.ingest.files import content_problem

    registered: list[str] = []
    ignored: dict[str, str] = {}
    for path in paths:
        problem = content_problem(path)
        if problem is not None:
            ignored[str(path)] = problem
            log.error("ignoring %s: %s", path, problem)
            continue
        try:
            reg = run_transaction(settings, lambda s: groups.register_file(  # called at once: no late binding
                s, path, tolerance_s=settings.ingest.tolerance_s))
        except InputFileError as exc:
            ignored[str(path)] = str(exc)
            log.error("ignoring %s: %s", path, exc)
            continue
        if reg.outcome is groups.Outcome.CONFLICT:
            ignored[str(path)] = f"group {reg.group_key} already has this subband from another file"
        elif reg.outcome is groups.Outcome.REGISTERED:
            registered.append(str(path))

    wanted = [str(p) for p in paths if str(p) not in ignored]

    def _keys(session) -> list[str]:
        rows = session.execute(select(ObservationGroup.group_key, ObservationGroup.timestamp)
                               .join(SubbandFile, SubbandFile.group_id == ObservationGroup.id)
                               .where(SubbandFile.path.in_(wanted))).all()
        return [k for k, _ in sorted(set(rows), key=lambda r: r[1])]

    keys = run_transaction(settings, _keys, readonly=True) if wanted else []
    return registered, ignored, keys


def run_group(settings: Settings, group_key: str, token: str, *, from_stage: str | None = None,
              progress: Callable[[str, str], None] | None = None,
              fallback_solve: bool = False) -> GroupOutcome:
    """Run one claimed-or-pending group's stages in this process (claim, stages, complete).

    Parameters
    ----------
    settings
        The settings (database, data root, each stage's section).
    group_key, token
        The group and its current run token (``pending``, or ``in_progress`` when resuming a deferred run).
    from_stage
        Start here (default: the group's recorded stage for a pending run, else the first).
    progress
        Called with (group key, stage) before each stage.
    fallback_solve
        Passed to the calibration stage: solve on the group's own data when no set is valid.

    Returns
    -------
    GroupOutcome
        ``completed``, or ``failed`` with the failing stage's reason (the group is failed in the database);
        ``stages`` holds the seconds of each stage run here (stages already finished in this attempt are
        skipped). A pending run that cannot be claimed comes back in its state with an error, untouched.

    Raises
    ------
    contimg.calibration.NoValidCalibration
        No calibration set is valid for the group yet (the run stays ``in_progress``: defer it).
    """
    from contimg.calibration import NoValidCalibration

    def _read(session) -> tuple[str, str | None, set[str]]:
        g = groups.get_group(session, group_key)
        finished = {t.stage for t in g.stage_timings if t.attempt == g.attempt and t.seconds is not None}
        return g.state.value, g.current_stage, finished

    state, current, done = run_transaction(settings, _read, readonly=True)
    if state == "pending" and not groups.claim(settings, group_key, token):
        return GroupOutcome(group_key, state, f"run {token} could not be claimed (not the group's current run)")
    start = from_stage or current
    outcome = GroupOutcome(group_key, "in_progress")
    for name in stages_until(stages_from(start), settings.celery.last_stage):
        if name in done:
            continue
        stage = next(s for s in REGISTRY if s.name == name)
        if progress is not None:
            progress(group_key, name)
        t0 = time.perf_counter()
        try:
            if name == "calibrate":
                result = stage.load()(settings, group_key, token, fallback_solve=fallback_solve)
            else:
                result = stage.load()(settings, group_key, token)
            if isinstance(result, dict) and result.get("ms"):
                outcome.ms_path = str(Path(result["ms"]).absolute())
        except NoValidCalibration:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure of a group is recorded, the others go on
            reason = f"{name}: {type(exc).__name__}: {exc}"
            fail_group(settings, group_key, reason, token=token)
            if not isinstance(exc, ContimgError):
                log.exception("group %s: %s failed", group_key, name)
            outcome.state, outcome.error = "failed", reason
            outcome.stages[name] = time.perf_counter() - t0
            return outcome
        outcome.stages[name] = time.perf_counter() - t0
    groups.complete(settings, group_key, token)
    outcome.state = "completed"
    return outcome


def run_serial(settings: Settings, inputs: Iterable[str | Path], *, from_stage: str | None = None,
               progress: Callable[[str, str], None] | None = None,
               queued: Callable[[list[str]], None] | None = None) -> SerialReport:
    """Register ``inputs`` (files or directories) and process their groups one after another.

    Parameters
    ----------
    settings
        The settings (see the module docstring).
    inputs
        Subband files and directories holding them.
    from_stage
        Run the groups from this stage (default: the first).
    progress
        Called with (group key, stage) before each stage runs.
    queued
        Called once with the keys of the groups about to run (for a progress bar's total).

    Returns
    -------
    SerialReport
        Registered and ignored files, and every group's outcome (completed or failed with its reason).
    """
    from contimg.calibration import NoValidCalibration

    t0 = time.perf_counter()
    report = SerialReport()
    paths = collect_files(inputs)
    report.registered, report.ignored, keys = register_files(settings, paths)
    decisions = run_transaction(settings, lambda s: groups.promote_due_groups(
        s, settings.ingest, only=keys, final=True))
    groups_failed(settings, decisions.failed)
    for key, reason in decisions.failed.items():
        report.groups.append(GroupOutcome(key, "failed", reason))
    queue: list[tuple[groups.Published, int]] = []
    for item in decisions.promoted:
        item = groups.Published(item.group_key, item.token, from_stage or item.from_stage)
        groups.publish(settings, item, lambda *_: None)  # recorded as published: this process runs it
        queue.append((item, 0))
    skipped = sorted(set(keys) - {p.group_key for p, _ in queue} - set(decisions.failed))
    if queued is not None:
        queued([p.group_key for p, _ in queue])
    for key in skipped:
        log.info("group %s is not collecting (already processed or running); use contimg reprocess to redo it", key)
    while queue:
        item, deferred = queue.pop(0)
        last_chance = deferred > 0 and all(d > 0 for _, d in queue)
        try:
            outcome = run_group(settings, item.group_key, item.token, from_stage=item.from_stage if not deferred
                                else None, progress=progress, fallback_solve=last_chance)
        except NoValidCalibration as exc:
            if last_chance:
                reason = f"calibrate: NoValidCalibration: {exc}"
                fail_group(settings, item.group_key, reason, token=item.token)
                report.groups.append(GroupOutcome(item.group_key, "failed", reason, deferred=deferred))
            else:
                log.info("group %s: no valid calibration set yet; deferred until the other groups ran",
                         item.group_key)
                queue.append((item, deferred + 1))
            continue
        outcome.deferred = deferred
        report.groups.append(outcome)
    report.groups.sort(key=lambda g: g.group_key)
    report.seconds = time.perf_counter() - t0
    return report
