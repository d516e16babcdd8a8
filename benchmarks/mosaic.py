"""One night's mosaic at full scale: time and peak memory of :func:`contimg.imaging.mosaic.make_mosaic`.

Writes ``--n`` synthetic full-scale product sets into a temporary directory (or ``--dir``): each a
3840 x 3072 float32 SIN image at 5 arcsec (what ``image_ms`` makes for a full-scale group at
Dec 35) with its primary-beam image (the Airy beam of a 4.65 m dish at 1.4 GHz), a 15 x 30 arcsec
restoring beam, noise correlated over the beam (300 uJy/beam) and 50 mJy sources at the images'
centres, each seen by its neighbours through their beam; consecutive images are one group (309 s) of drift apart: 1.29 deg of RA. A day has
86400 / 309 = 280 groups, so ``--n 280`` is a whole day's strip (362 deg of RA). The mosaic runs in
a child process, so the peak memory reported (``ru_maxrss``) is the mosaic's own.

Usage::

    .venv/bin/python benchmarks/mosaic.py [--n 280] [--tile-size 4096] [--dir DIR] [--keep]

Prints figures and ends with one JSON line: ``n_inputs``, ``seconds``, ``seconds_per_input``,
``peak_rss_gb``, ``n_tiles``, the strip's size in pixels, and the source's mosaic/true flux ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NX, NY, CELL_ARCSEC = 3840, 3072, 5.0
DEC_DEG = 35.0
STEP_RA_DEG = 360.0 * 309.0 / 86164.1
RMS_JY, SOURCE_JY = 3e-4, 0.05
BEAM_ARCSEC = (30.0, 15.0, 0.0)


def _airy(dx_pix: np.ndarray, dy_pix: np.ndarray, cell_deg: float) -> np.ndarray:
    """The Airy power beam of a 4.65 m dish at 1.4 GHz, ``(dx, dy)`` pixels from the centre of a SIN image."""
    from scipy.special import j1

    rho = np.hypot(dx_pix, dy_pix) * math.radians(cell_deg)  # sin(theta) on a SIN grid
    x = np.pi * 4.65 * rho / (2.998e8 / 1.4e9)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, (2 * j1(x) / np.where(x > 0, x, 1.0)) ** 2, 1.0)


def _airy_pb(nx: int, ny: int, cell_deg: float) -> np.ndarray:
    """The beam image of a SIN image centred on the pointing."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    return _airy(xx - nx / 2, yy - ny / 2, cell_deg).astype(np.float32)


def generate(out: Path, n: int, *, nx: int = NX, ny: int = NY, seed: int = 1) -> list[tuple[Path, Path]]:
    """Write ``n`` product sets into ``out``: [(image, pb)]."""
    from astropy.io import fits
    from astropy.wcs import WCS
    from scipy import ndimage

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from mosaic_helpers import beam_kernel_image, sin_header

    out.mkdir(parents=True, exist_ok=True)
    cell = CELL_ARCSEC / 3600
    pb = _airy_pb(nx, ny, cell)
    rng = np.random.default_rng(seed)
    fields = []
    sig = (BEAM_ARCSEC[1] / CELL_ARCSEC / 2.3548, BEAM_ARCSEC[0] / CELL_ARCSEC / 2.3548)
    for _ in range(3):  # three independent noise fields, rolled differently for every image
        f = ndimage.gaussian_filter(rng.standard_normal((ny, nx)).astype(np.float32), sigma=sig)
        fields.append(f * np.float32(RMS_JY / f.std()))
    half = 48
    stamp_h = sin_header(0.0, DEC_DEG, nx=2 * half, ny=2 * half, cell_deg=cell, beam_arcsec=BEAM_ARCSEC)
    made = []
    for k in range(n):
        h = sin_header(100.0 + k * STEP_RA_DEG, DEC_DEG, nx=nx, ny=ny, cell_deg=cell, beam_arcsec=BEAM_ARCSEC,
                       mjd=60800.0 + k * 309.0 / 86400)
        img = np.roll(fields[k % 3], (rng.integers(ny), rng.integers(nx)), axis=(0, 1))
        wcs = WCS(h).celestial
        for j in range(k - 3, k + 4):  # the sources at every image's centre, as this image sees them
            x, y = (float(v) for v in wcs.world_to_pixel_values(100.0 + j * STEP_RA_DEG, DEC_DEG))
            x0, y0 = int(round(x)) - half, int(round(y)) - half
            if x0 < 0 or y0 < 0 or x0 + 2 * half > nx or y0 + 2 * half > ny:
                continue
            b = float(_airy(np.array(x - nx / 2), np.array(y - ny / 2), cell))
            img[y0:y0 + 2 * half, x0:x0 + 2 * half] += (SOURCE_JY * b * beam_kernel_image(
                stamp_h, x - x0, y - y0)).astype(np.float32)
        pi, pp = out / f"g{k:03d}.image.fits", out / f"g{k:03d}.pb.fits"
        fits.PrimaryHDU(img[None, None], h).writeto(pi, overwrite=True)
        fits.PrimaryHDU(pb[None, None], h).writeto(pp, overwrite=True)
        made.append((pi, pp))
    return made


