"""QA plots of calibration solutions, written as PNG beside the tables.

* ``<table>.png`` for B: amplitude and phase against frequency, one line per
  antenna and feed (flagged channels left out), the reference antenna drawn
  in black;
* ``<table>.png`` for G: amplitude and phase per antenna, one marker per feed;
* ``<table>.png`` for K: delay (ns) per antenna and feed.

The paths are recorded in the calibration set's ``qa`` JSON (``plots``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["plot_solutions", "solution_errors"]

_FEEDS = ("X", "Y")


def _read(table: Path, column: str):
    from casacore import tables

    with tables.table(str(table), ack=False) as tb:
        ant = tb.getcol("ANTENNA1")
        val = tb.getcol(column)
        flag = tb.getcol("FLAG")
    with tables.table(str(table) + "/ANTENNA", ack=False) as tb:
        names = list(tb.getcol("NAME"))
    return ant, val, flag, names


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True, constrained_layout=True)
    fig.suptitle(title)
    return plt, fig, axes


def _plot_b(table: Path, out: Path, *, refant: str | None, freq_hz: np.ndarray | None) -> None:
    ant, val, flag, names = _read(table, "CPARAM")
    x = freq_hz / 1e6 if freq_hz is not None and freq_hz.size == val.shape[1] else np.arange(val.shape[1])
    plt, fig, (ax_a, ax_p) = _figure(f"Bandpass {table.name}")
    for r, a in enumerate(ant):
        for p in range(val.shape[2]):
            good = ~flag[r, :, p]
            if not good.any():
                continue
            is_ref = refant is not None and names[a] == refant
            style = dict(color="k", lw=1.2, zorder=3) if is_ref else dict(lw=0.4, alpha=0.6)
            v = np.where(good, val[r, :, p], np.nan)
            ax_a.plot(x, np.abs(v), **style)
            ax_p.plot(x, np.degrees(np.angle(v)), **style)
    ax_a.set_ylabel("amplitude")
    ax_p.set_ylabel("phase (deg)")
    ax_p.set_xlabel("frequency (MHz)" if x is not None and freq_hz is not None else "channel")
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _plot_per_antenna(table: Path, out: Path, *, kind: str) -> None:
    column = "FPARAM" if kind == "K" else "CPARAM"
    ant, val, flag, names = _read(table, column)
    plt, fig, (ax_a, ax_p) = _figure(f"{'Delays' if kind == 'K' else 'Gains'} {table.name}")
    used = sorted(set(int(a) for a in ant[~flag.all(axis=(1, 2))]))
    pos = {a: k for k, a in enumerate(used)}
    for p in range(val.shape[2]):
        good = ~flag[:, 0, p] & np.isin(ant, used)
        xs = np.array([pos[int(a)] for a in ant[good]])
        v = val[good, 0, p]
        if kind == "K":
            ax_a.plot(xs, v, "o", ms=3, label=_FEEDS[p % 2])
        else:
            ax_a.plot(xs, np.abs(v), "o", ms=3, label=_FEEDS[p % 2])
            ax_p.plot(xs, np.degrees(np.angle(v)), "o", ms=3, label=_FEEDS[p % 2])
    ax_a.set_ylabel("delay (ns)" if kind == "K" else "amplitude")
    ax_p.set_ylabel("" if kind == "K" else "phase (deg)")
    ax_a.legend(loc="best", fontsize="small")
    step = max(1, len(used) // 24)
    ax_p.set_xticks(range(0, len(used), step))
    ax_p.set_xticklabels([names[used[k]] for k in range(0, len(used), step)], rotation=90, fontsize="x-small")
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_solutions(tables: dict[str, str], *, refant: str | None = None,
                   freq_hz: np.ndarray | None = None) -> dict[str, str]:
    """Write a PNG beside each table; returns ``{type: png path}``.

    A plot that fails is logged and skipped: QA never fails a calibration.

    Parameters
    ----------
    tables
        ``{type: table path}`` with type ``'K'``, ``'B'`` or ``'G'``; each PNG is written as ``<table>.png``.
    refant
        Name of the reference antenna, drawn in black on the bandpass plot (None: not highlighted).
    freq_hz
        Channel frequencies (Hz), shape (Nfreqs,), the bandpass plot's x axis in MHz; None or a length
        different from the table's channels plots against channel index.

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
            if kind == "B":
                _plot_b(table, png, refant=refant, freq_hz=freq_hz)
            else:
                _plot_per_antenna(table, png, kind=kind)
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
