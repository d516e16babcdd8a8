"""``contimg candidates``: list and review candidates: ESE candidates (``--kind ese``, the default; optionally
score the sources first) and new-source candidates (``--kind new``; optionally search the recorded images first)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from contimg.cli._export import add_export_arguments

NAME = "candidates"
HELP = ("list ESE candidates (optionally run the variability scoring first) or new-source candidates (--kind new; "
        "optionally search the recorded images first), export them as CSV or VOTable, and set their review status")

CANDIDATE_COLUMNS = ("id", "source", "source_id", "ra_deg", "dec_deg", "status", "significance", "score", "depth",
                     "duration_days", "t_center_mjd", "first_detected_mjd", "last_detected_mjd")
"""The ESE candidates' columns (JSON keys and exported table columns)."""

NEW_SOURCE_COLUMNS = ("id", "name", "ra_deg", "dec_deg", "status", "significance", "snr", "peak_flux_jy",
                      "n_detections", "n_prior_epochs", "prior_limit_jy", "first_detected_mjd", "last_detected_mjd",
                      "cutouts")
"""The new-source candidates' columns."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["ese", "new"], default="ese",
                        help="ESE candidates (default) or new-source candidates (components with no catalogue "
                             "counterpart that earlier epochs could not have missed)")
    parser.add_argument("--search", action="store_true",
                        help="with --kind new: search every recorded image's components first, in time order (after "
                             "reprocessing, or when images were recorded out of order)")
    parser.add_argument("--status", action="append", choices=["new", "confirmed", "rejected", "ended"],
                        help="only candidates with this status (repeatable; default: new and confirmed)")
    parser.add_argument("--min-sigma", type=float, default=0.0, help="only candidates at least this significant")
    parser.add_argument("--score", action="store_true",
                        help="with --kind ese: score sources with new photometry first (the nightly job)")
    parser.add_argument("--rescore-all", action="store_true", help="with --score: score every source")
    parser.add_argument("--set-status", nargs=2, metavar=("ID", "STATUS"),
                        help="set candidate ID's review status (new, confirmed, rejected, ended) and exit")
    parser.add_argument("--notes", help="with --set-status: reviewer's notes")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_export_arguments(parser)


def run(args: argparse.Namespace, settings) -> int:
    from sqlalchemy import select

    from contimg.db import session_scope
    from contimg.db import science
    from contimg.db.models import CandidateStatus, EseCandidate, Source

    if args.kind == "new":
        return _run_new(args, settings)
    if args.search:
        print("contimg candidates: --search needs --kind new", file=sys.stderr)
        return 2
    if args.set_status:
        cand_id, status = args.set_status
        with session_scope(settings) as s:
            cand = science.set_candidate_status(s, int(cand_id), CandidateStatus(status), notes=args.notes)
            print(f"candidate {cand.id}: {cand.status.value}")
        return 0
    if args.score:
        from contimg.pipeline.nightly import score_sources

        from contimg.cli._progress import bar, wanted

        machine = args.json or (args.export_format is not None and args.output is None)
        with bar("scoring sources", total=None, enabled=wanted(machine_output=machine), unit="sources") as b:
            summary = score_sources(settings, threshold=settings.variability.ese_threshold,
                                    rescore_all=args.rescore_all,
                                    progress=lambda done, total: b.update(completed=done, total=total))
        if not args.json:  # beside an exported table it goes to standard error
            d = summary.as_dict()
            print(f"scored {d['sources_scored']} sources ({d['rows_read']} measurements): "
                  f"{d['candidates_created']} new, {d['candidates_updated']} updated candidates",
                  file=sys.stderr if args.export_format else sys.stdout)
    statuses = [CandidateStatus(s) for s in (args.status or ["new", "confirmed"])]
    with session_scope(settings, readonly=True) as s:
        rows = s.execute(
            select(EseCandidate, Source.name, Source.ra_deg, Source.dec_deg)
            .join(Source, Source.id == EseCandidate.source_id)
            .where(EseCandidate.status.in_(statuses), EseCandidate.significance >= args.min_sigma)
            .order_by(EseCandidate.significance.desc())
        ).all()
    out = []
    for cand, name, ra_deg, dec_deg in rows:
        tpl = cand.template or {}
        out.append({
            "id": cand.id, "source": name, "source_id": cand.source_id, "ra_deg": ra_deg, "dec_deg": dec_deg,
            "status": cand.status.value,
            "significance": round(cand.significance, 2), "score": round(cand.score, 1),
            "depth": tpl.get("depth"), "duration_days": tpl.get("duration_days"), "t_center_mjd": tpl.get("t_center_mjd"),
            "first_detected_mjd": cand.first_detected_mjd, "last_detected_mjd": cand.last_detected_mjd,
        })
    if args.export_format:
        from contimg.cli._export import rows_table, write_table

        write_table(rows_table(out, CANDIDATE_COLUMNS), args.export_format, args.output)
        return 0
    if args.json:
        print(json.dumps(out))
        return 0
    if not out:
        print("no ESE candidates")
        return 0
    print(f"{'id':>6} {'source':<24} {'status':<10} {'sigma':>6} {'depth':>6} {'days':>6} {'centre MJD':>11}")
    for c in out:
        depth = f"{c['depth']:.2f}" if c["depth"] is not None else "-"
        days = f"{c['duration_days']:.0f}" if c["duration_days"] is not None else "-"
        centre = f"{c['t_center_mjd']:.1f}" if c["t_center_mjd"] is not None else "-"
        print(f"{c['id']:>6} {c['source']:<24} {c['status']:<10} {c['significance']:>6.1f} {depth:>6} {days:>6} {centre:>11}")
    return 0


def _run_new(args: argparse.Namespace, settings) -> int:
    from sqlalchemy import select

    from contimg.db import science, session_scope
    from contimg.db.models import CandidateStatus, NewSource

    if args.score:
        print("contimg candidates: --score is for --kind ese", file=sys.stderr)
        return 2
    if args.set_status:
        cand_id, status = args.set_status
        with session_scope(settings) as s:
            cand = science.set_new_source_status(s, int(cand_id), CandidateStatus(status), notes=args.notes)
            print(f"new-source candidate {cand.id} ({cand.name}): {cand.status.value}")
        return 0
    if args.search:
        from contimg.cli._progress import bar, wanted
        from contimg.pipeline.new_sources import search_images

        machine = args.json or (args.export_format is not None and args.output is None)
        with bar("searching images", total=None, enabled=wanted(machine_output=machine), unit="images") as b:
            results = search_images(settings, progress=lambda done, total: b.update(completed=done, total=total))
        if not args.json:
            print(f"searched {len(results)} images: {sum(len(r.created) for r in results)} new candidates, "
                  f"{sum(len(r.detected_again) for r in results)} detections of known ones",
                  file=sys.stderr if args.export_format else sys.stdout)
    statuses = [CandidateStatus(s) for s in (args.status or ["new", "confirmed"])]
    with session_scope(settings, readonly=True) as s:
        rows = s.scalars(select(NewSource).where(NewSource.status.in_(statuses),
                                                 NewSource.significance >= args.min_sigma)
                         .order_by(NewSource.significance.desc())).all()
        out: list[dict[str, Any]] = [{"id": c.id, "name": c.name, "ra_deg": c.ra_deg, "dec_deg": c.dec_deg, "status": c.status.value,
                "significance": round(c.significance, 2), "snr": round(c.snr, 2), "peak_flux_jy": c.peak_flux_jy,
                "n_detections": c.n_detections, "n_prior_epochs": c.n_prior_epochs,
                "prior_limit_jy": c.prior_limit_jy, "first_detected_mjd": c.first_detected_mjd,
                "last_detected_mjd": c.last_detected_mjd, "cutouts": c.cutouts} for c in rows]
    if args.export_format:
        from contimg.cli._export import rows_table, write_table

        write_table(rows_table(out, NEW_SOURCE_COLUMNS), args.export_format, args.output)
        return 0
    if args.json:
        print(json.dumps(out))
        return 0
    if not out:
        print("no new-source candidates")
        return 0
    print(f"{'id':>6} {'name':<24} {'status':<10} {'sigma':>6} {'SNR':>6} {'mJy':>8} {'det':>4} {'first MJD':>11}")
    for c in out:
        print(f"{c['id']:>6} {c['name']:<24} {c['status']:<10} {c['significance']:>6.1f} {c['snr']:>6.1f} "
              f"{1e3 * c['peak_flux_jy']:>8.2f} {c['n_detections']:>4} {c['first_detected_mjd']:>11.3f}")
    return 0
