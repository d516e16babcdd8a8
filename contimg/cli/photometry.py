"""``contimg photometry IMAGE|MS``: forced photometry of a recorded image (or an MS's images), stored and normalised."""

from __future__ import annotations

import argparse
import json

NAME = "photometry"
HELP = ("forced photometry of the catalogue sources in one recorded image (its id or path), or in the images "
        "recorded for a Measurement Set, stored and normalised")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image recorded in the database (by `contimg image` or the cluster): "
                                      "its id, or the path of its flat-noise or PB-corrected FITS file; or a "
                                      "Measurement Set whose images are recorded")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace, settings) -> int:
    from pathlib import Path

    from contimg.pipeline.photometry import images_of_ms, measure_recorded_image

    if Path(args.image, "table.dat").exists():
        images: list[int | str] = list(images_of_ms(settings, args.image))
    else:
        images = [int(args.image) if args.image.isdigit() else args.image]
    results = [measure_recorded_image(settings, image) for image in images]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1, default=str))
        return 0
    for result in results:
        _print(result)
    return 0


def _print(result: dict) -> None:
    norm = result.get("normalization") or {}
    print(f"image {result['image_id']}: {result['path']} (MJD {result['epoch_mjd']:.5f}, {result['method']})")
    print(f"{result['n_sources']} catalogue source(s) in the beam, {result['n_measured']} stored "
          f"({result['n_upper_limits']} upper limits), normalised rows {norm.get('rows', 0)}; "
          f"QA {result['qa_verdict']}{': ' + '; '.join(result['qa_reasons']) if result['qa_reasons'] else ''}")
