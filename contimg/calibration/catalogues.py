"""Published radio catalogues (NVSS, FIRST, VLASS, the VLA calibrator list) read with astropy tables.

:func:`read_catalogue` reads a file in one of these formats into a
:class:`CatalogueTable` of column arrays, in the units of the ``sources``
table (ICRS degrees, Jy at 1.4 GHz). Nothing here touches the database:
:func:`contimg.pipeline.catalog.import_catalogue` writes the table.

Formats (``fmt``; detected from the extension and the columns when not given):

``nvss``
    VizieR VIII/65 (NVSS): ``RAJ2000``, ``DEJ2000`` (sexagesimal or decimal
    degrees), ``S1.4`` and ``e_S1.4`` (mJy in VizieR's output), optional
    ``NVSS`` (name), ``l_MajAxis``/``MajAxis`` (resolved when the major axis is
    not an upper limit) and ``f_resFlux`` (kept as the quality code).
``first``
    FIRST (VizieR VIII/92 or the survey's own catalogue): ``RA``/``RAJ2000``,
    ``DEC``/``DEJ2000``, ``FINT`` (integrated flux; ``FPEAK`` if absent, mJy),
    ``RMS`` (kept as the flux error), ``MAJ``/``MAJOR`` (deconvolved major axis:
    resolved when > 0), optional ``FIRST`` (name).
``vlass``
    VLASS Epoch 1 Quick Look components (CIRADA): ``Component_name``, ``RA``,
    ``DEC``, ``Total_flux``, ``E_Total_flux`` (mJy), ``DC_Maj`` (resolved when
    > 0), ``Quality_flag`` (quality) and ``Duplicate_flag`` (rows flagged 2,
    the copies in overlapping images, are skipped). VLASS measures at 3 GHz:
    fluxes are scaled to 1.4 GHz with :data:`VLASS_ASSUMED_ALPHA`.
``vla-calibrators``
    The NRAO VLA calibrator list (its fixed text layout); see
    :func:`read_vla_calibrators`.
``contimg``
    contimg's own CSV (:mod:`contimg.calibration.catalog`).

Containers: CSV, VizieR's tab- or ``;``-separated text (with its ``#``
comments, the units line and the dashes line), FITS binary tables and
VOTable. Flux units come from the file (FITS ``TUNIT``, VOTable ``unit``,
VizieR's units line) or from ``flux_unit``; a flux column without a unit is
refused (:class:`~contimg.errors.InputFileError` naming the column), because a
guess turns mJy into Jy. Positions out of range are refused naming the file
and row.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contimg.errors import InputFileError

log = logging.getLogger(__name__)

__all__ = ["CatalogueTable", "FORMATS", "VLASS_ASSUMED_ALPHA", "VLASS_FREQ_GHZ", "detect_format",
           "read_catalogue", "read_vla_calibrators"]

FORMATS = ("contimg", "nvss", "first", "vlass", "vla-calibrators")
VLASS_FREQ_GHZ = 3.0
VLASS_ASSUMED_ALPHA = -0.7
"""Spectral index (S ~ nu^alpha) that scales VLASS 3 GHz fluxes to 1.4 GHz (a typical synchrotron value)."""

_FITS = (".fits", ".fit", ".fits.gz", ".fit.gz")
_VOTABLE = (".vot", ".votable", ".xml")


@dataclass
class CatalogueTable:
    """Catalogue rows as column arrays, in the units of the ``sources`` table.

    ``flux_jy``, ``flux_err_jy`` and ``spectral_index`` are NaN where unknown;
    ``quality`` holds None where unknown.
    """

    path: str
    fmt: str
    name: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    flux_jy: np.ndarray
    flux_err_jy: np.ndarray
    spectral_index: np.ndarray
    resolved: np.ndarray
    confused: np.ndarray
    is_calibrator: np.ndarray
    quality: np.ndarray

    @property
    def Nrows(self) -> int:
        """Number of rows."""
        return len(self.name)

    def records(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """Rows ``start:stop`` as ``sources`` records (None for unknown values)."""
        sl = slice(start, stop)

        def opt(a: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else v for v in a[sl].tolist()]

        return [
            {"name": n, "ra_deg": r, "dec_deg": d, "flux_jy": f, "flux_err_jy": e, "spectral_index": a,
             "resolved": res, "confused": c, "is_calibrator": cal, "quality": q}
            for n, r, d, f, e, a, res, c, cal, q in zip(
                self.name[sl].tolist(), self.ra_deg[sl].tolist(), self.dec_deg[sl].tolist(), opt(self.flux_jy),
                opt(self.flux_err_jy), opt(self.spectral_index), self.resolved[sl].tolist(),
                self.confused[sl].tolist(), self.is_calibrator[sl].tolist(), self.quality[sl].tolist())
        ]

    def take(self, index: np.ndarray) -> "CatalogueTable":
        """The rows ``index`` (an integer or boolean array) as a new table."""
        return CatalogueTable(path=self.path, fmt=self.fmt, **{
            k: getattr(self, k)[index] for k in ("name", "ra_deg", "dec_deg", "flux_jy", "flux_err_jy",
                                                 "spectral_index", "resolved", "confused", "is_calibrator",
                                                 "quality")})

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The records in chunks of ``size`` rows."""
        for start in range(0, self.Nrows, size):
            yield self.records(start, start + size)

    @classmethod
    def from_records(cls, path: str, fmt: str, rows: Sequence[dict[str, Any]]) -> "CatalogueTable":
        """A table from ``sources`` records (missing optional keys: unknown).

        Parameters
        ----------
        path
            The file the records came from (for messages and reports).
        fmt
            Its format's name.
        rows
            Records with ``name``, ``ra_deg``, ``dec_deg`` and optionally the other ``sources`` columns.

        Returns
        -------
        CatalogueTable
        """
        def fl(key: str) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=float)

        def flag(key: str) -> np.ndarray:
            return np.array([bool(r.get(key, False)) for r in rows], dtype=bool)

        return cls(path=path, fmt=fmt, name=np.array([r["name"] for r in rows], dtype=object),
                   ra_deg=fl("ra_deg"), dec_deg=fl("dec_deg"), flux_jy=fl("flux_jy"),
                   flux_err_jy=fl("flux_err_jy"), spectral_index=fl("spectral_index"),
                   resolved=flag("resolved"), confused=flag("confused"), is_calibrator=flag("is_calibrator"),
                   quality=np.array([r.get("quality") for r in rows], dtype=object))


