"""``contimg retention``: delete the imaging products ``settings.retention`` does not keep (see
:mod:`contimg.pipeline.retention`)."""

from __future__ import annotations

import argparse
import json

NAME = "retention"
HELP = "delete the PSF/model/residual/log files that settings.retention does not keep, once QA passed"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.db import init_db
    from contimg.pipeline.retention import apply_retention

    init_db(settings)
    report = apply_retention(settings, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    kinds = ", ".join(settings.retention.delete_kinds) or "nothing (CONTIMG_RETENTION__DELETE_KINDS is empty)"
    verb = "would delete" if args.dry_run else "deleted"
    print(f"retention: {verb} {report.files} files ({report.bytes / 1e6:.1f} MB) of {report.images} images; "
          f"kinds: {kinds}; older than {settings.retention.after_hours:g} h; {report.missing} already gone")
    return 0
