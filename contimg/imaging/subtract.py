"""Bright sources out of the visibilities before CLEAN, back into the image after it.

Why
---
A drift-scan group sees each source through a primary beam that changes along
the drift and across the band. A bright source therefore has an apparent flux
that varies in time and frequency, and a band-averaged image (one flux per
CLEAN component) cannot model it: ~0.1 % of its flux stays in the residual as
sidelobes. For a source thousands of times the noise those sidelobes are
above the auto-mask level, and WSClean's single-threaded minor loop spends
tens of thousands of iterations on them. On the full-scale night
(``benchmarks/night.py --seed 1``, ``full``) the calibrator's neighbour group
(10 Jy at beam response 0.90) cost 145 s of minor loop and stopped at the
50,000-iteration limit.

The calibration's sky model (:mod:`contimg.calibration.model`) already
predicts each catalogue source with the Airy beam of the MS's dishes along the
drift and across the band, exactly. So for the sources brighter than
``settings.imaging.subtract_dynamic_range`` times the predicted noise:

1. :func:`subtract_sources` writes ``data - model`` into a scratch column
   (:data:`SUBTRACTED_COLUMN`, in its own storage manager so that removing it
   frees its disk) and measures each source's *effective* flux: the mean of its
   apparent flux ``S(nu) A(theta(t), nu)`` over the unflagged visibilities,
   weighted by their imaging (Briggs) weights (each channel's own, at 8
   channels across the band). That is the flux a
   band-averaged image of the source shows at its position.
2. WSClean images the scratch column: what is left is the rest of the sky plus
   the difference between the data and the model (a source that varied, a
   flux-scale error), which CLEAN models as usual.
3. :func:`restore_sources` adds each subtracted source back to the restored
   image as the restoring beam at its exact (sub-pixel) catalogue position
   with its effective flux, and to the model image as a component at its
   nearest pixel.

Nothing is assumed about the source's true flux: the image at its position is
``effective model flux + whatever the residual holds there``, so a source
that brightened by 10 % measures 10 % brighter, and a wrong flux scale still
shows (the residual then holds the difference). The scratch column is removed
when imaging ends, however it ends.

One image run of an MS at a time: the cluster runs a group's image stage once (a superseded run that
still works on the same MS would see the column change under it; its WSClean fails or its products are not
published). An MS that cannot take the column (read-only) is imaged without the subtraction, with a warning.

What it is not: peeling. The model is the catalogue's point source through the
beam model; direction-dependent gain errors of a real instrument leave a
residual that CLEAN then models as before (at a fraction of the cost).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from contimg.calibration.model import PointSources, apparent_flux, model_chunks
from contimg.errors import InputFileError
from contimg.msmodel import MsModel, open_rows

log = logging.getLogger(__name__)

__all__ = ["SUBTRACTED_COLUMN", "Subtraction", "remove_subtracted_column", "restore_sources", "subtract_sources"]

SUBTRACTED_COLUMN = "BRIGHT_SUBTRACTED_DATA"
"""Scratch column of ``data - bright-source model`` that the imager reads (removed after imaging)."""


@dataclass
class Subtraction:
    """What :func:`subtract_sources` took out of the visibilities."""

    column: str
    data_column: str
    ra_deg: list[float] = field(default_factory=list)
    dec_deg: list[float] = field(default_factory=list)
    effective_jy: list[float] = field(default_factory=list)
    """Imaging-weighted mean apparent flux of each source over the unflagged visibilities (Jy)."""
    peak_apparent_jy: list[float] = field(default_factory=list)
    """Largest apparent flux over times and channels (Jy)."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["n_sources"] = len(self.ra_deg)
        return out


