"""Tables for export: rows of the commands' JSON documents as an astropy Table with units, written as CSV or
VOTable.

CSV is written as ECSV with commas (``astropy.io.ascii.ecsv``): a plain CSV after ``#`` header lines that
carry the columns' units and types, so ``Table.read(path)`` gives the units back and any CSV reader that
skips ``#`` comments reads the values.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMATS = ("csv", "votable")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format csv|votable`` and ``--output FILE``."""
    parser.add_argument("--format", choices=FORMATS, default=None, dest="export_format",
                        help="write the table to --output as CSV (ECSV: units in its # header) or VOTable")
    parser.add_argument("--output", "-o", metavar="FILE", default=None,
                        help="file the --format table is written to (default: standard output)")


def unit_of(name: str) -> str | None:
    """The unit of a column named by the JSON vocabulary: ``*_jy`` Jy, ``*_mjd`` and ``*_days`` d, ``*_deg`` deg."""
    if name.endswith("_jy"):
        return "Jy"
    if name.endswith(("_mjd", "_days")):
        return "d"
    if name.endswith("_deg"):
        return "deg"
    return None


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, meta: dict[str, Any] | None = None):
    """An astropy Table of ``rows`` (dicts) with the given columns; None values masked, units by :func:`unit_of`.

    Parameters
    ----------
    rows
        The rows, e.g. a command's JSON list.
    columns
        The keys to export, in order.
    meta
        Table metadata (the source's name and position ...), kept by ECSV and VOTable.

    Returns
    -------
    astropy.table.Table
        Columns whose names end ``_mjd`` carry a description saying they are Modified Julian Dates (UTC).
    """
    import numpy as np
    from astropy.table import MaskedColumn, Table

    table = Table(meta=dict(meta or {}))
    for name in columns:
        values = [r.get(name) for r in rows]
        mask = [v is None for v in values]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, str) for v in present):
            data: Any = np.array([v if v is not None else "" for v in values], dtype=str)
        elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
            data = np.array([v if v is not None else 0 for v in values], dtype=np.int64)
        else:
            data = np.array([v if v is not None else np.nan for v in values], dtype=float)
        if not rows:
            data = np.array([], dtype=float)
        desc = "Modified Julian Date (UTC)" if name.endswith("_mjd") else None
        col = MaskedColumn(data, name=name, mask=mask if rows else None, unit=unit_of(name), description=desc)
        table.add_column(col)
    return table


def write_table(table, fmt: str, output: str | None) -> None:
    """Write ``table`` as ``fmt`` (``csv`` or ``votable``) to ``output`` (a path; None: standard output).

    Parameters
    ----------
    table
        An astropy Table.
    fmt
        ``csv`` (ECSV with commas) or ``votable``.
    output
        The file to write (replaced if it exists), or None for standard output.
    """
    import io
    import sys

    astropy_format = {"csv": "ascii.ecsv", "votable": "votable"}[fmt]
    kwargs = {"delimiter": ","} if fmt == "csv" else {}
    if output is None:
        if fmt == "votable":
            buf = io.BytesIO()
            table.write(buf, format=astropy_format)
            sys.stdout.write(buf.getvalue().decode())
        else:
            buf_s = io.StringIO()
            table.write(buf_s, format=astropy_format, **kwargs)
            sys.stdout.write(buf_s.getvalue())
        return
    table.write(Path(output), format=astropy_format, overwrite=True, **kwargs)