def _mosaic_child(made: list[tuple[str, str]], out: str, tile_size: int, queue) -> None:
    from contimg.imaging.mosaic import MosaicInput, make_mosaic

    t0 = time.perf_counter()
    res = make_mosaic([MosaicInput(Path(i), Path(p), RMS_JY, label=Path(i).stem) for i, p in made], out,
                      name="night", tile_size=tile_size)
    seconds = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    queue.put({"seconds": seconds, "cpu_s": cpu.ru_utime + cpu.ru_stime, "peak_rss_gb": cpu.ru_maxrss / 1024**2,
               "result": res.as_dict()})


def _source_ratio(result: dict, ra: float, label: str) -> float:
    """Mosaic / true flux of the source at the centre of input ``label``, in a tile that input went into (a day's
    strip is longer than 360 deg: its two ends hold the same sky, and this synthetic sky differs there)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.imaging.qa import fit_point_source

    for tile in result["tiles"]:
        if label not in tile["inputs"]:
            continue
        h = fits.getheader(tile["files"]["image"])
        x, _ = WCS(h).celestial.world_to_pixel_values(ra, DEC_DEG)
        if 20 < x < h["NAXIS1"] - 20:
            return fit_point_source(fits.getdata(tile["files"]["image"]), h, ra, DEC_DEG).flux_jy / SOURCE_JY
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=280, help="images (a day: 280 groups of 309 s)")
    ap.add_argument("--tile-size", type=int, default=4096)
    ap.add_argument("--nx", type=int, default=NX)
    ap.add_argument("--ny", type=int, default=NY)
    ap.add_argument("--dir", type=Path, help="work here (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="contimg-mosaic-bench-"))
    try:
        t0 = time.perf_counter()
        made = generate(work / "inputs", args.n, nx=args.nx, ny=args.ny)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.n} product sets of {args.nx} x {args.ny} in {gen_s:.1f} s", flush=True)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_mosaic_child, args=([(str(i), str(p)) for i, p in made], str(work / "mosaic"),
                                                        args.tile_size, queue))
        proc.start()
        child = queue.get()
        proc.join()
        res = child["result"]
        grid = res["grid"]
        # not the strip's first and last images: a day's strip is over 360 deg long, so their RA is ambiguous in it
        picks = sorted({min(1, args.n - 1), args.n // 2, max(args.n - 2, 0)})
        ratios = [_source_ratio(res, 100.0 + k * STEP_RA_DEG, f"g{k:03d}.image") for k in picks]
        summary = {
            "n_inputs": args.n, "nx": args.nx, "ny": args.ny, "tile_size": args.tile_size,
            "seconds": round(child["seconds"], 1), "cpu_s": round(child["cpu_s"], 1),
            "seconds_per_input": round(child["seconds"] / args.n, 2), "peak_rss_gb": round(child["peak_rss_gb"], 2),
            "n_tiles": res["n_tiles"], "grid_nx": grid["nx"], "grid_ny": grid["ny"],
            "strip_ra_deg": round(grid["nx"] * grid["cell_deg"] / math.cos(math.radians(grid["dec0_deg"])), 2),
            "min_noise_jy": min(t["min_noise_jy"] for t in res["tiles"]),
            "source_ratio": [round(r, 4) for r in ratios], "generate_s": round(gen_s, 1),
        }
        print(f"mosaic of {args.n} images: {summary['seconds']} s ({summary['seconds_per_input']} s an image, "
              f"CPU {summary['cpu_s']} s), peak RSS {summary['peak_rss_gb']} GB; {res['n_tiles']} tiles, grid "
              f"{grid['nx']} x {grid['ny']} ({summary['strip_ra_deg']} deg of RA); min noise "
              f"{1e6 * summary['min_noise_jy']:.0f} uJy/beam (single image {1e6 * RMS_JY:.0f}); source "
              f"mosaic/true {summary['source_ratio']}")
        print(json.dumps(summary))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