# --- containers -----------------------------------------------------------------------------------

def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (*_FITS, *_VOTABLE):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _text_layout(path: Path) -> tuple[str, int, list[str], list[str] | None, int]:
    """Delimiter, header line index, column names, units (or None) and first data line of a text table.

    Handles VizieR's ASU output: ``#`` comments and blank lines, then the
    header, then optionally a units line and a line of dashes.
    """
    lines: list[tuple[int, str]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            s = line.rstrip("\r\n")
            if s.strip() and not s.lstrip().startswith("#"):
                lines.append((i, s))
                if len(lines) == 3:
                    break
    if not lines:
        raise InputFileError(f"{path}: no table found (only comments or nothing)")
    header = lines[0][1]
    delim = next((d for d in ("\t", ";", ",") if d in header), None)
    if delim is None:
        raise InputFileError(f"{path}: the header line {header[:80]!r} is not tab-, ';'- or comma-separated")
    names = [n.strip().strip('"') for n in header.split(delim)]

    def dashes(s: str) -> bool:
        return all(set(f.strip()) <= {"-"} for f in s.split(delim)) and "-" in s

    units: list[str] | None = None
    data_start = lines[1][0] if len(lines) > 1 else lines[0][0] + 1
    if len(lines) > 1 and dashes(lines[1][1]):
        data_start = lines[2][0] if len(lines) > 2 else lines[1][0] + 1
    elif len(lines) > 2 and dashes(lines[2][1]):
        units = [u.strip().strip('"') for u in lines[1][1].split(delim)]
        data_start = lines[2][0] + 1
    return delim, lines[0][0], names, units, data_start


def _read_table(path: Path) -> Any:
    """The file as an astropy Table (text, FITS or VOTable), units attached where the file gives them."""
    from astropy.table import Table

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    suffix = _suffix(path)
    try:
        if suffix in _FITS:
            return Table.read(path, format="fits", hdu=1)
        if suffix in _VOTABLE:
            return Table.read(path, format="votable")
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(f"{path}: cannot read the catalogue: {exc}") from exc
    from astropy.io import ascii as asc

    delim, _, names, units, data_start = _text_layout(path)
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            body = [ln for i, ln in enumerate(fh) if i >= data_start and ln.strip()
                    and not ln.lstrip().startswith("#")]
        if delim == "\t":  # the reader strips whitespace, tabs too: an empty last field would vanish
            body = [ln.replace("\t", "\x1f") for ln in body]
        table = asc.read(body, format="no_header", delimiter="\x1f" if delim == "\t" else delim, names=names,
                         guess=False, fast_reader=True)
    except (ValueError, TypeError, asc.InconsistentTableError) as exc:
        raise InputFileError(f"{path}: not a valid {delim!r}-separated table: {exc}") from exc
    if units:
        for n, u in zip(names, units):
            if u:
                table[n].unit = u  # a plain string: parsed where it is used
    return table


def _unit_text(col: Any) -> str:
    u = getattr(col, "unit", None)
    return "" if u is None else str(u).strip()


def _find(table: Any, *names: str) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _values(col: Any, fill: Any) -> np.ndarray:
    data = col.filled(fill) if hasattr(col, "filled") and getattr(col, "mask", None) is not None else col
    return np.asarray(data)


def _strings(col: Any) -> np.ndarray:
    mask = getattr(col, "mask", None)
    if mask is not None and np.asarray(col).dtype.kind not in "SUO":
        arr = np.array(["" if m else str(v) for v, m in zip(np.asarray(col).tolist(), np.asarray(mask).tolist())])
    else:
        arr = _values(col, "")
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii", errors="replace")
    return np.char.strip(arr.astype(str))


# --- values -----------------------------------------------------------------------------------------

_SEX_SPLIT = re.compile(r"[\s:hmsd'\"]+")


def _sexagesimal(path: Path, what: str, texts: np.ndarray, *, hours: bool) -> np.ndarray:
    """Degrees from ``"12 34 56.7"``, ``"12:34:56.7"`` or ``"12h34m56.7s"`` (``hours``: RA in hours)."""
    scale = 15.0 if hours else 1.0
    strings = texts.tolist()
    # fast path: every value has three fields (one split of the whole column)
    tokens = _SEX_SPLIT.split(" ".join(strings).replace("+", " ").replace("-", " ").strip())
    if len(tokens) == 3 * len(strings):
        try:
            dms = np.array(tokens, dtype=float).reshape(-1, 3)
        except ValueError:
            pass
        else:
            if not ((dms[:, 1:] >= 0) & (dms[:, 1:] < 60)).all():
                return _sexagesimal_rows(path, what, strings, scale)
            neg = np.array([t.lstrip().startswith("-") for t in strings], dtype=bool)
            v = (dms[:, 0] + dms[:, 1] / 60.0 + dms[:, 2] / 3600.0) * scale
            return np.where(neg, -v, v)
    return _sexagesimal_rows(path, what, strings, scale)


def _sexagesimal_rows(path: Path, what: str, strings: list[str], scale: float) -> np.ndarray:
    """:func:`_sexagesimal` one value at a time (any number of fields), naming the row of a bad one."""
    out = np.empty(len(strings), dtype=float)
    for i, t in enumerate(strings):
        t = t.strip()
        neg = t.startswith("-")
        parts = _SEX_SPLIT.split(t.lstrip("+-"))
        try:
            v = 0.0
            for k, p in enumerate(p for p in parts if p):
                x = float(p)
                if k and not 0 <= x < 60:
                    raise ValueError(p)
                v += x / (60.0 ** k)
        except ValueError as exc:
            raise InputFileError(f"{path}, row {i + 1}: {what}={t!r} is not a sexagesimal angle") from exc
        if not t:
            raise InputFileError(f"{path}, row {i + 1}: {what} is empty")
        out[i] = -v * scale if neg else v * scale
    return out


def _angle(path: Path, table: Any, colname: str, *, ra: bool) -> np.ndarray:
    """Positions in degrees from a numeric (degrees or hours by unit) or sexagesimal text column."""
    col = table[colname]
    unit = _unit_text(col).lower()
    arr = _values(col, np.nan)
    if arr.dtype.kind in "fiu":
        vals = arr.astype(float)
        if unit in ("h", "hourangle", "hour"):
            vals = vals * 15.0
        elif unit not in ("", "deg", "degree", "degrees", "d"):
            raise InputFileError(f"{path}: column {colname} has unit {unit!r}; degrees or hours expected")
    else:
        strings = _strings(col)
        if unit in ("deg", "degree", "degrees") and all(_is_number(s) for s in strings[:10].tolist()):
            vals = np.array([float(s) if s else np.nan for s in strings.tolist()])
        else:
            vals = _sexagesimal(path, colname, strings, hours=ra and unit not in ("d:m:s",))
    bad = ~np.isfinite(vals)
    if bad.any():
        raise InputFileError(f"{path}, row {int(np.argmax(bad)) + 1}: {colname} is empty or not a number")
    return vals


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _jy_per(unit_text: str) -> float:
    """Jy per unit of ``unit_text`` (``mJy``, ``Jy``, ``uJy``, ``mJy/beam`` ...); ValueError if not a flux unit."""
    import astropy.units as u

    text = re.sub(r"\s*/\s*beam$", "", unit_text.strip(), flags=re.IGNORECASE)
    text = re.sub(r"\.?beam\s*-?1$", "", text, flags=re.IGNORECASE).strip()
    return float(u.Unit(text).to(u.Jy))


def _flux(path: Path, table: Any, colname: str, flux_unit: str | None) -> np.ndarray:
    """A flux column in Jy; its unit from the file or ``flux_unit``, refused when neither gives one."""
    col = table[colname]
    file_unit = _unit_text(col)
    if not file_unit and not flux_unit:
        raise InputFileError(
            f"{path}: the flux column {colname!r} has no unit; give it with --flux-unit (e.g. --flux-unit mJy) "
            "or name the column flux_jy")
    try:
        factor = _jy_per(file_unit or flux_unit or "")
        if file_unit and flux_unit and not math.isclose(factor, _jy_per(flux_unit)):
            raise InputFileError(f"{path}: the flux column {colname!r} is in {file_unit}, not the {flux_unit} given")
    except ValueError as exc:
        raise InputFileError(f"{path}: flux column {colname!r}: {file_unit or flux_unit!r} is not a flux unit") from exc
    arr = _values(col, np.nan)
    if arr.dtype.kind not in "fiu":
        strings = _strings(col)
        try:
            arr = np.array([float(s) if s else np.nan for s in strings.tolist()])
        except ValueError as exc:
            raise InputFileError(f"{path}: flux column {colname!r} holds text that is not a number") from exc
    return arr.astype(float) * factor


def _check_positions(path: Path, ra: np.ndarray, dec: np.ndarray) -> None:
    bad = ~((ra >= 0.0) & (ra < 360.0) & (np.abs(dec) <= 90.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputFileError(f"{path}, row {i + 1}: position ra={ra[i]}, dec={dec[i]} deg is out of range "
                             "(RA in [0, 360), |Dec| <= 90)")


def _iau_names(prefix: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``PREFIX JHHMMSS.ss+DDMMSS.s`` from degrees (truncated, IAU style)."""
    out = []
    for r, d in zip(ra.tolist(), dec.tolist()):
        cs = int(r / 15.0 * 360000.0 + 1e-6)  # centiseconds of time
        h, rem = divmod(cs, 360000)
        m, rem = divmod(rem, 6000)
        sign = "-" if d < 0 else "+"
        ds = int(abs(d) * 36000.0 + 1e-6)  # deciarcseconds
        dd, drem = divmod(ds, 36000)
        dm, drem = divmod(drem, 600)
        out.append(f"{prefix} J{h:02d}{m:02d}{rem // 100:02d}.{rem % 100:02d}{sign}{dd:02d}{dm:02d}"
                   f"{drem // 10:02d}.{drem % 10:d}")
    return np.array(out, dtype=object)


def _unique(path: Path, names: np.ndarray) -> None:
    uniq, first, counts = np.unique(names.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(np.argmax(counts > 1))
        rows = np.flatnonzero(names.astype(str) == uniq[k])[:2] + 1
        raise InputFileError(f"{path}, row {rows[1]}: name {uniq[k]} already on row {rows[0]}")


def _table(path: Path, fmt: str, name: np.ndarray, ra: np.ndarray, dec: np.ndarray, flux: np.ndarray,
           err: np.ndarray | None = None, *, resolved: np.ndarray | None = None,
           quality: np.ndarray | None = None) -> CatalogueTable:
    n = len(name)
    _check_positions(path, ra, dec)
    _unique(path, name)
    return CatalogueTable(
        path=str(path), fmt=fmt, name=name, ra_deg=ra, dec_deg=dec, flux_jy=flux,
        flux_err_jy=np.full(n, np.nan) if err is None else err, spectral_index=np.full(n, np.nan),
        resolved=np.zeros(n, bool) if resolved is None else resolved, confused=np.zeros(n, bool),
        is_calibrator=np.zeros(n, bool), quality=np.full(n, None, dtype=object) if quality is None else quality)


def _required(path: Path, table: Any, fmt: str, **cols: tuple[str, ...]) -> dict[str, str]:
    found = {k: _find(table, *names) for k, names in cols.items()}
    missing = [cols[k][0] for k, v in found.items() if v is None]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {missing} of the {fmt} format; columns are {table.colnames}")
    return {k: v for k, v in found.items() if v is not None}


def _quality(table: Any, colname: str | None) -> np.ndarray | None:
    if colname is None:
        return None
    vals = _strings(table[colname]).tolist()
    return np.array([v[:32] if v and v != "--" else None for v in vals], dtype=object)


# --- formats ----------------------------------------------------------------------------------------

def _nvss(path: Path, table: Any, flux_unit: str | None) -> CatalogueTable:
    c = _required(path, table, "nvss", ra=("RAJ2000", "_RAJ2000", "RA"), dec=("DEJ2000", "_DEJ2000", "DEC"),
                  flux=("S1.4", "S1_4"))
    ra = _angle(path, table, c["ra"], ra=True)
    dec = _angle(path, table, c["dec"], ra=False)
    flux = _flux(path, table, c["flux"], flux_unit)
    e = _find(table, "e_S1.4", "e_S1_4")
    err = _flux(path, table, e, flux_unit) if e else None
    ncol = _find(table, "NVSS")
    if ncol:
        name = np.array(["NVSS J" + s.lstrip("J") for s in _strings(table[ncol]).tolist()], dtype=object)
    else:
        name = _iau_names("NVSS", ra, dec)
    resolved = None
    maj = _find(table, "MajAxis")
    if maj:
        lim = _find(table, "l_MajAxis")
        has = np.isfinite(_values(table[maj], np.nan).astype(float))
        resolved = has & ((_strings(table[lim]) != "<") if lim else True)
    return _table(path, "nvss", name, ra, dec, flux, err, resolved=resolved,
                  quality=_quality(table, _find(table, "f_resFlux")))


def _first(path: Path, table: Any, flux_unit: str | None) -> CatalogueTable:
    c = _required(path, table, "first", ra=("RA", "RAJ2000"), dec=("DEC", "DEJ2000"), flux=("FINT", "FPEAK"))
    ra = _angle(path, table, c["ra"], ra=True)
    dec = _angle(path, table, c["dec"], ra=False)
    flux = _flux(path, table, c["flux"], flux_unit)
    rms = _find(table, "RMS")
    err = _flux(path, table, rms, flux_unit) if rms else None
    ncol = _find(table, "FIRST")
    name = (np.array(["FIRST J" + s.lstrip("J") for s in _strings(table[ncol]).tolist()], dtype=object)
            if ncol else _iau_names("FIRST", ra, dec))
    maj = _find(table, "MAJ", "MAJOR", "Maj")
    resolved = _values(table[maj], 0.0).astype(float) > 0 if maj else None
    return _table(path, "first", name, ra, dec, flux, err, resolved=resolved)


def _vlass(path: Path, table: Any, flux_unit: str | None) -> CatalogueTable:
    c = _required(path, table, "vlass", name=("Component_name",), ra=("RA",), dec=("DEC",), flux=("Total_flux",))
    dup = _find(table, "Duplicate_flag")
    if dup:
        keep = _values(table[dup], 0).astype(int) != 2
        if not keep.all():
            log.info("%s: %d duplicate components (Duplicate_flag = 2) skipped", path, int((~keep).sum()))
            table = table[keep]
    ra = _angle(path, table, c["ra"], ra=True)
    dec = _angle(path, table, c["dec"], ra=False)
    scale = (1.4 / VLASS_FREQ_GHZ) ** VLASS_ASSUMED_ALPHA
    flux = _flux(path, table, c["flux"], flux_unit) * scale
    e = _find(table, "E_Total_flux")
    err = _flux(path, table, e, flux_unit) * scale if e else None
    name = np.array(_strings(table[c["name"]]).tolist(), dtype=object)
    dc = _find(table, "DC_Maj")
    resolved = _values(table[dc], 0.0).astype(float) > 0 if dc else None
    log.info("%s: VLASS 3 GHz fluxes scaled to 1.4 GHz with spectral index %.1f", path, VLASS_ASSUMED_ALPHA)
    return _table(path, "vlass", name, ra, dec, flux, err, resolved=resolved,
                  quality=_quality(table, _find(table, "Quality_flag")))


# --- the VLA calibrator list ------------------------------------------------------------------------

_VLA_POS = re.compile(
    r"^\s*(?:(?P<name1>\d{4}[+-]\d{3,4})\s+J2000\s+(?P<pc1>[A-Z])|J2000\s+(?P<pc2>[A-Z])\s+(?P<name2>\d{4}[+-]\d{3,4}))"
    r"\s+(?P<ra>\d{1,2}h\d{1,2}m[\d.]+s)\s+(?P<dec>[+-]?\d{1,2}d\d{1,2}'[\d.]+(?:\"|''))(?P<rest>.*)$")
_VLA_BAND = re.compile(r"^\s*(?P<wl>[\d.]+cm)\s+(?P<band>[A-Z])\s+(?P<codes>(?:[A-Z?]\s+){3}[A-Z?])"
                       r"(?:\s+(?P<flux>[\d.]+))?")


def read_vla_calibrators(path: str | Path) -> CatalogueTable:
    """Calibrators of the NRAO VLA calibrator list (the calibrator manual's text file).

    Each calibrator is a J2000 position line, e.g.
    ``0137+331   J2000  A 01h37m41.299431s  33d09'35.132990"  Aug01  3C48``,
    then its B1950 line, a ruler, the ``BAND  A B C D  FLUX(Jy) ...`` header
    and one line per band, e.g. ``20cm    L  X P P P      16.50``: the
    quality codes of the A, B, C, D configurations and the flux in Jy.
    The 20cm (L band) flux is taken as the 1.4 GHz flux; the quality is
    ``L:`` and the four L-band codes (``L:XPPP``); where the 6cm (C band)
    flux is given too, the spectral index is the one between 1.4 and
    4.86 GHz. Calibrators without an L-band flux are skipped (logged).

    Parameters
    ----------
    path
        The calibrator list.

    Returns
    -------
    CatalogueTable
        One row per calibrator with an L-band flux, ``is_calibrator`` set,
        named by its J2000 name (``0137+331``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the calibrator list: {exc}") from exc
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    skipped: list[str] = []

    def close() -> None:
        if current is None:
            return
        if current.get("flux_jy") is None:
            skipped.append(current["name"])
            return
        s20, s6 = current["flux_jy"], current.pop("flux_6cm", None)
        if s6 and s20 > 0:
            current["spectral_index"] = math.log(s6 / s20) / math.log(4.86 / 1.4)
        rows.append(current)

    for lineno, line in enumerate(text, start=1):
        m = _VLA_POS.match(line)
        if m:
            close()
            ra = _sexagesimal(path, "RA", np.array([m["ra"]]), hours=True)[0]
            dec = _sexagesimal(path, "Dec", np.array([m["dec"].replace("''", '"')]), hours=False)[0]
            if not (0 <= ra < 360 and abs(dec) <= 90):
                raise InputFileError(f"{path}, line {lineno}: position ra={ra}, dec={dec} deg is out of range")
            current = {"name": m["name1"] or m["name2"], "ra_deg": ra, "dec_deg": dec, "is_calibrator": True,
                       "flux_jy": None, "quality": None}
            continue
        b = _VLA_BAND.match(line)
        if b and current is not None and b["flux"]:
            flux = float(b["flux"])
            if b["band"] == "L":
                current["flux_jy"] = flux
                current["quality"] = "L:" + "".join(b["codes"].split())
            elif b["band"] == "C":
                current["flux_6cm"] = flux
    close()
    if skipped:
        log.info("%s: %d calibrators without an L-band (20cm) flux skipped", path, len(skipped))
    if not rows:
        raise InputFileError(f"{path}: no calibrator with a 20cm flux found; is this the VLA calibrator list?")
    table = CatalogueTable.from_records(str(path), "vla-calibrators", rows)
    _unique(path, table.name)
    return table


# --- entry point ------------------------------------------------------------------------------------

def detect_format(path: str | Path, columns: Sequence[str] | None = None) -> str:
    """The catalogue format of ``path`` from its columns (or, for the VLA list, its text); see the module docstring.

    Raises
    ------
    InputFileError
        If the columns fit no known format.
    """
    path = Path(path)
    if columns is None:
        suffix = _suffix(path)
        if suffix not in _FITS + _VOTABLE:
            with path.open(encoding="utf-8", errors="replace") as fh:
                head = [fh.readline() for _ in range(200)]
            if any(_VLA_POS.match(ln) for ln in head):
                return "vla-calibrators"
        columns = _read_table(path).colnames
    lower = {c.lower() for c in columns}
    if {"s1.4", "s1_4"} & lower:
        return "nvss"
    if "component_name" in lower and "total_flux" in lower:
        return "vlass"
    if {"fint", "fpeak"} & lower:
        return "first"
    if {"ra_deg", "ra"} & lower and {"dec_deg", "dec"} & lower:
        return "contimg"
    raise InputFileError(f"{path}: cannot tell the catalogue format from the columns {list(columns)}; "
                         f"give --format ({', '.join(FORMATS)})")


def read_catalogue(path: str | Path, *, fmt: str | None = None, flux_unit: str | None = None,
                   calibrators: bool = False) -> CatalogueTable:
    """Read a catalogue file of a known format into a :class:`CatalogueTable`.

    Parameters
    ----------
    path
        The file: CSV, VizieR tab- or ``;``-separated text, FITS, VOTable, or
        the VLA calibrator list.
    fmt
        One of :data:`FORMATS`; None detects it (:func:`detect_format`).
    flux_unit
        Unit of flux columns that carry none in the file (``mJy``, ``Jy``).
    calibrators
        Mark every row a calibrator (a calibrator needs a positive flux).

    Returns
    -------
    CatalogueTable

    Raises
    ------
    InputFileError
        Naming the file and the column or row of a missing column, a flux
        column without a unit, an out-of-range position or a bad value.
    """
    from contimg.calibration.catalog import read_calibrator_csv, read_source_csv

    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputFileError(f"{path}: unknown catalogue format {fmt!r}; one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if fmt is None:
        fmt = detect_format(path)
    if fmt == "vla-calibrators":
        table = read_vla_calibrators(path)
    elif fmt == "contimg":
        if _suffix(path) in _FITS + _VOTABLE:
            raise InputFileError(f"{path}: contimg's own format is CSV")
        reader = read_calibrator_csv if calibrators else read_source_csv
        table = CatalogueTable.from_records(str(path), "contimg", reader(path, flux_unit=flux_unit))
    else:
        raw = _read_table(path)
        table = {"nvss": _nvss, "first": _first, "vlass": _vlass}[fmt](path, raw, flux_unit)
    if calibrators:
        bad = ~(table.flux_jy > 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputFileError(f"{path}, row {i + 1}: calibrator {table.name[i]} has no positive flux")
        table.is_calibrator[:] = True
    log.info("%s: %d rows read (%s format)", path, table.Nrows, fmt)
    return table
