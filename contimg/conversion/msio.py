"""Low-level Measurement Set writing with python-casacore.

The main table has fixed-shape columns in ``TiledColumnStMan`` (one
hypercube per column, tiles of whole rows), so every column can be written
in large row chunks at close to disk speed and read row-wise by CASA and
WSClean. Subtables follow MS v2 as CASA writes them, with what CASA
calibration and imaging need filled in:

* ANTENNA: DSA-110 station names in NAME and STATION, ITRF positions,
  4.65 m dishes, mount ``ALT-AZ`` (``fixed`` floods the CASA log with
  parallactic-angle warnings);
* OBSERVATION: TELESCOPE_NAME ``DSA_110``. CASA's observatory table does not
  know DSA_110, so CASA logs SEVERE "Unknown observatory" and uses the first
  antenna's position as the array position; that is harmless for calibration
  and imaging (every geometric quantity comes from the antenna positions).
  The array center is also stored in a non-standard TELESCOPE_LOCATION column,
  as pyuvdata does;
* FIELD: one field, the group's ICRS phase center; SOURCE: the same;
* SPECTRAL_WINDOW: one window, ascending TOPO frequencies;
* POLARIZATION / FEED: linear feeds X, Y; DATA_DESCRIPTION: one row.

Data units are ``Jy`` (pyuvdata's ``uncalib`` breaks TaQL).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from contimg.conversion.plan import ConversionPlan

log = logging.getLogger(__name__)

TELESCOPE_NAME = "DSA_110"
ANTENNA_MOUNT = "ALT-AZ"
TILE_BYTES = 1 << 20
"""Target size of one tile of the big columns (whole rows per tile)."""

DATA_COLUMNS = ("DATA", "MODEL_DATA", "CORRECTED_DATA")
SPECTRUM_COLUMNS = ("WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "FLAG")


def jd_to_mjd_seconds(jd: np.ndarray | float) -> np.ndarray:
    """UTC Julian date → MS TIME (UTC MJD seconds)."""
    return (np.asarray(jd, dtype=np.float64) - 2400000.5) * 86400.0


def _tiled(name: str, value, valuetype: str, shape: list[int], comment: str) -> dict:
    from casacore import tables

    return tables.makearrcoldesc(
        name, value, valuetype=valuetype, shape=shape,
        datamanagertype="TiledColumnStMan", datamanagergroup=f"Tiled_{name}", comment=comment,
    )


def _rows_per_tile(bytes_per_row: int) -> int:
    return int(max(1, min(4096, TILE_BYTES // max(1, bytes_per_row))))


_ITEMSIZE = {"complex": 8, "float": 4, "double": 8, "boolean": 1}


def tile_shape(cell_shape, valuetype: str) -> np.ndarray:
    """``DEFAULTTILESHAPE`` of a ``TiledColumnStMan`` column: whole cells, about :data:`TILE_BYTES` of rows.

    python-casacore gives cell shapes in numpy (C) order, e.g. ``(Nfreqs, Npols)``, but a data manager's tile
    shape is casacore's own (Fortran) axis order: ``(Npols, Nfreqs, rows)``. Given in numpy order, casacore
    keeps its axes and clips the tile to the cell, e.g. 2 of 768 channels per tile, and every row-chunked
    read or write touches hundreds of tiles.

    Parameters
    ----------
    cell_shape
        The column's cell shape in numpy order (``getcell(...).shape``, the ``shape`` of ``makearrcoldesc``).
    valuetype
        ``complex``, ``float``, ``double`` or ``boolean``.

    Returns
    -------
    numpy.ndarray
        int32 tile shape, casacore order: the cell's axes reversed, then rows.
    """
    shape = [int(n) for n in cell_shape]
    rows = _rows_per_tile(int(np.prod(shape)) * _ITEMSIZE[valuetype])
    return np.array(list(reversed(shape)) + [rows], dtype=np.int32)


def create_main_table(path: Path, *, nrows: int, Nfreqs: int, Npols: int):
    """Create an empty MS with ``nrows`` rows; return the open (writable) main table.

    The data columns (DATA, MODEL_DATA, CORRECTED_DATA, WEIGHT_SPECTRUM, SIGMA_SPECTRUM, FLAG), UVW, WEIGHT and
    SIGMA are fixed-shape ``TiledColumnStMan`` columns with tiles of about :data:`TILE_BYTES`; the subtables
    are created empty (see :func:`write_subtables`).

    Parameters
    ----------
    path
        Directory of the new MS (it must not exist yet).
    nrows
        Number of rows (baseline-times).
    Nfreqs
        Channels of the single spectral window (cells are ``(Nfreqs, Npols)``).
    Npols
        Correlation products per visibility.

    Returns
    -------
    casacore.tables.table
        The main table, open for writing; the caller closes it.
    """
    from casacore import tables

    desc = tables.required_ms_desc("MAIN")
    cols = [
        _tiled("DATA", 0j, "complex", [Nfreqs, Npols], "observed visibilities (Jy)"),
        _tiled("MODEL_DATA", 0j, "complex", [Nfreqs, Npols], "model visibilities (Jy); zero until a model is set"),
        _tiled("CORRECTED_DATA", 0j, "complex", [Nfreqs, Npols], "calibrated visibilities (Jy); DATA until calibrated"),
        _tiled("WEIGHT_SPECTRUM", 0.0, "float", [Nfreqs, Npols], "weight of each visibility, 1/sigma^2 (1/Jy^2)"),
        _tiled("SIGMA_SPECTRUM", 0.0, "float", [Nfreqs, Npols], "thermal noise of each visibility (Jy)"),
        _tiled("FLAG", False, "boolean", [Nfreqs, Npols], "flags"),
        _tiled("UVW", 0.0, "double", [3], "baseline coordinates (m)"),
        _tiled("WEIGHT", 0.0, "float", [Npols], "row weight, mean of WEIGHT_SPECTRUM over channels with data"),
        _tiled("SIGMA", 0.0, "float", [Npols], "row sigma, 1/sqrt(WEIGHT)"),
    ]
    for c in cols:
        name = c["name"]
        # keep the MS-standard keywords (QuantumUnits, MEASINFO) of required columns
        if name in desc:
            kw = desc[name].get("keywords", {})
            c["desc"]["keywords"] = {**kw, **c["desc"].get("keywords", {})}
        desc[name] = c["desc"]
    dminfo = tables.makedminfo(desc)
    for spec in dminfo.values():
        if spec["TYPE"] != "TiledColumnStMan":
            continue
        col = spec["COLUMNS"][0]
        spec["SPEC"] = {"DEFAULTTILESHAPE": tile_shape(desc[col]["shape"], desc[col]["valueType"]),
                        "MAXIMUMCACHESIZE": 0}
    tb = tables.default_ms(str(path), desc, dminfo)
    # Column keywords are set on the table, not in the description: keywords given
    # to default_ms for predefined MS columns (DATA ...) stick in casacore's static
    # column definitions and leak into every later MS of the process (pyuvdata's
    # write_ms then fails on QuantumUnits).
    for name in DATA_COLUMNS:
        tb.putcolkeyword(name, "QuantumUnits", np.array(["Jy"]))
    tb.addrows(nrows)
    return tb


class EarlyWriteback:
    """Start the kernel's write-back of a table's column files while they are being written.

    Linux begins writing dirty pages back only when they exceed
    ``dirty_background_ratio`` of memory, and throttles the writer at
    ``dirty_ratio``: a combine writing 4 GB would keep the disk idle for its
    first gigabytes, then wait for it. ``posix_fadvise(POSIX_FADV_DONTNEED)``
    on a file starts asynchronous write-back of its dirty pages (and drops the
    clean ones, which the combine does not read again), so the disk works from
    the first chunk on. Advisory only: errors are ignored.
    """

    def __init__(self, path: Path, tb, columns) -> None:
        self._fds: list[int] = []
        for col in columns:
            info = tb.getdminfo(col)
            if info.get("TYPE") != "TiledColumnStMan":
                continue
            try:
                self._fds.append(os.open(Path(path) / f"table.f{info['SEQNR']}_TSM0", os.O_RDONLY))
            except OSError:
                pass

    def kick(self) -> None:
        """Start write-back of everything written so far (non-blocking)."""
        for fd in self._fds:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


def add_data_column(tb, name: str, comment: str, *, valuetype: str = "complex") -> None:
    """Add a column shaped like DATA (complex, or ``float``) to the open, writable main table ``tb`` (zeros).

    Parameters
    ----------
    tb
        The MS main table, open for writing, with at least one row of DATA (its cell shape is copied).
    name
        Name of the new column (e.g. ``"MODEL_DATA"``).
    comment
        The column's comment (what it holds, with units).
    valuetype
        ``"complex"`` for visibilities; anything else gives a ``float`` column (weights, sigmas).
    """
    shape = list(tb.getcell("DATA", 0).shape)
    if valuetype != "complex":
        valuetype = "float"
    desc = _tiled(name, 0j if valuetype == "complex" else 0.0, valuetype, shape, comment)
    tb.addcols(desc, {"TYPE": "TiledColumnStMan", "NAME": f"Tiled_{name}",
                      "SPEC": {"DEFAULTTILESHAPE": tile_shape(shape, valuetype)}})


def ensure_imaging_columns(path: Path, *, rows_per_chunk: int = 100_000) -> list[str]:
    """Give an MS written elsewhere the columns contimg's calibration and imaging use; return those added.

    MODEL_DATA (zeros), CORRECTED_DATA (a copy of DATA), WEIGHT_SPECTRUM and SIGMA_SPECTRUM (the row
    WEIGHT and SIGMA repeated over channels) are added when missing; an MS from the conversion has
    them all and is not touched.

    Raises
    ------
    InputFileError
        If the MS has no DATA column.
    """
    from casacore import tables

    from contimg.errors import InputFileError

    spectra = (("WEIGHT_SPECTRUM", "WEIGHT"), ("SIGMA_SPECTRUM", "SIGMA"))
    with tables.table(str(path), ack=False) as tb:  # read-only: the usual MS needs nothing
        cols = set(tb.colnames())
    if "DATA" not in cols:
        raise InputFileError(f"{path}: has no DATA column")
    missing = [c for c in ("MODEL_DATA", "CORRECTED_DATA", *(c for c, _ in spectra)) if c not in cols]
    if not missing:
        return []
    with tables.table(str(path), readonly=False, ack=False) as tb:
        for c in missing:
            if c.endswith("_DATA"):
                add_data_column(tb, c, f"{c.split('_')[0].lower()} visibilities (Jy), added by contimg")
            else:
                src = dict(spectra)[c]
                add_data_column(tb, c, f"{src} per channel, added by contimg", valuetype="float")
        nchan = tb.getcell("DATA", 0).shape[0]
        nrows = tb.nrows()
        for r0 in range(0, nrows, rows_per_chunk):
            n = min(rows_per_chunk, nrows - r0)
            if "CORRECTED_DATA" in missing:
                tb.putcol("CORRECTED_DATA", tb.getcol("DATA", r0, n), r0, n)
            for c, src in spectra:
                if c in missing:
                    row = tb.getcol(src, r0, n).astype(np.float32)
                    tb.putcol(c, np.repeat(row[:, None, :], nchan, axis=1), r0, n)
    log.info("%s: added the columns %s", path, ", ".join(missing))
    return missing


def sparsify_zero_column(path: Path, column: str) -> int:
    """Turn a closed MS column that holds only zeros into a sparse file; return bytes freed.

    ``TiledColumnStMan`` keeps a column's tiles, and nothing else, in
    ``table.f<SEQNR>_TSM0`` (its bookkeeping lives in ``table.f<SEQNR>``).
    Truncating that file and extending it to its size again leaves the same
    content -- zeros -- without disk blocks, and drops the dirty pages before
    they are written back. Casacore reads holes as zeros and allocates blocks
    when the column is written later (e.g. when calibration fills MODEL_DATA).
    Only call this for a column written entirely with zeros.
    """
    from casacore import tables

    with tables.table(str(path), ack=False) as tb:
        info = tb.getdminfo(column)
    if info["TYPE"] != "TiledColumnStMan":
        return 0
    data_file = Path(path) / f"table.f{info['SEQNR']}_TSM0"
    size = data_file.stat().st_size
    used = data_file.stat().st_blocks * 512
    os.truncate(data_file, 0)
    os.truncate(data_file, size)
    return used


def write_subtables(path: Path, plan: "ConversionPlan", *, time_range_mjd_s: tuple[float, float], history: str) -> None:
    """Fill ANTENNA, FEED, FIELD, SOURCE, OBSERVATION, SPECTRAL_WINDOW, POLARIZATION,
    DATA_DESCRIPTION, STATE, PROCESSOR and HISTORY for a one-field, one-window MS.

    What is written is the plan's MS model (``plan.ms``, :class:`contimg.msmodel.MsModel`): one ANTENNA row
    per antenna number (0 ... Nants_telescope-1, ``unused-<n>`` rows included), the window, the
    polarizations in its order, the telescope location, and FIELD and SOURCE at its phase centre (ICRS),
    named ``drift_<group id>``.

    Parameters
    ----------
    path
        The MS, created by :func:`create_main_table` (its main table may be open).
    plan
        The group's conversion plan: its MS model and group id.
    time_range_mjd_s
        ``(start, end)`` of the data, MJD in seconds (the MS ``TIME`` convention), edges of the first and
        last integrations.
    history
        Text for the HISTORY table, one row per non-blank line (default row: ``converted by contimg``).

    Raises
    ------
    ValueError
        If the model's antenna numbers are not its ANTENNA row numbers 0 ... Nants_telescope-1.
    """
    from casacore import tables

    from contimg.msmodel import AIPS_TO_CASA

    ms = plan.ms
    p = str(path)
    center = np.asarray(ms.telescope_location, dtype=np.float64)
    nant = ms.Nants_telescope
    if not np.array_equal(ms.antenna_numbers, np.arange(nant)):
        raise ValueError(f"group {plan.group_id}: antenna numbers are not ANTENNA rows 0 ... {nant - 1}")
    positions = center[None, :] + ms.antenna_positions
    names = list(ms.antenna_names)
    diam = np.asarray(ms.antenna_diameters, dtype=float)
    t_mid = 0.5 * (time_range_mjd_s[0] + time_range_mjd_s[1])

    with tables.table(p + "/ANTENNA", readonly=False, ack=False) as t:
        t.addrows(nant)
        t.putcol("NAME", names)
        t.putcol("STATION", names)
        t.putcol("TYPE", ["GROUND-BASED"] * nant)
        t.putcol("MOUNT", [ANTENNA_MOUNT] * nant)
        t.putcol("POSITION", positions)
        t.putcol("OFFSET", np.zeros((nant, 3)))
        t.putcol("DISH_DIAMETER", diam)
        t.putcol("FLAG_ROW", np.zeros(nant, dtype=bool))

    corr = np.array([AIPS_TO_CASA[int(q)] for q in ms.polarization_array], dtype=np.int32)
    feeds = {9: ("X", "X"), 10: ("X", "Y"), 11: ("Y", "X"), 12: ("Y", "Y"),
             5: ("R", "R"), 6: ("R", "L"), 7: ("L", "R"), 8: ("L", "L")}
    receptors = sorted({r for c in corr for r in feeds.get(int(c), ("X", "Y"))}) or ["X", "Y"]
    if receptors == ["L", "R"]:
        receptors = ["R", "L"]
    corr_product = np.array([[receptors.index(feeds[int(c)][0]), receptors.index(feeds[int(c)][1])] for c in corr],
                            dtype=np.int32).T
    with tables.table(p + "/POLARIZATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("NUM_CORR", 0, len(corr))
        t.putcell("CORR_TYPE", 0, corr)
        t.putcell("CORR_PRODUCT", 0, corr_product)
        t.putcell("FLAG_ROW", 0, False)

    nrec = len(receptors)
    with tables.table(p + "/FEED", readonly=False, ack=False) as t:
        t.addrows(nant)
        t.putcol("ANTENNA_ID", np.arange(nant, dtype=np.int32))
        t.putcol("BEAM_ID", np.full(nant, -1, dtype=np.int32))
        t.putcol("BEAM_OFFSET", np.zeros((nant, 2, nrec)))
        t.putcol("FEED_ID", np.zeros(nant, dtype=np.int32))
        t.putcol("INTERVAL", np.full(nant, np.finfo(float).max))
        t.putcol("NUM_RECEPTORS", np.full(nant, nrec, dtype=np.int32))
        t.putcol("POLARIZATION_TYPE", np.array([receptors] * nant))
        t.putcol("POL_RESPONSE", np.tile(np.eye(nrec, dtype=np.complex64), (nant, 1, 1)))
        t.putcol("POSITION", np.zeros((nant, 3)))
        t.putcol("RECEPTOR_ANGLE", np.tile(np.array([0.0, np.pi / 2][:nrec]), (nant, 1)))
        t.putcol("SPECTRAL_WINDOW_ID", np.full(nant, -1, dtype=np.int32))
        t.putcol("TIME", np.full(nant, t_mid))

    freqs = ms.freq_array
    width = np.full(freqs.size, ms.channel_width)
    with tables.table(p + "/SPECTRAL_WINDOW", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("NUM_CHAN", 0, freqs.size)
        t.putcell("NAME", 0, "DSA110_L")
        t.putcell("CHAN_FREQ", 0, freqs)
        t.putcell("CHAN_WIDTH", 0, width)
        t.putcell("EFFECTIVE_BW", 0, width)
        t.putcell("RESOLUTION", 0, width)
        t.putcell("TOTAL_BANDWIDTH", 0, float(width.sum()))
        t.putcell("REF_FREQUENCY", 0, float(freqs[freqs.size // 2]))
        t.putcell("MEAS_FREQ_REF", 0, 5)  # TOPO
        t.putcell("NET_SIDEBAND", 0, 1)
        t.putcell("FREQ_GROUP", 0, 0)
        t.putcell("FREQ_GROUP_NAME", 0, "")
        t.putcell("IF_CONV_CHAIN", 0, 0)
        t.putcell("FLAG_ROW", 0, False)

    with tables.table(p + "/DATA_DESCRIPTION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("SPECTRAL_WINDOW_ID", 0, 0)
        t.putcell("POLARIZATION_ID", 0, 0)
        t.putcell("FLAG_ROW", 0, False)

    direction = np.array([[ms.phase_center_ra, ms.phase_center_dec]])
    field_name = "drift_" + plan.group_id.replace(":", "").replace(" ", "_")  # CASA selection-safe
    with tables.table(p + "/FIELD", readonly=False, ack=False) as t:
        t.addrows(1)
        for col in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
            info = t.getcolkeyword(col, "MEASINFO")
            info["Ref"] = "ICRS"
            t.putcolkeyword(col, "MEASINFO", info)
            t.putcell(col, 0, direction)
        t.putcell("NAME", 0, field_name)
        t.putcell("CODE", 0, "")
        t.putcell("NUM_POLY", 0, 0)
        t.putcell("TIME", 0, t_mid)
        t.putcell("SOURCE_ID", 0, 0)
        t.putcell("FLAG_ROW", 0, False)

    sdesc = tables.required_ms_desc("SOURCE")
    with tables.table(p + "::SOURCE", tabledesc=sdesc, dminfo=tables.makedminfo(sdesc), readonly=False, ack=False) as t:
        info = t.getcolkeyword("DIRECTION", "MEASINFO")
        info["Ref"] = "ICRS"
        t.putcolkeyword("DIRECTION", "MEASINFO", info)
        t.addrows(1)
        t.putcell("SOURCE_ID", 0, 0)
        t.putcell("TIME", 0, t_mid)
        t.putcell("INTERVAL", 0, time_range_mjd_s[1] - time_range_mjd_s[0])
        t.putcell("SPECTRAL_WINDOW_ID", 0, -1)
        t.putcell("NUM_LINES", 0, 0)
        t.putcell("NAME", 0, field_name)
        t.putcell("CALIBRATION_GROUP", 0, 0)
        t.putcell("CODE", 0, "")
        t.putcell("DIRECTION", 0, direction[0])
        t.putcell("PROPER_MOTION", 0, np.zeros(2))

    with tables.table(p + "/OBSERVATION", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("TELESCOPE_NAME", 0, ms.telescope_name)
        t.putcell("OBSERVER", 0, "DSA-110")
        t.putcell("PROJECT", 0, "contimg")
        t.putcell("SCHEDULE_TYPE", 0, "drift")
        t.putcell("TIME_RANGE", 0, np.array(time_range_mjd_s))
        t.putcell("RELEASE_DATE", 0, 0.0)
        t.putcell("FLAG_ROW", 0, False)
        t.addcols(tables.makearrcoldesc("TELESCOPE_LOCATION", 0.0, shape=[3], valuetype="double",
                                        comment="array center, ITRF (m); non-standard, as pyuvdata"))
        t.putcell("TELESCOPE_LOCATION", 0, center)

    with tables.table(p + "/STATE", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("SIG", 0, True)
        t.putcell("REF", 0, False)
        t.putcell("CAL", 0, 0.0)
        t.putcell("LOAD", 0, 0.0)
        t.putcell("SUB_SCAN", 0, 0)
        t.putcell("OBS_MODE", 0, "OBSERVE_TARGET#ON_SOURCE")
        t.putcell("FLAG_ROW", 0, False)

    with tables.table(p + "/PROCESSOR", readonly=False, ack=False) as t:
        t.addrows(1)
        t.putcell("TYPE", 0, "CORRELATOR")
        t.putcell("SUB_TYPE", 0, "DSA-110")
        t.putcell("TYPE_ID", 0, 0)
        t.putcell("MODE_ID", 0, 0)
        t.putcell("FLAG_ROW", 0, False)

    with tables.table(p + "/HISTORY", readonly=False, ack=False) as t:
        lines = [ln for ln in history.splitlines() if ln.strip()] or ["converted by contimg"]
        t.addrows(len(lines))
        t.putcol("TIME", np.full(len(lines), time_range_mjd_s[1]))
        t.putcol("OBSERVATION_ID", np.zeros(len(lines), dtype=np.int32))
        t.putcol("MESSAGE", lines)
        t.putcol("PRIORITY", ["NORMAL"] * len(lines))
        t.putcol("ORIGIN", ["contimg.conversion"] * len(lines))
        t.putcol("OBJECT_ID", np.zeros(len(lines), dtype=np.int32))
        t.putcol("APPLICATION", ["contimg"] * len(lines))
        for col in ("CLI_COMMAND", "APP_PARAMS"):
            for r in range(len(lines)):
                t.putcell(col, r, np.array([""]))
