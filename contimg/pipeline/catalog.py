"""Catalogue imports: the tables of :mod:`contimg.calibration.catalogues` into the ``sources`` table.

A row is written onto an existing source when one has the same name or
lies within ``match_radius_arcsec`` (default 1 arcsec) of it; only the
rest are added. So importing a simulation's ``sources.csv`` and then its
truth, or NVSS twice, updates rows instead of adding duplicates. A source
matched by position keeps its existing name unless ``rename``.

Calibrators carry ``is_calibrator = True``; importing sources never clears
the calibrator flag of a source imported as a calibrator.

Matching is not quadratic: the existing sources in the declination band of
the file are read once and matched on a k-d tree of unit vectors (scipy);
an import into an empty table skips matching. Rows are written in chunks
of 20,000 (multi-row VALUES).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from contimg.calibration.catalog import truth_rows
from contimg.calibration.catalogues import CatalogueTable, read_catalogue
from contimg.db.science import (
    count_sources,
    insert_new_sources,
    source_ids,
    sources_in_dec_band,
    update_sources_by_id,
    write_sources,
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MATCH_RADIUS_ARCSEC", "ImportReport", "import_calibrators", "import_catalogue",
           "import_sources", "import_table", "import_truth", "match_existing"]

DEFAULT_MATCH_RADIUS_ARCSEC = 1.0
_CHUNK = 20000


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows read, how many were added and updated, and how many are calibrators."""

    path: str
    n_rows: int
    n_calibrators: int
    n_added: int = 0
    n_updated: int = 0
    fmt: str = "contimg"

    def summary(self) -> str:
        """One line for people."""
        return (f"{self.path}: {self.n_rows} rows imported ({self.fmt} format): {self.n_added} added, "
                f"{self.n_updated} updated ({self.n_calibrators} calibrators)")


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def match_existing(table: CatalogueTable, existing: list[Any], radius_arcsec: float) -> np.ndarray:
    """For each row of ``table`` the index into ``existing`` it updates, or -1 to add it.

    A row matches the existing source of the same name, else the nearest
    one within ``radius_arcsec``. An existing source is updated by one row
    at most: the name match, else the nearest; other rows are added.

    Parameters
    ----------
    table
        The rows read.
    existing
        ``(id, name, ra_deg, dec_deg, is_calibrator)`` of candidate sources.
    radius_arcsec
        Largest separation of a positional match (0 or less: match by name only).

    Returns
    -------
    numpy.ndarray
        Integer index per row, -1 where nothing matched.
    """
    from scipy.spatial import cKDTree

    n = table.Nrows
    target = np.full(n, -1, dtype=np.int64)
    if not existing or n == 0:
        return target
    by_name = {row[1]: k for k, row in enumerate(existing)}
    names = table.name.tolist()
    named = np.array([by_name.get(nm, -1) for nm in names], dtype=np.int64)
    dist = np.full(n, np.inf)
    if radius_arcsec > 0:
        ex = np.array([(row[2], row[3]) for row in existing], dtype=float)
        tree = cKDTree(_unit_vectors(ex[:, 0], ex[:, 1]))
        chord = 2.0 * math.sin(math.radians(radius_arcsec / 3600.0) / 2.0)
        d, idx = tree.query(_unit_vectors(table.ra_deg, table.dec_deg), k=1, distance_upper_bound=chord)
        near = np.isfinite(d)
        target[near] = idx[near]
        dist[near] = d[near]
    has_name = named >= 0
    target[has_name] = named[has_name]
    dist[has_name] = -1.0  # a name match wins over any positional one
    # one row per existing source: the best (name, then nearest); the others are added
    matched = np.flatnonzero(target >= 0)
    if len(matched):
        order = matched[np.lexsort((dist[matched], target[matched]))]
        first = np.ones(len(order), dtype=bool)
        first[1:] = target[order][1:] != target[order][:-1]
        target[order[~first]] = -1
    return target


