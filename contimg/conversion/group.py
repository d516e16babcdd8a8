"""Both conversion steps on one node: parts in parallel processes, then the combine."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Sequence

from contimg.conversion.combine import ConversionResult, combine_parts
from contimg.conversion.plan import plan_group
from contimg.conversion.subband import write_subband_part

log = logging.getLogger(__name__)


def mp_context() -> Any:
    """The multiprocessing context for part writers: ``fork`` is fastest, but unsafe once casatools (gRPC threads) is imported."""
    if "casatools" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("fork")


def _write_part(plan_dict: dict, path: str, staging: str) -> str:
    return str(write_subband_part(plan_dict, path, staging))


def convert_group(
    files: Sequence[str | os.PathLike],
    out_ms: str | os.PathLike,
    *,
    staging_dir: str | os.PathLike,
    processes: int = 0,
    group_id: str | None = None,
) -> ConversionResult:
    """Convert a subband group to one Measurement Set on this node.

    Plans the group, writes the subband parts into ``staging_dir`` with
    ``processes`` worker processes (0: one per core), then combines them into
    ``out_ms``. On failure the staging parts are removed and ``out_ms`` is
    left as it was.

    Parameters
    ----------
    files
        The group's UVH5 subband files (1 to 16).
    out_ms
        The Measurement Set to write.
    staging_dir
        Fast scratch space for the parts (``settings.paths.staging``).
    processes
        Parallel part writers (0: ``os.cpu_count()``).
    group_id
        Group name for messages (default: earliest file timestamp).

    Returns
    -------
    ConversionResult
        As from :func:`~contimg.conversion.combine.combine_parts`, with ``timings_s`` also holding ``plan``,
        ``parts`` and ``total`` (s).
    """
    t0 = time.perf_counter()
    plan = plan_group(files, group_id=group_id)
    t_plan = time.perf_counter() - t0
    nproc = min(processes or os.cpu_count() or 1, len(plan.files))
    plan_dict = plan.to_dict()
    parts: list[str] = []
    try:
        if nproc <= 1:
            for sb in plan.subbands:
                parts.append(str(write_subband_part(plan, plan.files[sb], staging_dir)))
        else:
            with ProcessPoolExecutor(max_workers=nproc, mp_context=mp_context()) as pool:
                futures = [pool.submit(_write_part, plan_dict, plan.files[sb], str(staging_dir))
                           for sb in plan.subbands]
                parts = [f.result() for f in futures]
        t_parts = time.perf_counter() - t0 - t_plan
        result = combine_parts(plan, parts, out_ms)
    except BaseException:
        import contextlib

        from contimg.conversion.subband import part_path, remove_part

        for sb in plan.subbands:
            remove_part(part_path(plan, sb, staging_dir))
        with contextlib.suppress(OSError):
            part_path(plan, 0, staging_dir).parent.rmdir()
        raise
    result.timings_s.update(plan=round(t_plan, 3), parts=round(t_parts, 3),
                            total=round(time.perf_counter() - t0, 3))
    log.info("group %s converted to %s in %.1f s (plan %.1f, parts %.1f, combine %.1f)",
             plan.group_id, out_ms, result.timings_s["total"], t_plan, t_parts,
             result.timings_s["total"] - t_plan - t_parts)
    return result
