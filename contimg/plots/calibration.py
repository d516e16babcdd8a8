"""Calibration solutions drawn per antenna: bandpass small multiples, gains and delays by antenna name.

Bandpass (:func:`bandpass_figure`)
    One panel pair per antenna with any unflagged solution, in a grid:
    amplitude above, phase below, frequency (MHz) along x, one colour per feed.
    Phase is unwrapped along frequency (:func:`bandpass_curves`), so a delay
    appears as a straight line rather than a saw-tooth of wraps; flagged channels
    are gaps, never drawn. All panels share their axes, so a deviant antenna
    stands out; a panel whose amplitudes leave the common range (chosen from the
    0.5-99.5th percentiles of the typical antennas) says so in red in its title
    and is drawn clipped to the panel. The
    reference antenna's panel is labelled "(ref)"; antennas with no solution at
    all are listed beneath the grid.

Gains and delays (:func:`gains_figure`, :func:`delays_figure`)
    Amplitude and phase (or delay in ns) against antenna, every antenna named on
    the x axis (a common name prefix such as ``DSA-`` goes into the axis label),
    one marker per feed, flagged solutions not drawn, the reference antenna's
    name in bold.

The arrays come from :class:`CalSolutions` (built from a CASA table by
:func:`contimg.calibration.qa.read_solutions`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from contimg.plots.common import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CalSolutions", "bandpass_curves", "bandpass_figure", "delays_figure", "gains_figure"]

FEED_COLOURS = ("C0", "C3")
"""Colours of the first and second feed (X, Y)."""


@dataclass(frozen=True)
class CalSolutions:
    """The solutions of one calibration table, one row per (antenna, solution time).

    Spectral windows are already joined along frequency (sorted), so every row has ``Nfreqs`` channels.
    """

    table: str
    """The table's name (for titles)."""
    kind: str
    """``'B'``, ``'G'`` or ``'K'``."""
    antenna_names: list[str]
    """Name of each row's antenna, length Nrows."""
    time_mjd: np.ndarray
    """Solution time of each row (MJD), shape (Nrows,)."""
    freq_hz: np.ndarray
    """Channel frequencies (Hz), shape (Nfreqs,) (length 1 for G and K)."""
    values: np.ndarray
    """Complex gains (B, G) or delays in ns (K), shape (Nrows, Nfreqs, Nfeeds)."""
    flags: np.ndarray
    """True where a solution is flagged, same shape as ``values``."""
    feed_names: tuple[str, ...] = ("X", "Y")
    refant: str | None = None
    """The reference antenna's name, if known."""
    no_solution: tuple[str, ...] = ()
    """Antennas in the table with every solution flagged (not drawn)."""


