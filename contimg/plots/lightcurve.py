"""A source's light curve: measurements with error bars, upper limits as arrows, catalogue flux, statistics.

Drawn by :func:`lightcurve_figure` (called by ``contimg lightcurve --plot``):

* detections as points with 1-sigma error bars;
* rows flagged as upper limits (forced photometry below ``upper_limit_snr``
  sigma, :mod:`contimg.photometry.forced`) as downward arrows from
  ``max(flux, 0) + limit_sigma * error``, the flux the source is unlikely to
  exceed (about 0.13 % for 3 sigma);
* the catalogue flux density as a dashed horizontal line;
* statistics over every plotted measurement (limits included: forced
  photometry measures a flux there too, as the nightly scoring uses it) in the
  title -- N, weighted mean, standard deviation, the coefficient of variation
  V = std/mean, the debiased modulation index m and the reduced chi-square of
  a constant (:mod:`contimg.variability.metrics`, which cites the definitions);
* time as MJD along the bottom (no offset notation) and UTC dates along the top.

Flux densities are given in Jy and drawn in mJy when the brightest is below 1 Jy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from contimg.plots.common import new_figure, utc_top_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LightCurveStats", "lightcurve_figure", "lightcurve_stats", "upper_limit_values"]

UPPER_LIMITS_GID = "upper_limits"
"""``gid`` of the upper-limit arrows' line collection (tests and callers find them by it)."""


@dataclass(frozen=True)
class LightCurveStats:
    """Statistics of one light curve (NaN where undefined, e.g. fewer than two points)."""

    n: int
    n_upper_limits: int
    weighted_mean_jy: float
    std_jy: float
    v: float
    """Coefficient of variation, std / mean."""
    m_debiased: float
    """Modulation index with the measurement noise removed."""
    chi2_nu: float
    """Reduced chi-square about the weighted mean (a constant source: ~1)."""

    def text(self, scale: float, unit: str) -> str:
        """One line for a title: ``N 40 (5 limits), mean 21.3 mJy, std 0.81 mJy, V 0.038, m 0.021, chi2_nu 1.1``."""
        def g(x: float, fmt: str) -> str:
            return format(x, fmt) if np.isfinite(x) else "-"

        limits = f" ({self.n_upper_limits} upper limit{'s' if self.n_upper_limits != 1 else ''})" if self.n_upper_limits else ""
        return (f"N {self.n}{limits}, weighted mean {g(self.weighted_mean_jy * scale, '.4g')} {unit}, "
                f"std {g(self.std_jy * scale, '.3g')} {unit}, V {g(self.v, '.3f')}, m {g(self.m_debiased, '.3f')}, "
                f"\u03c7\u00b2\u03bd {g(self.chi2_nu, '.3g')} (constant)")


def lightcurve_stats(flux_jy: np.ndarray, flux_err_jy: np.ndarray, *,
                     upper_limit: np.ndarray | None = None) -> LightCurveStats:
    """Statistics of the measurements with a finite flux and a positive, finite error.

    Parameters
    ----------
    flux_jy, flux_err_jy
        Fluxes and 1-sigma errors (Jy).
    upper_limit
        Rows flagged as upper limits (counted; their measured fluxes are used like any other).

    Returns
    -------
    LightCurveStats
    """
    from contimg.variability.metrics import variability_metrics

    f = np.asarray(flux_jy, float)
    e = np.asarray(flux_err_jy, float)
    ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
    n_ul = int(np.asarray(upper_limit, bool)[ok].sum()) if upper_limit is not None else 0
    nan = float("nan")
    if ok.sum() == 0:
        return LightCurveStats(0, n_ul, nan, nan, nan, nan, nan)
    m = variability_metrics(np.zeros(int(ok.sum()), dtype=np.int64), f[ok], e[ok])
    std = float(np.std(f[ok], ddof=1)) if ok.sum() > 1 else nan
    return LightCurveStats(int(ok.sum()), n_ul, float(m.weighted_mean[0]), std, float(m.v[0]),
                           float(m.m_debiased[0]), float(m.chi2_nu[0]))


def upper_limit_values(flux_jy: np.ndarray, flux_err_jy: np.ndarray, *, limit_sigma: float = 3.0) -> np.ndarray:
    """The upper limit drawn for a non-detection: ``max(flux, 0) + limit_sigma * error``.

    Parameters
    ----------
    flux_jy, flux_err_jy
        Measured (forced) fluxes and their 1-sigma errors.
    limit_sigma
        Width of the limit in errors.

    Returns
    -------
    numpy.ndarray
        Limits, same unit and shape as the fluxes.
    """
    return np.maximum(np.asarray(flux_jy, float), 0.0) + limit_sigma * np.asarray(flux_err_jy, float)


