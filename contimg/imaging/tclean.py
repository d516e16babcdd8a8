"""The CASA ``tclean`` backend: the same image as WSClean's, through casatasks.

Settings mirror :func:`contimg.imaging.wsclean.wsclean_arguments`: MFS Stokes I
of the whole band, Briggs weighting, Hogbom CLEAN, w-projection
(``gridder='wproject'``, ``wprojplanes=-1``: CASA picks the number of planes
from the largest w), ``nmajor`` major cycles, ``nsigma`` threshold over the whole image (or a user mask of circles around
catalogue sources). CASA's ``auto-multithresh`` masking is not used: on
DSA-110 snapshots its sidelobe threshold exceeds the sources, the mask comes
out empty and tclean stops without cleaning ("zero mask"; seen on the
full-scale benchmark group). The products are exported to FITS with ``exportfits`` (restoring
beam in BMAJ/BMIN/BPA, BUNIT Jy/beam).

CASA does not know the observatory ``DSA_110``: it logs a SEVERE "Unknown
observatory" and takes the first antenna's position as the array position,
which is harmless for imaging (the image geometry comes from the MS phase
center and UVW). No primary-beam correction is made by CASA (``pbcor=False``);
ours follows on the FITS output (:mod:`contimg.imaging.pbcor`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

from contimg.errors import ExternalToolError
from contimg.tools import run_casa_task
from contimg.imaging.geometry import ImageGeometry
from contimg.imaging.tiers import TierParameters

__all__ = ["TCLEAN_PRODUCTS", "catalog_region", "run_tclean"]

log = logging.getLogger(__name__)

PSF_CUTOFF = 0.5
"""tclean fits the restoring beam to the PSF main lobe above this fraction of its peak (CASA's default 0.35).

The DSA-110 snapshot PSF has near-in sidelobes above 0.35 that join the main
lobe on a large field: on the full-scale group imaged to 20 % of the primary
beam (3840 x 3072 pixels of 5 arcsec) the default fits a 59.9 x 34.3 arcsec
beam to a PSF whose half-power region covers 375 square arcsec (4x less);
0.5 fits 28.4 x 15.0 arcsec, the half-power contour. WSClean's counterpart
is :data:`contimg.imaging.wsclean.BEAM_FITTING_SIZE`.
"""

TCLEAN_PRODUCTS = {"image": "image", "residual": "residual", "model": "model", "psf": "psf"}
"""FITS suffix -> CASA image suffix."""

_DATACOLUMN = {"CORRECTED_DATA": "corrected", "DATA": "data", "MODEL_DATA": "model"}


def catalog_region(positions_deg: Sequence[tuple[float, float]], radius_arcsec: float) -> str:
    """A CASA region (CRTF) of circles of ``radius_arcsec`` around ``(ra, dec)`` positions (degrees)."""
    lines = ["#CRTFv0"]
    for ra, dec in positions_deg:
        lines.append(f"circle[[{ra:.6f}deg, {dec:.6f}deg], {radius_arcsec:.1f}arcsec]")
    return "\n".join(lines) + "\n"


def run_tclean(
    ms_path: str | os.PathLike,
    *,
    prefix: str | os.PathLike,
    geometry: ImageGeometry,
    tier: TierParameters,
    robust: float = 0.0,
    data_column: str = "CORRECTED_DATA",
    mask_region: str | os.PathLike | None = None,
) -> tuple[float, float]:
    """Image ``ms_path`` with tclean and export ``<prefix>-<product>.fits``; return wall and CPU time (s).

    The CPU time is this process's (tclean runs in it, with its threads).

    Parameters
    ----------
    ms_path
        The Measurement Set.
    prefix
        Output prefix; CASA images ``<prefix>.image`` ... are made next to it
        and removed after export.
    geometry, tier, robust, data_column
        As for :func:`contimg.imaging.wsclean.wsclean_arguments`.
    mask_region
        A CRTF file (see :func:`catalog_region`) used as the clean mask
        instead of auto-masking.

    Returns
    -------
    tuple[float, float]
        Wall-clock and CPU time (s) of tclean and the exports.

    Raises
    ------
    ExternalToolError
        If tclean or exportfits raise or do not produce the images; the
        message names the MS.
    """
    from contimg import casa_env

    tasks = casa_env.casatasks()
    # Absolute paths, because tclean runs in the output directory: CASA writes its
    # TempLattice* scratch images into the working directory of the process.
    prefix = str(Path(prefix).absolute())
    ms_path = Path(ms_path).absolute()
    if mask_region is not None:
        mask_region = Path(mask_region).absolute()
    # auto-multithresh finds no emission in DSA-110 snapshots: its sidelobe threshold
    # (sidelobethreshold x the PSF's ~0.5 sidelobes x the peak) lies above most sources,
    # the mask comes out empty and tclean stops at once ("zero mask") with nothing
    # cleaned. We clean the whole image down to nsigma instead (or inside a catalogue mask).
    mask_kw: dict = {"usemask": "user", "mask": ""}
    if mask_region is not None:
        mask_kw = {"usemask": "user", "mask": str(mask_region)}
    kwargs = dict(
        vis=str(ms_path), imagename=prefix, datacolumn=_DATACOLUMN.get(data_column, data_column.lower()),
        imsize=[geometry.nx, geometry.ny], cell=f"{geometry.cell_arcsec:g}arcsec", stokes="I",
        specmode="mfs", gridder="wproject", wprojplanes=-1, deconvolver="hogbom",
        weighting="briggs", robust=robust, niter=tier.niter, gain=tier.gain,
        nsigma=tier.auto_threshold_sigma, nmajor=tier.major_cycles, cyclefactor=1.0,
        minpsffraction=0.05, maxpsffraction=1 - tier.mgain, psfcutoff=PSF_CUTOFF, pbcor=False, pblimit=-1e-4,
        interactive=False, restoration=True, savemodel="none", **mask_kw,
    )
    log.info("running tclean(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    try:
        with contextlib.chdir(Path(prefix).parent):
            run_casa_task("tclean", ms_path, task=tasks.tclean, **kwargs)
        for fits_suffix, casa_suffix in TCLEAN_PRODUCTS.items():
            img = f"{prefix}.{casa_suffix}"
            if not os.path.isdir(img):
                raise ExternalToolError(f"{ms_path}: tclean did not write {img} (see the CASA log)")
            run_casa_task("exportfits", ms_path, task=tasks.exportfits, imagename=img,
                          fitsimage=f"{prefix}-{fits_suffix}.fits", overwrite=True, velocity=False, dropdeg=False,
                          dropstokes=False, history=False)
    finally:
        for path in Path(prefix).parent.glob(Path(prefix).name + ".*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    log.info("tclean finished in %.1f s wall, %.1f s CPU (%s)", wall, cpu, ms_path)
    return wall, cpu
