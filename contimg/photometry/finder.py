"""Blind source finding on one image: PyBDSF.

:func:`find_components` runs PyBDSF (Mohan & Rafferty 2015, ascl:1502.007:
a background and noise map on a sliding box, islands seeded at
``seed_clip`` sigma and grown to ``flood_clip`` sigma, each fitted with
elliptical Gaussians) on the *flat-noise* image, where the noise is uniform
and the fit weights are right, then divides each Gaussian's fluxes and errors
by the primary beam at its position, read off the product set's averaged beam
(``<name>.pb.fits``, :func:`contimg.photometry.measure.beam_response_at`).
Components below ``min_beam_response`` are dropped (the PB-corrected image is
NaN there too). One component is one fitted Gaussian.

Why PyBDSF and not Aegean + BANE: ``benchmarks/source_finding.py`` and
``docs/source_finding.md`` (7 x less CPU on a full-scale image, far fewer
detections of sidelobes on a real image, the same flux accuracy).

Robustness: PyBDSF runs in this process on one core (``ncores=1``, and its
process map replaced by a serial one, :func:`_in_process`: the Celery
worker's process is daemonic and may not start children, must not fork after
importing casatools, and the finder must not take the node's other cores), on a link to the image in a
private temporary directory, so that the log file it always writes
(``<image>.pybdsf.log``) is not left beside the image; its log handlers are
removed afterwards and its messages go through ours at WARNING. NumPy's error
state is confined to the call. PyBDSF's flagged Gaussians are dropped, except
those flagged only for reaching outside their island while elongated
(:data:`ISLAND_EDGE_FLAG`, kept with the flag: point sources under an
elongated restoring beam). Any exception of the finder becomes a
:class:`contimg.errors.SourceFindingError` naming the image; ``MemoryError``
is not caught.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contimg.errors import InputFileError, SourceFindingError

__all__ = ["COMPONENT_COLUMNS", "Components", "ISLAND_EDGE_FLAG", "RMS_BOX_BEAMS", "find_components", "rms_box"]

log = logging.getLogger(__name__)

COMPONENT_COLUMNS = ("ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "peak_flux_jy", "peak_flux_err_jy",
                     "int_flux_jy", "int_flux_err_jy", "major_arcsec", "minor_arcsec", "pa_deg", "local_rms_jy",
                     "beam_response", "flags")
"""The per-component arrays of :class:`Components` (the ``components`` table's measured columns)."""

RMS_BOX_BEAMS = 18.0
"""The side of PyBDSF's sliding background/noise box, in restoring-beam major axes (step: a quarter of it).

PyBDSF sizes the box from the image's brightest source: beside a bright calibrator it chose 995 x 307 pixels (83
arcmin) on a full-scale image, so the noise map did not follow the deconvolution residuals around it and the finder
fitted 814 Gaussians, 371 of them unmatched islands at SNR >= 7 (the residuals), in 35 CPU s. With 18 beams (120 x
30 pixels there) the same image gave 119 Gaussians, 46 unmatched, in 8 s, and each of the night's four images the
same catalogue sources as before (benchmarks/night.py --seed 1, full array)."""

ISLAND_EDGE_FLAG = 256
"""PyBDSF's flag for a Gaussian of axial ratio over 2 whose half-size ellipse reaches outside its island. PyBDSF drops
such Gaussians; they are kept (with the flag, their sky values and errors computed as for unflagged ones) because a
point source flags so whenever the restoring beam is elongated and its minor axis spans few pixels: on the core-only
array (a 111 x 47 arcsec beam on 18 arcsec pixels) two thirds of the sources were lost to this flag alone, and even
the full array's 30 x 15 arcsec beam on 5 arcsec pixels lost some. Gaussians with any other flag are dropped."""


@dataclass
class Components:
    """The components found in one image (PB-corrected fluxes) and what it cost."""

    image: Path
    columns: dict[str, np.ndarray]
    """:data:`COMPONENT_COLUMNS` -> equal-length arrays. Errors the finder could not fit are NaN."""
    seconds: dict[str, float] = field(default_factory=dict)
    """``fit``: PyBDSF's wall time."""

    def __len__(self) -> int:
        return int(self.columns["ra_deg"].size)

    def rows(self) -> list[dict[str, float | int | None]]:
        """One dict per component (for :func:`contimg.db.science.replace_components`)."""
        keys = list(self.columns)
        return [{k: (int(v) if k == "flags" else float(v)) for k, v in zip(keys, vals)}
                for vals in zip(*(self.columns[k] for k in keys))]


def find_components(image: str | Path, *, pb: str | Path | None, seed_clip: float = 5.0, flood_clip: float = 4.0,
                    min_beam_response: float = 0.2, rms_box_beams: float = RMS_BOX_BEAMS) -> Components:
    """Find the components of a flat-noise image and correct their fluxes by the primary beam.

    Parameters
    ----------
    image
        The flat-noise restored image (Jy/beam; FITS with a celestial WCS and BMAJ/BMIN/BPA).
    pb
        The product set's averaged primary beam (``<name>.pb.fits``) on the same grid; None: no correction
        (response 1, e.g. an image that is already PB-corrected).
    seed_clip
        Islands are seeded at pixels this many sigma above the background.
    flood_clip
        ... and grown over pixels above this many sigma.
    min_beam_response
        Components where the beam is below this are dropped.
    rms_box_beams
        The side of PyBDSF's background and noise box, in restoring-beam major axes (:data:`RMS_BOX_BEAMS`);
        0 lets PyBDSF choose.

    Returns
    -------
    Components
        Positions (deg) and their errors (arcsec), peak (Jy/beam) and integrated (Jy) fluxes with errors
        divided by the beam response, fitted FWHM axes (arcsec) and position angle (deg), the local rms of the
        flat-noise image (Jy/beam), the beam response, the fit flags.

    Raises
    ------
    InputFileError
        If the image is missing or has no restoring beam.
    SourceFindingError
        If PyBDSF failed on the image.
    """
    image = Path(image)
    beam_pix, shape = _check_image(image)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pybdsf_") as tmp, np.errstate(all="ignore"):
        link = Path(tmp) / image.name
        link.symlink_to(image.resolve())
        try:
            import bdsf

            t0 = time.perf_counter()
            box = rms_box(beam_pix, rms_box_beams, shape)
            with _in_process():
                img = bdsf.process_image(str(link), quiet=True, ncores=1, thresh_pix=seed_clip,
                                         thresh_isl=flood_clip, **({"rms_box": box} if box else {}))
            found = list(img.gaussians) + _edge_flagged(img)
            timings["fit"] = time.perf_counter() - t0
        except MemoryError:
            raise
        except Exception as exc:  # the finder's failure modes are not a documented set
            raise SourceFindingError(f"{image}: source finding (PyBDSF) failed: {type(exc).__name__}: {exc}") from exc
        finally:
            _release_pybdsf_log()
    comps = [g for g in found if np.isfinite(g.peak_flux) and g.peak_flux > 0 and np.all(np.isfinite(g.centre_sky))]
    cols = _columns(comps)
    response: np.ndarray | None = np.ones(len(comps))
    if pb is not None and comps:
        from contimg.photometry.measure import ImageSet, beam_response_at

        images = ImageSet(image_id=0, path=str(image), epoch_mjd=math.nan, flat=image, pbcor=None, pb=Path(pb),
                          ms_path=None)
        response = beam_response_at(cols["ra_deg"], cols["dec_deg"], images=images)
    if response is None:  # cannot happen with a pb image; keeps the types honest
        response = np.ones(len(comps))
    keep = response >= min_beam_response
    with np.errstate(divide="ignore", invalid="ignore"):
        for key in ("peak_flux_jy", "peak_flux_err_jy", "int_flux_jy", "int_flux_err_jy"):
            cols[key] = cols[key] / response
    cols["beam_response"] = response
    cols = {k: v[keep] for k, v in cols.items()}
    log.info("%s: %d components (%d below beam response %.2f dropped) in %.1f s", image,
             int(keep.sum()), int((~keep).sum()), min_beam_response, timings.get("fit", 0.0))
    return Components(image=image, columns=cols, seconds=timings)


def _edge_flagged(img) -> list:
    """The Gaussians PyBDSF flagged with :data:`ISLAND_EDGE_FLAG` alone, completed with the sky position, size and
    errors (Condon 1997) that PyBDSF computes only for unflagged ones, the same way (``bdsf.gausfit.Gaussian``)."""
    from bdsf import functions

    kept = []
    for isl in img.islands:
        for g in isl.fgaul:
            if g.flag != ISLAND_EDGE_FLAG:
                continue
            errors = functions.get_errors(img, list(g.parameters) + [g.total_flux], isl.rms,
                                          fixed_to_beam=img.opts.fix_to_beam)
            g.centre_sky = list(img.pix2sky(g.centre_pix))
            g.centre_skyE = list(img.pix2coord(errors[1:3], g.centre_pix, use_wcs=True))
            g.size_sky = list(img.pix2gaus(g.size_pix, g.centre_pix, use_wcs=True))
            g.peak_fluxE, g.total_fluxE = errors[0], errors[6]
            kept.append(g)
    return kept


@contextlib.contextmanager
def _in_process() -> Iterator[None]:
    """PyBDSF's map over boxes and islands (``bdsf.multi_proc.parallel_map``) run serially in this process.

    Even with ``ncores=1`` PyBDSF's ``parallel_map`` starts a ``multiprocessing`` manager and a forked worker
    process: in a Celery prefork worker (a daemonic process) that fails with "daemonic processes are not allowed
    to have children", and anywhere else it forks a process that has imported casatools. For the duration of
    the call it is replaced by the serial map PyBDSF itself uses for one item.
    """
    import bdsf.multi_proc as mp

    original = mp.parallel_map

    def serial_map(function, sequence, numcores=None, bar=None, weights=None):  # noqa: ARG001 - same signature
        results = list(map(function, sequence))
        if bar is not None:
            bar.stop()
        return results

    mp.parallel_map = serial_map
    try:
        yield
    finally:
        mp.parallel_map = original


def _check_image(image: Path) -> tuple[float, tuple[int, ...]]:
    """Refuse an unreadable image or one without a restoring beam; return the beam major axis in pixels and the
    image's shape."""
    from contimg.photometry.measure import read_header

    header = read_header(image)
    bmaj = float(header.get("BMAJ", 0) or 0)
    if not bmaj > 0:
        raise InputFileError(f"{image}: no restoring beam (BMAJ) in the header; cannot find sources")
    cell = abs(float(header.get("CDELT2", 0) or 0))
    shape = tuple(int(header[f"NAXIS{k}"]) for k in range(int(header["NAXIS"]), 0, -1))
    return (bmaj / cell if cell > 0 else math.nan), shape


def rms_box(beam_major_pix: float, beams: float, shape: tuple[int, ...] | None = None) -> tuple[int, int] | None:
    """PyBDSF's ``rms_box`` (box side, step; pixels) for a box ``beams`` restoring-beam major axes wide.

    Parameters
    ----------
    beam_major_pix
        The restoring beam's major axis in pixels.
    beams
        The box side in beam major axes; 0: PyBDSF chooses.
    shape
        The image's shape (the box is at most its shorter side); None: not bounded.

    Returns
    -------
    tuple or None
        ``(box, step)``, the box at least 20 pixels and the step a quarter of it; None when the beam in pixels is
        unknown or ``beams`` is 0.
    """
    if not (beams > 0 and math.isfinite(beam_major_pix) and beam_major_pix > 0):
        return None
    box = max(20, int(round(beams * beam_major_pix)))
    if shape is not None:
        box = min(box, min(shape[-2:]))
    return box, max(1, box // 4)


def _columns(gaussians: list) -> dict[str, np.ndarray]:
    def arr(get) -> np.ndarray:
        return np.asarray([float(get(g)) for g in gaussians], float).reshape(-1)

    def err(get) -> np.ndarray:
        values = arr(get)
        return np.where(values > 0, values, np.nan)  # 0: not fitted

    return {
        "ra_deg": arr(lambda g: g.centre_sky[0]) % 360.0,
        "dec_deg": arr(lambda g: g.centre_sky[1]),
        "ra_err_arcsec": err(lambda g: g.centre_skyE[0]) * 3600,
        "dec_err_arcsec": err(lambda g: g.centre_skyE[1]) * 3600,
        "peak_flux_jy": arr(lambda g: g.peak_flux),
        "peak_flux_err_jy": err(lambda g: g.peak_fluxE),
        "int_flux_jy": arr(lambda g: g.total_flux),
        "int_flux_err_jy": err(lambda g: g.total_fluxE),
        "major_arcsec": arr(lambda g: g.size_sky[0]) * 3600,
        "minor_arcsec": arr(lambda g: g.size_sky[1]) * 3600,
        "pa_deg": arr(lambda g: g.size_sky[2]),
        "local_rms_jy": arr(lambda g: g.rms),
        "flags": np.asarray([int(g.flag) for g in gaussians], int),
    }


def _release_pybdsf_log() -> None:
    """PyBDSF adds a file handler (its log in our temporary directory) and stderr handlers: remove and close them."""
    pybdsf = logging.getLogger("PyBDSF")
    for handler in list(pybdsf.handlers):
        pybdsf.removeHandler(handler)
        handler.close()
    pybdsf.setLevel(logging.WARNING)
    pybdsf.propagate = True
