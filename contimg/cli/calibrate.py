"""``contimg calibrate MS``: calibrate one Measurement Set on this node (solve or apply)."""

from __future__ import annotations

import argparse

NAME = "calibrate"
HELP = "calibrate a Measurement Set: solve on a calibrator transit, else apply the valid calibration set"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ms", help="Measurement Set written by the conversion")
    parser.add_argument("--do-k", action="store_true", default=None,
                        help="solve antenna delays (K) before the bandpass (default: settings.calibration.do_k)")
    parser.add_argument("--refant", default=None, help="reference antenna name (default: chosen automatically)")
    parser.add_argument("--set-name", default=None, help="name of the calibration set a solve registers")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def run(args: argparse.Namespace, settings) -> int:
    import json

    from contimg.pipeline.calibrate import calibrate_ms
    from contimg.db import init_db

    cal = settings.calibration
    overrides = {}
    if args.do_k:
        overrides["do_k"] = True
    if args.refant:
        overrides["refant"] = args.refant
    if overrides:
        cal = cal.model_copy(update=overrides)
    paths = settings.paths.ensure()
    init_db(settings)
    outcome = calibrate_ms(args.ms, database=settings, calibration=cal, caltable_dir=paths.caltables,
                           scratch_dir=paths.staging, set_name=args.set_name)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=1))
    else:
        print(f"{outcome.ms_path}: {outcome.mode} with calibration set {outcome.calibration_set} "
              f"({', '.join(outcome.tables)}) in {outcome.timings_s.get('total', 0):.1f} s")
        if outcome.calibrator_name:
            print(f"  calibrator {outcome.calibrator_name} (beam response {outcome.calibrator_beam_response:.3f}), "
                  f"refant {outcome.refant}, flagged solutions {outcome.flagged_fraction}")
        for kind, png in outcome.plots.items():
            print(f"  QA {kind}: {png}")
    return 0
