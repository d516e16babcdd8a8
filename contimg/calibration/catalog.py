"""Catalogue files: calibrators and NVSS-like sources from CSV, and a simulation's truth, as source records.

The records go into the ``sources`` table (:class:`contimg.db.models.Source`)
through :mod:`contimg.pipeline.catalog` (``import_calibrators``,
``import_sources``, ``import_truth``); calibrators carry
``is_calibrator = True``. Imports are upserts by name: re-importing a file
changes nothing, an updated file updates the rows. Nothing here touches the
database.

Calibrator CSV (``contimg catalog import-calibrators FILE``)::

    name,ra_deg,dec_deg,flux_jy,spectral_index,quality
    3C286,202.784533,30.509155,14.9,-0.46,P

``name``, ``ra_deg``, ``dec_deg`` (ICRS, degrees) and ``flux_jy`` (1.4 GHz)
are required; a calibrator with an empty or non-positive flux is refused with
an error naming the file and line (a default flux would silently set the
flux scale). ``spectral_index`` (S ~ nu^alpha; empty: flat, with a warning)
and ``quality`` (free form) are optional.

Source CSV (``contimg catalog import-sources FILE``), NVSS-like::

    name,ra_deg,dec_deg,flux_jy,flux_err_jy,resolved,confused,spectral_index

``name``, ``ra_deg``, ``dec_deg`` are required; the rest optional (flags are
0/1/true/false). A ``calibrator`` column, as in the simulator's
``sources.csv``, marks calibrators. Importing sources never clears the
calibrator flag of a source imported as a calibrator.

Accepted aliases: ``id`` for ``name``, ``ra``/``dec`` for the positions,
``flux_1400_jy`` for ``flux_jy``, ``e_flux_jy`` for ``flux_err_jy``,
``alpha`` for ``spectral_index``. A flux column whose name carries no unit
(``flux``, ``s1400``, ``flux_err``) is refused unless its unit is given
(``flux_unit``, ``contimg catalog ... --flux-unit mJy``): a guess would read
mJy as Jy.

Published catalogues (NVSS, FIRST, VLASS, the VLA calibrator list) are read
by :mod:`contimg.calibration.catalogues`.

Simulator truth (``contimg catalog import-truth DIR``): every simulated
source is imported under the name :func:`simulated_source_name` (``SIM-000042``),
the simulator's calibrator as a calibrator.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

from contimg.errors import InputFileError

log = logging.getLogger(__name__)

__all__ = ["read_calibrator_csv", "read_source_csv", "simulated_source_name", "truth_rows"]

_ALIASES = {
    "name": ("name", "id", "source", "source_id"),
    "ra_deg": ("ra_deg", "ra"),
    "dec_deg": ("dec_deg", "dec"),
    "flux_jy": ("flux_jy", "flux_1400_jy", "flux", "s1400"),
    "flux_err_jy": ("flux_err_jy", "e_flux_jy", "flux_err"),
    "spectral_index": ("spectral_index", "alpha"),
    "resolved": ("resolved",),
    "confused": ("confused",),
    "quality": ("quality",),
    "calibrator": ("calibrator", "is_calibrator"),
}
_UNITLESS = {"flux", "s1400", "flux_err"}
"""Flux column names that do not say their unit."""
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n", ""}


def simulated_source_name(source_id: int) -> str:
    """Database name of simulated source ``source_id`` (``SIM-000042``)."""
    return f"SIM-{int(source_id):06d}"


def _columns(path: Path, fieldnames: Sequence[str] | None, required: tuple[str, ...]) -> dict[str, str]:
    present = {f.strip().lower(): f for f in (fieldnames or [])}
    mapping: dict[str, str] = {}
    for canon, names in _ALIASES.items():
        for n in names:
            if n in present:
                mapping[canon] = present[n]
                break
    missing = [c for c in required if c not in mapping]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {missing}; header is {fieldnames}")
    return mapping


@overload
def _float(path: Path, line: int, col: str, text: str | None, *, required: Literal[True]) -> float: ...
@overload
def _float(path: Path, line: int, col: str, text: str | None, *, required: bool) -> float | None: ...
def _float(path: Path, line: int, col: str, text: str | None, *, required: bool) -> float | None:
    text = (text or "").strip()
    if not text or text.lower() in ("nan", "none", "null"):
        if required:
            raise InputFileError(f"{path}, line {line}: {col} is empty")
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise InputFileError(f"{path}, line {line}: {col}={text!r} is not a number") from exc
    if not math.isfinite(value):
        raise InputFileError(f"{path}, line {line}: {col}={text!r} is not finite")
    return value


def _flag(path: Path, line: int, col: str, text: str | None) -> bool:
    t = (text or "").strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise InputFileError(f"{path}, line {line}: {col}={text!r} is not a flag (0/1/true/false)")


def _position(path: Path, line: int, ra: float, dec: float) -> None:
    if not (0.0 <= ra < 360.0) or not (-90.0 <= dec <= 90.0):
        raise InputFileError(f"{path}, line {line}: position ra={ra}, dec={dec} deg is out of range")


def _flux_scale(path: Path, cols: dict[str, str], flux_unit: str | None) -> float:
    """Jy per unit of the flux columns: 1 for ``*_jy`` names, ``flux_unit`` for unitless names (refused without)."""
    unitless = [cols[c] for c in ("flux_jy", "flux_err_jy") if c in cols and cols[c].strip().lower() in _UNITLESS]
    if not unitless:
        if flux_unit is not None and ("flux_jy" in cols or "flux_err_jy" in cols):
            from contimg.calibration.catalogues import _jy_per

            if _jy_per(flux_unit) != 1.0:
                raise InputFileError(f"{path}: the flux columns are in Jy by name, not the {flux_unit} given")
        return 1.0
    if flux_unit is None:
        raise InputFileError(f"{path}: the flux column {unitless[0]!r} has no unit; give it with --flux-unit "
                             "(e.g. --flux-unit mJy) or name the column flux_jy")
    from contimg.calibration.catalogues import _jy_per

    try:
        return _jy_per(flux_unit)
    except ValueError as exc:
        raise InputFileError(f"{path}: {flux_unit!r} is not a flux unit") from exc


def _read(path: Path, required: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(row for row in fh if not row.lstrip().startswith("#"))
            cols = _columns(path, reader.fieldnames, required)
            rows = [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read catalogue: {exc}") from exc
    except csv.Error as exc:
        raise InputFileError(f"{path}: not a valid CSV file: {exc}") from exc
    return cols, rows


def _unique_name(path: Path, line: int, row: dict, cols: dict, seen: dict[str, int], kind: str) -> str:
    """The row's name; an empty or repeated name raises, naming file, line and ``kind``."""
    name = (row[cols["name"]] or "").strip()
    if not name:
        raise InputFileError(f"{path}, line {line}: {kind} without a name")
    if name in seen:
        raise InputFileError(f"{path}, line {line}: {kind} {name} already on line {seen[name]}")
    seen[name] = line
    return name


