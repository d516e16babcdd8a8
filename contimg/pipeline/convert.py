"""The conversion stage for one group, by key: plan, write each subband's part, combine.

Each function re-reads what it needs from the database, checks that its run is
still the group's current one (:func:`contimg.db.groups.check_current`)
and calls the conversion library. All of them are idempotent: the parts are
written atomically under fixed names, and the Measurement Set row is keyed by
its path.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import MeasurementSet
from contimg.errors import InputFileError

if TYPE_CHECKING:
    from contimg.conversion.plan import ConversionPlan

log = logging.getLogger(__name__)

STAGE = "convert"


def ms_path(settings: Settings, group_key: str) -> Path:
    """Where the group's Measurement Set is written (``<ms>/<YYYY-MM-DDTHHMMSS>.ms``)."""
    return settings.paths.ms / f"{group_key.replace(':', '')}.ms"


def group_files(settings: Settings, group_key: str) -> list[str]:
    """The group's registered subband files, by subband."""

    return run_transaction(settings, lambda s: groups.subband_paths(s, group_key), readonly=True)


def plan(settings: Settings, group_key: str, token: str, *, node: str | None = None) -> dict[str, Any]:
    """Start the stage and plan the conversion (on ``node``, if it has room for the group's parts).

    Parameters
    ----------
    settings
        The pipeline settings (database, staging path, ``conversion.staging_margin``).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; the stage starts only if it is the group's current run.
    node
        The node that will write the parts: its staging must hold the files' bytes times
        ``conversion.staging_margin``. None skips the check (the serial path).

    Returns
    -------
    dict
        ``{"plan": ConversionPlan.to_dict(), "files": [path, ...]}``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        If a file is missing, unreadable or inconsistent (names the file).
    contimg.cluster.nodes.NodeFullError
        If ``node``'s staging cannot hold the group's parts (transient: another node should take it).
    """
    from contimg.cluster.nodes import check_room, group_staging_bytes
    from contimg.conversion.plan import plan_group

    groups.stage_started(settings, group_key, token, STAGE)
    files = group_files(settings, group_key)
    if not files:
        raise InputFileError(f"group {group_key}: no subband files registered")
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise InputFileError(f"group {group_key}: registered file(s) no longer exist: {', '.join(missing)}")
    if node is not None:
        need = group_staging_bytes(files, margin=settings.conversion.staging_margin)
        check_room(settings.paths.staging, need, node=node, group_key=group_key)
    conversion_plan = plan_group(files, group_id=group_key)
    log.info("group %s: planned conversion of %d subband(s)", group_key, len(files))
    groups.stage_paused(settings, group_key, token, STAGE)  # until a part is written, its queue is wait
    return {"plan": conversion_plan.to_dict(), "files": files}


def write_part(settings: Settings, group_key: str, token: str, plan_dict: dict[str, Any], subband_file: str) -> str:
    """Write one subband's part into the staging directory; returns its path.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``paths.staging``, created if missing).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; checked (and the heart beaten) before writing; the first part ends the stage's pause.
    plan_dict
        The group's plan, ``plan(...)["plan"]``.
    subband_file
        One of the plan's UVH5 files.

    Returns
    -------
    str
        Path of the part, ``<staging>/<group id>/sbNN.part``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        The file is corrupt, changed since planning, or not in the plan.
    StagingFullError
        The staging file system is full (transient).
    """
    from contimg.conversion.subband import write_subband_part

    groups.stage_resumed(settings, group_key, token, STAGE)
    staging = settings.paths.staging
    staging.mkdir(parents=True, exist_ok=True)
    return str(write_subband_part(plan_dict, subband_file, staging))


