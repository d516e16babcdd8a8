"""New-source detection on a simulated season: recall of injected transients and false candidates per night.

A season of ``--nights`` nights over the same sky (the same LST each night),
``--groups`` consecutive groups a night, is simulated with thermal noise (no
gains: calibration is not what is measured here) and a random catalogue of
``--sources`` sources, on a core-only array of ``--antennas`` antennas (the
images of a core array are small enough for a season to run in minutes; their
PSF, noise and primary beam are the real pipeline's). Night 0 has no transients; each later night has
``--per-night`` transients that are not in the catalogue, each shining on its
night only, at random positions where the primary beam is at least 0.35 and
no catalogue source is within 5 restoring beams, with fluxes chosen for an
expected SNR (S x beam / the image's noise, from night 0's images)
log-uniform in ``--snr-range``. ``--uncatalogued`` of the catalogue's sources
(between 20 and 200 mJy) are left out of the database's catalogue: the real
sky holds sources the catalogue lacks, and they are there every night, so they
must never become new-source candidates.

Every group goes through the library as the image stage runs it: conversion
(:func:`contimg.conversion.convert_group`), WSClean (:func:`contimg.imaging.image_ms`,
the production tier and settings), and :func:`contimg.pipeline.image.judge_and_record`,
which judges the image, runs the blind finder (PyBDSF), cross-matches the
components with the catalogue, stores them and runs the new-source search
(:mod:`contimg.pipeline.new_sources`) against the images already recorded.
Groups are processed in time order.

A transient counts as recovered when a candidate lies within one restoring
beam major axis of it. Its SNR is the expected SNR in the best image of its
night (flux x that image's time-averaged primary beam at the position / that
image's measured rms). ``recall`` is the fraction of transients at SNR >= 10
that were recovered (also given for SNR 7-10 and 5-7); a candidate with no
transient within the radius is false: ``false_per_night`` is their number
over the nights after the first (the first cannot have candidates).

Usage::

    .venv/bin/python benchmarks/new_sources.py [--nights 6] [--groups 2] [--per-night 8] [--seed 1]
        [--antennas 48] [--channels-per-subband 8] [--workdir DIR] [--keep]

Prints one line per transient and per false candidate, then one JSON object on the last line:
``recall``, ``false_per_night``, ``n_transients``, ``n_snr_ge_10``, ``recall_7_10``, ``recall_5_7``,
``false_candidates``, ``nights``, ``images``, the images' median rms and the CPU seconds per group.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIDEREAL_DAY_S = 86164.0905
MIN_BEAM = 0.35
AVOID_BEAMS = 5.0


def _settings(root: Path, db: Path):
    from contimg.config import load_settings

    s = load_settings(data_root=root, staging_dir=root / "staging", database_url=f"sqlite:///{db}")
    s.paths.ensure()
    return s


def _process(settings, paths: list[Path], ms: Path, out_dir: Path) -> tuple:
    """Convert, image and record one group; returns (products, verdict, image ids, seconds)."""
    from contimg.conversion import convert_group
    from contimg.imaging import image_ms
    from contimg.pipeline.image import catalogue_cone, judge_and_record

    t0 = time.process_time()
    convert_group(paths, ms, staging_dir=settings.paths.staging, processes=1)
    products = image_ms(ms, settings=settings.imaging, out_dir=out_dir, catalogue=catalogue_cone(settings))
    verdict, ids = judge_and_record(settings, products, ms_id=None)
    shutil.rmtree(ms, ignore_errors=True)
    return products, verdict, ids, time.process_time() - t0


def _beam_at(pb_path: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    from contimg.photometry.measure import ImageSet, beam_response_at

    images = ImageSet(image_id=0, path=pb_path, epoch_mjd=math.nan, flat=None, pbcor=None, pb=Path(pb_path),
                      ms_path=None)
    out = beam_response_at(ra, dec, images=images)
    assert out is not None
    return out


def _place_transients(rng, n: int, products, catalogue, *, beam_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` positions in one of night 0's images where its beam >= MIN_BEAM, away from catalogue sources;
    returns (ra, dec, beam response)."""
    from contimg.beam import angular_separation

    ra_out, dec_out, resp_out = [], [], []
    k = 0
    while len(ra_out) < n:
        p = products[k % len(products)]
        k += 1
        east, north = rng.uniform(-1.6, 1.6, 2)
        dec = p.dec_deg + north
        ra = (p.ra_deg + east / math.cos(math.radians(dec))) % 360.0
        resp = float(_beam_at(str(p.pb), np.array([ra]), np.array([dec]))[0])
        if resp < MIN_BEAM:
            continue
        sep = np.degrees(angular_separation(math.radians(ra), math.radians(dec), np.radians(catalogue.ra_deg),
                                            np.radians(catalogue.dec_deg)))
        if (sep < AVOID_BEAMS * beam_deg).any():
            continue
        if ra_out and (np.degrees(angular_separation(math.radians(ra), math.radians(dec), np.radians(ra_out),
                                                     np.radians(dec_out))) < 10 * beam_deg).any():
            continue
        ra_out.append(ra)
        dec_out.append(dec)
        resp_out.append(resp)
    return np.array(ra_out), np.array(dec_out), np.array(resp_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=6)
    parser.add_argument("--groups", type=int, default=2, help="consecutive groups a night")
    parser.add_argument("--per-night", type=int, default=8, help="transients on each night after the first")
    parser.add_argument("--snr-range", type=float, nargs=2, default=(5.0, 40.0))
    parser.add_argument("--sources", type=int, default=60, help="catalogue sources")
    parser.add_argument("--uncatalogued", type=int, default=4, help="sources left out of the database's catalogue")
    parser.add_argument("--antennas", type=int, default=48, help="core antennas (evenly spaced over the 102 core stations)")
    parser.add_argument("--channels-per-subband", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    from contimg.beam import angular_separation
    from contimg.cluster.demo import import_catalogue
    from contimg.db import init_db, session_scope
    from contimg.db.models import NewSource, Source
    from contimg.simulation import SimulationConfig, TransientInjection, load_truth, simulate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="contimg_newsrc_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    core = tuple(int(a) for a in np.round(np.linspace(0, 101, args.antennas)))
    base = SimulationConfig(antenna_numbers=core, channels_per_subband=args.channels_per_subband,
                            n_groups=args.groups, n_days=1, seed=args.seed, gains=False, noise=True,
                            n_sources=args.sources, jitter_s=0.0, processes=2)
    settings = _settings(work / "data", work / "contimg.sqlite3")
    init_db(settings.database)

    # night 0: the sky, the catalogue (less the uncatalogued sources), the images' noise and beams
    sim0 = simulate(work / "sim-0", base)
    truth0 = load_truth(sim0.truth_path)
    catalogue = truth0.catalog
    import_catalogue(settings, sim0.truth_path)
    mid = (catalogue.flux_jy > 0.02) & (catalogue.flux_jy < 0.2) & ~catalogue.calibrator
    left_out = rng.choice(np.flatnonzero(mid), size=min(args.uncatalogued, int(mid.sum())), replace=False)
    with session_scope(settings) as s:
        for k in left_out:
            src = s.query(Source).filter(Source.ra_deg.between(catalogue.ra_deg[k] - 1e-4, catalogue.ra_deg[k] + 1e-4),
                                         Source.dec_deg.between(catalogue.dec_deg[k] - 1e-4,
                                                                catalogue.dec_deg[k] + 1e-4)).one()
            s.delete(src)
    print(f"season: {args.nights} nights x {args.groups} groups, {args.antennas} antennas, "
          f"{args.channels_per_subband} channels/subband; {catalogue.Nsrc} sources, {len(left_out)} of them "
          f"(20-200 mJy) not in the database's catalogue; work directory {work}", flush=True)

    cpu: list[float] = []
    images: list[dict] = []  # per image: night, rms, pb path

    def run_night(night: int, sim) -> list:
        made = []
        for g in sim.groups:
            products, verdict, ids, sec = _process(settings, g.paths, work / f"n{night}g{g.index}.ms",
                                                   settings.paths.images / f"n{night}g{g.index}")
            cpu.append(sec)
            made.append(products)
            images.append({"night": night, "rms": products.qa.rms_jy, "pb": str(products.pb),
                           "verdict": verdict.status})
            print(f"  night {night} group {g.index}: rms {1e6 * products.qa.rms_jy:.0f} uJy/beam, QA "
                  f"{verdict.status}, {sec:.0f} CPU s", flush=True)
        return made

    night0 = run_night(0, sim0)
    beam_deg = night0[0].qa.beam_major_arcsec / 3600.0
    rms0 = float(np.median([p.qa.rms_jy for p in night0]))

    transients: list[dict] = []
    for night in range(1, args.nights):
        ra, dec, resp = _place_transients(rng, args.per_night, night0, catalogue, beam_deg=beam_deg)
        snr_goal = np.exp(rng.uniform(*np.log(args.snr_range), args.per_night))
        flux_at_image = snr_goal * rms0 / resp  # at the images' reference frequency
        flux_14 = flux_at_image / (night0[0].ref_freq_hz / 1.4e9) ** -0.7
        trs = tuple(TransientInjection(ra_deg=float(r), dec_deg=float(d), flux_jy=float(f), first_day=0, last_day=0)
                    for r, d, f in zip(ra, dec, flux_14))
        cfg = replace(base, start=base.start + __import__("datetime").timedelta(seconds=night * SIDEREAL_DAY_S),
                      seed=args.seed + 1000 * night, transients=trs)
        sim = simulate(work / f"sim-{night}", cfg, catalog=catalogue)
        made = run_night(night, sim)
        for k, tr in enumerate(trs):
            # expected SNR in the best image of the night: flux at the image frequency x beam / measured rms
            snrs = [float(tr.flux_jy * (p.ref_freq_hz / 1.4e9) ** -0.7 * _beam_at(str(p.pb), np.array([tr.ra_deg]),
                                                                                  np.array([tr.dec_deg]))[0]
                          / p.qa.rms_jy) for p in made]
            transients.append({"night": night, "ra_deg": tr.ra_deg, "dec_deg": tr.dec_deg, "flux_jy": tr.flux_jy,
                               "snr": max(snrs)})
        if not args.keep:
            shutil.rmtree(work / f"sim-{night}", ignore_errors=True)

    with session_scope(settings, readonly=True) as s:
        cands = [(c.id, c.name, c.ra_deg, c.dec_deg, c.snr, c.significance, c.first_detected_mjd, c.n_detections)
                 for c in s.query(NewSource).order_by(NewSource.id)]
    cra = np.array([c[2] for c in cands])
    cdec = np.array([c[3] for c in cands])
    used = np.zeros(len(cands), bool)
    for tr in transients:
        if cands:
            sep = np.degrees(angular_separation(math.radians(tr["ra_deg"]), math.radians(tr["dec_deg"]),
                                                np.radians(cra), np.radians(cdec)))
            hit = sep <= beam_deg
            tr["found"] = bool(hit.any())
            used |= hit
        else:
            tr["found"] = False
    false = [c for c, u in zip(cands, used) if not u]
    for tr in sorted(transients, key=lambda t: -t["snr"]):
        print(f"transient night {tr['night']} ({tr['ra_deg']:.4f}, {tr['dec_deg']:.4f}) {1e3 * tr['flux_jy']:.2f} mJy "
              f"expected SNR {tr['snr']:.1f}: {'found' if tr['found'] else 'MISSED'}")
    for c in false:
        print(f"false candidate {c[1]} ({c[2]:.4f}, {c[3]:.4f}) SNR {c[4]:.1f} significance {c[5]:.1f} "
              f"MJD {c[6]:.3f} detections {c[7]}")

    def recall(lo: float, hi: float) -> tuple[float | None, int]:
        sel = [t for t in transients if lo <= t["snr"] < hi]
        return (round(sum(t["found"] for t in sel) / len(sel), 3) if sel else None), len(sel)

    r10, n10 = recall(10.0, math.inf)
    r7, n7 = recall(7.0, 10.0)
    r5, n5 = recall(5.0, 7.0)
    summary = {
        "benchmark": "new_sources", "recall": r10, "false_per_night": round(len(false) / max(args.nights - 1, 1), 3),
        "n_transients": len(transients), "n_snr_ge_10": n10, "recall_7_10": r7, "n_snr_7_10": n7,
        "recall_5_7": r5, "n_snr_5_7": n5, "false_candidates": len(false), "candidates": len(cands),
        "nights": args.nights, "groups_per_night": args.groups, "images": len(images),
        "qa_failed": sum(i["verdict"] == "fail" for i in images),
        "median_rms_jy": float(np.median([i["rms"] for i in images])),
        "cpu_s_per_group": round(float(np.median(cpu)), 1), "wall_s": round(time.perf_counter() - t_start, 1),
        "antennas": args.antennas, "channels_per_subband": args.channels_per_subband, "seed": args.seed,
        "targets": {"recall": ">= 0.9", "false_per_night": "<= 1"},
    }
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    return 0 if (r10 is not None and r10 >= 0.9 and summary["false_per_night"] <= 1) else 1


if __name__ == "__main__":
    sys.exit(main())
