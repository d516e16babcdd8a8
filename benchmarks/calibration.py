"""Calibration of one full-scale calibrator group: our solve+apply against the naive full-resolution solve.

Simulates (unless ``--data`` holds one already) a full-scale group: 96
antennas, 16 subbands x 48 channels (768), 24 x 12.9 s, a 10 Jy calibrator
transiting mid-group, 100 random sources, thermal noise (SEFD 6500 Jy) and
random gains; converts it to one MS; imports the truth catalogue; then

* **ours**: :func:`contimg.pipeline.calibrate.calibrate_ms` end to end (calibrator
  selection, MODEL_DATA from every source near the track, python-casacore time
  average, bandpass (two processes over halves of the band) + gaincal on the
  averaged copy, QA plots, registry, applycal on the full MS);
* **naive**: the same MODEL_DATA, bandpass (one process) + gaincal on the
  full-resolution MS, applycal (``--skip-naive`` to leave it out).

Accuracy: per-antenna error of B x G against the simulated gains
(complex-conjugated, reference antenna's phase removed), median over channels
and feeds, then over antennas. Prints the figures and ends with one JSON line
with ``ours_s``, ``naive_s``, ``amp_err_pct``, ``phase_err_deg``, ``ours_cpu_s``
(CPU seconds of this process and its children: the machine may be shared, and on
an idle 2-core machine the wall time approaches max(critical path, CPU / 2)), the
load average, and more.

Usage::

    .venv/bin/python benchmarks/calibration.py [--data DIR] [--antennas 96] [--channels 48] [--skip-naive]
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def prepare(data: Path, *, antennas: int, channels: int, seed: int) -> tuple[Path, Path]:
    """(simulation dir, converted MS), created if absent."""
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, simulate

    sim, ms = data / "sim", data / "g0.ms"
    if not (sim / "truth.json").exists():
        t0 = time.perf_counter()
        cfg = SimulationConfig(n_antennas=antennas, channels_per_subband=channels, seed=seed,
                               calibrator_flux_jy=10.0, processes=2)
        simulate(sim, cfg)
        print(f"simulated in {time.perf_counter() - t0:.0f} s", flush=True)
    if not ms.exists():
        from contimg.simulation import load_truth

        t0 = time.perf_counter()
        convert_group(load_truth(sim).files(0), ms, staging_dir=data / "staging", processes=2)
        print(f"converted in {time.perf_counter() - t0:.0f} s", flush=True)
    return sim, ms


def errors(truth, tables: dict[str, str], ms: Path, refant: str) -> tuple[float, float]:
    from contimg.calibration.qa import solution_errors
    from contimg.msmodel import read_ms

    model = read_ms(ms)
    t_mid = 0.5 * (model.time_array[0] + model.time_array[-1])
    true = truth.gains(model.ant_array, model.freq_array, t_mid)[:, :, 0, :]
    amp, phase = solution_errors(tables, antenna_numbers=model.ant_array, true_gains=true,
                                 refant_index=model.data_antenna_names.index(refant))
    return float(np.median(amp) * 100), float(np.median(phase))


def cpu_s() -> float:
    """CPU seconds of this process (all threads; CASA runs in-process) and its children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/contimg-bench-calibration"),
                    help="working directory (simulation and MS are reused if present)")
    ap.add_argument("--antennas", type=int, default=96)
    ap.add_argument("--channels", type=int, default=48, help="channels per subband")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from contimg.pipeline.calibrate import calibrate_ms
    from contimg.calibration.apply import apply_tables
    from contimg.pipeline.catalog import import_truth
    from contimg.calibration.solve import solve_calibrator
    from contimg.config import CalibrationSettings
    from contimg.db import init_db, session_scope
    from contimg.simulation import load_truth

    data = args.data
    data.mkdir(parents=True, exist_ok=True)
    sim, ms = prepare(data, antennas=args.antennas, channels=args.channels, seed=args.seed)
    truth = load_truth(sim)
    db = data / "bench.sqlite3"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    init_db(url)
    with session_scope(url) as s:
        import_truth(s, sim)
    cal_dir, scratch = data / "caltables", data / "scratch"
    shutil.rmtree(cal_dir, ignore_errors=True)

    t0, c0 = time.perf_counter(), cpu_s()
    out = calibrate_ms(ms, database=url, calibration=CalibrationSettings(), caltable_dir=cal_dir, scratch_dir=scratch)
    ours_s, ours_cpu = time.perf_counter() - t0, cpu_s() - c0
    amp, phase = errors(truth, dict(zip(("B", "G"), out.tables)), ms, out.refant)
    print(f"ours: {ours_s:.1f} s wall, {ours_cpu:.1f} s CPU {out.timings_s}; amplitude error {amp:.3f}%, "
          f"phase error {phase:.3f} deg; refant {out.refant}, {out.n_model_sources} model sources", flush=True)
    result = {"ours_s": round(ours_s, 1), "ours_cpu_s": round(ours_cpu, 1), "load_avg_1min": os.getloadavg()[0],
              "amp_err_pct": round(amp, 3), "phase_err_deg": round(phase, 3),
              "ours_breakdown_s": out.timings_s, "antennas": args.antennas, "channels": args.channels * 16}

    naive_s = None
    if not args.skip_naive:
        t0, c0 = time.perf_counter(), cpu_s()
        sol = solve_calibrator(ms, out_dir=data / "naive", prefix="naive", scratch_dir=scratch, refant=out.refant,
                               average=False, processes=1)
        applied = apply_tables(ms, list(sol.tables.items()))
        naive_solve_apply, naive_cpu = time.perf_counter() - t0, cpu_s() - c0
        naive_s = naive_solve_apply + out.timings_s.get("model", 0.0)
        n_amp, n_phase = errors(truth, sol.tables, ms, sol.refant)
        print(f"naive: {naive_s:.1f} s (model {out.timings_s.get('model', 0):.1f} + solve {sol.timings_s} + "
              f"apply {applied.seconds:.1f}); amplitude error {n_amp:.3f}%, phase error {n_phase:.3f} deg", flush=True)
        result.update(naive_solve_apply_cpu_s=round(naive_cpu, 1),
                      naive_amp_err_pct=round(n_amp, 3), naive_phase_err_deg=round(n_phase, 3),
                      naive_breakdown_s=sol.timings_s)
    result["naive_s"] = None if naive_s is None else round(naive_s, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
