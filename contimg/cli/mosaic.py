"""``contimg mosaic --night YYYY-MM-DD``: the primary-beam-weighted linear mosaic of a night's QA-passed images."""

from __future__ import annotations

import argparse
import datetime as dt
import json

NAME = "mosaic"
HELP = ("combine a UTC day's QA-passed images into a tiled primary-beam-weighted linear mosaic (image, noise and "
        "weight FITS tiles and a JSON manifest under <data root>/mosaics/<day>/), recorded in the database")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from exc


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--night", type=_day, metavar="YYYY-MM-DD",
                        help="the UTC day whose images to combine (default: yesterday, as the beat job does)")
    parser.add_argument("--out", metavar="DIR", help="write the tiles here instead of <data root>/mosaics/<day>/")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.pipeline.mosaic import make_night_mosaic

    day = args.night or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    result = make_night_mosaic(settings, day, out_dir=args.out)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print(f"mosaic {result['night']}: {result['status']}"
          + (f" ({result['reason']})" if result.get("reason") else ""))
    print(f"{result['n_inputs']} image(s) combined, {result['n_excluded']} left out")
    for ex in result["excluded"]:
        print(f"  left out {ex['image']}: {ex['reason']}")
    if result["status"] == "ok":
        print(f"{result['n_tiles']} tile(s), manifest {result['manifest']}")
        print(f"RA {result['ra_start_deg']:.3f} -> {result['ra_end_deg']:.3f} deg, Dec {result['dec_min_deg']:.3f} "
              f"... {result['dec_max_deg']:.3f} deg; beam {result['beam_major_arcsec']:.1f}\" x "
              f"{result['beam_minor_arcsec']:.1f}\"; noise {1e3 * result['min_noise_jy']:.3f} mJy/beam at best "
              f"({result['seconds']:.0f} s)")
    return 0
