"""``contimg catalog``: import calibrator and source catalogues (NVSS, FIRST, VLASS, the VLA calibrator list, CSV).

Rows update the existing source of the same name or within ``--match-radius``
arcsec instead of adding duplicates; see docs/catalogues.md.
"""

from __future__ import annotations

import argparse

NAME = "catalog"
HELP = "import calibrators or sources (NVSS, FIRST, VLASS, VLA calibrator list, CSV, a simulation's truth)"

_FORMATS_HELP = """\
formats (--format, or detected from the extension and columns):
  nvss             VizieR VIII/65: RAJ2000, DEJ2000 (sexagesimal or deg), S1.4, e_S1.4 (mJy)
  first            VizieR VIII/92 or the FIRST catalogue: RA, DEC, FINT (or FPEAK), RMS (mJy), MAJ
  vlass            CIRADA VLASS Epoch 1 QL components: Component_name, RA, DEC, Total_flux,
                   E_Total_flux (mJy); 3 GHz fluxes scaled to 1.4 GHz with alpha = -0.7
  vla-calibrators  the NRAO VLA calibrator list (text); the 20cm (L band) flux in Jy
  contimg          contimg's CSV: name,ra_deg,dec_deg[,flux_jy,flux_err_jy,resolved,confused,
                   spectral_index,quality,calibrator]
containers: CSV, VizieR tab- or ';'-separated text (with its units and dashes lines), FITS, VOTable.
Flux units come from the file (FITS TUNIT, VOTable unit, VizieR units line) or --flux-unit; a flux
column without a unit is refused (except contimg's flux_jy). Download links: docs/catalogues.md.
"""


def _options(p: argparse.ArgumentParser, *, formats: bool = True) -> None:
    if formats:
        from contimg.calibration.catalogues import FORMATS

        p.add_argument("--format", choices=FORMATS, default=None, help="catalogue format (default: detected)")
        p.add_argument("--flux-unit", default=None, metavar="UNIT",
                       help="unit of flux columns the file gives no unit for (mJy, Jy, uJy)")
    p.add_argument("--match-radius", type=float, default=1.0, metavar="ARCSEC",
                   help="a row within this distance of an existing source updates it (default 1; 0: by name only)")
    p.add_argument("--rename", action="store_true",
                   help="a source matched by position takes the file's name (default: keeps its own)")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("import-calibrators", help="every row a calibrator (the VLA list, or CSV with flux_jy)",
                       epilog=_FORMATS_HELP, formatter_class=fmt)
    p.add_argument("file", help="catalogue file")
    _options(p)
    p = sub.add_parser("import-sources", help="sources: NVSS, FIRST, VLASS or contimg CSV",
                       epilog=_FORMATS_HELP, formatter_class=fmt)
    p.add_argument("file", help="catalogue file")
    _options(p)
    p = sub.add_parser("import-truth", help="every source (and the calibrator) of a contimg simulation")
    p.add_argument("path", help="simulation output directory or its truth.json")
    _options(p, formats=False)


def run(args: argparse.Namespace, settings) -> int:
    from contimg.db import init_db, session_scope
    from contimg.pipeline import catalog

    init_db(settings)
    match = {"match_radius_arcsec": args.match_radius, "rename": args.rename}
    with session_scope(settings) as s:
        if args.action == "import-truth":
            report = catalog.import_truth(s, args.path, **match)
        else:
            report = catalog.import_catalogue(s, args.file, fmt=args.format, flux_unit=args.flux_unit,
                                              calibrators=args.action == "import-calibrators", **match)
    print(report.summary())
    return 0
