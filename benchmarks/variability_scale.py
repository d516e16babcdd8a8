"""Nightly variability scoring at scale: 10 million photometry rows in the database.

Loads ``--sources`` x ``--epochs`` photometry rows (default 50,000 x 200) into
the configured database -- a fresh SQLite file in a temporary directory by
default, or ``--database-url`` (e.g. PostgreSQL; the schema is created with
the project's migrations and the tables are emptied first) -- and times
:func:`contimg.pipeline.nightly.score_sources` on it: every source is new,
so every light curve is read, scored and its statistics written.

The population: white noise of 1-5 % per epoch (by SNR), 10 % of the sources
with red noise (1-5 % rms, 10-100 d), 0.5 % with an ESE (depth 20-50 %,
14-60 d), 5 % of epochs missing at random. Rows are bulk-loaded with
``executemany`` (SQLite) or ``COPY`` (PostgreSQL); load time is reported
separately. Loading and scoring run in separate child processes so that the
reported peak memory is the scoring's own.

Usage::

    .venv/bin/python benchmarks/variability_scale.py [--sources 50000] [--epochs 200] [--database-url URL]

Prints figures and ends with one JSON line: ``rows``, ``seconds`` (scoring),
``peak_rss_gb`` (scoring process), ``load_seconds`` and the details.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T0_MJD = 61000.0


def _population(n_src: int, n_ep: int, seed: int, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """Rows of sources ``lo..hi-1`` (vectorised; deterministic per source block)."""
    from contimg.simulation.lightcurves import ese_shape

    rng = np.random.default_rng([seed, lo])
    n = hi - lo
    days = np.arange(int(n_ep * 1.06) + 1, dtype=float)
    # each source: n_ep epochs drawn from a slightly longer run of days (~5 % missing)
    keep = np.argsort(rng.random((n, days.size)), axis=1)[:, :n_ep]
    keep.sort(axis=1)
    t = T0_MJD + days[keep] + rng.random(n)[:, None]
    flux0 = (0.02**-1.5 - rng.random(n) * (0.02**-1.5 - 2.0**-1.5)) ** (-1 / 1.5)
    factor = np.ones((n, n_ep))
    red = rng.random(n) < 0.10
    amp = np.exp(rng.uniform(np.log(0.01), np.log(0.05), n))
    tau = np.exp(rng.uniform(np.log(10), np.log(100), n))
    x = amp * rng.standard_normal(n)
    dt = np.diff(t, axis=1)
    for k in range(n_ep):
        if k:
            phi = np.exp(-dt[:, k - 1] / tau)
            x = phi * x + amp * np.sqrt(1 - phi**2) * rng.standard_normal(n)
        factor[:, k] = np.where(red, np.exp(x - amp**2 / 2), 1.0)
    ese = rng.random(n) < 0.005
    dur = rng.uniform(14, 60, n)
    ctr = T0_MJD + rng.uniform(dur / 2, n_ep - dur / 2)
    depth = rng.uniform(0.2, 0.5, n)
    prof = 1 + depth[:, None] * ese_shape(t - ctr[:, None], duration_days=dur[:, None], caustic_amplitude=0.3)
    factor = np.where(ese[:, None], factor * prof, factor)
    true = flux0[:, None] * factor
    err = np.hypot(0.001, 0.01 * true)
    flux = true + err * rng.standard_normal(true.shape)
    src = np.repeat(np.arange(lo, hi) + 1, n_ep)
    image = (keep + 1).ravel()
    return src, image, t.ravel(), flux.ravel(), err.ravel(), ese


def load(url: str, n_src: int, n_ep: int, seed: int) -> dict:
    """Create the schema, the sources and images, and bulk-load the photometry."""
    from sqlalchemy import text

    from contimg.db import get_engine, init_db
    from contimg.db.models import Base

    t0 = time.perf_counter()
    init_db(url)
    engine = get_engine(url)
    is_pg = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        names = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if is_pg:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
        else:
            for n in names:
                conn.execute(text(f'DELETE FROM "{n}"'))
    n_days = int(n_ep * 1.06) + 1
    raw = engine.raw_connection()
    n_ese = 0
    ese_sources: list[int] = []
    try:
        cur = raw.cursor()
        if not is_pg:
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("BEGIN")
        sources = [(i + 1, f"SCALE{i + 1:06d}", float(i % 360), 35.0, False, False, False) for i in range(n_src)]
        images = [(d + 1, f"/scale/{d}.fits", T0_MJD + d + 0.5, False) for d in range(n_days)]
        cur.executemany(
            "INSERT INTO sources (id, name, ra_deg, dec_deg, resolved, confused, is_calibrator) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)" if is_pg else
            "INSERT INTO sources (id, name, ra_deg, dec_deg, resolved, confused, is_calibrator) VALUES (?, ?, ?, ?, ?, ?, ?)",
            sources,
        )
        now = "2026-01-01 00:00:00"
        cur.executemany(
            "INSERT INTO images (id, path, mid_mjd, pb_corrected, created_at) VALUES (%s, %s, %s, %s, %s)" if is_pg else
            "INSERT INTO images (id, path, mid_mjd, pb_corrected, created_at) VALUES (?, ?, ?, ?, ?)",
            [(*im, now) for im in images],
        )
        block = 5000
        row_id = 0
        for lo in range(0, n_src, block):
            hi = min(lo + block, n_src)
            src, image, t, flux, err, ese = _population(n_src, n_ep, seed, lo, hi)
            n_ese += int(ese.sum())
            ese_sources.extend((np.flatnonzero(ese) + lo + 1).tolist())
            ids = np.arange(row_id + 1, row_id + src.size + 1)
            row_id += src.size
            if is_pg:
                buf = io.StringIO()
                np.savetxt(buf, np.column_stack([ids, src, image, t, flux, err]),
                           fmt="%d\t%d\t%d\t%.8f\t%.10g\t%.10g\tf")
                buf.seek(0)
                cur.copy_expert(
                    "COPY photometry (id, source_id, image_id, epoch_mjd, flux_jy, flux_err_jy, upper_limit) "
                    "FROM STDIN", buf)
            else:
                cur.executemany(
                    "INSERT INTO photometry (id, source_id, image_id, epoch_mjd, flux_jy, flux_err_jy, upper_limit) "
                    "VALUES (?, ?, ?, ?, ?, ?, 0)",
                    zip(ids.tolist(), src.tolist(), image.tolist(), t.tolist(), flux.tolist(), err.tolist()),
                )
        if is_pg:
            cur.execute("SELECT setval(pg_get_serial_sequence('photometry', 'id'), %s)", (row_id,))
            cur.execute("ANALYZE photometry")
        else:
            cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return {"rows": row_id, "ese_injected": n_ese, "ese_sources": ese_sources,
            "load_seconds": round(time.perf_counter() - t0, 2)}


def score(url: str, threshold: float) -> dict:
    """Run the nightly scoring once; its wall time and this process's peak memory."""
    from contimg.pipeline import nightly
    from contimg.variability.ese import EseSearch, detect_ese
    from contimg.variability.kalman import whitened_products  # noqa: F401  (compile outside the timing)

    rng = np.random.default_rng(0)
    warm_t = np.arange(60.0)
    detect_ese(np.zeros(60, dtype=int), warm_t, 1 + 0.01 * rng.standard_normal(60), np.full(60, 0.01),
               search=EseSearch(prefilter_min_dchi2=0.0))
    t0 = time.perf_counter()
    summary = nightly.score_sources(url, threshold=threshold)
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        "summary": summary.as_dict(),
    }


