"""``contimg lightcurve``: one source's photometry and variability statistics (table, JSON or plot)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from contimg.cli._export import add_export_arguments

NAME = "lightcurve"
HELP = "show a source's light curve and variability statistics (or plot it, or export it as CSV or VOTable)"

PHOTOMETRY_COLUMNS = ("epoch_mjd", "flux_jy", "flux_err_jy", "norm_flux_jy", "norm_flux_err_jy", "upper_limit")
"""The light curve's columns (JSON keys and exported table columns)."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="source name, or numeric source id")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--plot", metavar="PNG", help="write a plot of the light curve (and any ESE fit) to PNG")
    parser.add_argument("--cutouts", metavar="PNG",
                        help="write cut-outs of the source in the images it was measured in, side by side, to PNG")
    parser.add_argument("--max-cutouts", type=int, default=12, metavar="N",
                        help="the most recent N images in --cutouts (default 12)")
    add_export_arguments(parser)


def run(args: argparse.Namespace, settings) -> int:
    from sqlalchemy import select

    from contimg.db import session_scope
    from contimg.db.models import EseCandidate, Image, Photometry, Source, VariabilityStats
    from contimg.errors import NotFoundError

    with session_scope(settings, readonly=True) as s:
        where = Source.id == int(args.source) if args.source.isdigit() else Source.name == args.source
        src = s.scalars(select(Source).where(where)).one_or_none()
        if src is None:
            raise NotFoundError(f"no source {args.source!r} in the database")
        phot = s.execute(
            select(Photometry.epoch_mjd, Photometry.flux_jy, Photometry.flux_err_jy, Photometry.norm_flux_jy,
                   Photometry.norm_flux_err_jy, Photometry.upper_limit)
            .where(Photometry.source_id == src.id).order_by(Photometry.epoch_mjd)
        ).all()
        images = s.execute(
            select(Photometry.epoch_mjd, Image.path).join(Image, Image.id == Photometry.image_id)
            .where(Photometry.source_id == src.id).order_by(Photometry.epoch_mjd.desc()).limit(max(args.max_cutouts, 1))
        ).all() if args.cutouts else []
        stats = s.get(VariabilityStats, src.id)
        cands = s.scalars(select(EseCandidate).where(EseCandidate.source_id == src.id)
                          .order_by(EseCandidate.id)).all()
    stat_cols = ("n_epochs", "weighted_mean_jy", "chi2_nu", "eta", "v", "modulation_index", "max_vs", "max_m",
                 "ese_score", "ese_significance", "last_epoch_mjd")
    doc: dict[str, Any] = {
        "source": src.name, "source_id": src.id, "ra_deg": src.ra_deg, "dec_deg": src.dec_deg,
        "catalog_flux_jy": src.flux_jy,
        "statistics": {c: getattr(stats, c) for c in stat_cols} if stats else None,
        "candidates": [{"id": c.id, "status": c.status.value, "significance": c.significance, "template": c.template}
                       for c in cands],
        "photometry": [{"epoch_mjd": r[0], "flux_jy": r[1], "flux_err_jy": r[2], "norm_flux_jy": r[3],
                        "norm_flux_err_jy": r[4], "upper_limit": bool(r[5])} for r in phot],
    }
    if args.plot:
        _plot(doc, args.plot)
    if args.cutouts:
        _cutouts(doc, sorted(images), args.cutouts)
    if args.export_format:
        from contimg.cli._export import rows_table, write_table

        meta = {k: doc[k] for k in ("source", "source_id", "ra_deg", "dec_deg")}
        write_table(rows_table(doc["photometry"], PHOTOMETRY_COLUMNS, meta=meta), args.export_format, args.output)
        return 0
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{src.name} (id {src.id}) RA {src.ra_deg:.5f} Dec {src.dec_deg:.5f}: {len(phot)} measurements")
    if stats:
        print("  " + ", ".join(f"{c}={getattr(stats, c):.4g}" for c in stat_cols if getattr(stats, c) is not None))
    for c in doc["candidates"]:
        print(f"  ESE candidate {c['id']} ({c['status']}, {c['significance']:.1f} sigma): {c['template']}")
    if not args.plot:
        for r in doc["photometry"]:
            norm = f"{r['norm_flux_jy']:.5f} +- {r['norm_flux_err_jy']:.5f}" if r["norm_flux_jy"] is not None else "-"
            limit = "  (upper limit)" if r["upper_limit"] else ""
            print(f"  {r['epoch_mjd']:.4f} {r['flux_jy']:.5f} +- {r['flux_err_jy']:.5f}   norm {norm}{limit}")
    return 0


def _plot(doc: dict, path: str) -> None:
    """The light curve (:func:`contimg.plots.lightcurve.lightcurve_figure`) with the open ESE candidate's fit."""
    import numpy as np

    from contimg.plots.common import save_png
    from contimg.plots.lightcurve import lightcurve_figure
    from contimg.variability.esemodel import ese_profile

    p = doc["photometry"]
    t = np.array([r["epoch_mjd"] for r in p], dtype=float)
    use_norm = bool(p) and all(r["norm_flux_jy"] is not None for r in p)
    f = np.array([r["norm_flux_jy" if use_norm else "flux_jy"] for r in p], dtype=float)
    e = np.array([r["norm_flux_err_jy" if use_norm else "flux_err_jy"] for r in p], dtype=float)
    ul = np.array([r["upper_limit"] for r in p], dtype=bool)
    overlays = []
    open_cands = [c for c in doc["candidates"] if c["template"]]
    if open_cands and t.size:
        tpl = open_cands[-1]["template"]
        base = np.median(f)
        grid = np.linspace(t.min(), t.max(), 2000)
        model = base * ese_profile(grid, t_center=tpl["t_center_mjd"], duration_days=tpl["duration_days"],
                                   depth=min(max(tpl["depth"], 0.0), 0.99),
                                   caustic_amplitude=tpl.get("caustic_amplitude") or 0.0,
                                   caustic_width_frac=tpl.get("caustic_width_frac") or 0.08)
        overlays.append((grid, model, f"ESE fit ({open_cands[-1]['significance']:.1f} sigma)"))
    title = f"{doc['source']}  (RA {doc['ra_deg']:.4f}, Dec {doc['dec_deg']:.4f} deg)"
    fig = lightcurve_figure(t, f, e, upper_limit=ul, catalog_flux_jy=doc.get("catalog_flux_jy"), title=title,
                            flux_label="normalised flux density" if use_norm else "flux density", overlays=overlays)
    save_png(fig, path)


def _cutouts(doc: dict, images: list, path: str) -> None:
    """Cut-outs of the source in its images (:func:`contimg.plots.sky.write_cutout_strip_png`), oldest first."""
    from contimg.plots.common import mjd_to_datetime
    from contimg.plots.sky import write_cutout_strip_png

    if not images:
        print(f"{doc['source']}: no images to cut out")
        return
    epochs = [(p, f"{mjd_to_datetime(mjd):%Y-%m-%d %H:%M}") for mjd, p in images]
    write_cutout_strip_png(epochs, doc["ra_deg"], doc["dec_deg"], path,
                           title=f"{doc['source']} in {len(epochs)} images (catalogue "
                                 f"{doc['catalog_flux_jy'] * 1e3:.3g} mJy)" if doc.get("catalog_flux_jy") else doc["source"])
