"""Forced photometry of one product set, without the database: :func:`measure_image`.

The science of the photometry stage. Given a product set's files
(:class:`ImageSet`: the flat-noise image, the PB-corrected image, the averaged
primary beam ``pb`` and the MS) and catalogue positions, :func:`measure_image`
measures (:func:`contimg.photometry.forced.forced_photometry`) on the
flat-noise image divided by the beam (read off ``pb``, or computed from the MS
when that file is missing), or, without a flat-noise image, on the
PB-corrected image with its own local noise. :func:`normalize_rows` runs the
differential normalisation (:mod:`contimg.photometry.normalize`) over the
stored rows of a set of sources and says which rows' normalised values
change.

Reading the product set and the catalogue from the database and writing the
rows is the stage's job: :mod:`contimg.pipeline.photometry`
(:func:`~contimg.pipeline.photometry.photometry_for_image`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contimg.errors import InputFileError
from contimg.photometry.forced import ForcedPhotometry, forced_photometry

if TYPE_CHECKING:
    from contimg.config import PhotometrySettings

__all__ = ["ImageSet", "beam_response_at", "field_cone", "measure_image", "normalize_rows", "read_fits", "read_header"]

log = logging.getLogger(__name__)

UPPER_LIMIT_SNR = 3.0
"""Measurements below this SNR are flagged as upper limits (and stored all the same)."""


@dataclass(frozen=True)
class ImageSet:
    """The files of one imaging product and the Image row its photometry belongs to."""

    image_id: int
    """Image row the photometry rows point to (the PB-corrected one when recorded)."""
    path: str
    """That row's path."""
    epoch_mjd: float
    flat: Path | None
    """Flat-noise image, if it exists."""
    pbcor: Path | None
    """PB-corrected image, if it exists."""
    pb: Path | None
    """The averaged primary beam, if it exists."""
    ms_path: Path | None
    """The Measurement Set (for computing the beam when ``pb`` is missing)."""


