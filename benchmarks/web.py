"""Load times of the web window on a full night and a long light curve.

Builds a database (SQLite by default; ``--database-url`` for PostgreSQL)
holding one night of ``--groups`` (300) completed groups, each with an MS,
its flat-noise and PB-corrected images, stage timings of four stages, and
``--sources`` (300) catalogue sources each measured on ``--epochs`` (1000)
images over earlier nights (``groups`` images in the night, the rest on
earlier ones: 300 000 photometry rows by default), variability statistics
and an ESE candidate, all written with the ORM's bulk inserts. Then starts
``contimg web`` on it (uvicorn in a subprocess, as operators run it) and
times, over HTTP with a fresh connection per request, ``--repeat`` (5) loads
of:

* ``overview``: ``/`` (the night's 300 groups: time line and table);
* ``groups_api``: ``/api/groups?limit=300``;
* ``group``: one group's page;
* ``source``: the page of a source with 1000 epochs;
* ``source_api``: ``/api/sources/{id}`` (its light curve as JSON);
* ``lightcurve_png``: its light curve drawn (1000 points);
* ``candidates``: ``/candidates``.

Prints the median and worst time of each (ms) and the response size; the last
line is one JSON object ``{"benchmark": "web", "pages": {name: {"median_ms",
"max_ms", "bytes"}}, ...}``. Target: every page under 1 s (median) on this
2-core machine.

Usage::

    .venv/bin/python benchmarks/web.py [--groups 300] [--epochs 1000] [--sources 300] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = datetime(2025, 6, 1, 0, 0, 0, tzinfo=timezone.utc)
MJD0 = 60827.0


def build(settings, *, n_groups: int, n_epochs: int, n_sources: int) -> dict:
    """Fill the database; returns the ids the pages are timed on."""
    import numpy as np
    from sqlalchemy import insert, select

    from contimg.db import init_db, session_scope
    from contimg.db.models import (EseCandidate, GroupState, Image, MeasurementSet, ObservationGroup, Photometry,
                                   Source, StageTiming, VariabilityStats)

    init_db(settings)
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    with session_scope(settings) as s:
        s.execute(insert(Source), [{"name": f"SRC-{i:06d}", "ra_deg": 150 + i * 0.01, "dec_deg": 35.0,
                                    "flux_jy": float(rng.uniform(0.01, 1))} for i in range(n_sources)])
        s.execute(insert(ObservationGroup), [
            {"group_key": (T0 + timedelta(seconds=288 * g)).strftime("%Y-%m-%dT%H:%M:%S"),
             "timestamp": T0 + timedelta(seconds=288 * g), "state": GroupState.COMPLETED, "nsubbands": 16,
             "attempt": 1} for g in range(n_groups)])
        groups = s.execute(select(ObservationGroup.id, ObservationGroup.timestamp)
                           .order_by(ObservationGroup.id)).all()
        timings = []
        for gid, ts in groups:
            for k, stage in enumerate(("convert", "calibrate", "image", "photometry")):
                timings.append({"group_id": gid, "stage": stage, "attempt": 1, "started_at": ts + timedelta(seconds=k),
                                "finished_at": ts + timedelta(seconds=k + 1), "seconds": 30.0, "status": "done",
                                "hostname": "node1"})
        s.execute(insert(StageTiming), timings)
        s.execute(insert(MeasurementSet), [{"group_id": gid, "path": f"/data/ms/{gid}.ms", "stage": "imaged",
                                            "start_mjd": MJD0 + i * 288 / 86400} for i, (gid, _) in enumerate(groups)])
        ms_ids = s.scalars(select(MeasurementSet.id).order_by(MeasurementSet.id)).all()
        images = []
        for e in range(n_epochs):  # the last n_groups epochs are tonight's groups' images
            night = e - (n_epochs - n_groups)
            ms_id = ms_ids[night] if night >= 0 else None
            mjd = MJD0 + night * 288 / 86400 if night >= 0 else MJD0 - (n_epochs - n_groups - e) * 0.25
            for pb in (False, True):
                images.append({"path": f"/data/images/{e}{'.pbcor' if pb else ''}.fits", "ms_id": ms_id,
                               "mid_mjd": mjd, "rms_jy": 3e-4, "peak_jy": 1.0, "pb_corrected": pb,
                               "qa_verdict": "pass", "qa": {"reasons": []}, "files": {}})
        s.execute(insert(Image), images)
        pb_images = s.execute(select(Image.id, Image.mid_mjd).where(Image.pb_corrected.is_(True))
                              .order_by(Image.mid_mjd)).all()
        source_ids = s.scalars(select(Source.id).order_by(Source.id)).all()
        for sid in source_ids:
            flux = rng.normal(0.3, 0.003, len(pb_images))
            s.execute(insert(Photometry), [
                {"source_id": sid, "image_id": iid, "epoch_mjd": mjd, "flux_jy": float(f), "flux_err_jy": 0.003,
                 "norm_flux_jy": float(f), "norm_flux_err_jy": 0.003, "upper_limit": False}
                for (iid, mjd), f in zip(pb_images, flux)])
        s.execute(insert(VariabilityStats), [{"source_id": sid, "n_epochs": len(pb_images), "weighted_mean_jy": 0.3,
                                              "chi2_nu": 1.0, "modulation_index": 0.01, "ese_significance": 1.0}
                                             for sid in source_ids])
        s.add(EseCandidate(source_id=source_ids[0], first_detected_mjd=MJD0 - 30, last_detected_mjd=MJD0,
                           score=10.0, significance=6.0,
                           template={"t_center_mjd": MJD0 - 30, "duration_days": 40.0, "depth": 0.3}))
        key = groups[n_groups // 2][1].strftime("%Y-%m-%dT%H:%M:%S")
        rows = len(source_ids) * len(pb_images)
    return {"source_id": source_ids[0], "group": key, "photometry_rows": rows,
            "build_s": round(time.perf_counter() - t, 1)}


def serve(settings_env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "contimg", "web", "--port", str(port)], env=settings_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("contimg web did not start")
            time.sleep(0.2)


def fetch(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        body = resp.read()
    return (time.perf_counter() - t) * 1e3, len(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary data root")
    args = parser.parse_args(argv)
    if args.epochs < args.groups:
        parser.error("--epochs must be at least --groups (tonight's images are epochs too)")

    from contimg.cluster.redis_server import free_port
    from contimg.config import load_settings

    with tempfile.TemporaryDirectory(prefix="contimg-web-bench-") as tmp:
        root = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_")}
        env["CONTIMG_DATA_ROOT"] = str(root)
        if args.database_url:
            env["CONTIMG_DATABASE_URL"] = args.database_url
        settings = load_settings(data_root=root, database_url=args.database_url)
        settings.paths.ensure()
        ids = build(settings, n_groups=args.groups, n_epochs=args.epochs, n_sources=args.sources)
        print(f"database: {args.groups} groups, {args.sources} sources x {args.epochs} epochs = "
              f"{ids['photometry_rows']} photometry rows, built in {ids['build_s']} s "
              f"({'SQLite' if not args.database_url else 'PostgreSQL'})", flush=True)
        port = free_port()
        proc = serve(env, port)
        base = f"http://127.0.0.1:{port}"
        pages = {
            "overview": f"{base}/?night={T0.date()}",
            "groups_api": f"{base}/api/groups?limit={args.groups}",
            "group": f"{base}/groups/{ids['group']}",
            "source": f"{base}/sources/{ids['source_id']}",
            "source_api": f"{base}/api/sources/{ids['source_id']}",
            "lightcurve_png": f"{base}/sources/{ids['source_id']}/lightcurve.png",
            "candidates": f"{base}/candidates",
        }
        out: dict[str, dict] = {}
        try:
            for name, url in pages.items():
                fetch(url)  # warm: templates compiled, first queries planned
                times, size = [], 0
                for _ in range(args.repeat):
                    ms, size = fetch(url)
                    times.append(ms)
                out[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
                             "bytes": size}
                print(f"{name:<16} median {out[name]['median_ms']:8.1f} ms   max {out[name]['max_ms']:8.1f} ms   "
                      f"{size / 1024:8.1f} KiB", flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    worst = max(v["median_ms"] for v in out.values())
    print(json.dumps({"benchmark": "web", "groups": args.groups, "epochs": args.epochs, "sources": args.sources,
                      "photometry_rows": ids["photometry_rows"],
                      "database": "postgresql" if args.database_url else "sqlite", "pages": out,
                      "worst_median_ms": worst, "target_ms": 1000, "load_average": os.getloadavg()[0]}))
    return 0 if worst <= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
