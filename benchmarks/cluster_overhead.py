"""Cluster overhead: one small group through the cluster vs direct library calls in one process.

Both paths convert the same simulated group (8 antennas, 4 channels per
subband by default) after a warm-up group, so that neither pays first-import
costs in the timed run:

* cluster: files moved into the incoming directory of an embedded cluster
  (private redis-server, one worker with ``--concurrency``, the producer with
  ``stable_s=0``, runs ending after conversion: ``celery.last_stage = convert``)
  until the group is ``completed`` in the database -- producer
  detection, publishing, the chord of subband writes, combine, bookkeeping;
* direct: ``plan_group`` + ``write_subband_part`` for each subband + ``combine_parts``
  in this process, serially.

Prints the figures, then one JSON line: ``cluster_s``, ``direct_s``,
``overhead`` (= cluster/direct - 1) and the details.

    .venv/bin/python benchmarks/cluster_overhead.py [--antennas 8] [--channels 4] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contimg.cluster import EmbeddedCluster  # noqa: E402
from contimg.naming import format_subband_filename, parse_subband_filename  # noqa: E402


def _simulate(out: Path, *, antennas: int, channels: int) -> list[list[Path]]:
    from contimg.simulation import SimulationConfig, simulate

    result = simulate(out, SimulationConfig(n_antennas=antennas, channels_per_subband=channels, n_groups=2,
                                            seed=3, n_sources=20))
    return [list(g.paths) for g in result.groups]


def _direct(paths: list[Path], work: Path, name: str) -> float:
    from contimg.conversion import combine_parts, plan_group, write_subband_part

    staging = work / "direct-staging"
    t0 = time.perf_counter()
    plan = plan_group(paths, group_id=name)
    parts = [write_subband_part(plan, p, staging) for p in paths]
    combine_parts(plan, parts, work / f"direct-{name}.ms")
    return time.perf_counter() - t0


def _deliver(paths: list[Path], incoming: Path, shift_days: int) -> str:
    names = {p: parse_subband_filename(p) for p in paths}
    t0 = min(n.timestamp for n in names.values())
    start = t0 + timedelta(days=shift_days)
    for p, n in names.items():
        dest = incoming / format_subband_filename(start + (n.timestamp - t0), n.subband)
        tmp = incoming / f".{dest.name}.partial"
        shutil.copyfile(p, tmp)
        os.replace(tmp, dest)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def _wait_completed(settings, key: str, timeout_s: float = 600.0) -> dict:
    from contimg.cluster.status import collect_status

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for g in collect_status(settings, latest=20)["groups"]:
            if g["group"] == key and g["state"] in ("completed", "failed"):
                return g
        time.sleep(0.05)
    raise TimeoutError(f"group {key} did not finish within {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--antennas", type=int, default=8)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="contimg-bench-") as tmp:
        work = Path(tmp)
        warm, timed = _simulate(work / "sim", antennas=args.antennas, channels=args.channels)

        _direct(warm, work, "warmup")
        direct_s = _direct(timed, work, "timed")
        print(f"direct (one process, serial): {direct_s:.2f} s")

        env = {"CONTIMG_INGEST__STABLE_S": "0", "CONTIMG_INGEST__POLL_INTERVAL_S": "0.2",
               "CONTIMG_STAGING_DIR": str(work / "cluster-staging"), "CONTIMG_LOG_LEVEL": "WARNING",
               "CONTIMG_CELERY__LAST_STAGE": "convert"}
        with EmbeddedCluster(work / "cluster", env=env) as cluster:
            cluster.start_worker(concurrency=args.concurrency)
            cluster.start_producer()
            settings = cluster.settings()
            key = _deliver(warm, settings.paths.incoming, 1)
            _wait_completed(settings, key)
            t0 = time.perf_counter()
            key = _deliver(timed, settings.paths.incoming, 2)
            g = _wait_completed(settings, key)
            cluster_s = time.perf_counter() - t0
        if g["state"] != "completed":
            print(f"cluster run failed: {g['error']}", file=sys.stderr)
            return 1
        stage_s = g["timings"]["convert"]["seconds"]
        print(f"cluster (files in incoming -> completed in DB, {args.concurrency} worker processes): "
              f"{cluster_s:.2f} s; convert stage as recorded: {stage_s:.2f} s")
        overhead = cluster_s / direct_s - 1
        print(f"overhead: {overhead:+.1%}")
        print(json.dumps({"benchmark": "cluster_overhead", "cluster_s": round(cluster_s, 3),
                          "direct_s": round(direct_s, 3), "overhead": round(overhead, 3),
                          "cluster_stage_s": round(stage_s, 3), "concurrency": args.concurrency,
                          "antennas": args.antennas, "channels_per_subband": args.channels, "subbands": 16}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
