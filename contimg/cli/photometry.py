"""``contimg photometry IMAGE``: forced photometry of one recorded image, stored and normalised."""

from __future__ import annotations

import argparse
import json

NAME = "photometry"
HELP = "forced photometry of the catalogue sources in one recorded image (its id or path), stored and normalised"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image recorded in the database (by `contimg image` or the cluster): "
                                      "its id, or the path of its flat-noise or PB-corrected FITS file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.pipeline.photometry import measure_recorded_image

    image = int(args.image) if args.image.isdigit() else args.image
    result = measure_recorded_image(settings, image)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    norm = result.get("normalization") or {}
    print(f"image {result['image_id']}: {result['path']} (MJD {result['epoch_mjd']:.5f}, {result['method']})")
    print(f"{result['n_sources']} catalogue source(s) in the beam, {result['n_measured']} stored "
          f"({result['n_upper_limits']} upper limits), normalised rows {norm.get('rows', 0)}; "
          f"QA {result['qa_verdict']}{': ' + '; '.join(result['qa_reasons']) if result['qa_reasons'] else ''}")
    return 0
