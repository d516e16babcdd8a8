"""Delay (K), bandpass (B) and complex gain (G) solves with casatasks, on a time-averaged copy.

Why a time-averaged copy
------------------------
CASA ``bandpass`` + ``gaincal`` on a full-resolution group (111,744 rows x
768 channels) take longer than the 309 s cadence (NOTES). A calibrator group
is solved for one K, one B and one G per antenna and feed anyway
(``solint='inf'``), so we first average DATA *and* MODEL_DATA over the whole
group (:func:`average_for_solve`: one row per baseline, every channel kept), and
solve on that 24x smaller copy. This is exact for the solutions we want:
with gains constant over the group, ``<g_i g_j^* M_ij> = g_i g_j^* <M_ij>``,
so averaging the model exactly as the data (same rows, same weights) keeps
the measurement equation; the time variation of the sky (drift, beam) is
in both. What it costs is the ability to follow gain changes *within* a
group (the simulated phase drift is < 1 deg per 309 s), and the per-channel
bandpass keeps full frequency resolution. Channel averaging is not used: the
bandpass must be per channel.

Solve sequence (``refant`` chosen by :func:`choose_refant` unless given)

1. K (only with ``do_k``): ``gaincal(gaintype='K')``, one delay per antenna and feed;
2. B: ``bandpass(bandtype='B', solnorm=True)``, one complex value per channel,
   antenna and feed, normalised (the overall scale goes into G). CASA solves
   channel by channel at ~30 ms of CPU per channel (96 antennas), the largest
   cost of the stage, so :func:`.bandpass.solve_bandpass` splits the channels between
   ``processes`` processes (``spw='0:a~b'``, ``solnorm=False``), merges the
   parts and normalises as ``solnorm=True`` would;
3. G: ``gaincal(gaintype='G', calmode='ap')`` with K and B applied, one
   complex gain per antenna and feed.

Every table is then checked (NOTES: CASA can drop solutions while reporting
success): unflagged solutions are counted against what was expected (antennas
of the MS x channels with data x feeds) and a table with a larger flagged
fraction than ``max_flagged_fraction`` fails the solve with
:class:`SolveError`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from contimg.calibration.bandpass import (
    BANDPASS_PROCESSES,
    solve_bandpass,
    start_bandpass_workers,
    stop_bandpass_workers,
)
from contimg.calibration.casatask import run_task as _run_task
from contimg.errors import ExternalToolError, InputFileError, ValidationError
from contimg.msmodel import MsModel, as_model, open_rows

log = logging.getLogger(__name__)

__all__ = ["APPLY_ORDER", "SolveError", "SolveResult", "TableStats", "average_for_solve", "average_with_mstransform",
           "choose_refant", "solve_calibrator", "table_stats"]

APPLY_ORDER = {"K": 0, "B": 1, "G": 2}
"""Order in which tables are solved and applied."""

INTERP_SOLVE = {"K": "nearest", "B": "nearest,linear"}
"""Interpolation of earlier tables applied on the fly during a solve."""

AVERAGE_CHUNK_BYTES = 64 << 20
"""DATA read per step of the time average (the working set is about 6x this)."""

MIN_SNR = 3.0
MIN_BASELINES_PER_ANTENNA = 4

class SolveError(ValidationError):
    """A solve produced too few solutions (the message names the MS, table and reason)."""


@dataclass
class TableStats:
    """Solution statistics of one calibration table."""

    table_type: str
    path: str
    n_solutions: int
    """Unflagged solutions (antenna x channel x feed)."""
    n_expected: int
    flagged_fraction: float
    flagged_by_antenna: dict[str, float] = field(default_factory=dict)
    """Flagged fraction of each antenna that has any flagged solution (by antenna name)."""
    antennas_without_data: list[str] = field(default_factory=list)
    """Antennas whose data are all flagged: no solution expected (see :func:`table_stats`)."""


@dataclass
class SolveResult:
    """What :func:`solve_calibrator` produced."""

    ms_path: str
    refant: str
    tables: dict[str, str]
    """Type ('K', 'B', 'G') → table path, in apply order."""
    stats: dict[str, TableStats]
    timings_s: dict[str, float] = field(default_factory=dict)
    snr: dict[str, float | None] = field(default_factory=dict)
    """Median solution SNR per table type (:func:`contimg.calibration.gate.solution_snr`)."""
    model_agreement: dict[str, float] | None = None
    """The solved tables applied to the averaged copy, against its model
    (:func:`contimg.calibration.gate.model_agreement`); None when not solved on an averaged copy."""

    def to_dict(self) -> dict:
        return asdict(self)


def average_for_solve(ms: MsModel | str | os.PathLike, out_path: str | Path) -> Path:
    """Average DATA and MODEL_DATA of the MS over the whole group into a new MS ``out_path``.

    One row per baseline remains, every channel is kept. Each visibility is
    the weighted mean (WEIGHT_SPECTRUM, flagged samples excluded) of its
    unflagged samples, of DATA and MODEL_DATA alike; the new weight is the sum
    of the weights, a channel with no unflagged sample is flagged; UVW and TIME
    are the means. The subtables are copied unchanged. Written with
    python-casacore (2-3x less I/O than ``mstransform``, which also averages
    CORRECTED_DATA and SIGMA_SPECTRUM). Replaces ``out_path``.

    Parameters
    ----------
    ms
        The group's MS, with DATA, MODEL_DATA, WEIGHT_SPECTRUM and FLAG: its model
        (:func:`contimg.msmodel.read_ms`; rows, channels, correlations, time span) or its path (read here).
    out_path
        The averaged MS to write (its parent is created); an existing one is removed first.

    Returns
    -------
    pathlib.Path
        ``out_path``: one row per baseline, TIME the group's mid-time, INTERVAL/EXPOSURE its span (s),
        CORRECTED_DATA a copy of the averaged DATA, WEIGHT/SIGMA(_SPECTRUM) from the summed weights.

    Raises
    ------
    contimg.errors.InputFileError
        If the MS cannot be opened or a baseline appears twice in one integration.
    """
    from casacore import tables

    ms = as_model(ms)
    ms_path, out_path, time_index = ms.path, Path(out_path), ms.time_index
    assert ms_path is not None and time_index is not None  # as_model: read from disk, with its rows
    shutil.rmtree(out_path, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open_rows(ms, "averaging") as tb:
        nrows = tb.nrows()
        _, first, bl = np.unique(ms.baseline_index, return_index=True, return_inverse=True)
        bl = bl.ravel()
        nbl = first.size
        shape = (nbl, ms.Nfreqs, ms.Npols)
        # single precision is ample for sums of 24 samples and halves the memory traffic
        sum_wd = np.zeros(shape, np.complex64)
        sum_wm = np.zeros(shape, np.complex64)
        sum_w = np.zeros(shape, np.float32)
        sum_uvw = np.zeros((nbl, 3))
        count = np.zeros(nbl)
        all_bl = np.arange(nbl)
        rows_per_chunk = max(1, AVERAGE_CHUNK_BYTES // (ms.Nfreqs * ms.Npols * 8))
        step = max(1, rows_per_chunk // nbl) * nbl if rows_per_chunk >= nbl else rows_per_chunk
        for r0 in range(0, nrows, step):
            n = min(step, nrows - r0)
            w = tb.getcol("WEIGHT_SPECTRUM", r0, n)
            w[tb.getcol("FLAG", r0, n)] = 0.0
            d = tb.getcol("DATA", r0, n)
            d *= w
            m = tb.getcol("MODEL_DATA", r0, n)
            m *= w
            uvw = tb.getcol("UVW", r0, n)
            b = bl[r0:r0 + n]
            t_chunk = time_index[r0:r0 + n]
            # rows of one chunk may repeat a baseline (several integrations): add per integration
            for t in np.unique(t_chunk):
                rows = np.flatnonzero(t_chunk == t)
                bb = b[rows]
                if bb.size == nbl and np.array_equal(bb, all_bl) and rows[-1] - rows[0] == nbl - 1:
                    sl = slice(rows[0], rows[-1] + 1)  # the usual layout: every baseline, in order
                    sum_wd += d[sl]
                    sum_wm += m[sl]
                    sum_w += w[sl]
                    sum_uvw += uvw[sl]
                    count += 1
                    continue
                if np.unique(bb).size != bb.size:
                    raise InputFileError(f"{ms_path}: a baseline appears twice in one integration")
                sum_wd[bb] += d[rows]
                sum_wm[bb] += m[rows]
                sum_w[bb] += w[rows]
                sum_uvw[bb] += uvw[rows]
                count[bb] += 1
        sel = tb.selectrows(np.sort(first))
        try:
            sel.copy(str(out_path), deep=True, valuecopy=True).close()
        finally:
            sel.close()
    order = np.argsort(first)  # the copy holds the first row of each baseline, in row order
    good = sum_w > 0
    inv = np.divide(1.0, sum_w, out=np.zeros_like(sum_w), where=good)
    data = (sum_wd * inv)[order]
    model = (sum_wm * inv)[order]
    weight = sum_w[order].astype(np.float32)
    flag = ~good[order]
    sigma = np.divide(1.0, np.sqrt(weight), out=np.zeros_like(weight), where=weight > 0)
    nvalid = (~flag).sum(axis=1)
    row_w = np.divide(np.where(flag, 0, weight).sum(axis=1), nvalid, out=np.zeros((nbl, ms.Npols), np.float32),
                      where=nvalid > 0)
    row_s = np.divide(1.0, np.sqrt(row_w), out=np.zeros_like(row_w), where=row_w > 0)
    span_s = (ms.end_mjd - ms.start_mjd) * 86400.0
    mid_s = ms.mid_mjd * 86400.0
    with tables.table(str(out_path), readonly=False, ack=False) as out:
        out.putcol("DATA", data)
        out.putcol("CORRECTED_DATA", data)
        out.putcol("MODEL_DATA", model)
        out.putcol("WEIGHT_SPECTRUM", weight)
        out.putcol("SIGMA_SPECTRUM", sigma.astype(np.float32))
        out.putcol("FLAG", flag)
        out.putcol("FLAG_ROW", flag.all(axis=(1, 2)))
        out.putcol("WEIGHT", row_w)
        out.putcol("SIGMA", row_s.astype(np.float32))
        out.putcol("UVW", (sum_uvw / np.maximum(count, 1)[:, None])[order])
        out.putcol("TIME", np.full(nbl, mid_s))
        out.putcol("TIME_CENTROID", np.full(nbl, mid_s))
        out.putcol("INTERVAL", np.full(nbl, span_s))
        out.putcol("EXPOSURE", np.full(nbl, span_s))
    return out_path


def average_with_mstransform(ms: MsModel | str | os.PathLike, out_path: str | Path) -> Path:
    """The same average with CASA ``mstransform`` (kept for comparison and as a cross-check in the tests).

    Parameters
    ----------
    ms
        The group's MS: its model (its span plus one integration is the ``timebin``) or its path (read here).
    out_path
        The averaged MS to write (its parent is created); an existing one is removed first.

    Returns
    -------
    pathlib.Path
        ``out_path``, all data columns averaged over the group (``keepflags=True``).

    Raises
    ------
    contimg.errors.ExternalToolError
        If ``mstransform`` fails or writes nothing.
    """
    ms = as_model(ms)
    ms_path, out_path = ms.path, Path(out_path)
    assert ms_path is not None  # as_model: read from disk
    shutil.rmtree(out_path, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    span_s = (ms.end_mjd - ms.start_mjd) * 86400.0 + ms.integration_time
    _run_task("mstransform", ms_path, vis=str(ms_path), outputvis=str(out_path), datacolumn="all",
              timeaverage=True, timebin=f"{span_s:.3f}s", keepflags=True)
    if not out_path.exists():
        raise ExternalToolError(f"{ms_path}: mstransform wrote no averaged copy at {out_path}")
    return out_path


def _antenna_quality(ms_path: Path, ms: MsModel) -> tuple[np.ndarray, np.ndarray]:
    """Unflagged fraction and amplitude scatter of each antenna with data of ``ms``.

    Read from the cross-correlations of the table ``ms_path`` (the MS itself or its time-averaged copy).
    The scatter is the median, over the antenna's baselines, of the robust
    (MAD) scatter across channels of log |DATA / MODEL_DATA|: an antenna whose
    data follow the model smoothly scores low.
    """
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        cross = np.flatnonzero(a1 != a2)
        data = tb.getcol("DATA")[cross]
        model = tb.getcol("MODEL_DATA")[cross]
        flag = tb.getcol("FLAG")[cross]
    a1, a2 = a1[cross], a2[cross]
    good = ~flag & (np.abs(model) > 0) & (np.abs(data) > 0)
    ratio = np.where(good, np.log(np.abs(data) + 1e-30) - np.log(np.abs(model) + 1e-30), np.nan)
    with warnings.catch_warnings():  # fully flagged baselines give NaN, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(ratio, axis=1, keepdims=True)
        mad = np.nanmedian(np.abs(ratio - med), axis=1)  # (Nrows, Npols)
        bl_scatter = np.nanmean(mad, axis=1)
    nant = ms.Nants_data
    frac = np.zeros(nant)
    scatter = np.full(nant, np.inf)
    for k, a in enumerate(ms.ant_array):
        rows = (a1 == a) | (a2 == a)
        if rows.any():
            frac[k] = good[rows].mean()
            vals = bl_scatter[rows]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                scatter[k] = float(np.median(vals))
    return frac, scatter


def choose_refant(ms: MsModel | str | os.PathLike, *, data_path: str | Path | None = None) -> str:
    """A healthy, central reference antenna (by name).

    Candidates are the antennas whose unflagged fraction is within 2% of the
    best; among them the one minimising (amplitude scatter / median scatter) +
    (distance from the array's median position / median distance) wins, i.e.
    consistent data first, then a short distance to the other antennas.

    Parameters
    ----------
    ms
        The MS: its model (the antennas with data and their positions) or its path (read here).
    data_path
        The table whose DATA, MODEL_DATA and FLAG are judged, e.g. the MS's time-averaged copy
        (default: the MS itself).

    Returns
    -------
    str
        The reference antenna's name.

    Raises
    ------
    SolveError
        If no antenna has unflagged cross-correlations.
    """
    ms = as_model(ms)
    ms_path = Path(data_path) if data_path is not None else ms.path
    assert ms_path is not None  # as_model: read from disk
    frac, scatter = _antenna_quality(ms_path, ms)
    if frac.max() <= 0:
        raise SolveError(f"{ms_path}: no antenna has unflagged cross-correlations with a model")
    cand = np.flatnonzero((frac >= frac.max() - 0.02) & np.isfinite(scatter))
    if cand.size == 0:
        cand = np.flatnonzero(frac >= frac.max() - 0.02)
        scatter = np.zeros_like(frac)
    pos = ms.data_antenna_positions
    dist = np.linalg.norm(pos - np.median(pos, axis=0), axis=1)
    s = scatter[cand] / max(float(np.median(scatter[cand])), 1e-12)
    d = dist[cand] / max(float(np.median(dist[cand])), 1e-12)
    k = int(cand[np.argmin(s + d)])
    log.info("%s: reference antenna %s (unflagged %.3f, scatter %.4f, %.0f m from centre)", ms_path,
             ms.data_antenna_names[k], frac[k], scatter[k], dist[k])
    return ms.data_antenna_names[k]


def _channels_with_data(ms_path: Path, antenna_numbers: np.ndarray) -> np.ndarray:
    """Boolean (Nants, Nfreqs, Npols): any unflagged cross-correlation of the antenna in the channel.

    Antennas follow ``antenna_numbers`` (the MS's antennas with data, ``MsModel.ant_array``).
    """
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        cross = a1 != a2
        good = ~tb.getcol("FLAG")[cross]
    a1, a2 = a1[cross], a2[cross]
    return np.stack([good[(a1 == a) | (a2 == a)].any(axis=0) for a in antenna_numbers])


def table_stats(table_path: str | Path, table_type: str, *, ms: MsModel, channels_with_data: np.ndarray) -> TableStats:
    """Count the unflagged solutions of a CASA calibration table against the expected number.

    Expected: for every antenna of the MS, its channels with unflagged data for B (one solution
    for K and G if it has any) x feeds. An antenna whose data are all flagged (a dead antenna,
    20 % of the array on a bad night) is not expected to have solutions: losing it costs
    sensitivity, not correctness; it is listed in ``antennas_without_data``. Rows of antennas
    without rows in the MS (CASA solves for every ANTENNA row) are ignored.

    ``channels_with_data``: (Nants, Nfreqs, Npols) per antenna (:func:`_channels_with_data`), or
    (Nfreqs, Npols) for the whole array.

    Parameters
    ----------
    table_path
        The CASA calibration table.
    table_type
        ``'K'``, ``'B'`` or ``'G'``: B is counted per channel, K and G once per antenna and feed.
    ms
        The MS's model: the antennas expected (those with data: ``ant_array``, ``data_antenna_names``).
    channels_with_data
        Booleans of unflagged cross-correlation data, shapes as above, antennas in ``ms.ant_array`` order.

    Returns
    -------
    TableStats
        Unflagged and expected solution counts, the flagged fraction (1 if nothing is expected), the
        flagged fraction of each antenna missing solutions, and the antennas without data.

    Raises
    ------
    SolveError
        If the table cannot be read, or a B table's channel count differs from the MS's.
    """
    from casacore import tables

    table_path = Path(table_path)
    try:
        with tables.table(str(table_path), ack=False) as tb:
            ant = tb.getcol("ANTENNA1")
            flag = tb.getcol("FLAG")  # (Nrows, Nchan, Npol)
    except RuntimeError as exc:
        raise SolveError(f"{table_path}: cannot read the {table_type} table: {exc}") from exc
    npol = flag.shape[2]
    per_ant = np.asarray(channels_with_data, bool)
    if per_ant.ndim == 2:
        per_ant = np.broadcast_to(per_ant, (ms.Nants_data, *per_ant.shape))
    n_ok = expected = 0
    by_ant: dict[str, float] = {}
    dead: list[str] = []
    names = ms.data_antenna_names
    for k, a in enumerate(ms.ant_array):
        if table_type == "B":
            chan_ok = per_ant[k][:, :npol]
            if flag.shape[1] != chan_ok.shape[0]:
                raise SolveError(f"{table_path}: B table has {flag.shape[1]} channels, the MS {chan_ok.shape[0]}")
        else:
            chan_ok = per_ant[k][:, :npol].any(axis=0, keepdims=True)
        want = int(chan_ok.sum())
        if want == 0:
            dead.append(names[k])
            continue
        rows = np.flatnonzero(ant == a)
        # an antenna with several rows (times) counts a solution if any row has it
        good = int((~flag[rows] & chan_ok[None]).any(axis=0).sum()) if rows.size else 0
        n_ok += good
        expected += want
        if good < want:
            by_ant[names[k]] = round(1.0 - good / want, 4)
    frac = 1.0 - n_ok / expected if expected else 1.0
    return TableStats(table_type=table_type, path=str(table_path), n_solutions=n_ok, n_expected=expected,
                      flagged_fraction=round(float(frac), 6), flagged_by_antenna=by_ant, antennas_without_data=dead)


def _check(stats: TableStats, ms_path: Path, max_flagged_fraction: float) -> None:
    if stats.n_expected == 0:
        raise SolveError(f"{ms_path}: no data to solve the {stats.table_type} table on")
    if stats.flagged_fraction > max_flagged_fraction:
        worst = sorted(stats.flagged_by_antenna.items(), key=lambda kv: -kv[1])[:5]
        raise SolveError(
            f"{ms_path}: {stats.table_type} solve flagged {stats.flagged_fraction:.1%} of "
            f"{stats.n_expected} solutions ({stats.n_solutions} found), more than the allowed "
            f"{max_flagged_fraction:.1%}; worst antennas {worst}"
        )
    log.info("%s: %s table %d/%d solutions (%.2f%% flagged)", ms_path, stats.table_type, stats.n_solutions,
             stats.n_expected, 100 * stats.flagged_fraction)


def solve_calibrator(
    ms: MsModel | str | os.PathLike,
    *,
    out_dir: str | Path,
    prefix: str,
    scratch_dir: str | Path,
    do_k: bool = False,
    refant: str | None = None,
    max_flagged_fraction: float = 0.2,
    average: bool = True,
    processes: int = BANDPASS_PROCESSES,
) -> SolveResult:
    """Solve K (optional), B and G on a calibrator group whose MODEL_DATA is set.

    Parameters
    ----------
    ms
        The calibrator group's MS, with MODEL_DATA written (:mod:`.model`): its model
        (:func:`contimg.msmodel.read_ms`, read once by the caller) or its path (read here).
    out_dir
        Directory of the tables (``<prefix>.K``, ``.B``, ``.G``); existing
        tables of the same names are replaced.
    prefix
        Table name prefix, e.g. the calibration set name.
    scratch_dir
        Where the time-averaged copy is written (removed afterwards).
    do_k
        Solve delays first.
    refant
        Reference antenna name; None chooses one (:func:`choose_refant`).
    max_flagged_fraction
        A table with more flagged solutions fails the solve.
    average
        Solve on the time-averaged copy (default); False solves on the MS
        itself (the slow, naive way, for comparison).
    processes
        Processes sharing the bandpass solve over channel ranges
        (:func:`.bandpass.solve_bandpass`); 1 solves in this process only.

    Returns
    -------
    SolveResult
        The MS, reference antenna, ``{type: table path}`` in apply order, per-table :class:`TableStats`,
        step timings (s), median solution SNR per type, and (averaged copy only) the corrected copy's
        agreement with its model.

    Raises
    ------
    SolveError
        If a table has too many flagged solutions or no data.
    ExternalToolError
        If a CASA task fails.
    """
    ms = as_model(ms)
    ms_path = ms.path
    assert ms_path is not None  # as_model: a model read from disk
    out_dir, scratch_dir = Path(out_dir), Path(scratch_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    work = ms_path
    avg_path = scratch_dir / f"{prefix}.avg.ms"
    partial: dict[str, Path] = {}
    # started now, the workers import casatasks while this process averages
    workers = start_bandpass_workers(processes - 1) if processes > 1 else []
    try:
        if average:
            work = average_for_solve(ms, avg_path)
            timings["average"] = round(time.perf_counter() - t0, 3)
        chans = _channels_with_data(work, ms.ant_array)
        if not chans.any():
            raise SolveError(f"{ms_path}: every visibility is flagged; nothing to solve")
        if refant is None:
            t1 = time.perf_counter()
            refant = choose_refant(ms, data_path=work)
            timings["refant"] = round(time.perf_counter() - t1, 3)
        elif refant not in ms.data_antenna_names:
            raise InputFileError(f"{ms_path}: reference antenna {refant!r} has no data in this MS")
        stats: dict[str, TableStats] = {}
        common = dict(vis=str(work), refant=refant, solint="inf", minsnr=MIN_SNR, minblperant=MIN_BASELINES_PER_ANTENNA)
        steps = (["K"] if do_k else []) + ["B", "G"]
        for kind in steps:
            # solved under a temporary name: a failing rerun never damages registered tables
            path = out_dir / f".{prefix}.{kind}.partial"
            shutil.rmtree(path, ignore_errors=True)
            partial[kind] = path
            prior = [(k, str(partial[k])) for k in ("K", "B") if k in stats]
            gaintable, interp = [p for _, p in prior], [INTERP_SOLVE[k] for k, _ in prior]
            t1 = time.perf_counter()
            if kind == "K":
                _run_task("gaincal", ms_path, caltable=str(path), gaintype="K", combine="scan", **common)
            elif kind == "B":
                solve_bandpass(path, ms_path=ms_path, channels_with_data=np.any(chans, axis=0), processes=processes,
                               workers=workers, combine="scan", gaintable=gaintable, interp=interp, **common)
            else:
                _run_task("gaincal", ms_path, caltable=str(path), gaintype="G", calmode="ap", combine="scan",
                          gaintable=gaintable, interp=interp, **common)
            timings[kind] = round(time.perf_counter() - t1, 3)
            if not path.exists():
                raise SolveError(f"{ms_path}: CASA wrote no {kind} table ({path})")
            st = table_stats(path, kind, ms=ms, channels_with_data=chans)
            _check(st, ms_path, max_flagged_fraction)
            stats[kind] = st
        from contimg.calibration.gate import model_agreement, solution_snr

        snr = {kind: solution_snr(path) for kind, path in partial.items()}
        agreement = None
        if average:
            t1 = time.perf_counter()
            _run_task("applycal", ms_path, vis=str(work), gaintable=[str(p) for p in partial.values()],
                      interp=[INTERP_SOLVE.get(k, "nearest") for k in partial], applymode="calflagstrict",
                      calwt=[False] * len(partial), flagbackup=False)
            agreement = model_agreement(work)
            timings["check"] = round(time.perf_counter() - t1, 3)
        tables_: dict[str, str] = {}
        for kind, path in partial.items():
            final = out_dir / f"{prefix}.{kind}"
            shutil.rmtree(final, ignore_errors=True)
            path.rename(final)
            tables_[kind] = stats[kind].path = str(final)
        partial.clear()
    finally:
        stop_bandpass_workers(workers)
        if average:
            shutil.rmtree(avg_path, ignore_errors=True)
        for path in partial.values():
            shutil.rmtree(path, ignore_errors=True)
    timings["total"] = round(time.perf_counter() - t0, 3)
    return SolveResult(ms_path=str(ms_path), refant=refant, tables=tables_, stats=stats, timings_s=timings, snr=snr,
                       model_agreement=agreement)