def combine(settings: Settings, group_key: str, token: str, plan_dict: dict[str, Any],
            part_paths: list[str]) -> dict[str, Any]:
    """Combine the parts into the group's Measurement Set, record it, end the stage.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``paths.ms``).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; checked before combining and again just before the MS is published.
    plan_dict
        The group's plan, ``plan(...)["plan"]``.
    part_paths
        The parts from :func:`write_part` (missing subbands are flagged in the MS).

    Returns
    -------
    dict
        ``{"ms": path, "seconds": stage duration, ...}`` plus the conversion
        result's own summary when it provides ``to_dict()``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run (nothing is published).
    contimg.errors.ValidationError
        The assembled MS failed validation.
    """
    from contimg.conversion import combine_parts
    from contimg.conversion.plan import ConversionPlan

    groups.check_current(settings, group_key, token)
    out_ms = ms_path(settings, group_key)
    out_ms.parent.mkdir(parents=True, exist_ok=True)
    conversion_plan = ConversionPlan.from_dict(plan_dict)
    result = combine_parts(conversion_plan, [Path(p) for p in part_paths], out_ms,
                           before_publish=lambda: groups.check_current(settings, group_key, token))
    summary = _result_summary(result)
    _record_ms(settings, group_key, out_ms, conversion_plan, summary)
    seconds = groups.stage_finished(settings, group_key, token, STAGE)
    log.info("group %s: converted to %s in %.1f s", group_key, out_ms, seconds)
    return {"ms": str(out_ms), "seconds": seconds, **{k: v for k, v in summary.items() if k != "ms"}}


def convert(settings: Settings, group_key: str, token: str, *, processes: int | None = None) -> dict[str, Any]:
    """The whole conversion stage in this process: plan, write the parts, combine (the serial path).

    The cluster runs the same three steps as tasks (the parts as a chord on one node); here the parts
    are written by ``processes`` worker processes (default ``settings.conversion.processes``, 0: one
    per core) into this machine's staging directory.

    Parameters
    ----------
    settings
        The pipeline settings.
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; must stay the group's current run throughout.
    processes
        Parallel part writers (None: ``settings.conversion.processes``; 0: one per core; never more than the
        number of files).

    Returns
    -------
    dict
        As :func:`combine`: ``ms`` (path), ``seconds`` (the stage's duration) and the conversion summary.
    """
    from concurrent.futures import ProcessPoolExecutor

    from contimg.conversion.group import mp_context

    planned = plan(settings, group_key, token)
    files = planned["files"]
    n = processes if processes is not None else getattr(settings.conversion, "processes", 1)
    n = min(len(files), n or (os.cpu_count() or 1))
    parts: list[str] = []
    try:
        if n <= 1:
            for f in files:
                parts.append(write_part(settings, group_key, token, planned["plan"], f))
        else:
            # spawn, not fork, once casatools (its gRPC threads) is loaded: in `contimg run` the
            # second group is converted after the first was calibrated in this process
            with ProcessPoolExecutor(max_workers=n, mp_context=mp_context()) as pool:
                futures = [pool.submit(_write_part_in_child, (settings, group_key, token, planned["plan"], f))
                           for f in files]
                errors = []
                for future in futures:  # every part that was written is removed below, even if one failed
                    try:
                        parts.append(future.result())
                    except Exception as exc:  # noqa: BLE001 - re-raised after the others finished
                        errors.append(exc)
                if errors:
                    raise errors[0]
        return combine(settings, group_key, token, planned["plan"], parts)
    finally:
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)


def _write_part_in_child(args: tuple) -> str:
    from contimg.db.engine import _reset_after_fork

    _reset_after_fork()
    return write_part(*args)


def _result_summary(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        data = result.to_dict()
    elif hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        data = asdict(result)
    else:
        data = {}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def _record_ms(settings: Settings, group_key: str, out_ms: Path, plan: "ConversionPlan", summary: dict[str, Any]) -> None:
    start_mjd, end_mjd = plan.ms.start_mjd, plan.ms.end_mjd
    validation = summary.get("validation") if isinstance(summary.get("validation"), dict) else summary or None

    def _upsert(session: Session) -> None:
        group = groups.find_group(session, group_key)
        row = session.scalar(select(MeasurementSet).where(MeasurementSet.path == str(out_ms)))
        if row is None:
            row = MeasurementSet(path=str(out_ms))
            session.add(row)
        row.group_id = group.id if group is not None else None
        row.start_mjd, row.end_mjd = start_mjd, end_mjd
        row.stage = "converted"
        row.validation = _jsonable(validation)

    run_transaction(settings, _upsert)


def _jsonable(value: Any) -> Any:
    import json

    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))
