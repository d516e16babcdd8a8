"""Compare the two maintained blind source finders on our images: Aegean (+ BANE) and PyBDSF.

Both install from PyPI without system libraries (``aegeantools``: pure Python on
numpy/scipy/astropy/lmfit/healpy/scikit-learn; ``bdsf``: manylinux wheels bundling its compiled Fortran/C++
(boost-python) extension). Each finder runs on one core, in a fresh process per image, and the machine may be
busy: compare CPU seconds more than wall seconds.

Images:

* ``full``: a synthetic 3840 x 3072 image at 5 arcsec (a full-scale group's size), a 30 x 15 arcsec
  restoring beam, Gaussian noise correlated by the beam, point sources at known positions and
  fluxes seen through a Gaussian primary beam (:func:`contimg.simulation.image.synthetic_image`);
* ``small``: a synthetic 512 x 512 image of the same kind;
* ``real`` (``--real``): a small WSClean image of a simulated group (the imaging tests' fixture: 20
  core antennas, five 1-2.5 Jy sources), imaged by :func:`contimg.imaging.image_ms`; minutes to make.

For each finder and image: wall and CPU time, peak resident memory of the child process that ran it
(each run in its own process), the number of components, completeness (injected sources matched within
half the minor beam axis) above 5 sigma, the median and scatter of the flux ratio found/true and the
median position error in beam fractions, false detections. The last line printed is one JSON object.

Usage::

    PYTHONPATH=. python benchmarks/source_finding.py [--skip-full] [--real] [--finders aegean,bdsf]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_synthetic(out: Path, name: str, shape: tuple[int, int], n: int, seed: int):
    from contimg.simulation.image import random_sky, synthetic_image

    rng = np.random.default_rng(seed)
    cell = 5.0
    ra0, dec0 = 150.0, 35.0
    half = 0.45 * min(shape) * cell / 3600
    ra, dec, flux = random_sky(n, ra0_deg=ra0, dec0_deg=dec0, radius_deg=half, flux_range_jy=(2e-3, 0.5), rng=rng,
                               min_sep_deg=4 * 30 / 3600)
    return synthetic_image(out / name, shape=shape, cell_arcsec=cell, ra0_deg=ra0, dec0_deg=dec0, ra_deg=ra,
                           dec_deg=dec, flux_jy=flux, noise_jy=3e-4, beam_arcsec=(30.0, 15.0, 20.0), seed=seed)


def run_aegean(image: str, workdir: str) -> dict:
    from AegeanTools.BANE import filter_image
    from AegeanTools.source_finder import SourceFinder

    base = str(Path(workdir) / Path(image).stem)
    t0 = time.perf_counter()
    filter_image(image, out_base=base, cores=1, nslice=1)
    t_bane = time.perf_counter() - t0
    sf = SourceFinder()
    comps = sf.find_sources_in_image(image, rmsin=base + "_rms.fits", bkgin=base + "_bkg.fits", cores=1,
                                     innerclip=5, outerclip=4, progress=False, cube_index=0)
    rows = [(c.ra, c.dec, c.peak_flux, c.int_flux, c.local_rms) for c in comps if c.peak_flux > 0]
    return {"rows": rows, "background_s": t_bane}


def run_bdsf(image: str, workdir: str) -> dict:
    import bdsf

    img = bdsf.process_image(image, quiet=True, ncores=1, thresh_pix=5.0, thresh_isl=4.0,
                             output_opts=True, opdir_overwrite="append")
    rows = [(g.centre_sky[0], g.centre_sky[1], g.peak_flux, g.total_flux, g.rms) for g in img.gaussians]
    return {"rows": rows}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key + ":")).split()[1])


def _threads() -> int:
    return _status("Threads")


def _child(finder: str, image: str, workdir: str, q) -> None:
    import threading

    peak_threads = [_threads()]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            peak_threads.append(_threads())

    before = set(Path(image).parent.iterdir())
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = {"aegean": run_aegean, "bdsf": run_bdsf}[finder](image, workdir)
        res["error"] = None
    except Exception as exc:  # the benchmark reports a finder's failure, it does not stop
        res = {"rows": [], "error": f"{type(exc).__name__}: {exc}"}
    res["wall_s"] = time.perf_counter() - t0
    res["cpu_s"] = time.process_time() - c0 + sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    stop.set()
    # VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak (it made the images)
    res["peak_rss_mb"] = _status("VmHWM") / 1024
    res["max_threads"] = max(peak_threads) - 1  # less the watcher
    res["files_left_beside_image"] = sorted(p.name for p in set(Path(image).parent.iterdir()) - before)
    q.put(res)


def run_isolated(finder: str, image: str, workdir: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(finder, image, workdir, q))
    p.start()
    res = q.get()
    p.join()
    return res


def score(rows, truth, pb_path: Path, *, beam_minor_arcsec: float, noise_jy: float) -> dict:
    from astropy.coordinates import SkyCoord
    from astropy import units as u

    from contimg.photometry.measure import ImageSet, beam_response_at

    images = ImageSet(image_id=0, path="", epoch_mjd=0.0, flat=None, pbcor=None, pb=pb_path, ms_path=None)
    apparent = truth["flux"] * beam_response_at(truth["ra"], truth["dec"], images=images)
    out: dict = {"n_components": len(rows)}
    detectable = apparent >= 5 * noise_jy
    if not rows:
        return out | {"completeness": 0.0}
    arr = np.asarray(rows, float)
    found = SkyCoord(arr[:, 0] * u.deg, arr[:, 1] * u.deg)
    true = SkyCoord(truth["ra"] * u.deg, truth["dec"] * u.deg)
    idx, sep, _ = true.match_to_catalog_sky(found)
    ok = sep.arcsec < 0.5 * beam_minor_arcsec
    out["completeness_5sigma"] = float(np.mean(ok[detectable])) if detectable.any() else None
    bright = ok & (apparent >= 20 * noise_jy)
    out["completeness_20sigma"] = float(np.mean(ok[apparent >= 20 * noise_jy]))
    ratio = arr[idx[bright], 3] / apparent[bright]
    out["int_flux_ratio_median_20sigma"] = float(np.median(ratio))
    out["int_flux_ratio_scatter_20sigma"] = float(np.std(ratio))
    pratio = arr[idx[bright], 2] / apparent[bright]
    out["peak_flux_ratio_median_20sigma"] = float(np.median(pratio))
    out["position_error_median_arcsec_20sigma"] = float(np.median(sep.arcsec[bright]))
    _, sep_f, _ = found.match_to_catalog_sky(true)
    out["false_detections"] = int(np.sum(sep_f.arcsec > beam_minor_arcsec))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="only the small images")
    parser.add_argument("--real", action="store_true", help="also a small WSClean image of a simulated group")
    parser.add_argument("--finders", default="aegean,bdsf")
    args = parser.parse_args()
    finders = args.finders.split(",")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="finders_") as tmp:
        tmpd = Path(tmp)
        work = tmpd / "work"  # the finders' scratch files, apart from the images
        work.mkdir()
        cases = [("small", (512, 512), 60, 1)]
        if not args.skip_full:
            cases.append(("full", (3072, 3840), 1500, 2))
        for name, shape, n, seed in cases:
            t0 = time.perf_counter()
            syn = make_synthetic(tmpd, name, shape, n, seed)
            print(f"{name}: {shape[1]}x{shape[0]} synthetic, {syn.ra_deg.size} sources, made in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            truth = {"ra": syn.ra_deg, "dec": syn.dec_deg, "flux": syn.flux_jy}
            for finder in finders:
                res = run_isolated(finder, str(syn.image), str(work))
                fig = {k: v for k, v in res.items() if k != "rows"}
                fig |= score(res["rows"], truth, syn.pb, beam_minor_arcsec=15.0, noise_jy=syn.noise_jy)
                results[f"{name}/{finder}"] = fig
                print(f"  {finder}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in fig.items()), flush=True)
        if args.real:
            results |= real_image(tmpd, work, finders)
    print(json.dumps(results))


def real_image(tmpd: Path, work: Path, finders: list[str]) -> dict:
    """Image the imaging tests' small simulated group with WSClean and run the finders on it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "imaging"))
    from conftest import CELL_ARCSEC, _simulate_group, field_catalog  # type: ignore[import-not-found]

    from contimg.config import load_settings
    from contimg.imaging import image_ms

    cat = field_catalog()
    _, ms = _simulate_group(tmpd / "sim", cat, seed=7)
    products = image_ms(ms, settings=load_settings().imaging, out_dir=tmpd / "img", tier="quicklook",
                        cell_arcsec=CELL_ARCSEC)
    # the catalogue's 1.4 GHz fluxes at the image's frequency
    flux = cat.flux_jy * (products.ref_freq_hz / 1.4e9) ** cat.spectral_index
    truth = {"ra": cat.ra_deg, "dec": cat.dec_deg, "flux": flux}
    out = {}
    for finder in finders:
        res = run_isolated(finder, str(products.image), str(work))
        fig = {k: v for k, v in res.items() if k != "rows"}
        fig |= score(res["rows"], truth, Path(products.pb), beam_minor_arcsec=products.qa.beam_minor_arcsec,
                     noise_jy=max(products.qa.rms_jy, 1e-6))
        out[f"real/{finder}"] = fig
        print(f"  real {finder}: {fig}", flush=True)
    return out


if __name__ == "__main__":
    main()
