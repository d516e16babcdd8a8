"""``contimg catalog``: import calibrator and source catalogues into the database (idempotent upserts)."""

from __future__ import annotations

import argparse

NAME = "catalog"
HELP = "import calibrators or sources (CSV, or a simulation's truth) into the database"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("import-calibrators", help="calibrators: name,ra_deg,dec_deg,flux_jy[,spectral_index,quality]")
    p.add_argument("file", help="CSV file")
    p = sub.add_parser("import-sources",
                       help="sources: name,ra_deg,dec_deg[,flux_jy,flux_err_jy,resolved,confused,spectral_index]")
    p.add_argument("file", help="CSV file")
    p = sub.add_parser("import-truth", help="every source (and the calibrator) of a contimg simulation")
    p.add_argument("path", help="simulation output directory or its truth.json")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.pipeline import catalog
    from contimg.db import init_db, session_scope

    init_db(settings)
    with session_scope(settings) as s:
        if args.action == "import-calibrators":
            report = catalog.import_calibrators(s, args.file)
        elif args.action == "import-sources":
            report = catalog.import_sources(s, args.file)
        else:
            report = catalog.import_truth(s, args.path)
    print(f"{report.path}: {report.n_rows} rows imported ({report.n_calibrators} calibrators)")
    return 0