def _imaging_weights(ms: MsModel, *, robust: float, fov_rad: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Briggs weights of every row at channels spread over the band, as the imager weights them.

    The weight of a visibility depends on its channel: a baseline's uv point moves outward with frequency,
    into a less crowded uv cell (for the DSA-110 core, measurably: a row weight taken at the mean frequency
    put the calibrator's effective flux 1.4 % high on the core-only array's beam flank, where the beam
    narrows across the band). MFS weights every channel on one uv grid, so the samples share one density
    (:func:`~contimg.imaging.smearing.briggs_weights_uv`).

    Returns
    -------
    channels, weights
        (Nsamples,) indices into ``ms.freq_array`` of the sampled channels
        (:func:`~contimg.imaging.smearing.sample_freqs`) and (Nblts, Nsamples) their weights (0 for
        autocorrelations).
    """
    from contimg.beam import SPEED_OF_LIGHT
    from contimg.imaging.smearing import briggs_weights_uv, cross_rows, sample_freqs

    freqs = sample_freqs(ms.freq_array)
    channels = np.searchsorted(np.sort(ms.freq_array), freqs)
    channels = np.argsort(ms.freq_array)[channels]  # back to the MS's own channel order
    uvw, _, _ = cross_rows(ms)
    scale = freqs[None, :] / SPEED_OF_LIGHT  # wavelengths per metre at each sampled channel
    w = briggs_weights_uv((uvw[:, 0:1] * scale).ravel(), (uvw[:, 1:2] * scale).ravel(), robust=robust,
                          fov_rad=fov_rad)
    out = np.zeros((ms.Nblts, freqs.size))
    out[ms.cross_mask] = w.reshape(-1, freqs.size)
    return channels, out


def subtract_sources(ms: MsModel, sources: PointSources, *, data_column: str, robust: float,
                     fov_rad: tuple[float, float], column: str = SUBTRACTED_COLUMN) -> Subtraction:
    """Write ``data_column - model(sources)`` into ``column`` and measure the sources' effective fluxes.

    Parameters
    ----------
    ms
        The MS's model (:func:`contimg.msmodel.read_ms`): one field, one spectral window, its rows.
    sources
        The point sources to take out (ICRS positions, 1.4 GHz fluxes, spectral indices).
    data_column
        The calibrated column (``CORRECTED_DATA``).
    robust, fov_rad
        Briggs robust parameter and the image's width and height (rad): the imaging weights of the
        effective flux.
    column
        The scratch column (added, in its own storage manager, if missing).

    Returns
    -------
    Subtraction
        Positions, effective and peak apparent fluxes, wall time.

    Raises
    ------
    InputFileError
        The MS cannot be opened for writing, lacks ``data_column`` or no longer has its model's rows.
    """
    from contimg.conversion.msio import add_data_column

    t0 = time.perf_counter()
    assert ms.time_index is not None  # a model with its rows (read_ms)
    flux = apparent_flux(sources, ms)  # (Nsrc, Nt, Nf): the MS's own dishes
    channels, weight = _imaging_weights(ms, robust=robust, fov_rad=fov_rad)
    wtf = np.zeros((ms.Ntimes, channels.size))  # imaging weight of the unflagged visibilities per integration and
    # sampled channel
    with open_rows(ms, "subtracting bright sources", readonly=False) as tb:
        if data_column not in tb.colnames():
            raise InputFileError(f"{ms.path}: no {data_column} column to subtract bright sources from")
        if column not in tb.colnames():
            add_data_column(tb, column, f"{data_column} minus the model of bright catalogue sources (Jy); "
                                        "scratch column of contimg's imaging")
        with threadpool_limits(limits=1, user_api="blas"):  # small matrices: BLAS threads only spin
            for r0, model in model_chunks(ms, sources, flux):
                n = model.shape[0]
                data = tb.getcol(data_column, r0, n)
                data -= model
                tb.putcol(column, data, r0, n)
                # effective flux: imaging weight x unflagged (all correlations) per row and channel
                good = ~np.any(tb.getcol("FLAG", r0, n)[:, channels, :], axis=2) & ~tb.getcol("FLAG_ROW", r0, n)[:, None]
                np.add.at(wtf, ms.time_index[r0:r0 + n], good * weight[r0:r0 + n])
    den = float(wtf.sum())
    effective = (np.einsum("tk,stk->s", wtf, flux[:, :, channels]) / den if den > 0
                 else np.full(sources.Nsrc, np.nan))
    out = Subtraction(column=column, data_column=data_column, ra_deg=[float(x) for x in sources.ra_deg],
                      dec_deg=[float(x) for x in sources.dec_deg], effective_jy=[float(x) for x in effective],
                      peak_apparent_jy=[float(x) for x in flux.max(axis=(1, 2))] if sources.Nsrc else [],
                      seconds=round(time.perf_counter() - t0, 2))
    log.info("%s: subtracted %d bright source(s) (%s Jy effective) from %s in %.1f s", ms.path, sources.Nsrc,
             ", ".join(f"{s:.3g}" for s in out.effective_jy), data_column, out.seconds)
    return out


def remove_subtracted_column(ms_path: str | Path, column: str = SUBTRACTED_COLUMN) -> bool:
    """Remove the scratch column (and its storage files) if the MS has it; True if it was there."""
    from casacore import tables

    try:
        with tables.table(str(ms_path), readonly=False, ack=False) as tb:
            if column not in tb.colnames():
                return False
            tb.removecols([column])
            return True
    except RuntimeError as exc:  # the MS itself is unreadable: imaging has already said why
        log.warning("%s: could not remove the scratch column %s: %s", ms_path, column, exc)
        return False


def restore_sources(image_fits: str | Path, model_fits: str | Path | None, subtraction: Subtraction) -> None:
    """Add the subtracted sources back: restoring beams to the restored image, components to the model image.

    Parameters
    ----------
    image_fits
        The restored, flat-noise image (Jy/beam) with BMAJ/BMIN/BPA and a celestial WCS; updated in place.
    model_fits
        The model image (Jy/pixel), updated in place (None: skipped).
    subtraction
        What :func:`subtract_sources` took out (positions and effective fluxes).
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.photometry.forced import BeamShape, beam_template

    if not subtraction.ra_deg:
        return
    ra, dec = np.asarray(subtraction.ra_deg), np.asarray(subtraction.dec_deg)
    flux = np.asarray(subtraction.effective_jy)
    with fits.open(image_fits, mode="update", memmap=False) as hd:
        header = hd[0].header
        beam = BeamShape.from_header(header)
        x, y = WCS(header).celestial.world_to_pixel_values(ra, dec)
        plane = hd[0].data
        img = plane.reshape(plane.shape[-2:])  # a view of the (1, 1, ny, nx) cube
        half = int(math.ceil(5 * beam.sigma_major_pix)) + 1
        ny, nx = img.shape
        for xs, ys, s in zip(x, y, flux):
            if not (np.isfinite(xs) and np.isfinite(ys) and np.isfinite(s)):
                continue
            ix, iy = int(round(xs)), int(round(ys))
            x_lo, x_hi, y_lo, y_hi = max(ix - half, 0), min(ix + half + 1, nx), max(iy - half, 0), min(iy + half + 1, ny)
            if x_lo >= x_hi or y_lo >= y_hi:
                continue
            gy, gx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
            img[y_lo:y_hi, x_lo:x_hi] += (s * beam_template(gx - xs, gy - ys, beam)).astype(img.dtype)
        header.add_history(f"contimg: {len(flux)} bright source(s) subtracted from the visibilities before "
                           "deconvolution and restored here")
    if model_fits is None or not Path(model_fits).exists():
        return
    with fits.open(model_fits, mode="update", memmap=False) as hd:
        x, y = WCS(hd[0].header).celestial.world_to_pixel_values(ra, dec)
        plane = hd[0].data
        img = plane.reshape(plane.shape[-2:])
        ny, nx = img.shape
        for xs, ys, s in zip(x, y, flux):
            ix, iy = int(round(xs)), int(round(ys))
            if np.isfinite(s) and 0 <= ix < nx and 0 <= iy < ny:
                img[iy, ix] += s
