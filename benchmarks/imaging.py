"""Benchmark: WSClean vs CASA tclean on one simulated full-scale DSA-110 group.

Simulates (once; cached in ``--workdir``) a full-scale group -- 96 antennas,
16 subbands x 48 channels, 24 integrations, thermal noise, no gains, so
CORRECTED_DATA == DATA is calibrated by construction -- converts it to one MS,
then images it with both backends through :func:`contimg.imaging.image_ms` on
the same geometry and tier, and reports for each:

* ``wall_s``: the imager's wall time (``imager_s``) and the whole
  ``image_ms`` call including PB correction and QA (``total_s``);
* ``residual_rms_jy``: robust rms of the residual image;
* ``median_flux_error``: median |S_fit / S_true - 1| over the catalogue sources
  with SNR > 50 on the PB-corrected image (restoring-beam fit at the known
  position, truth at the image reference frequency); ``max_flux_error`` and
  the median position offset in beams are printed too.

The last line is one JSON object with ``wsclean``, ``tclean``, ``speedup``
(tclean / WSClean imager wall time) and ``speedup_cpu`` (the same in CPU
seconds, which is what to compare on a shared machine: wall times scale with
the load average, which is printed too).

Usage::

    .venv/bin/python benchmarks/imaging.py [--workdir DIR] [--prototype | --size NX NY --cell ARCSEC] [--backends wsclean tclean]

By default both image the geometry image_ms derives, which is what the
pipeline images: the whole field to 20 % of the time-averaged primary beam,
3840 x 3072 pixels of 5 arcsec. ``--prototype`` images the prototype's
1536^2 at 5 arcsec instead, so the figures compare with it. The
``averaging`` entry of each result is WSClean's baseline-dependent averaging
(:mod:`contimg.imaging.smearing`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np


def prepare(workdir: Path, *, antennas: int, channels: int, seed: int, processes: int) -> tuple[Path, Path]:
    """Simulate and convert the group unless already done; returns (ms, truth dir)."""
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, simulate

    raw = workdir / "raw"
    ms = workdir / "group.ms"
    if (raw / "truth.json").exists() and ms.exists():
        return ms, raw
    t0 = time.perf_counter()
    cfg = SimulationConfig(n_antennas=antennas, channels_per_subband=channels, seed=seed, noise=True, gains=False,
                           jitter_s=0, processes=processes)
    result = simulate(raw, cfg)
    t1 = time.perf_counter()
    convert_group(result.groups[0].paths, ms, staging_dir=workdir / "staging", processes=processes)
    print(f"prepared {ms}: simulate {t1 - t0:.0f} s, convert {time.perf_counter() - t1:.0f} s", flush=True)
    return ms, raw


def evaluate(products, truth, *, snr_min: float = 50.0) -> dict:
    """Flux and position errors of the SNR > snr_min catalogue sources on the PB-corrected image."""
    from astropy.io import fits

    from contimg.imaging import fit_point_source
    from contimg.imaging.pbcor import beam_at_positions
    from contimg.imaging.qa import robust_rms
    from contimg.msmodel import read_ms

    ms = read_ms(products.ms_path)
    data = fits.getdata(products.pbcor)
    header = fits.getheader(products.pbcor)
    resid = robust_rms(fits.getdata(products.residual))
    nu = products.ref_freq_hz
    cat = truth.catalog
    pb = beam_at_positions(np.radians(cat.ra_deg), np.radians(cat.dec_deg), ms)
    true = cat.flux_jy * (nu / 1.4e9) ** cat.spectral_index
    ratios, offsets, pix = [], [], []
    for k in np.flatnonzero(pb * true / resid > snr_min):
        fit = fit_point_source(data, header, float(cat.ra_deg[k]), float(cat.dec_deg[k]))
        if not fit.ok:
            continue
        ratios.append(fit.flux_jy / true[k])
        offsets.append(fit.offset_arcsec / products.qa.beam_minor_arcsec)
        pix.append(fit.peak_pixel_jy / true[k])
    ratios = np.array(ratios)
    return {
        "imager_s": products.imager_s,
        "imager_cpu_s": products.imager_cpu_s,
        "total_s": products.total_s,
        "residual_rms_jy": resid,
        "n_sources": int(ratios.size),
        "median_flux_error": float(np.median(np.abs(ratios - 1))) if ratios.size else None,
        "median_flux_ratio": float(np.median(ratios)) if ratios.size else None,
        "max_flux_error": float(np.max(np.abs(ratios - 1))) if ratios.size else None,
        "median_peak_pixel_ratio": float(np.median(pix)) if pix else None,
        "median_offset_beams": float(np.median(offsets)) if offsets else None,
        "beam_arcsec": [products.qa.beam_major_arcsec, products.qa.beam_minor_arcsec],
        "size": [products.qa.nx, products.qa.ny],
        "cell_arcsec": products.qa.cell_arcsec,
        "averaging": products.averaging,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/contimg-bench-imaging"))
    parser.add_argument("--antennas", type=int, default=96)
    parser.add_argument("--channels-per-subband", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tier", default="standard")
    parser.add_argument("--size", type=int, nargs=2, default=None, help="override the derived image size")
    parser.add_argument("--cell", type=float, default=None, help="override the derived cell (arcsec)")
    parser.add_argument("--prototype", action="store_true", help="the prototype's geometry: 1536^2 at 5 arcsec")
    parser.add_argument("--backends", nargs="+", default=["wsclean", "tclean"], choices=["wsclean", "tclean"],
                        help="imagers to run (default both); results of a backend not run are read from "
                             "WORKDIR/result-<backend>-<geometry>.json if a previous run of the same geometry left one")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--wsclean-extra", default="", help="extra WSClean arguments (space separated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from contimg.config import ImagingSettings
    from contimg.imaging import image_ms
    from contimg.simulation import load_truth

    args.workdir.mkdir(parents=True, exist_ok=True)
    ms, raw = prepare(args.workdir, antennas=args.antennas, channels=args.channels_per_subband,
                      seed=args.seed, processes=args.processes)
    if args.prepare_only:
        return 0
    truth = load_truth(raw)
    settings = ImagingSettings(threads=args.threads, tier=args.tier)
    if args.prototype:
        args.size, args.cell = args.size or [1536, 1536], args.cell or 5.0
    geometry_kw = {"cell_arcsec": args.cell, "size": tuple(args.size) if args.size else None}
    tag = "derived" if args.size is None and args.cell is None else f"{args.size}-{args.cell}".replace(" ", "")
    results: dict = {}
    for backend in args.backends:
        extra = args.wsclean_extra.split() if backend == "wsclean" else ()
        products = image_ms(ms, settings=settings, out_dir=args.workdir / "images", name=backend, backend=backend,
                            extra_wsclean_args=extra, **geometry_kw)
        results[backend] = evaluate(products, truth)
        results[backend]["load_avg_after"] = os.getloadavg()[0]
        (args.workdir / f"result-{backend}-{tag}.json").write_text(json.dumps(results[backend]))
        print(f"{backend}: {json.dumps(results[backend])}", flush=True)
    for backend in ("wsclean", "tclean"):
        cached = args.workdir / f"result-{backend}-{tag}.json"
        if backend not in results and cached.exists():
            results[backend] = json.loads(cached.read_text()) | {"from_previous_run": True}

    def brief(r: dict | None) -> dict | None:
        if r is None:
            return None
        return {"wall_s": r["imager_s"], "cpu_s": r.get("imager_cpu_s"), "total_s": r["total_s"],
                "residual_rms_jy": r["residual_rms_jy"], "median_flux_error": r["median_flux_error"],
                "n_sources": r["n_sources"], "size": r.get("size"), "cell_arcsec": r.get("cell_arcsec"),
                "from_previous_run": r.get("from_previous_run", False)}

    speedup = speedup_cpu = None
    if "tclean" in results and "wsclean" in results:
        speedup = round(results["tclean"]["imager_s"] / results["wsclean"]["imager_s"], 2)
        if results["tclean"].get("imager_cpu_s") and results["wsclean"].get("imager_cpu_s"):
            speedup_cpu = round(results["tclean"]["imager_cpu_s"] / results["wsclean"]["imager_cpu_s"], 2)
    summary = {
        "benchmark": "imaging", "ms": str(ms), "geometry": tag, "tier": args.tier, "load_avg_1min": os.getloadavg()[0],
        "wsclean": brief(results.get("wsclean")), "tclean": brief(results.get("tclean")),
        "speedup": speedup, "speedup_cpu": speedup_cpu,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
