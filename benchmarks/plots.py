"""Time to draw the pipeline's pictures at full scale (the budget: a few seconds each).

* the thumbnail of a full-scale image (3840 x 3072 pixels, WSClean-like
  header): ``--image FITS`` times a real one, otherwise a synthetic image of
  noise and point sources is written to a temporary directory first;
* the bandpass small multiples of 117 antennas x 768 channels x 2 feeds;
* a cut-out strip of eight epochs;
* a light curve of 365 epochs and a night summary of 288 images.

Each is drawn and written as PNG ``--repeat`` times; the median wall time and
the CPU time are printed, and the script ends with one JSON line. Target: the
thumbnail of a full-scale image within 5 s (it is drawn for every image).

Usage::

    .venv/bin/python benchmarks/plots.py [--image path/to/x.image.fits] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contimg.plots.calibration import CalSolutions, bandpass_figure  # noqa: E402
from contimg.plots.common import save_png  # noqa: E402
from contimg.plots.lightcurve import lightcurve_figure  # noqa: E402
from contimg.plots.night import night_figure  # noqa: E402
from contimg.plots.sky import write_cutout_strip_png, write_image_png  # noqa: E402

THUMBNAIL_TARGET_S = 5.0


def synthetic_image(path: Path, *, nx: int = 3840, ny: int = 3072, seed: int = 1) -> Path:
    """Noise (0.3 mJy/beam) and 60 point sources on a 5-arcsec SIN grid at Dec 35, Jy/beam, 4 axes."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    w = WCS(naxis=4)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    w.wcs.crval = [282.5, 35.0, 1.405e9, 1.0]
    w.wcs.crpix = [nx / 2 + 1, ny / 2 + 1, 1.0, 1.0]
    w.wcs.cdelt = [-5.0 / 3600, 5.0 / 3600, 1.9e8, 1.0]
    h = w.to_header()
    h["BMAJ"], h["BMIN"], h["BPA"], h["BUNIT"] = 30 / 3600, 15 / 3600, 20.0, "Jy/beam"
    img = rng.normal(0, 3e-4, (ny, nx)).astype(np.float32)
    s = 1 / np.sqrt(8 * np.log(2))
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = np.exp(-0.5 * ((xx / (3 * s)) ** 2 + (yy / (6 * s)) ** 2)).astype(np.float32)
    for x, y, f in zip(rng.integers(20, nx - 20, 60), rng.integers(20, ny - 20, 60), 10 ** rng.uniform(-2.5, 0, 60)):
        img[y - 12:y + 13, x - 12:x + 13] += f * psf
    fits.PrimaryHDU(img[None, None], h).writeto(path, overwrite=True)
    return path


def timed(fn, repeat: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="a real image to draw (default: a synthetic 3840 x 3072 one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the PNGs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = args.keep or tmp
        out.mkdir(parents=True, exist_ok=True)
        image = args.image or synthetic_image(tmp / "synthetic.image.fits")
        results: dict = {"image": str(args.image) if args.image else "synthetic 3840x3072"}
        results["thumbnail"] = timed(lambda: write_image_png(image, out / "thumbnail.png", title="benchmark"),
                                     args.repeat)

        nants, nchan = 117, 768
        freq = np.linspace(1.311e9, 1.499e9, nchan)
        delay = rng.uniform(-20e-9, 20e-9, (nants, 1, 2))
        values = (1 + 0.02 * rng.standard_normal((nants, nchan, 2))) * np.exp(2j * np.pi * delay * freq[None, :, None])
        flags = np.zeros(values.shape, bool)
        flags[::5] = True
        sol = CalSolutions("benchmark.B", "B", [f"DSA-{i:03d}" for i in range(1, nants + 1)], np.zeros(nants), freq,
                           values, flags, refant="DSA-002")
        results["bandpass"] = timed(lambda: save_png(bandpass_figure(sol), out / "bandpass.png"), args.repeat)

        from astropy.io import fits
        from astropy.wcs import WCS

        header = fits.getheader(image)
        ra, dec = (float(v) for v in WCS(header).celestial.pixel_to_world_values(header["NAXIS1"] / 3,
                                                                                 header["NAXIS2"] / 2))
        epochs = [(image, f"epoch {k}") for k in range(8)]
        results["cutout_strip"] = timed(lambda: write_cutout_strip_png(epochs, ra, dec, out / "strip.png"),
                                        args.repeat)

        t = 61000 + np.arange(365.0)
        f = 0.02 + 0.001 * rng.standard_normal(t.size)
        results["lightcurve"] = timed(lambda: save_png(lightcurve_figure(t, f, np.full(t.size, 0.001),
                                                                         upper_limit=f < 0.0195, catalog_flux_jy=0.02),
                                                       out / "lightcurve.png"), args.repeat)
        rows = [{"mid_mjd": 60827 + i / 288, "rms_jy": 3e-4, "n_measured": 12, "correction": 1.0, "verdict": "pass"}
                for i in range(288)]
        results["night"] = timed(lambda: save_png(night_figure(rows), out / "night.png"), args.repeat)
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"{name:14s} {r['wall_s']:6.2f} s wall, {r['cpu_s']:6.2f} s CPU")
    results["thumbnail_target_s"] = THUMBNAIL_TARGET_S
    results["ok"] = results["thumbnail"]["wall_s"] <= THUMBNAIL_TARGET_S
    print(json.dumps(results))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
