"""QA plots of calibration solutions, written as PNG beside the tables.

* ``<table>.png`` for B: small multiples, one amplitude/phase panel pair per
  antenna against frequency (MHz), phase unwrapped along frequency, flagged
  channels as gaps, the reference antenna labelled;
* ``<table>.png`` for G: amplitude and phase against antenna (every antenna
  named), one marker per feed, flagged solutions not drawn;
* ``<table>.png`` for K: delay (ns) against antenna, the same way.

:func:`read_solutions` reads a table into a
:class:`contimg.plots.calibration.CalSolutions` (spectral windows joined along
frequency); the drawing is :mod:`contimg.plots.calibration`. The paths are
recorded in the calibration set's ``qa`` JSON (``plots``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from contimg.plots.calibration import CalSolutions, bandpass_figure, delays_figure, gains_figure
from contimg.plots.common import save_png

log = logging.getLogger(__name__)

__all__ = ["plot_solutions", "read_solutions", "solution_errors"]

_FEEDS = ("X", "Y")


def _chan_freqs(table: Path) -> list[np.ndarray] | None:
    from casacore import tables

    sub = str(table) + "/SPECTRAL_WINDOW"
    if not os.path.isdir(sub):
        return None
    with tables.table(sub, ack=False) as tb:
        return [np.asarray(tb.getcell("CHAN_FREQ", i), float).ravel() for i in range(tb.nrows())]


def read_solutions(table: str | os.PathLike, kind: str, *, refant: str | None = None,
                   freq_hz: np.ndarray | None = None) -> CalSolutions:
    """The solutions of a CASA calibration table, one row per (antenna, solution time), spectral windows joined.

    Parameters
    ----------
    table
        The table (K, B or G).
    kind
        ``'K'`` (``FPARAM``, delays in ns) or ``'B'``/``'G'`` (``CPARAM``).
    refant
        Name of the reference antenna (labelled on the plots), if known.
    freq_hz
        Channel frequencies (Hz) to use when the table has no ``SPECTRAL_WINDOW`` subtable (one window).

    Returns
    -------
    CalSolutions
        Rows ordered by antenna number and time; channels by frequency; a row's channels of a window it has
        no solution for are flagged. Antennas whose every solution is flagged are named in ``no_solution``.
    """
    from casacore import tables

    table = Path(table)
    column = "FPARAM" if kind == "K" else "CPARAM"
    with tables.table(str(table), ack=False) as tb:
        ant = np.asarray(tb.getcol("ANTENNA1"), int)
        spw = np.asarray(tb.getcol("SPECTRAL_WINDOW_ID"), int)
        time_s = np.asarray(tb.getcol("TIME"), float)
        vals = [np.asarray(tb.getcell(column, r)) for r in range(tb.nrows())]
        flags = [np.asarray(tb.getcell("FLAG", r), bool) for r in range(tb.nrows())]
    with tables.table(str(table) + "/ANTENNA", ack=False) as tb:
        names = [str(n) for n in tb.getcol("NAME")]
    chan = _chan_freqs(table)
    windows = sorted(set(spw.tolist()))
    nfeeds = max((v.shape[1] for v in vals), default=len(_FEEDS))
    nchan = {w: next(v.shape[0] for v, s in zip(vals, spw) if s == w) for w in windows}
    freq_parts = []
    for w in windows:
        f = chan[w] if chan is not None and w < len(chan) else (np.asarray(freq_hz, float).ravel()
                                                                 if freq_hz is not None else np.arange(nchan[w], dtype=float))
        if f.size != nchan[w]:  # a solution per window (K, G): its mean frequency
            f = np.full(nchan[w], float(np.mean(f)) if f.size else np.nan)
        freq_parts.append(f)
    offsets = dict(zip(windows, np.cumsum([0] + [nchan[w] for w in windows[:-1]]).tolist()))
    total = int(sum(nchan.values()))
    order = np.argsort(np.concatenate(freq_parts), kind="stable") if freq_parts else np.zeros(0, int)
    keys = sorted(set(zip(ant.tolist(), np.round(time_s, 3).tolist())))
    index = {k: i for i, k in enumerate(keys)}
    dtype = float if kind == "K" else complex
    values = np.full((len(keys), total, nfeeds), np.nan, dtype=dtype)
    flagged = np.ones((len(keys), total, nfeeds), dtype=bool)
    for r in range(ant.size):
        i = index[(int(ant[r]), round(float(time_s[r]), 3))]
        o = offsets[int(spw[r])]
        n, p = vals[r].shape[0], vals[r].shape[1]
        values[i, o:o + n, :p] = vals[r]
        flagged[i, o:o + n, :p] = flags[r]
    values, flagged = values[:, order], flagged[:, order]
    row_names = [names[a] if 0 <= a < len(names) else str(a) for a, _ in keys]
    present = {n for n, f in zip(row_names, flagged) if not f.all()}
    absent = tuple(n for n in dict.fromkeys(row_names) if n not in present)
    return CalSolutions(
        table=table.name, kind=kind, antenna_names=row_names,
        time_mjd=np.asarray([t for _, t in keys], float) / 86400.0,
        freq_hz=np.concatenate(freq_parts)[order] if freq_parts else np.zeros(0),
        values=values, flags=flagged, feed_names=_FEEDS[:nfeeds] if nfeeds <= len(_FEEDS) else tuple(map(str, range(nfeeds))),
        refant=refant, no_solution=absent,
    )


def plot_solutions(tables: dict[str, str], *, refant: str | None = None,
                   freq_hz: np.ndarray | None = None) -> dict[str, str]:
    """Write a PNG beside each table; returns ``{type: png path}``.

    A plot that fails is logged and skipped: QA never fails a calibration.

    Parameters
    ----------
    tables
        ``{type: table path}`` with type ``'K'``, ``'B'`` or ``'G'``; each PNG is written as ``<table>.png``.
    refant
        Name of the reference antenna, labelled on every plot (None: not marked).
    freq_hz
        Channel frequencies (Hz), used only for a table without a ``SPECTRAL_WINDOW`` subtable (the
        frequencies normally come from the table itself).

    Returns
    -------
    dict[str, str]
        ``{type: png path}`` for the plots written (failed ones left out).
    """
    out: dict[str, str] = {}
    for kind, path in tables.items():
        table = Path(path)
        png = table.with_name(table.name + ".png")
        try:
            sol = read_solutions(table, kind, refant=refant, freq_hz=freq_hz)
            if kind == "B":
                fig = bandpass_figure(sol)
            elif kind == "K":
                fig = delays_figure(sol)
            else:
                fig = gains_figure(sol)
            save_png(fig, png)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("%s: QA plot failed: %s", table, exc)
            continue
        out[kind] = str(png)
    return out


def solution_errors(tables: dict[str, str], *, antenna_numbers: np.ndarray, true_gains: np.ndarray,
                    refant_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-antenna errors of B x G solutions against known gains (simulations, QA of the method).

    Parameters
    ----------
    tables
        ``{'B': path, 'G': path}`` solved without K.
    antenna_numbers
        Antennas to compare, shape (Nants,).
    true_gains
        Their true gains in the pyuvdata/UVCal convention (visibility = ``g_i g_j^* V``),
        shape (Nants, 2 feeds, Nfreqs) on the table's channel grid. CASA's
        solutions are the complex conjugates of these (NOTES).
    refant_index
        Row of the reference antenna in ``antenna_numbers``: its phase is
        removed from every antenna per channel and feed, and it is left out.

    Returns
    -------
    amplitude, phase
        Median over channels and feeds of ``| |g_casa / conj(g_true)| - 1 |``
        (fraction) and of the absolute phase error (degrees), per antenna,
        shape (Nants - 1,).
    """
    from casacore import tables as ct

    total = np.ones(true_gains.shape, complex)
    for kind in ("B", "G"):
        with ct.table(str(tables[kind]), ack=False) as t:
            ant = t.getcol("ANTENNA1")
            val = t.getcol("CPARAM")  # (rows, channels, feeds)
        row = {int(a): r for r, a in enumerate(ant)}
        for k, a in enumerate(antenna_numbers):
            total[k] *= val[row[int(a)]].T  # G's single channel broadcasts over frequency
    ratio = total / np.conj(true_gains)
    ratio *= np.exp(-1j * np.angle(ratio[refant_index]))[None]
    amp = np.median(np.abs(np.abs(ratio) - 1.0), axis=(1, 2))
    phase = np.degrees(np.median(np.abs(np.angle(ratio)), axis=(1, 2)))
    keep = np.arange(len(antenna_numbers)) != refant_index
    return amp[keep], phase[keep]