def _check_candidates(url: str, injected: set[int]) -> dict:
    """Candidates found against the injected events (every injected ESE is >= 20 % deep)."""
    from sqlalchemy import select

    from contimg.db import dispose_engine, session_scope
    from contimg.db.models import EseCandidate

    with session_scope(url, readonly=True) as s:
        found = set(s.scalars(select(EseCandidate.source_id)).all())
    dispose_engine(url)
    return {
        "candidates_true": len(found & injected),
        "candidates_false": len(found - injected),
        "recall": round(len(found & injected) / max(len(injected), 1), 4),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threshold", type=float, default=5.0)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    p.add_argument("--phase", choices=["all", "load", "score"], default="all", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase == "load":
        print(json.dumps(load(args.database_url, args.sources, args.epochs, args.seed)))
        return 0
    if args.phase == "score":
        print(json.dumps(score(args.database_url, args.threshold)))
        return 0
    with tempfile.TemporaryDirectory(prefix="contimg-varscale-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'contimg.sqlite3'}"
        base = [sys.executable, __file__, "--database-url", url, "--sources", str(args.sources),
                "--epochs", str(args.epochs), "--seed", str(args.seed), "--threshold", str(args.threshold)]
        loaded = json.loads(subprocess.run([*base, "--phase", "load"], check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1])
        print(f"loaded {loaded['rows']} rows ({args.sources} sources x {args.epochs} epochs, "
              f"{loaded['ese_injected']} ESEs) in {loaded['load_seconds']} s")
        scored = json.loads(subprocess.run([*base, "--phase", "score"], check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1])
        s = scored["summary"]
        truth = _check_candidates(url, set(loaded["ese_sources"]))
        print(f"scored {s['sources_scored']} sources ({s['rows_read']} rows, {s['examined']} examined for ESEs, "
              f"{s['candidates_created']} candidates) in {scored['seconds']} s, peak RSS {scored['peak_rss_gb']} GB")
        print(f"phases: {s['seconds']}")
        print(f"candidates vs injected ESEs: {truth}")
        out = {
            "rows": loaded["rows"], "seconds": scored["seconds"], "peak_rss_gb": scored["peak_rss_gb"],
            "load_seconds": loaded["load_seconds"], "sources": args.sources, "epochs": args.epochs,
            "backend": url.split(":", 1)[0], "examined": s["examined"], "candidates": s["candidates_created"],
            "ese_injected": loaded["ese_injected"], **truth, "phases": s["seconds"],
            "target": {"seconds": 60, "peak_rss_gb": 4},
        }
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