def read_header(path: Path) -> Any:
    """The header of a FITS image's primary HDU, without its pixels.

    Raises
    ------
    InputFileError
        The file is missing or not a readable FITS file.
    """
    from astropy.io import fits

    try:
        return fits.getheader(path)
    except (OSError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: unreadable FITS image: {exc}") from exc


def read_fits(path: Path) -> tuple[np.ndarray, Any]:
    """The pixels (float64) and a copy of the header of a FITS image's primary HDU.

    Raises
    ------
    InputFileError
        The file is missing or not a readable FITS image.
    """
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float64), hdul[0].header.copy()
    except (OSError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: unreadable FITS image: {exc}") from exc


def beam_response_at(ra_deg: np.ndarray, dec_deg: np.ndarray, *, images: ImageSet) -> np.ndarray | None:
    """The averaged primary beam at positions: read off the set's ``pb`` image (bilinear), else computed from the MS.

    Positions off the beam image get 0. Returns None if neither the beam image
    nor the MS is available.

    Parameters
    ----------
    ra_deg, dec_deg
        Positions (deg, ICRS), equal shapes.
    images
        The product set; its ``pb`` image is read if recorded, else its MS
        (``ms_path``) gives the pointing track for the model beam.

    Returns
    -------
    numpy.ndarray or None
        The time-averaged beam response (0-1) at each position, or None.
    """
    if images.pb is not None:
        from astropy.wcs import WCS
        from scipy.ndimage import map_coordinates

        pb, header = read_fits(images.pb)
        while pb.ndim > 2:
            pb = pb[0]
        x, y = WCS(header).celestial.world_to_pixel_values(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
        resp = map_coordinates(np.nan_to_num(pb, nan=0.0), [np.atleast_1d(y), np.atleast_1d(x)], order=1,
                               mode="constant", cval=0.0)
        return np.asarray(resp, float)
    if images.ms_path is not None:
        from contimg.imaging.pbcor import beam_at_positions
        from contimg.msmodel import read_ms

        ms = read_ms(images.ms_path)
        log.info("%s: no beam image (pb) recorded, beam computed from %s", images.path, images.ms_path)
        return beam_at_positions(np.radians(ra_deg), np.radians(dec_deg), ms)
    return None


def field_cone(header) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of a circle holding the whole image (``header``: its FITS header)."""
    from astropy.wcs import WCS

    wcs = WCS(header).celestial
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    ra0, dec0 = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    cell = max(abs(float(header["CDELT1"])), abs(float(header["CDELT2"])))
    return ra0 % 360.0, dec0, 0.5 * math.hypot(nx, ny) * cell + 0.05


def measure_image(images: ImageSet, ra_deg: np.ndarray, dec_deg: np.ndarray, *, min_beam_response: float,
                  upper_limit_snr: float = UPPER_LIMIT_SNR) -> tuple[np.ndarray, ForcedPhotometry, str]:
    """Measure positions in one product set: (indices of the positions measured, the photometry, the method).

    A position is measured if the beam response there is at least
    ``min_beam_response`` (when the beam is known) and it yields a finite flux.
    Method ``"flat/pb"`` fits the flat-noise image and divides by the beam;
    ``"pbcor"`` fits the PB-corrected image.

    Parameters
    ----------
    images
        The product set (flat-noise image, PB-corrected image, beam image, MS).
    ra_deg, dec_deg
        Catalogue positions to measure (deg), equal shapes.
    min_beam_response
        Positions where the beam is below this (0-1) are not measured.
    upper_limit_snr
        A measurement below this SNR is stored as an upper limit.

    Returns
    -------
    tuple
        ``(indices, photometry, method)``: the indices into ``ra_deg`` of the
        positions measured, their :class:`~contimg.photometry.forced.ForcedPhotometry`
        (fluxes in Jy, PB-corrected) and the method used.

    Raises
    ------
    InputFileError
        Neither a flat-noise nor a PB-corrected image exists.
    """
    ra = np.asarray(ra_deg, float)
    dec = np.asarray(dec_deg, float)
    response = beam_response_at(ra, dec, images=images) if ra.size else np.zeros(0)
    if images.flat is not None and response is not None:
        data, header = read_fits(images.flat)
        method = "flat/pb"
    elif images.pbcor is not None:
        data, header = read_fits(images.pbcor)
        method = "pbcor"
    else:
        raise InputFileError(f"{images.path}: no flat-noise image with a beam and no PB-corrected image to measure")
    if response is None:
        log.warning("%s: primary beam unknown (no pb image, no MS): measuring every source on the PB-corrected image",
                    images.path)
        select = np.ones(ra.shape, dtype=bool)
    else:
        select = response >= min_beam_response
    idx = np.flatnonzero(select)
    res = forced_photometry(data, header, ra[idx], dec[idx],
                            beam_response=response[idx] if method == "flat/pb" and response is not None else None,
                            upper_limit_snr=upper_limit_snr)
    return idx, res, method


def _changed(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Values that differ (NaN equals NaN; relative tolerance 1e-9)."""
    both_nan = np.isnan(new) & np.isnan(old)
    with np.errstate(invalid="ignore"):
        same = np.isclose(new, old, rtol=1e-9, atol=0.0)
    return ~(both_nan | same)


PHOTOMETRY_ROW_COLUMNS = ("id", "source_id", "image_id", "epoch_mjd", "flux_jy", "flux_err_jy", "norm_flux_jy",
                          "norm_flux_err_jy")
"""The columns of the ``rows`` array :func:`normalize_rows` takes (a stored photometry row each; NULL as NaN)."""


def normalize_rows(rows: np.ndarray, candidate_ids: np.ndarray, *, settings: "PhotometrySettings",
                   image_id: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Normalise stored photometry rows over all their epochs; returns the rows whose values change and a summary.

    Epochs are images ordered by (epoch_mjd, image id). Rows whose epoch has
    too few references get no normalised value (None). Only rows whose
    normalised values change are returned: once the references' baselines
    are set (their first ``baseline_epochs`` epochs), the corrections of past
    epochs no longer move, so a new image changes little more than its own rows.

    Parameters
    ----------
    rows
        Shape (N, 8), the columns of :data:`PHOTOMETRY_ROW_COLUMNS`; fluxes in Jy, NULL as NaN.
    candidate_ids
        The sources that may serve as references (neither resolved nor confused in the catalogue).
    settings
        ``settings.photometry``: ``reference_min_snr``, ``baseline_epochs``.
    image_id
        The image whose epoch's correction factor is reported, if any.

    Returns
    -------
    updates : list of dict
        ``{"id", "norm_flux_jy", "norm_flux_err_jy"}`` for each row whose values change.
    summary : dict
        ``rows`` considered, ``epochs``, ``references`` and, with ``image_id``,
        that epoch's ``correction``, ``correction_err`` and ``epoch_references``.
    """
    from contimg.photometry.normalize import normalize_long

    rows = np.asarray(rows, dtype=float).reshape(-1, len(PHOTOMETRY_ROW_COLUMNS))
    summary: dict[str, Any] = {"rows": int(len(rows)), "epochs": 0, "references": 0,
                               "correction": None, "correction_err": None}
    usable = np.isfinite(rows[:, 4]) & np.isfinite(rows[:, 5]) & (rows[:, 5] > 0)
    rows_ok = rows[usable]
    if rows_ok.size == 0:
        return [], summary
    order = np.lexsort((rows_ok[:, 2], rows_ok[:, 3]))  # by epoch, then image id
    rank = np.empty(len(rows_ok), dtype=np.int64)
    keys = rows_ok[order][:, [3, 2]]
    new_epoch = np.r_[True, np.any(np.diff(keys, axis=0) != 0, axis=1)]
    rank[order] = np.cumsum(new_epoch) - 1
    nf, nfe, norm, epochs, _ = normalize_long(
        rank, rows_ok[:, 1].astype(np.int64), rows_ok[:, 4], rows_ok[:, 5], candidate_sources=candidate_ids,
        min_snr=settings.reference_min_snr, baseline_epochs=settings.baseline_epochs,
    )
    nfe = np.where(np.isfinite(nf), nfe, np.nan)
    new_f = np.full(len(rows), np.nan)
    new_e = np.full(len(rows), np.nan)
    new_f[usable], new_e[usable] = nf, nfe
    write = _changed(new_f, rows[:, 6]) | _changed(new_e, rows[:, 7])
    updates = [{"id": int(i), "norm_flux_jy": float(f) if np.isfinite(f) else None,
                "norm_flux_err_jy": float(e) if np.isfinite(e) else None}
               for i, f, e in zip(rows[write, 0], new_f[write], new_e[write])]
    summary.update(epochs=int(epochs.size), references=int(norm.is_reference.sum()))
    if image_id is not None:
        mine = np.flatnonzero(rows_ok[:, 2] == image_id)
        if mine.size:
            e = int(np.searchsorted(epochs, rank[mine[0]]))
            c, ce = norm.correction[e], norm.correction_err[e]
            summary["correction"] = float(c) if np.isfinite(c) else None
            summary["correction_err"] = float(ce) if np.isfinite(ce) else None
            summary["epoch_references"] = int(norm.n_references[e])
    return updates, summary