def import_table(session: Session, table: CatalogueTable, *,
                 match_radius_arcsec: float = DEFAULT_MATCH_RADIUS_ARCSEC, rename: bool = False) -> ImportReport:
    """Write a catalogue table into ``sources``: update matching sources, add the rest.

    Parameters
    ----------
    session
        An open session; the caller commits.
    table
        The rows (see :func:`contimg.calibration.catalogues.read_catalogue`).
    match_radius_arcsec
        Rows within this distance of an existing source update it (see :func:`match_existing`).
    rename
        A source matched by position takes the file's name (default: it keeps its own).

    Returns
    -------
    ImportReport
    """
    n = table.Nrows
    ncal = int(table.is_calibrator.sum())
    if n == 0:
        return ImportReport(table.path, 0, 0, 0, 0, table.fmt)
    n_existing = count_sources(session)
    if n_existing == 0:
        for chunk in table.chunks(_CHUNK):
            insert_new_sources(session, chunk)
        log.info("%s: %d sources added to an empty catalogue", table.path, n)
        return ImportReport(table.path, n, ncal, n, 0, table.fmt)
    margin = max(match_radius_arcsec, 0.0) / 3600.0
    existing = sources_in_dec_band(session, float(table.dec_deg.min()) - margin,
                                   float(table.dec_deg.max()) + margin)
    target = match_existing(table, existing, match_radius_arcsec)
    upd_idx = np.flatnonzero(target >= 0)
    add_idx = np.flatnonzero(target < 0)
    taken = {row[1] for row in existing}
    for start in range(0, len(upd_idx), 10 * _CHUNK):
        part = upd_idx[start:start + 10 * _CHUNK]
        updates: list[dict[str, Any]] = []
        for rec, k in zip(table.take(part).records(), target[part].tolist()):
            ex_id, ex_name, _, _, ex_cal = existing[k]
            rec["id"] = ex_id
            rec["is_calibrator"] = bool(rec["is_calibrator"] or ex_cal)
            if not rename or (rec["name"] != ex_name and rec["name"] in taken):  # never onto another's name
                rec["name"] = ex_name
            updates.append(rec)
        update_sources_by_id(session, updates, rename=rename)
    # rows added by name may still meet a source of that name outside the band: upserted, counted as updates
    clash = source_ids(session, table.name[add_idx].tolist()) if n_existing > len(existing) else {}
    n_added = 0
    for rows in table.take(add_idx).chunks(_CHUNK):
        if clash:
            _keep_flags(session, [r for r in rows if r["name"] in clash])
            write_sources(session, rows)
        else:
            insert_new_sources(session, rows)
        n_added += sum(1 for r in rows if r["name"] not in clash)
    n_updated = n - n_added
    log.info("%s: %d rows: %d sources added, %d updated", table.path, n, n_added, n_updated)
    return ImportReport(table.path, n, ncal, n_added, n_updated, table.fmt)


def _keep_flags(session: Session, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import select

    from contimg.db.models import Source

    names = [r["name"] for r in rows if not r["is_calibrator"]]
    if not names:
        return
    flagged = set(session.scalars(select(Source.name).where(Source.name.in_(names), Source.is_calibrator)))
    for r in rows:
        if r["name"] in flagged:
            r["is_calibrator"] = True


def import_catalogue(session: Session, path: str | Path, *, fmt: str | None = None, flux_unit: str | None = None,
                     calibrators: bool = False, match_radius_arcsec: float = DEFAULT_MATCH_RADIUS_ARCSEC,
                     rename: bool = False) -> ImportReport:
    """Read a catalogue file (any format of :mod:`contimg.calibration.catalogues`) and import it.

    Parameters
    ----------
    session
        An open session; the caller commits.
    path
        The catalogue file.
    fmt
        Its format (None: detected).
    flux_unit
        Unit of flux columns the file gives none for.
    calibrators
        Import every row as a calibrator.
    match_radius_arcsec
        Rows within this distance of an existing source update it.
    rename
        A source matched by position takes the file's name.

    Returns
    -------
    ImportReport
    """
    table = read_catalogue(path, fmt=fmt, flux_unit=flux_unit, calibrators=calibrators)
    return import_table(session, table, match_radius_arcsec=match_radius_arcsec, rename=rename)


def import_calibrators(session: Session, path: str | Path, **options: Any) -> ImportReport:
    """Import a file of calibrators (see :func:`import_catalogue`; every row is a calibrator).

    Parameters
    ----------
    session
        An open session; the caller commits.
    path
        The catalogue file.
    **options
        ``fmt``, ``flux_unit``, ``match_radius_arcsec``, ``rename`` of :func:`import_catalogue`.

    Returns
    -------
    ImportReport
    """
    return import_catalogue(session, path, calibrators=True, **options)


def import_sources(session: Session, path: str | Path, **options: Any) -> ImportReport:
    """Import a file of sources (see :func:`import_catalogue`).

    Parameters
    ----------
    session
        An open session; the caller commits.
    path
        The catalogue file.
    **options
        ``fmt``, ``flux_unit``, ``match_radius_arcsec``, ``rename`` of :func:`import_catalogue`.

    Returns
    -------
    ImportReport
    """
    return import_catalogue(session, path, **options)


def import_truth(session: Session, path: str | Path, *, match_radius_arcsec: float = DEFAULT_MATCH_RADIUS_ARCSEC,
                 rename: bool = False) -> ImportReport:
    """Import every source of a simulation (its directory or ``truth.json``; see :func:`~contimg.calibration.catalog.truth_rows`).

    Parameters
    ----------
    session
        An open session; the caller commits.
    path
        The simulation's directory or its ``truth.json``.
    match_radius_arcsec
        Sources within this distance of an existing one (e.g. imported
        from the simulation's ``sources.csv``) update it.
    rename
        A source matched by position takes the truth's name (``SIM-000042``).

    Returns
    -------
    ImportReport
    """
    truth_path, rows = truth_rows(path)
    table = CatalogueTable.from_records(truth_path, "truth", rows)
    return import_table(session, table, match_radius_arcsec=match_radius_arcsec, rename=rename)
