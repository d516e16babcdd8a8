"""Pictures the web pages draw on request, as PNG bytes, with the library's figures (:mod:`contimg.plots`).

* :func:`light_curve_png`: a source's light curve (:func:`contimg.plots.lightcurve.lightcurve_figure`) with
  the best template of its ESE candidate, and the epochs of images that failed QA as grey crosses (shown, never
  used by the science);
* :func:`cutouts_png`: cut-outs of one position over epochs on one colour scale
  (:func:`contimg.plots.sky.cutout_strip_figure`).
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

__all__ = ["cutouts_png", "light_curve_png"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _array(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def light_curve_png(source: dict[str, Any]) -> bytes:
    """The light curve of ``source`` (:func:`contimg.db.views.source_detail`) as PNG.

    Normalised fluxes where the source has any (else the PB-corrected ones), upper limits, the catalogue flux,
    the statistics, and for a source with an ESE candidate its template scaled to the undisturbed flux.
    """
    from contimg.plots.lightcurve import lightcurve_figure
    from contimg.variability.esemodel import ese_profile

    lc = source["light_curve"]
    t = _array(lc["epoch_mjd"])
    norm = _array(lc["norm_flux_jy"])
    use_norm = bool(np.isfinite(norm).any())
    f = norm if use_norm else _array(lc["flux_jy"])
    e = _array(lc["norm_flux_err_jy"] if use_norm else lc["flux_err_jy"])
    ul = np.array(lc["upper_limit"], bool)
    failed = np.array([q == "fail" for q in lc["qa_verdict"]], bool)
    keep = ~failed
    overlays = []
    for cand in source.get("candidates") or []:
        tpl = cand.get("template") or {}
        ok = keep & ~ul & np.isfinite(f)
        if not ok.any() or any(tpl.get(k) is None for k in ("t_center_mjd", "duration_days", "depth")):
            continue
        shape = {k: float(tpl[k]) for k in ("caustic_amplitude", "caustic_width_frac") if tpl.get(k) is not None}

        def profile(x: np.ndarray) -> np.ndarray:
            return ese_profile(x, t_center=float(tpl["t_center_mjd"]), duration_days=float(tpl["duration_days"]),
                               depth=float(tpl["depth"]), **shape)

        tt = np.linspace(np.nanmin(t), np.nanmax(t), 800)
        base = float(np.nanmedian(f[ok] / profile(t[ok])))  # the undisturbed flux the template scales
        overlays.append((tt, base * profile(tt), f"ESE template (candidate {cand['id']}, {cand['status']})"))
        break
    fig = lightcurve_figure(t[keep], f[keep], e[keep], upper_limit=ul[keep], catalog_flux_jy=source.get("flux_jy"),
                            title=source["name"], flux_label="normalised flux density" if use_norm else "flux density",
                            overlays=overlays)
    if failed.any():
        ax = fig.axes[0]
        scale = 1e3 if "(mJy)" in ax.get_ylabel() else 1.0
        ax.plot(t[failed], f[failed] * scale, "x", color="0.6", label=f"image failed QA ({int(failed.sum())})")
        ax.legend(loc="best", fontsize="small", framealpha=0.8)
    return _png(fig)


def cutouts_png(epochs: Sequence[tuple[str, str]], ra_deg: float, dec_deg: float, *, title: str | None = None,
                per_row: int = 6) -> bytes:
    """Cut-outs of (``ra_deg``, ``dec_deg``) in each ``(FITS path, label)`` of ``epochs``, on one colour scale.

    Parameters
    ----------
    epochs
        ``(path, label)`` per panel, in the order drawn.
    ra_deg, dec_deg
        The position (ICRS, deg), marked in every panel.
    title
        Drawn above the strip.
    per_row
        Panels per row.

    Returns
    -------
    bytes
        The PNG (an image that does not cover the position is a labelled blank panel).

    Raises
    ------
    ValueError
        If ``epochs`` is empty.
    """
    from contimg.plots.sky import cutout_strip_figure

    return _png(cutout_strip_figure(list(epochs), ra_deg, dec_deg, title=title, per_row=per_row))