def _ra_dec(path: Path, line: int, row: dict, cols: dict) -> tuple[float, float]:
    """The row's required, range-checked position in degrees."""
    ra = _float(path, line, "ra_deg", row[cols["ra_deg"]], required=True)
    dec = _float(path, line, "dec_deg", row[cols["dec_deg"]], required=True)
    _position(path, line, ra, dec)
    return ra, dec


def read_calibrator_csv(path: str | Path, *, flux_unit: str | None = None) -> list[dict[str, Any]]:
    """Calibrator rows (Source columns) from a CSV file; see the module docstring.

    ``flux_unit`` is the unit of a flux column whose name carries none.

    Raises
    ------
    InputFileError
        Naming the file and line of a missing or bad value, in particular a
        calibrator without a (positive) flux.
    """
    path = Path(path)
    cols, rows = _read(path, ("name", "ra_deg", "dec_deg", "flux_jy"))
    scale = _flux_scale(path, cols, flux_unit)
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        name = _unique_name(path, line, row, cols, seen, "calibrator")
        flux = _float(path, line, f"flux_jy of calibrator {name}", row.get(cols["flux_jy"]), required=True) * scale
        if flux <= 0:
            raise InputFileError(f"{path}, line {line}: calibrator {name} has flux {flux} Jy; it must be positive")
        ra, dec = _ra_dec(path, line, row, cols)
        alpha = _float(path, line, "spectral_index", row.get(cols.get("spectral_index", ""), ""), required=False)
        if alpha is None:
            log.warning("%s, line %d: calibrator %s has no spectral index; it is modelled flat", path, line, name)
        out.append({
            "name": name, "ra_deg": ra, "dec_deg": dec, "flux_jy": flux, "spectral_index": alpha,
            "quality": (row.get(cols.get("quality", ""), "") or "").strip() or None, "is_calibrator": True,
        })
    return out


def read_source_csv(path: str | Path, *, flux_unit: str | None = None) -> list[dict[str, Any]]:
    """Source rows (Source columns) from an NVSS-like CSV file; see the module docstring.

    ``flux_unit`` is the unit of a flux column whose name carries none.

    Raises
    ------
    InputFileError
        Naming the file and line of a missing or bad value.
    """
    path = Path(path)
    cols, rows = _read(path, ("name", "ra_deg", "dec_deg"))
    scale = _flux_scale(path, cols, flux_unit)
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        name = _unique_name(path, line, row, cols, seen, "source")
        ra, dec = _ra_dec(path, line, row, cols)
        rec: dict[str, Any] = {"name": name, "ra_deg": ra, "dec_deg": dec}
        for c in ("flux_jy", "flux_err_jy", "spectral_index"):
            rec[c] = _float(path, line, c, row.get(cols[c], ""), required=False) if c in cols else None
            if c != "spectral_index" and rec[c] is not None:
                rec[c] *= scale
        for c in ("resolved", "confused"):
            rec[c] = _flag(path, line, c, row.get(cols[c])) if c in cols else False
        rec["quality"] = None
        if "quality" in cols:
            rec["quality"] = (row.get(cols["quality"]) or "").strip() or None
        rec["is_calibrator"] = False
        if "calibrator" in cols:
            rec["is_calibrator"] = _flag(path, line, "calibrator", row.get(cols["calibrator"]))
        if rec["is_calibrator"] and (rec["flux_jy"] is None or rec["flux_jy"] <= 0):
            raise InputFileError(f"{path}, line {line}: calibrator {name} has no positive flux_jy")
        out.append(rec)
    return out


def truth_rows(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """The catalogue of a simulation (its directory or ``truth.json``) as source records.

    Names are :func:`simulated_source_name`; fluxes are the catalogue's
    1.4 GHz values; the simulator's calibrator becomes a calibrator.

    Parameters
    ----------
    path
        The simulation's directory or its ``truth.json``.

    Returns
    -------
    tuple
        ``(truth_path, rows)``: the truth file read and one ``sources`` record per source.
    """
    from contimg.simulation import load_truth

    truth = load_truth(path)
    cat = truth.catalog
    rows = [{
        "name": simulated_source_name(cat.source_id[k]), "ra_deg": float(cat.ra_deg[k]),
        "dec_deg": float(cat.dec_deg[k]), "flux_jy": float(cat.flux_jy[k]),
        "spectral_index": float(cat.spectral_index[k]), "is_calibrator": bool(cat.calibrator[k]),
        "quality": "simulated",
    } for k in range(cat.Nsrc)]
    return str(truth.path), rows
