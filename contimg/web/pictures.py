"""Pictures the web pages draw on request: a source's light curve and an image cut-out, as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["cutout_png", "light_curve_png"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def light_curve_png(source: dict[str, Any]) -> bytes:
    """The light curve of ``source`` (:func:`contimg.db.views.source_detail`) as PNG.

    Normalised fluxes where there are any (else PB-corrected), 1-sigma error
    bars, upper limits as downward arrows, epochs of failed images in grey
    crosses (they never feed the science), the catalogue flux as a line and,
    for a source with an ESE candidate, the best template over its span.
    """
    from matplotlib.figure import Figure

    from contimg.variability.esemodel import ese_profile

    lc = source["light_curve"]
    t = np.array([np.nan if v is None else v for v in lc["epoch_mjd"]], float)
    norm = np.array([np.nan if v is None else v for v in lc["norm_flux_jy"]], float)
    use_norm = np.isfinite(norm).any()
    f = norm if use_norm else np.array([np.nan if v is None else v for v in lc["flux_jy"]], float)
    e = np.array([np.nan if v is None else v for v in (lc["norm_flux_err_jy"] if use_norm else lc["flux_err_jy"])],
                 float)
    ul = np.array(lc["upper_limit"], bool)
    failed = np.array([q == "fail" for q in lc["qa_verdict"]], bool)
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    ok = ~ul & ~failed & np.isfinite(f)
    ax.errorbar(t[ok], f[ok] * 1e3, yerr=np.nan_to_num(e[ok]) * 1e3, fmt="o", ms=3, lw=0.8, color="C0",
                label=f"{'normalised' if use_norm else 'PB-corrected'} flux ({int(ok.sum())})")
    lim = ul & ~failed
    if lim.any():
        level = np.where(np.isfinite(e[lim]), 5 * e[lim], f[lim])  # the stored upper limit: 5 sigma
        ax.errorbar(t[lim], level * 1e3, yerr=0.08 * np.nanmax(np.abs(level)) * 1e3, uplims=True, fmt="v", ms=4,
                    color="C1", lw=0.8, label=f"upper limit ({int(lim.sum())})")
    if failed.any():
        ax.plot(t[failed], f[failed] * 1e3, "x", color="0.6", label=f"image failed QA ({int(failed.sum())})")
    cat = source.get("flux_jy")
    if cat is not None:
        ax.axhline(cat * 1e3, color="0.3", ls=":", lw=1, label=f"catalogue {cat * 1e3:.3g} mJy (1.4 GHz)")
    for cand in source.get("candidates") or []:
        tpl = cand.get("template") or {}
        if all(tpl.get(k) is not None for k in ("t_center_mjd", "duration_days", "depth")) and ok.any():
            shape = {k: float(tpl[k]) for k in ("caustic_amplitude", "caustic_width_frac") if tpl.get(k) is not None}

            def profile(x: np.ndarray) -> np.ndarray:
                return ese_profile(x, t_center=float(tpl["t_center_mjd"]),
                                   duration_days=float(tpl["duration_days"]), depth=float(tpl["depth"]), **shape)

            tt = np.linspace(np.nanmin(t), np.nanmax(t), 600)
            base = float(np.nanmedian(f[ok] / profile(t[ok])))  # the undisturbed flux the template scales
            prof = profile(tt)
            ax.plot(tt, base * prof * 1e3, color="C3", lw=1.2,
                    label=f"ESE template (candidate {cand['id']}, {cand['status']})")
            break
    stats = source.get("stats") or {}
    bits = [f"{source['name']}"]
    if stats.get("modulation_index") is not None:
        bits.append(f"m = {stats['modulation_index']:.3f}")
    if stats.get("chi2_nu") is not None:
        bits.append(f"chi2/nu = {stats['chi2_nu']:.2f}")
    if stats.get("ese_significance") is not None:
        bits.append(f"ESE {stats['ese_significance']:.1f} sigma")
    ax.set_title(",  ".join(bits), fontsize=10)
    ax.set_xlabel("epoch (MJD)")
    ax.set_ylabel("flux density (mJy)")
    ax.ticklabel_format(useOffset=False, style="plain", axis="both")
    if ok.any() or lim.any() or failed.any():
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no measurements yet", transform=ax.transAxes, ha="center", va="center")
    fig.tight_layout()
    return _png(fig)


def cutout_png(path: str, ra_deg: float, dec_deg: float, *, size_arcmin: float = 6.0) -> bytes:
    """A small cut-out of the FITS image at ``path`` around (``ra_deg``, ``dec_deg``) with RA/Dec axes, as PNG.

    Parameters
    ----------
    path
        The FITS image.
    ra_deg, dec_deg
        The centre (ICRS, deg), marked with a cross.
    size_arcmin
        Width and height of the cut-out.

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    ValueError
        If the position is outside the image.
    OSError
        If the image cannot be read.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
    from astropy.wcs import WCS
    from matplotlib.figure import Figure

    with fits.open(path, memmap=True) as hdul:
        hdr = hdul[0].header
        data = hdul[0].data
        wcs = WCS(hdr).celestial
        plane = data.reshape(data.shape[-2:]) if data.ndim > 2 else data
        pos = SkyCoord(ra_deg * u.deg, dec_deg * u.deg)
        try:
            cut = Cutout2D(plane, pos, size_arcmin * u.arcmin, wcs=wcs, mode="partial", fill_value=np.nan)
        except NoOverlapError as exc:
            raise ValueError(f"{path}: ({ra_deg:.4f}, {dec_deg:.4f}) is outside the image") from exc
        img = np.array(cut.data, dtype=float)
    fig = Figure(figsize=(2.6, 2.6))
    ax = fig.add_subplot(projection=cut.wcs)
    finite = img[np.isfinite(img)]
    if finite.size:
        norm = ImageNormalize(finite, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.1))
        ax.imshow(img * 1.0, origin="lower", cmap="inferno", norm=norm)
    x, y = cut.wcs.world_to_pixel(pos)
    ax.plot([x], [y], marker="+", color="cyan", ms=14, mew=1)
    ax.coords[0].set_ticklabel(size=6)
    ax.coords[1].set_ticklabel(size=6)
    ax.coords[0].set_axislabel("RA", size=7)
    ax.coords[1].set_axislabel("Dec", size=7)
    if not finite.size:
        ax.text(0.5, 0.5, "blanked", transform=ax.transAxes, ha="center", color="k")
    fig.subplots_adjust(left=0.25, bottom=0.18, right=0.97, top=0.97)
    return _png(fig)
