"""Figure plumbing shared by the plots: an Agg figure, an atomic PNG write, time axes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MJD_UNIX_EPOCH", "mjd_to_datetime", "new_figure", "save_png", "utc_top_axis"]

MJD_UNIX_EPOCH = 40587.0
"""MJD of 1970-01-01T00:00 UTC, matplotlib's default date epoch (dates are days since it)."""


def new_figure(width_in: float, height_in: float, *, dpi: float = 100) -> Figure:
    """A figure on its own Agg canvas (no pyplot: nothing global, safe in workers and threads).

    Parameters
    ----------
    width_in, height_in
        Size in inches.
    dpi
        Dots per inch when saved (pixels = inches x dpi).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, png: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Write ``fig`` as PNG under a temporary name in the same directory, then rename it over ``png``.

    A reader never sees a half-written picture, and a failure leaves no temporary file.

    Parameters
    ----------
    fig
        The figure.
    png
        Destination (replaced if it exists).
    dpi
        Resolution; None: the figure's own.

    Returns
    -------
    pathlib.Path
        ``png``.
    """
    png = Path(png)
    tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, format="png", dpi=dpi if dpi is not None else "figure")
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png


def mjd_to_datetime(mjd: float):
    """The UTC :class:`datetime.datetime` of an MJD (no leap-second care: for labels only)."""
    from datetime import datetime, timedelta, timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=float(mjd) - MJD_UNIX_EPOCH)


def _mjd_to_date(mjd: Any) -> Any:
    return np.asarray(mjd, dtype=float) - MJD_UNIX_EPOCH


def _date_to_mjd(date: Any) -> Any:
    return np.asarray(date, dtype=float) + MJD_UNIX_EPOCH


def utc_top_axis(ax: Axes, *, label: str | None = "UTC") -> Any:
    """A secondary x axis on top of an MJD axis, ticked in UTC calendar dates/times.

    Parameters
    ----------
    ax
        Axes whose x data are MJD.
    label
        Axis label (None: none).

    Returns
    -------
    matplotlib.axes._secondary_axes.SecondaryAxis
        The secondary axis.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    top = ax.secondary_xaxis("top", functions=(_mjd_to_date, _date_to_mjd))
    locator = AutoDateLocator(minticks=3, maxticks=7)
    top.xaxis.set_major_locator(locator)
    top.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=True))
    if label:
        top.set_xlabel(label, fontsize="small")
    top.tick_params(labelsize="small")
    return top
