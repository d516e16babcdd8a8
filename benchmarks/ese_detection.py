"""ESE detection on a simulated population: recall, false-positive rate, timing.

Simulates a year of daily photometry for ``--sources`` compact sources
(:func:`contimg.simulation.lightcurves.simulate_population`: 1-5 % errors
depending on SNR, maintenance/weather gaps, missing days, outliers; 5 % with an
injected ESE of depth 10-50 % and duration 14-180 d; every other source with
log-normal OU red noise of 0.3-6 % over 3-300 d) and runs
:func:`contimg.variability.ese.detect_ese`. Prints recall (events >= 20 % deep
and all events) and the false-positive rate at the configured threshold, and
ends with one JSON line.

``--calibrate`` instead simulates a population *without* ESEs and fits the
search's ``trials_per_window`` so that the significance's tail probability
matches the empirical null distribution of the likelihood ratio.

Usage::

    .venv/bin/python benchmarks/ese_detection.py [--sources 1000] [--seed 1] [--threshold 5]
    .venv/bin/python benchmarks/ese_detection.py --calibrate --sources 3000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contimg.simulation.lightcurves import simulate_population  # noqa: E402
from contimg.variability.ese import EseSearch, detect_ese, significance_from_lr  # noqa: E402


def evaluate(n_sources: int, *, seed: int, threshold: float, search: EseSearch = EseSearch()) -> dict:
    """Simulate, detect and score; returns the figures (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pop = simulate_population(n_sources, rng=rng)
    t1 = time.perf_counter()
    res = detect_ese(pop.source_idx, pop.t_days, pop.flux, pop.flux_err, search=search)
    t2 = time.perf_counter()
    flagged = np.zeros(n_sources, dtype=bool)
    flagged[res.candidates(threshold)] = True
    ese = pop.true_has_ese
    deep = ese & (pop.true_depth >= 0.2)
    bins = {}
    for lo, hi in ((0.1, 0.2), (0.2, 0.3), (0.3, 0.5)):
        sel = ese & (pop.true_depth >= lo) & (pop.true_depth < hi + 1e-9)
        bins[f"{lo:.1f}-{hi:.1f}"] = [int(flagged[sel].sum()), int(sel.sum())]
    found = flagged & ese
    depth_err = np.abs(res.depth[found] - pop.true_depth[found])
    dur_ratio = res.duration_days[found] / pop.true_duration_days[found]
    return {
        "sources": n_sources,
        "rows": int(pop.flux.size),
        "ese_injected": int(ese.sum()),
        "ese_deep": int(deep.sum()),
        "threshold_sigma": threshold,
        "recall_deep": float(flagged[deep].mean()) if deep.any() else float("nan"),
        "recall_all": float(flagged[ese].mean()) if ese.any() else float("nan"),
        "recall_by_depth": bins,
        "false_positives": int((flagged & ~ese).sum()),
        "false_positive_rate": float(flagged[~ese].mean()),
        "examined": int(res.examined.sum()),
        "median_abs_depth_error": float(np.median(depth_err)) if depth_err.size else float("nan"),
        "median_duration_ratio": float(np.median(dur_ratio)) if dur_ratio.size else float("nan"),
        "simulate_seconds": round(t1 - t0, 2),
        "detect_seconds": round(t2 - t1, 2),
        "ms_per_source": round(1e3 * (t2 - t1) / n_sources, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
    }, res, pop


def calibrate(n_sources: int, *, seed: int) -> dict:
    """Fit ``trials_per_window`` on a population without ESEs (every source examined)."""
    search = EseSearch(prefilter_min_dchi2=0.0)
    pop = simulate_population(n_sources, rng=np.random.default_rng(seed), ese_fraction=0.0)
    res = detect_ese(pop.source_idx, pop.t_days, pop.flux, pop.flux_err, search=search)
    lr = res.score[res.examined]
    span = np.array([np.ptp(pop.t_days[pop.source_idx == i]) for i in np.flatnonzero(res.examined)])
    # p(LR > x) under the null for the tail quantiles; pick the factor that matches them
    qs = np.array([0.9, 0.95, 0.98, 0.99, 0.995])
    x = np.quantile(lr, qs)
    unit = replace(search, trials_per_window=1.0)
    factors = []
    for xi, q in zip(x, qs):
        # p_model = min(1, k * N0 * sf/2): solve k from the median span
        sig = significance_from_lr(np.array([xi]), np.array([np.median(span)]), search=unit)
        from scipy import stats
        p1 = stats.norm.sf(sig[0])
        factors.append((1 - q) / p1)
    return {
        "null_sources": int(lr.size),
        "lr_quantiles": dict(zip([str(q) for q in qs], np.round(x, 2).tolist())),
        "trials_per_window_by_quantile": np.round(factors, 2).tolist(),
        "trials_per_window": float(np.round(np.max(factors), 2)),
        "lr_max": float(lr.max()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threshold", type=float, default=None, help="sigma (default: settings.variability.ese_threshold)")
    p.add_argument("--calibrate", action="store_true", help="fit trials_per_window on a null population")
    args = p.parse_args()
    if args.calibrate:
        out = calibrate(args.sources, seed=args.seed)
        print(json.dumps(out))
        return 0
    threshold = args.threshold
    if threshold is None:
        from contimg.config import load_settings

        threshold = load_settings().variability.ese_threshold
    out, res, pop = evaluate(args.sources, seed=args.seed, threshold=threshold)
    print(f"{out['sources']} sources, {out['rows']} measurements, {out['ese_injected']} ESEs ({out['ese_deep']} >= 20 % deep)")
    print(f"threshold {threshold} sigma: recall (>= 20 %) {out['recall_deep']:.3f}, recall (all) {out['recall_all']:.3f}, "
          f"false positives {out['false_positives']} (rate {out['false_positive_rate']:.4f})")
    print(f"recall by depth [found, injected]: {out['recall_by_depth']}")
    print(f"detect {out['detect_seconds']} s ({out['ms_per_source']} ms/source, {out['examined']} examined in detail)")
    missed = np.flatnonzero(pop.true_has_ese & (pop.true_depth >= 0.2) & ~np.isin(np.arange(out['sources']), res.candidates(threshold)))
    for i in missed:
        print(f"  missed: depth {pop.true_depth[i]:.2f} duration {pop.true_duration_days[i]:.0f} d, SNR {pop.true_flux_jy[i] / 0.001:.0f}, "
              f"red noise {pop.true_red_noise_amplitude[i]:.3f}/{pop.true_red_noise_timescale_days[i]:.0f} d -> sigma {res.significance[i]:.1f}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
