"""Catalogue imports: the records of :mod:`contimg.calibration.catalog` into the ``sources`` table (upserts by name).

Calibrators carry ``is_calibrator = True``; importing sources never clears
the calibrator flag of a source imported as a calibrator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.calibration.catalog import ImportReport, read_calibrator_csv, read_source_csv, truth_rows
from contimg.db.models import Source
from contimg.db.science import upsert_sources

log = logging.getLogger(__name__)

__all__ = ["import_calibrators", "import_sources", "import_truth"]


def _keep_calibrator_flags(session: Session, rows: list[dict[str, Any]]) -> None:
    names = [r["name"] for r in rows if not r["is_calibrator"]]
    flagged: set[str] = set()
    for start in range(0, len(names), 1000):
        chunk = names[start:start + 1000]
        flagged.update(session.scalars(select(Source.name).where(Source.name.in_(chunk), Source.is_calibrator)))
    for r in rows:
        if r["name"] in flagged:
            r["is_calibrator"] = True


def import_calibrators(session: Session, path: str | Path) -> ImportReport:
    """Upsert the calibrators of a CSV file (see :func:`~contimg.calibration.catalog.read_calibrator_csv`)."""
    rows = read_calibrator_csv(path)
    upsert_sources(session, rows)
    log.info("%s: %d calibrators imported", path, len(rows))
    return ImportReport(str(path), len(rows), len(rows))


def import_sources(session: Session, path: str | Path) -> ImportReport:
    """Upsert the sources of a CSV file (see :func:`~contimg.calibration.catalog.read_source_csv`)."""
    rows = read_source_csv(path)
    _keep_calibrator_flags(session, rows)
    upsert_sources(session, rows)
    ncal = sum(r["is_calibrator"] for r in rows)
    log.info("%s: %d sources imported (%d calibrators)", path, len(rows), ncal)
    return ImportReport(str(path), len(rows), ncal)


def import_truth(session: Session, path: str | Path) -> ImportReport:
    """Upsert every source of a simulation (its directory or ``truth.json``; see :func:`~contimg.calibration.catalog.truth_rows`).

    Parameters
    ----------
    session
        An open session; the caller commits.
    path
        The simulation's directory or its ``truth.json``.

    Returns
    -------
    ImportReport
    """
    truth_path, rows = truth_rows(path)
    upsert_sources(session, rows)
    ncal = sum(1 for r in rows if r["is_calibrator"])
    log.info("%s: %d simulated sources imported (%d calibrators)", truth_path, len(rows), ncal)
    return ImportReport(truth_path, len(rows), ncal)
