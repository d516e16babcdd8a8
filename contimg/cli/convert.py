"""``contimg convert GROUP_DIR_OR_FILES... --out OUT.ms``: one subband group to one MS on this node."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "convert"
HELP = "convert one UVH5 subband group (a directory or 1-16 files) to a calibration-ready Measurement Set"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="GROUP_DIR_OR_FILES",
                        help="the group's *_sbNN.hdf5 files, or one directory holding exactly one group")
    parser.add_argument("--out", required=True, metavar="OUT.ms", help="the Measurement Set to write")
    parser.add_argument("--staging", default=None, metavar="DIR",
                        help="scratch directory for the subband parts (default: settings.paths.staging)")
    parser.add_argument("--processes", type=int, default=None,
                        help="parallel subband writers (default CONTIMG_CONVERSION__PROCESSES; 0: one per core)")
    parser.add_argument("--group-id", default=None, help="group name in messages (default: earliest file timestamp)")
    parser.add_argument("--json", action="store_true", help="print the result (with the validation report) as JSON")


def _collect(inputs: list[str]) -> list[Path]:
    from contimg.errors import InputFileError
    from contimg.naming import is_subband_filename, parse_subband_filename

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if is_subband_filename(f))
            if not found:
                raise InputFileError(f"{p}: no *_sbNN.hdf5 subband files in this directory")
            files.extend(found)
        else:
            files.append(p)
    if len(files) > 16:
        stamps = sorted({parse_subband_filename(f).timestamp.isoformat() for f in files})
        raise InputFileError(f"{len(files)} subband files given: more than one group? timestamps {', '.join(stamps[:6])} ...")
    return files


def run(args: argparse.Namespace, settings) -> int:
    from contimg.conversion import convert_group

    files = _collect(args.inputs)
    staging = Path(args.staging) if args.staging else settings.paths.staging
    processes = settings.conversion.processes if args.processes is None else args.processes
    from contimg.cli._progress import spinner, wanted

    with spinner(f"converting {len(files)} subband file(s) to {args.out}", enabled=wanted(machine_output=args.json)):
        result = convert_group(files, args.out, staging_dir=staging, processes=processes, group_id=args.group_id)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        v = result.validation
        missing = ", ".join(f"sb{s:02d}" for s in result.missing_subbands) or "none"
        print(f"{result.ms_path}: {result.Nrows} rows x {result.Nfreqs} channels "
              f"({v['freq_min_hz'] / 1e6:.3f}-{v['freq_max_hz'] / 1e6:.3f} MHz), missing subbands: {missing}")
        print(f"phase center ICRS RA {result.phase_center_ra_deg:.5f} Dec {result.phase_center_dec_deg:.5f} deg; "
              f"UVW max error {v['uvw_max_error_m'] * 1e3:.2f} mm; {result.timings_s.get('total', 0):.1f} s")
    return 0
