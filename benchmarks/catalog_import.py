"""Catalogue import speed: a synthetic NVSS catalogue (VizieR VIII/65 layout) of 1.8 million rows.

Writes ``--rows`` sources (default 1,800,000, NVSS's size) uniformly over the
sky north of Dec -40 deg as VizieR serves NVSS: ``;``-separated text with its
comment header, units line and dashes line, sexagesimal positions, ``S1.4``
in mJy. Then times, in one process:

1. ``read``: :func:`contimg.calibration.catalogues.read_catalogue`;
2. ``import``: :func:`contimg.pipeline.catalog.import_table` into an empty
   ``sources`` table (bulk inserts; no matching on an empty table);
3. ``reimport``: the same table again, every row matched by position/name
   against the 1.8 million stored and updated (the duplicate-matching path).

The database is a fresh SQLite file in a temporary directory, or
``--database-url`` (e.g. PostgreSQL; migrated, and its ``sources`` table is
EMPTIED first, with everything that refers to it). Prints the figures and,
last, one JSON object.

Usage::

    .venv/bin/python benchmarks/catalog_import.py [--rows 1800000] [--database-url URL] [--no-reimport]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_HEADER = """#
#   VizieR Astronomical Server (synthetic copy for contimg's benchmark)
#
#-source=VIII/65/nvss
#-out=RAJ2000,DEJ2000,e_RAJ2000,e_DEJ2000,S1.4,e_S1.4,l_MajAxis,MajAxis,l_MinAxis,MinAxis,f_resFlux
#
##Table	VIII/65/nvss
#Name: VIII/65/nvss
#Title: The NVSS catalog (Condon+ 1998)
RAJ2000;DEJ2000;e_RAJ2000;e_DEJ2000;S1.4;e_S1.4;l_MajAxis;MajAxis;l_MinAxis;MinAxis;f_resFlux
"h:m:s";"d:m:s";s;arcsec;mJy;mJy; ;arcsec; ;arcsec; 
-----------;-----------;-----;----;--------;------;-;-----;-;-----;--
"""


def write_nvss(path: Path, n_rows: int, seed: int) -> None:
    """``n_rows`` synthetic NVSS sources in VizieR's ``;``-separated layout (positions at least ~2" apart)."""
    rng = np.random.default_rng(seed)
    # positions on a jittered grid in (RA, sin Dec): unique to the catalogue's precision
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-40.0)), 1.0, n_rows)))
    ra = rng.uniform(0.0, 360.0, n_rows)
    order = np.argsort(dec)
    ra, dec = ra[order], dec[order]
    flux = (2.5**-1.5 - rng.random(n_rows) * (2.5**-1.5 - 5000.0**-1.5)) ** (-1 / 1.5)  # mJy, N(>S) ~ S^-1.5
    err = 0.45 + 0.03 * flux
    maj = rng.uniform(10, 60, n_rows)
    resolved = rng.random(n_rows) < 0.2
    cs = np.floor(ra / 15.0 * 360000.0).astype(np.int64)  # centiseconds of time
    ds = np.floor(np.abs(dec) * 36000.0).astype(np.int64)  # deciarcseconds
    h, m, s = cs // 360000, (cs // 6000) % 60, cs % 6000
    d, dm, dd = ds // 36000, (ds // 600) % 60, ds % 600
    sign = np.where(dec < 0, "-", "+")
    with path.open("w") as fh:
        fh.write(_HEADER)
        for k in range(n_rows):
            lim = " " if resolved[k] else "<"
            fh.write(f"{h[k]:02d} {m[k]:02d} {s[k] // 100:02d}.{s[k] % 100:02d};{sign[k]}{d[k]:02d} {dm[k]:02d} "
                     f"{dd[k] // 10:02d}.{dd[k] % 10:d}; 0.31; 2.1;{flux[k]:8.1f};{err[k]:6.1f};{lim};"
                     f"{maj[k]:5.1f};{lim};{maj[k] * 0.7:5.1f};  \n")


def _empty_sources(url: str) -> str:
    from sqlalchemy import text

    from contimg.db import get_engine, init_db

    init_db(url)
    engine = get_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text('TRUNCATE "sources" RESTART IDENTITY CASCADE'))
        else:
            conn.execute(text('DELETE FROM "sources"'))
    return engine.dialect.name


def _rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_800_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    p.add_argument("--no-reimport", action="store_true", help="skip the second (all-updates) import")
    args = p.parse_args()

    from sqlalchemy import func, select

    from contimg.calibration.catalogues import read_catalogue
    from contimg.db import dispose_engines, session_scope
    from contimg.db.models import Source
    from contimg.pipeline.catalog import import_table

    out: dict = {"rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="contimg-catimport-") as tmp:
        path = Path(tmp) / "nvss.tsv"
        url = args.database_url or f"sqlite:///{Path(tmp) / 'contimg.sqlite3'}"
        t0 = time.perf_counter()
        write_nvss(path, args.rows, args.seed)
        out["generate_seconds"] = round(time.perf_counter() - t0, 2)
        out["file_mb"] = round(path.stat().st_size / 1e6, 1)
        out["backend"] = _empty_sources(url)
        print(f"wrote {args.rows} NVSS rows ({out['file_mb']} MB) in {out['generate_seconds']} s")

        t0 = time.perf_counter()
        table = read_catalogue(path)
        out["read_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"read: {table.Nrows} rows in {out['read_seconds']} s")

        t0 = time.perf_counter()
        with session_scope(url) as s:
            rep = import_table(s, table)
        out["import_seconds"] = round(time.perf_counter() - t0, 2)
        out["import_added"], out["import_updated"] = rep.n_added, rep.n_updated
        print(f"import into an empty table ({out['backend']}): {rep.n_added} added, {rep.n_updated} updated "
              f"in {out['import_seconds']} s ({args.rows / max(out['import_seconds'], 1e-9):.0f} rows/s)")

        if not args.no_reimport:
            t0 = time.perf_counter()
            with session_scope(url) as s:
                rep = import_table(s, table)
            out["reimport_seconds"] = round(time.perf_counter() - t0, 2)
            out["reimport_added"], out["reimport_updated"] = rep.n_added, rep.n_updated
            print(f"re-import (every row matched and updated): {rep.n_added} added, {rep.n_updated} updated "
                  f"in {out['reimport_seconds']} s")
        with session_scope(url, readonly=True) as s:
            out["sources_in_table"] = int(s.scalar(select(func.count()).select_from(Source)) or 0)
        dispose_engines()
    out["peak_rss_gb"] = _rss_gb()
    out["total_seconds"] = round(out["read_seconds"] + out["import_seconds"] + out.get("reimport_seconds", 0.0), 2)
    print(f"sources in the table: {out['sources_in_table']}; peak RSS {out['peak_rss_gb']} GB")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
