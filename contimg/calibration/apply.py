"""Apply K/B/G tables to a Measurement Set with ``applycal``: CORRECTED_DATA.

Interpolation: K and G hold one solution per calibrator transit, so they are
applied with ``nearest`` in time (``linear`` needs bracketing solutions and
would silently clamp); B is ``nearest`` in time and ``linear`` in frequency
(the channel grids are identical, so this is channel-for-channel).
``applymode='calflagstrict'`` flags data whose solution is flagged or missing
instead of passing it through uncalibrated (NOTES). ``calwt=False``: the
conversion's weights already describe the noise in Jy (radiometer equation with
the nominal SEFD), so they are not rescaled by the gains.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contimg.errors import InputFileError

log = logging.getLogger(__name__)

__all__ = ["ApplyResult", "INTERP", "apply_tables"]

INTERP = {"K": "nearest", "B": "nearest,linear", "G": "nearest"}
"""applycal interpolation per table type."""


@dataclass
class ApplyResult:
    """What :func:`apply_tables` did."""

    ms_path: str
    tables: list[str]
    flagged_fraction: float
    """Fraction of cross-correlation visibilities flagged after the apply."""
    seconds: float


def _flagged_fraction(ms_path: Path) -> float:
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as tb:
        sel = tb.query("ANTENNA1 != ANTENNA2", columns="FLAG")
        try:
            n = flagged = 0
            step = 20000
            for r0 in range(0, sel.nrows(), step):
                f = sel.getcol("FLAG", r0, min(step, sel.nrows() - r0))
                n += f.size
                flagged += int(np.count_nonzero(f))
        finally:
            sel.close()
    return flagged / n if n else 1.0


def apply_tables(ms_path: str | Path, tables: list[tuple[str, str]]) -> ApplyResult:
    """Write CORRECTED_DATA = DATA corrected by ``tables`` (``[(type, path), ...]`` in apply order).

    Raises
    ------
    InputFileError
        If a table does not exist.
    ExternalToolError
        If applycal fails.
    """
    from contimg.tools import run_casa_task

    ms_path = Path(ms_path)
    if not tables:
        raise InputFileError(f"{ms_path}: no calibration tables to apply")
    for kind, path in tables:
        if not Path(path).exists():
            raise InputFileError(f"{ms_path}: {kind} table {path} does not exist")
    t0 = time.perf_counter()
    run_casa_task("applycal", ms_path, vis=str(ms_path), gaintable=[p for _, p in tables],
                  interp=[INTERP[k] for k, _ in tables], applymode="calflagstrict", calwt=[False] * len(tables),
                  flagbackup=False)
    frac = _flagged_fraction(ms_path)
    res = ApplyResult(ms_path=str(ms_path), tables=[p for _, p in tables], flagged_fraction=round(frac, 6),
                      seconds=round(time.perf_counter() - t0, 3))
    log.info("%s: applied %s in %.1f s; %.2f%% of cross-correlations flagged", ms_path,
             ", ".join(k for k, _ in tables), res.seconds, 100 * frac)
    return res
