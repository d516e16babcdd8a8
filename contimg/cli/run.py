"""``contimg run DIR|FILES``: process subband files serially in this process, without Redis or Celery."""

from __future__ import annotations

import argparse
import json

NAME = "run"
HELP = ("process subband files (or directories of them) group by group in this process -- convert, calibrate, "
        "image, photometry -- without Redis or Celery, recording everything as the cluster does")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="UVH5 subband files (*_sbNN.hdf5) and/or directories holding them")
    parser.add_argument("--from-stage", default=None, help="run the groups from this stage (default: the first)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, settings) -> int:
    from contimg.db import init_db
    from contimg.pipeline.serial import run_serial
    from contimg.pipeline.stages import stages_from

    stages_from(args.from_stage)  # an unknown stage is refused before anything is registered
    settings.paths.ensure()
    init_db(settings)

    from contimg.cli._progress import bar, wanted

    seen: list[str] = []
    with bar("registering files", total=None, enabled=wanted(machine_output=args.json), unit="groups") as b:
        def queued(keys: list[str]) -> None:
            b.update(total=len(keys), completed=0)

        def progress(group_key: str, stage: str) -> None:
            if group_key not in seen:
                seen.append(group_key)
            b.update(completed=len(seen) - 1, description=f"{group_key}: {stage}")
            if not args.json:
                b.log(f"{group_key}: {stage} ...")

        report = run_serial(settings, args.inputs, from_stage=args.from_stage, progress=progress, queued=queued)
        b.update(completed=len(seen), description="done")
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0 if not report.failed else 1
    for path, why in report.ignored.items():
        print(f"ignored {path}: {why}")
    for g in report.groups:
        stages = " ".join(f"{k}={v:.1f}s" for k, v in g.stages.items())
        line = f"{g.group_key}  {g.state:<9} {stages or '-'}"
        if g.deferred:
            line += f"  (deferred {g.deferred}x for a calibration set)"
        print(line)
        if g.error:
            print(f"    error: {g.error[:300]}")
    done = sum(g.state == "completed" for g in report.groups)
    print(f"{len(report.registered)} file(s) registered, {done} group(s) completed, {len(report.failed)} failed "
          f"in {report.seconds:.0f} s")
    return 0 if not report.failed else 1