def bandpass_curves(values: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and unwrapped phase (deg) of complex solutions along their last-but-one axis, NaN where flagged.

    Phase is unwrapped along frequency over the unflagged channels only, so a
    gap of flagged channels does not break the unwrapping (the phase is assumed
    to change by less than half a turn across a gap), then shifted by whole
    turns so that its median lies within +-180 deg.

    Parameters
    ----------
    values
        Complex solutions, shape (..., Nfreqs, Nfeeds) or (Nfreqs,).
    flags
        True where flagged, same shape (non-finite values count as flagged).

    Returns
    -------
    amplitude, phase_deg
        Float arrays of the same shape, NaN at flagged channels.
    """
    v = np.asarray(values)
    bad = np.asarray(flags, dtype=bool) | ~np.isfinite(v)
    one_d = v.ndim == 1
    if one_d:
        v, bad = v[:, None], bad[:, None]
    amp = np.where(bad, np.nan, np.abs(v))
    phase = np.full(v.shape, np.nan)
    lead = v.shape[:-2]
    for idx in np.ndindex(*lead, v.shape[-1]):
        sel = (*idx[:-1], slice(None), idx[-1])
        good = ~bad[sel]
        if not good.any():
            continue
        unwrapped = np.degrees(np.unwrap(np.angle(v[sel][good])))
        unwrapped -= 360.0 * np.round(np.median(unwrapped) / 360.0)
        out = np.full(good.shape, np.nan)
        out[good] = unwrapped
        phase[sel] = out
    if one_d:
        return amp[:, 0], phase[:, 0]
    return amp, phase


def _limits(x: np.ndarray, *, lo_pct: float = 0.5, hi_pct: float = 99.5, pad: float = 0.08,
            floor: float = 0.0) -> tuple[float, float]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return -1.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [lo_pct, hi_pct]))
    span = max(hi - lo, floor)
    mid = 0.5 * (lo + hi)
    return mid - (0.5 + pad) * span, mid + (0.5 + pad) * span


def _typical_range(per_antenna: Sequence[np.ndarray], *, pad: float = 0.12) -> tuple[float, float]:
    """A range holding the typical antennas' values (0.5-99.5th percentile each), not a deviant antenna's.

    An antenna is typical when its median lies within 5 (scaled) median absolute deviations of the median
    antenna's (at least 2 % of it); the range spans the typical antennas' percentiles, padded by ``pad``.
    """
    stats = []
    for v in per_antenna:
        finite = np.asarray(v, float)[np.isfinite(v)]
        if finite.size:
            lo, med, hi = np.percentile(finite, [0.5, 50, 99.5])
            stats.append((lo, med, hi))
    if not stats:
        return -1.0, 1.0
    lows, meds, highs = (np.array(c) for c in zip(*stats))
    centre = float(np.median(meds))
    spread = max(5 * 1.4826 * float(np.median(np.abs(meds - centre))), 0.02 * abs(centre), 1e-6)
    typical = np.abs(meds - centre) <= spread
    lo, hi = float(lows[typical].min()), float(highs[typical].max())
    span = max(hi - lo, 0.02 * abs(centre), 1e-6)
    return lo - pad * span, hi + pad * span


def _antenna_rows(sol: CalSolutions) -> dict[str, np.ndarray]:
    """Row indices per antenna with any unflagged solution, in the table's antenna order."""
    rows: dict[str, list[int]] = {}
    for r, name in enumerate(sol.antenna_names):
        if not np.asarray(sol.flags[r], bool).all():
            rows.setdefault(name, []).append(r)
    return {k: np.asarray(v) for k, v in rows.items()}


def _name_list(names: Sequence[str]) -> str:
    """Antenna names, numbered runs compressed: ``DSA-002-007, 009, 011-013``."""
    short, prefix = _short_names(names)
    if len(names) < 3 or not all(n.isdigit() for n in short):
        return ", ".join(names)
    numbers = [int(n) for n in short]
    width = max(len(n) for n in short)
    runs: list[tuple[int, int]] = []
    for v in numbers:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    parts = [f"{a:0{width}d}" if a == b else f"{a:0{width}d}\u2013{b:0{width}d}" for a, b in runs]
    return prefix + ", ".join(parts)


def _footnote(sol: CalSolutions, width_in: float) -> list[str]:
    """The wrapped lines naming the antennas without any solution (none: empty)."""
    if not sol.no_solution:
        return []
    n = len(sol.no_solution)
    text = f"no solution (all flagged or absent), {n} antenna{'s' if n != 1 else ''}: {_name_list(sol.no_solution)}"
    return textwrap.wrap(text, width=max(40, int(width_in * 16)))


_FOOT_LINE_IN = 0.14
"""Height of a footnote line (7 pt text), inches."""


def _nice_ticks(lo: float, hi: float, n: int = 3) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    return [float(v) for v in MaxNLocator(n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= v <= hi]


def _fmt(v: float, ticks: Sequence[float]) -> str:
    """``v`` with as many decimals as the spacing of ``ticks`` needs."""
    step = min((abs(b - a) for a, b in zip(ticks, ticks[1:])), default=1.0) or 1.0
    exponent = math.floor(math.log10(step))
    decimals = max(0, -exponent + (1 if round(step / 10.0 ** exponent, 6) == 2.5 else 0))
    return f"{v:.{decimals}f}"


def bandpass_figure(sol: CalSolutions, *, ncols: int | None = None, title: str | None = None) -> Figure:
    """Small multiples of a bandpass: amplitude over unwrapped phase per antenna (see the module docstring).

    The grid is drawn in one axes in inch coordinates (panels, frames, ticks and labels placed by hand):
    ~200 matplotlib axes would take several seconds to build and draw, this takes about one.

    Parameters
    ----------
    sol
        Bandpass solutions (``kind`` ``'B'``).
    ncols
        Antennas per row of the grid; None: about 1.4 times as many columns as rows.
    title
        Figure title; None: "Bandpass <table>".

    Returns
    -------
    matplotlib.figure.Figure
        The panel layout is in ``fig.contimg_panels``: ``{antenna: (amplitude box, phase box)}``, boxes as
        ``(x0, y0, width, height)`` in inches from the lower left.
    """
    from matplotlib.collections import LineCollection

    rows = _antenna_rows(sol)
    names = list(rows)
    n = max(1, len(names))
    ncols = ncols or max(1, int(math.ceil(math.sqrt(n * 1.4))))
    nrows = int(math.ceil(n / ncols))
    amp, phase = bandpass_curves(sol.values, sol.flags)
    x = np.asarray(sol.freq_hz, float) / 1e6
    good_rows = np.concatenate(list(rows.values())) if rows else np.zeros(0, int)
    a_lo, a_hi = _typical_range([amp[r] for r in rows.values()])
    p_lo, p_hi = _limits(phase[good_rows], lo_pct=0.1, hi_pct=99.9, pad=0.08, floor=20.0)
    x_lo, x_hi = (float(np.nanmin(x)), float(np.nanmax(x))) if x.size and np.isfinite(x).any() else (0.0, 1.0)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    x_ticks, a_ticks, p_ticks = _nice_ticks(x_lo, x_hi), _nice_ticks(a_lo, a_hi), _nice_ticks(p_lo, p_hi)

    cell_w, pan_w, amp_h, ph_h, gap_h = 1.55, 1.43, 0.62, 0.62, 0.34
    left, right = 0.85, 0.2
    feeds = ", ".join(f"{f} {c_}" for f, c_ in zip(sol.feed_names, ("blue", "red")))
    sub = (f"{len(names)} antennas (feeds: {feeds}); phase unwrapped along frequency; flagged channels left blank; "
           "common axes, red label: >1 % of channels outside them (drawn at the edge)")
    if sol.refant:
        sub += f"; reference antenna {sol.refant}"
    lines = textwrap.wrap(sub, width=max(40, int((ncols * cell_w) * 15)))
    top = 0.75 + 0.14 * (len(lines) - 1)
    foot = _footnote(sol, ncols * cell_w)
    foot_h = _FOOT_LINE_IN * len(foot) + (0.12 if foot else 0.0)
    bottom = 0.62 + foot_h
    width = left + ncols * cell_w + right
    height = bottom + nrows * (amp_h + ph_h) + (nrows - 1) * gap_h + top
    fig = new_figure(width, height, dpi=100 if ncols <= 8 else 80)  # small grids: sharper, large ones: bounded
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    frames, grid, marks = [], [], []
    panels: dict[str, tuple[tuple[float, float, float, float], tuple[float, float, float, float]]] = {}
    tick_len = 0.04

    def to_x(f: np.ndarray, x0: float) -> np.ndarray:
        return x0 + (f - x_lo) / (x_hi - x_lo) * pan_w

    def to_y(v: np.ndarray, y0: float, h: float, lo: float, hi: float) -> np.ndarray:
        return y0 + np.clip((v - lo) / (hi - lo), 0.0, 1.0) * h

    for k, name in enumerate(names):
        r, c = divmod(k, ncols)
        x0 = left + c * cell_w
        ya = height - top - r * (amp_h + ph_h + gap_h) - amp_h
        yp = ya - ph_h
        panels[name] = ((x0, ya, pan_w, amp_h), (x0, yp, pan_w, ph_h))
        for y0, h in ((ya, amp_h), (yp, ph_h)):
            frames.append([(x0, y0), (x0 + pan_w, y0), (x0 + pan_w, y0 + h), (x0, y0 + h), (x0, y0)])
            grid.extend([[(xt, y0), (xt, y0 + h)] for xt in to_x(np.asarray(x_ticks), x0)])
        grid.extend([[(x0, yt), (x0 + pan_w, yt)] for yt in to_y(np.asarray(a_ticks), ya, amp_h, a_lo, a_hi)])
        grid.extend([[(x0, yt), (x0 + pan_w, yt)] for yt in to_y(np.asarray(p_ticks), yp, ph_h, p_lo, p_hi)])
        outside = total = 0
        for row in rows[name]:
            for p in range(sol.values.shape[2]):
                colour = FEED_COLOURS[p % len(FEED_COLOURS)]
                ax.plot(to_x(x, x0), to_y(amp[row, :, p], ya, amp_h, a_lo, a_hi), color=colour, lw=0.6)
                ax.plot(to_x(x, x0), to_y(phase[row, :, p], yp, ph_h, p_lo, p_hi), color=colour, lw=0.6)
            a_row = amp[row]
            finite = np.isfinite(a_row)
            outside += int(((a_row[finite] > a_hi) | (a_row[finite] < a_lo)).sum())
            total += int(finite.sum())
        outlier = total > 0 and outside > 0.01 * total
        is_ref = sol.refant is not None and name == sol.refant
        label = f"{name} (ref)" if is_ref else name
        if outlier:
            a_sel = amp[rows[name]]
            label += f"  amp {np.nanmin(a_sel):.2f}-{np.nanmax(a_sel):.2f}"
        ax.text(x0 + pan_w / 2, ya + amp_h + 0.03, label, ha="center", va="bottom", fontsize=7,
                color="C3" if outlier else "black", fontweight="bold" if is_ref else "normal")
        if c == 0:
            for ticks, y0, h, lo, hi in ((a_ticks, ya, amp_h, a_lo, a_hi), (p_ticks, yp, ph_h, p_lo, p_hi)):
                for t, yt in zip(ticks, to_y(np.asarray(ticks), y0, h, lo, hi)):
                    marks.append([(x0 - tick_len, yt), (x0, yt)])
                    ax.text(x0 - tick_len - 0.02, yt, _fmt(t, ticks), ha="right", va="center", fontsize=6)
            ax.text(x0 - 0.42, ya + amp_h / 2, "amp", rotation=90, ha="center", va="center", fontsize=7)
            ax.text(x0 - 0.42, yp + ph_h / 2, "phase (deg)", rotation=90, ha="center", va="center", fontsize=7)
        if k + ncols >= len(names):
            for t, xt in zip(x_ticks, to_x(np.asarray(x_ticks), x0)):
                marks.append([(xt, yp - tick_len), (xt, yp)])
                ax.text(xt, yp - tick_len - 0.02, _fmt(t, x_ticks), ha="center", va="top", fontsize=6)
    ax.add_collection(LineCollection(grid, colors="0.88", linewidths=0.4, zorder=0))
    ax.add_collection(LineCollection(frames, colors="black", linewidths=0.6, zorder=3))
    ax.add_collection(LineCollection(marks, colors="black", linewidths=0.6, zorder=3))
    ax.text(width / 2, foot_h + 0.12, "frequency (MHz)", ha="center", va="bottom", fontsize=9)
    ax.text(left, height - 0.2, title or f"Bandpass {sol.table}", fontsize=11, va="top")
    ax.text(left, height - 0.45, "\n".join(lines), fontsize=8, va="top")
    if foot:
        ax.text(left, 0.08, "\n".join(foot), fontsize=7, va="bottom", linespacing=1.3)
    fig.contimg_panels = panels  # type: ignore[attr-defined]
    return fig


def _short_names(names: Sequence[str]) -> tuple[list[str], str]:
    """Names without their common prefix (``DSA-001`` -> ``001``) and that prefix."""
    if len(names) < 2:
        return list(names), ""
    prefix = ""
    for chars in zip(*names):
        if len(set(chars)) != 1:
            break
        prefix += chars[0]
    # keep whole tokens: cut the prefix back to its last separator
    cut = max(prefix.rfind(sep) for sep in "-_ .") + 1
    prefix = prefix[:cut]
    return [n[len(prefix):] or n for n in names], prefix


def _per_antenna(sol: CalSolutions, panels: Sequence[tuple[str, str]], title: str) -> Figure:
    """One marker per feed and solution against antenna, for each ``(quantity, ylabel)`` panel."""
    rows = _antenna_rows(sol)
    names = list(rows)
    short, prefix = _short_names(names)
    n = max(1, len(names))
    width = min(24.0, max(8.0, 1.6 + 0.13 * n))
    foot = _footnote(sol, width - 1.15)
    foot_h = _FOOT_LINE_IN * len(foot) + (0.12 if foot else 0.0)
    height = 1.2 + 2.4 * len(panels) + foot_h
    fig = new_figure(width, height, dpi=90)
    gs = fig.add_gridspec(len(panels), 1, left=0.9 / width, right=1 - 0.25 / width,
                          bottom=(0.85 + foot_h) / height, top=1 - 0.6 / height, hspace=0.08)
    axes: list[Axes] = []
    for i, (quantity, ylabel) in enumerate(panels):
        ax = fig.add_subplot(gs[i], sharex=axes[0] if axes else None)
        axes.append(ax)
        for p in range(sol.values.shape[2]):
            xs, ys = [], []
            for k, name in enumerate(names):
                for row in rows[name]:
                    good = ~np.asarray(sol.flags[row, :, p], bool)
                    v = sol.values[row, good, p]
                    if quantity == "amplitude":
                        y = np.abs(v)
                    elif quantity == "phase":
                        y = np.degrees(np.angle(v))
                    else:
                        y = np.real(v)
                    xs.extend([k] * y.size)
                    ys.extend(y.tolist())
            offset = (p - (sol.values.shape[2] - 1) / 2) * 0.18
            feed = sol.feed_names[p] if p < len(sol.feed_names) else str(p)
            ax.plot(np.asarray(xs) + offset, ys, "o", ms=3, color=FEED_COLOURS[p % len(FEED_COLOURS)],
                    label=f"feed {feed}")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3, lw=0.4)
        ax.tick_params(labelsize=8)
        if quantity == "phase":
            ax.set_ylim(-190, 190)
            ax.set_yticks([-180, -90, 0, 90, 180])
        if sol.refant in rows:
            ax.axvline(names.index(sol.refant), color="0.5", lw=0.8, ls=":")
    axes[0].legend(loc="upper right", fontsize=8, ncols=2, framealpha=0.7)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    last = axes[-1]
    last.set_xticks(range(len(names)))
    last.set_xticklabels(short, rotation=90, fontsize=6 if n > 40 else 8)
    for label, name in zip(last.get_xticklabels(), names):
        if name == sol.refant:
            label.set_fontweight("bold")
    last.set_xlim(-0.8, len(names) - 0.2)
    last.set_xlabel(f"antenna ({prefix}...)" if prefix else "antenna", fontsize=9)
    fig.text(0.9 / width, 1 - 0.2 / height, title, fontsize=11, va="top")
    sub = f"{len(names)} antennas; flagged solutions not drawn"
    if sol.refant:
        sub += f"; reference antenna {sol.refant} (bold, dotted line)"
    fig.text(0.9 / width, 1 - 0.42 / height, sub, fontsize=8, va="top")
    if foot:
        fig.text(0.9 / width, 0.08 / height, "\n".join(foot), fontsize=7, va="bottom", linespacing=1.3)
    return fig


def gains_figure(sol: CalSolutions, *, title: str | None = None) -> Figure:
    """Gain amplitude and phase against antenna (see the module docstring).

    Parameters
    ----------
    sol
        Complex gain solutions (``kind`` ``'G'``; every channel and solution time is drawn).
    title
        Figure title; None: "Gains <table>".

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _per_antenna(sol, [("amplitude", "amplitude"), ("phase", "phase (deg)")], title or f"Gains {sol.table}")


def delays_figure(sol: CalSolutions, *, title: str | None = None) -> Figure:
    """Delays (ns) against antenna (see the module docstring).

    Parameters
    ----------
    sol
        Delay solutions (``kind`` ``'K'``, real values in ns).
    title
        Figure title; None: "Delays <table>".

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _per_antenna(sol, [("delay", "delay (ns)")], title or f"Delays {sol.table}")
