"""A night at a glance: each image's noise, sources measured and flux-scale correction against time.

:func:`night_figure` takes one entry per image (the caller queries them; see
:func:`contimg.pipeline.nightly.night_rows`) and draws three stacked panels
sharing a UTC time axis:

1. image noise (robust rms, mJy/beam);
2. catalogue sources measured by forced photometry (and, when given, how many
   of them were detections rather than upper limits);
3. the flux-scale correction factor of differential normalisation (1 = none
   needed); images without one (too few reference sources) are ticked along
   the panel's bottom edge.

Every point is marked by the image's QA verdict: pass a black circle, warn an
orange triangle, fail a red cross (unknown: grey), with counts in the legend;
failed images also get a faint red band through all panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from contimg.plots.common import MJD_UNIX_EPOCH, mjd_to_datetime, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["VERDICT_STYLES", "night_figure"]

VERDICT_STYLES: dict[str, dict[str, Any]] = {
    "pass": dict(marker="o", color="black", ms=4.5, label="pass"),
    "warn": dict(marker="^", color="#e08000", ms=6.5, label="warn"),
    "fail": dict(marker="X", color="#d00000", ms=8.0, label="fail"),
    "unknown": dict(marker="s", color="0.6", ms=4.5, label="no verdict"),
}
"""Marker of each QA verdict (matplotlib ``plot`` keywords)."""

_COLUMNS = ("mid_mjd", "rms_jy", "n_measured", "n_detected", "correction", "verdict")


def _columns(rows: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    if isinstance(rows, Mapping):
        cols = {k: list(rows.get(k) or []) for k in _COLUMNS}
        n = len(cols["mid_mjd"])
        return {k: (v if len(v) == n else [None] * n) for k, v in cols.items()}
    return {k: [r.get(k) for r in rows] for k in _COLUMNS}


def _float(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def night_figure(rows: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], *,
                 title: str | None = None) -> Figure:
    """The night summary (see the module docstring).

    Parameters
    ----------
    rows
        One entry per image, as a list of dicts or a dict of equal-length lists, with keys ``mid_mjd``
        (MJD), ``rms_jy`` (Jy/beam), ``n_measured`` (photometry rows), optionally ``n_detected``
        (rows that are not upper limits), ``correction`` (flux-scale factor, None when not normalised) and
        ``verdict`` (``pass``, ``warn``, ``fail`` or None). Missing values are None.
    title
        Figure title (None: "Night of <first date>").

    Returns
    -------
    matplotlib.figure.Figure
        Three axes (noise, sources, correction); each verdict's points carry ``gid`` ``verdict-<name>``.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    cols = _columns(rows)
    t = _float(cols["mid_mjd"])
    order = np.argsort(t, kind="stable")
    t = t[order]
    x = t - MJD_UNIX_EPOCH  # matplotlib date numbers (days since 1970-01-01)
    rms = _float(cols["rms_jy"])[order] * 1e3
    n_meas = _float(cols["n_measured"])[order]
    n_det = _float(cols["n_detected"])[order]
    corr = _float(cols["correction"])[order]
    verdict = np.array([str(v) if v in VERDICT_STYLES else "unknown" for v in cols["verdict"]], dtype=object)[order]

    fig = new_figure(10, 7.2, dpi=100)
    gs = fig.add_gridspec(3, 1, left=0.09, right=0.97, bottom=0.08, top=0.9, hspace=0.08)
    ax_rms = fig.add_subplot(gs[0])
    ax_n = fig.add_subplot(gs[1], sharex=ax_rms)
    ax_c = fig.add_subplot(gs[2], sharex=ax_rms)
    panels = ((ax_rms, rms, "image rms (mJy/beam)"), (ax_n, n_meas, "sources measured"),
              (ax_c, corr, "flux-scale correction"))
    for ax, y, label in panels:
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        ax.tick_params(labelsize=8)
        if x.size > 1:
            ax.plot(x, y, color="0.75", lw=0.8, zorder=1)
        for name, style in VERDICT_STYLES.items():
            sel = verdict == name
            if not sel.any():
                continue
            kw = dict(style)
            kw["label"] = f"{kw['label']} ({int(sel.sum())})"
            ax.plot(x[sel], y[sel], ls="none", zorder=3, gid=f"verdict-{name}", **kw)
        for xf in x[verdict == "fail"]:
            ax.axvspan(xf - 1.5 / 1440, xf + 1.5 / 1440, color="#d00000", alpha=0.08, lw=0, zorder=0)
    if np.isfinite(n_det).any():
        ax_n.plot(x, n_det, ls="none", marker="o", mfc="none", mec="C0", ms=5, zorder=2,
                  label="of which detected (not upper limits)")
    ax_c.axhline(1.0, color="C2", ls="--", lw=0.9, zorder=1)
    missing = ~np.isfinite(corr) & np.isfinite(x)
    if missing.any():
        bottom = blended_transform_factory(ax_c.transData, ax_c.transAxes)
        ax_c.plot(x[missing], np.full(int(missing.sum()), 0.04), "|", color="0.45", ms=9, transform=bottom,
                  label=f"no correction ({int(missing.sum())})")
    if not np.isfinite(corr).any():
        ax_c.set_ylim(0.9, 1.1)
    def labelled(ax: Any, prefix: str) -> list[Any]:
        return [h for h in ax.get_legend_handles_labels()[0] if str(h.get_label()).startswith(prefix)]

    handles = [h for h in ax_rms.get_legend_handles_labels()[0] if str(h.get_gid() or "").startswith("verdict-")]
    if handles:  # the verdict key once, above the panels
        fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.97, 0.995), ncols=len(handles), fontsize=8,
                   title="QA verdict", title_fontsize=8, framealpha=0.8)
    if np.isfinite(n_det).any():
        ax_n.legend(handles=labelled(ax_n, "of which"), loc="best", fontsize=8, framealpha=0.8)
    if missing.any():
        ax_c.legend(handles=labelled(ax_c, "no corr"), loc="best", fontsize=8, framealpha=0.8)
    ax_n.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_c.ticklabel_format(axis="y", useOffset=False, style="plain")
    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax_c.xaxis.set_major_locator(locator)
    ax_c.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for ax in (ax_rms, ax_n):
        ax.tick_params(labelbottom=False)
    if x.size:
        pad = max(0.02 * float(np.ptp(x[np.isfinite(x)])) if np.isfinite(x).any() else 0.0, 5 / 1440)
        ax_c.set_xlim(float(np.nanmin(x)) - pad, float(np.nanmax(x)) + pad)
    ax_c.set_xlabel("UTC", fontsize=9)
    if title is None:
        title = f"Night of {mjd_to_datetime(float(np.nanmin(t))):%Y-%m-%d}" if np.isfinite(t).any() else "Night"
    counts = ", ".join(f"{int((verdict == k).sum())} {k}" for k in ("pass", "warn", "fail") if (verdict == k).any())
    fig.text(0.09, 0.975, title, fontsize=12, va="top")
    fig.text(0.09, 0.94, f"{t.size} images" + (f": {counts}" if counts else ""), fontsize=9, va="top")
    return fig
