"""``contimg image MS``: image one calibrated Measurement Set on this node."""

from __future__ import annotations

import argparse
import json

NAME = "image"
HELP = "image a calibrated Measurement Set (WSClean or tclean), primary-beam correct it and report QA"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ms", help="the Measurement Set")
    parser.add_argument("--out-dir", default=None, help="directory of the products (default: settings.paths.images)")
    parser.add_argument("--name", default=None, help="product base name (default: the MS name without .ms)")
    parser.add_argument("--backend", choices=("wsclean", "tclean"), default=None,
                        help="imager (default CONTIMG_IMAGING__BACKEND, wsclean)")
    parser.add_argument("--tier", choices=("quicklook", "standard", "deep"), default=None,
                        help="quality tier (default CONTIMG_IMAGING__TIER, standard)")
    parser.add_argument("--data-column", default="CORRECTED_DATA", help="column to image (default CORRECTED_DATA)")
    parser.add_argument("--mask-catalog", default=None, metavar="CSV",
                        help="clean only around the sources of this catalogue (id,ra_deg,dec_deg,flux_jy,... CSV)")
    parser.add_argument("--cell", type=float, default=None, metavar="ARCSEC", help="override the derived cell")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("NX", "NY"),
                        help="override the derived image size")
    parser.add_argument("--no-record", action="store_true",
                        help="do not judge and record the images in the database (by default they are, as the "
                             "cluster records them: Image rows with their QA verdict)")
    parser.add_argument("--json", action="store_true", help="print the products and QA as JSON")


def run(args: argparse.Namespace, settings) -> int:
    positions = None
    if args.mask_catalog:
        from contimg.simulation.sky import SkyCatalog

        cat = SkyCatalog.read_csv(args.mask_catalog)
        positions = list(zip(cat.ra_deg.tolist(), cat.dec_deg.tolist()))
    out_dir = args.out_dir or settings.paths.images
    catalogue = None
    if not args.no_record:  # the database's catalogue decides on a spectral fit, as in the cluster
        from contimg.db import init_db
        from contimg.pipeline.image import catalogue_cone

        init_db(settings)
        catalogue = catalogue_cone(settings)
    from contimg.cli._progress import spinner, wanted

    with spinner(f"imaging {args.ms} ({args.backend or settings.imaging.backend})",
                 enabled=wanted(machine_output=args.json)):
        products = _image(args, settings, out_dir, positions, catalogue)
    record = None
    if not args.no_record:
        record = _record(settings, products)
    if args.json:
        out = products.to_dict()
        if record is not None:
            out["recorded"] = record
        print(json.dumps(out, indent=1, default=str))
    else:
        qa = products.qa
        print(f"image:  {products.image}")
        print(f"pbcor:  {products.pbcor}")
        print(f"thumb:  {products.thumbnail}")
        print(f"{products.backend}/{products.tier}: {qa.nx}x{qa.ny} x {qa.cell_arcsec:.1f} arcsec, "
              f"beam {qa.beam_major_arcsec:.1f}x{qa.beam_minor_arcsec:.1f} arcsec PA {qa.beam_pa_deg:.0f}, "
              f"rms {qa.rms_jy * 1e3:.3f} mJy/beam, peak {qa.peak_jy:.4g} Jy/beam, DR {qa.dynamic_range:.0f}, "
              f"{products.total_s:.1f} s (imager {products.imager_s:.1f} s)")
        if products.spectral_fit:
            fit = products.spectral_fit
            print(f"spectral fit over {fit['channels_out']} parts of the band: the brightest catalogue source is "
                  f"{fit['brightest_jy']:.3g} Jy apparent, {fit['dynamic_range']:.0f} times the predicted noise")
        if products.subtracted:
            sub = products.subtracted
            print(f"subtracted before deconvolution and restored: {sub['n_sources']} bright catalogue source(s), "
                  f"{', '.join(f'{s:.3g}' for s in sub['effective_jy'])} Jy apparent ({sub['seconds']:.1f} s)")
        if record is not None:
            print(f"QA {record['qa_verdict']}{': ' + '; '.join(record['qa_reasons']) if record['qa_reasons'] else ''}"
                  f" (recorded as image ids {', '.join(map(str, record['image_ids']))})")
    return 0


def _image(args: argparse.Namespace, settings, out_dir, positions, catalogue):
    from contimg.imaging import image_ms

    return image_ms(
        args.ms, settings=settings.imaging, out_dir=out_dir, name=args.name, backend=args.backend, tier=args.tier,
        data_column=args.data_column, mask_positions_deg=positions, cell_arcsec=args.cell,
        size=tuple(args.size) if args.size else None, catalogue=catalogue,
    )


def _record(settings, products) -> dict:
    """Judge the images and record them with their verdict, under the MS's row when it has one."""
    from pathlib import Path

    from sqlalchemy import select

    from contimg.db import init_db, run_transaction
    from contimg.db.models import MeasurementSet
    from contimg.pipeline.image import judge_and_record

    init_db(settings)
    ms = str(Path(products.ms_path).absolute())
    ms_id = run_transaction(settings, lambda s: s.scalar(select(MeasurementSet.id).where(MeasurementSet.path == ms)),
                            readonly=True)
    verdict, ids = judge_and_record(settings, products, ms_id=ms_id)
    return {"image_ids": ids, "qa_verdict": verdict.status, "qa_reasons": verdict.reasons, "ms_id": ms_id}
