"""Full-scale simulation of one DSA-110 group: wall time, file sizes, peak memory.

Simulates one group at full scale (96 antennas, 16 subbands x 48 channels, 24
integrations, noise, gains, a 10 Jy calibrator and ``--n-sources`` catalogue
sources), prints per-phase figures and ends with one JSON line::

    {"benchmark": "simulate", "seconds": ..., "seconds_per_subband": ..., "mb_per_file": ...,
     "group_gb": ..., "peak_rss_mb_parent": ..., "peak_rss_mb_worker": ..., ...}

Wall times on a shared 2-core machine are noisy; ``cpu_seconds`` (all processes)
is the steadier figure. Run it when the machine is quiet.

Usage::

    .venv/bin/python benchmarks/simulate.py [--processes 2] [--subbands 16] [--n-sources 100]
                                            [--antennas 96] [--channels 48] [--outdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contimg.simulation import SimulationConfig, simulate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--subbands", type=int, default=16, help="simulate the first N subbands (default 16)")
    p.add_argument("--n-sources", type=int, default=100)
    p.add_argument("--antennas", type=int, default=96)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--outdir", type=Path, default=None, help="where to write (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the files")
    args = p.parse_args(argv)

    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="contimg-sim-bench-"))
    cfg = SimulationConfig(
        n_antennas=args.antennas, channels_per_subband=args.channels, subbands=tuple(range(args.subbands)),
        seed=args.seed, n_sources=args.n_sources, calibrator_flux_jy=10.0, processes=args.processes,
    )
    times: list[float] = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime  # imports excluded
    t0 = time.perf_counter()
    try:
        res = simulate(outdir, cfg, progress=lambda msg: times.append(time.perf_counter()))
        total = time.perf_counter() - t0
        sizes = [p.stat().st_size for p in res.paths]
    finally:
        if not args.keep:
            shutil.rmtree(outdir, ignore_errors=True)
    setup = times[0] - t0 if times else float("nan")
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent = self_ru.ru_maxrss / 1024
    children = child_ru.ru_maxrss / 1024
    cpu = self_ru.ru_utime + self_ru.ru_stime + child_ru.ru_utime + child_ru.ru_stime - cpu0
    nsb = len(sizes)
    figures = {
        "benchmark": "simulate",
        "antennas": args.antennas,
        "channels_per_subband": args.channels,
        "subbands": nsb,
        "n_sources": args.n_sources + 1,
        "processes": args.processes,
        "seconds": round(total, 2),
        "seconds_to_first_file": round(setup, 2),
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_per_group_extrapolated": round(cpu * 16 / nsb, 1),
        "seconds_per_subband": round(total / nsb, 2),
        "seconds_per_group_extrapolated": round(total * 16 / nsb, 1),
        "mb_per_file": round(sum(sizes) / nsb / 1e6, 1),
        "group_gb": round(sum(sizes) * 16 / nsb / 1e9, 2),
        "peak_rss_mb_parent": round(parent),
        "peak_rss_mb_worker": round(children),
    }
    print(f"one group, {args.antennas} antennas, {nsb} subbands x {args.channels} channels, "
          f"{args.n_sources + 1} sources, {args.processes} process(es)")
    print(f"  wall time       {total:8.1f} s  ({total / nsb:.2f} s a subband; first file after {setup:.1f} s)")
    print(f"  CPU time        {cpu:8.1f} s  (all processes; less sensitive to a busy machine than wall time)")
    print(f"  file size       {figures['mb_per_file']:8.1f} MB a file, {figures['group_gb']:.2f} GB a group")
    print(f"  peak RSS        {parent:8.0f} MB parent, {children:.0f} MB largest worker")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