def lightcurve_figure(
    mjd: np.ndarray,
    flux_jy: np.ndarray,
    flux_err_jy: np.ndarray,
    *,
    upper_limit: np.ndarray | None = None,
    limit_sigma: float = 3.0,
    catalog_flux_jy: float | None = None,
    title: str | None = None,
    flux_label: str = "flux density",
    overlays: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
) -> Figure:
    """A light curve with error bars, upper limits, catalogue flux and statistics (see the module docstring).

    Parameters
    ----------
    mjd
        Epochs (MJD), shape (Nepochs,).
    flux_jy, flux_err_jy
        Flux densities and 1-sigma errors (Jy).
    upper_limit
        True for rows to draw as upper limits (None: none).
    limit_sigma
        Upper limits are drawn at ``max(flux, 0) + limit_sigma * error``.
    catalog_flux_jy
        Catalogue flux density (Jy), drawn as a dashed line (None: not drawn).
    title
        First title line (e.g. the source name); the statistics are the second.
    flux_label
        Y axis label before the unit (e.g. "normalised flux density").
    overlays
        Extra curves ``(mjd, flux_jy, label)`` such as a fitted ESE model.

    Returns
    -------
    matplotlib.figure.Figure
        Its axes hold the detections (label "detection"), the upper limits (a line collection with ``gid``
        :data:`UPPER_LIMITS_GID`, one arrow per limit) and the catalogue line (label starting "catalogue").
    """
    t = np.asarray(mjd, float)
    f = np.asarray(flux_jy, float)
    e = np.asarray(flux_err_jy, float)
    ul = np.zeros(t.shape, bool) if upper_limit is None else np.asarray(upper_limit, bool)
    stats = lightcurve_stats(f, e, upper_limit=ul)
    lim = upper_limit_values(f, e, limit_sigma=limit_sigma)
    visible = np.concatenate([f[~ul & np.isfinite(f)], lim[ul & np.isfinite(lim)],
                              [catalog_flux_jy] if catalog_flux_jy is not None else []])
    big = float(np.nanmax(np.abs(visible))) if visible.size and np.isfinite(visible).any() else 0.0
    scale, unit = (1e3, "mJy") if big < 1.0 else (1.0, "Jy")

    fig = new_figure(10, 4.6, dpi=110)
    ax = fig.add_axes((0.08, 0.13, 0.89, 0.64))
    det = ~ul
    ax.errorbar(t[det], f[det] * scale, e[det] * scale, fmt="o", ms=3.5, lw=0.8, capsize=0, color="black",
                label="detection (1\u03c3 errors)")
    if ul.any():
        top = lim[ul] * scale
        span = (np.nanmax(visible) - min(0.0, float(np.nanmin(visible)))) * scale if visible.size else 1.0
        length = 0.08 * (span if span > 0 else 1.0)
        from matplotlib.collections import LineCollection

        segments = [[(x, y), (x, y - length)] for x, y in zip(t[ul], top)]
        ax.add_collection(LineCollection(segments, colors="C0", linewidths=1.0, gid=UPPER_LIMITS_GID))
        ax.plot(t[ul], top - length, "v", color="C0", ms=5)
        ax.plot(t[ul], top, "_", color="C0", ms=8, mew=1.2,
                label=f"upper limit (max(S, 0) + {limit_sigma:g}\u03c3)")
    if catalog_flux_jy is not None and np.isfinite(catalog_flux_jy):
        ax.axhline(catalog_flux_jy * scale, color="C2", ls="--", lw=1.0,
                   label=f"catalogue {catalog_flux_jy * scale:.4g} {unit}")
    for x_o, y_o, label in overlays:
        ax.plot(np.asarray(x_o, float), np.asarray(y_o, float) * scale, color="C3", lw=1.0, label=label)
    ax.ticklabel_format(axis="both", useOffset=False, style="plain")
    ax.set_xlabel("MJD")
    ax.set_ylabel(f"{flux_label} ({unit})")
    ax.grid(alpha=0.3, lw=0.5)
    if t.size:
        pad = max(0.02 * float(np.ptp(t)), 0.01)
        ax.set_xlim(float(np.min(t)) - pad, float(np.max(t)) + pad)
    ax.legend(loc="best", fontsize="small", framealpha=0.8)
    utc_top_axis(ax)
    fig.text(0.08, 0.975, title or "light curve", fontsize=12, va="top")
    fig.text(0.08, 0.915, stats.text(scale, unit), fontsize=9, va="top")
    return fig
