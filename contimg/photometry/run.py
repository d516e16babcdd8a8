"""The photometry stage's entry point: :func:`photometry_for_image`.

For one image recorded in the ``images`` table:

1. Resolve the product set from its manifest: :func:`contimg.imaging.record_images`
   records the flat-noise and the PB-corrected image as Image rows, each with the set's
   files by kind (``images.files``: the flat-noise and PB-corrected images, the
   time/band-averaged beam ``pb``, residual, model, PSF, thumbnail, log); no file name is
   parsed. Either row may be given; photometry is always attached to the
   **PB-corrected** row when it is recorded (else to the row given), so a
   rerun through the other row updates the same photometry instead of adding
   a second epoch.
2. Select the catalogue sources (``sources`` table) inside the image whose
   averaged primary-beam response is at least
   ``settings.photometry.min_beam_response``.
3. Measure (:func:`contimg.photometry.forced.forced_photometry`): on the
   flat-noise image, divided by the beam from the set's ``pb`` file (or, if that
   file is missing, the beam computed from the MS); without a flat-noise
   image, on the PB-corrected image with its own local noise.
4. In one transaction: upsert the photometry rows (unique per source and
   image, so a rerun rewrites the same rows and keeps their ids), then run the
   differential normalisation (:mod:`contimg.photometry.normalize`) over every
   epoch in which these sources were measured and write the normalised flux
   and error of all those rows (``set_normalized_flux``; NULL where an epoch
   has too few references).

The epoch of a measurement is the image's MS mid-time (``images.mid_mjd``,
which :func:`~contimg.imaging.image_ms` takes from the MS; failing that the
mean of the MS row's start and end). Rows of non-detections are stored like
any other, with ``upper_limit`` set (flux below 3 sigma).

Normalisation epochs are images, ordered by (epoch, image id); references are
the sources neither resolved nor confused in the catalogue, with median SNR of
at least ``settings.photometry.reference_min_snr``. A row in another image
receives the correction computed from the references among *this* image's
sources that were measured there; the last image processed of an overlapping
drift-scan field therefore sets those values.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from contimg.errors import InputFileError, NotFoundError, ValidationError
from contimg.photometry.forced import ForcedPhotometry, forced_photometry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from contimg.config import PhotometrySettings, Settings

__all__ = ["ImageSet", "beam_response_at", "catalogue_in_field", "measure_image", "normalize_sources", "photometry_for_image",
           "resolve_image"]

log = logging.getLogger(__name__)

UPPER_LIMIT_SNR = 3.0
"""Measurements below this SNR are flagged as upper limits (and stored all the same)."""
_IN_CHUNK = 1000


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


def _product_files(row: Any) -> tuple[Path | None, Path | None, Path | None]:
    """(flat, pbcor, pb) of the row's product set, from its manifest (``images.files``).

    A row recorded without one (an image registered by hand) is its own file and nothing else.
    """
    files = row.files or {}
    if files:
        def get(kind: str) -> Path | None:
            return Path(files[kind]) if files.get(kind) else None

        return get("image"), get("pbcor"), get("pb")
    return (None, Path(row.path), None) if row.pb_corrected else (Path(row.path), None, None)


def resolve_image(session: "Session", image: int | str | os.PathLike) -> ImageSet:
    """Find the Image row (by id or path) and the files of its product set.

    Raises
    ------
    NotFoundError
        No Image row has that id or path.
    ValidationError
        Neither the row nor its MS gives an epoch.
    """
    from sqlalchemy import select

    from contimg.db.models import Image, MeasurementSet

    if isinstance(image, bool):  # an int, but neither an id nor a path
        raise TypeError(f"expected an image id or path, not {image!r}")
    if isinstance(image, (int, np.integer)):
        row = session.get(Image, int(image))
        what = f"image id {int(image)}"
    else:
        candidates = [str(image), str(Path(image).absolute())]
        row = session.scalars(select(Image).where(Image.path.in_(candidates))).first()
        what = f"image {image}"
    if row is None:
        raise NotFoundError(f"{what}: no such row in the images table")
    flat, pbcor, pb = _product_files(row)
    target = row
    if pbcor is not None and not row.pb_corrected:
        sibling = session.scalars(select(Image).where(Image.path == str(pbcor))).first()
        if sibling is not None:
            target = sibling
    ms_path = None
    epoch = target.mid_mjd if target.mid_mjd is not None else row.mid_mjd
    ms_id = target.ms_id or row.ms_id
    if ms_id is not None:
        ms = session.get(MeasurementSet, ms_id)
        if ms is not None:
            ms_path = Path(ms.path)
            if epoch is None and ms.start_mjd is not None and ms.end_mjd is not None:
                epoch = 0.5 * (ms.start_mjd + ms.end_mjd)
    if epoch is None:
        raise ValidationError(f"{what} ({row.path}): no mid_mjd and no MS with start/end times: epoch unknown")
    return ImageSet(
        image_id=target.id, path=target.path, epoch_mjd=float(epoch),
        flat=flat if flat is not None and flat.exists() else None,
        pbcor=pbcor if pbcor is not None and pbcor.exists() else None,
        pb=pb if pb is not None and pb.exists() else None,
        ms_path=ms_path if ms_path is not None and ms_path.exists() else None,
    )


def _read_fits(path: Path) -> tuple[np.ndarray, Any]:
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
    """
    if images.pb is not None:
        from astropy.wcs import WCS
        from scipy.ndimage import map_coordinates

        pb, header = _read_fits(images.pb)
        while pb.ndim > 2:
            pb = pb[0]
        x, y = WCS(header).celestial.world_to_pixel_values(np.asarray(ra_deg, float), np.asarray(dec_deg, float))
        resp = map_coordinates(np.nan_to_num(pb, nan=0.0), [np.atleast_1d(y), np.atleast_1d(x)], order=1,
                               mode="constant", cval=0.0)
        return np.asarray(resp, float)
    if images.ms_path is not None:
        from contimg.imaging.geometry import read_ms_info
        from contimg.imaging.pbcor import beam_at_positions

        info = read_ms_info(images.ms_path, data_column="DATA")
        log.info("%s: no beam image (pb) recorded, beam computed from %s", images.path, images.ms_path)
        return beam_at_positions(np.radians(ra_deg), np.radians(dec_deg), info)
    return None


def _field_cone(header) -> tuple[float, float, float]:
    """(ra, dec, radius) in degrees of a circle holding the whole image."""
    from astropy.wcs import WCS

    wcs = WCS(header).celestial
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    ra0, dec0 = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    cell = max(abs(float(header["CDELT1"])), abs(float(header["CDELT2"])))
    return ra0 % 360.0, dec0, 0.5 * math.hypot(nx, ny) * cell + 0.05


def _sources_in_cone(session: "Session", ra0: float, dec0: float, radius: float) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from contimg.beam import angular_separation
    from contimg.db.models import Source

    rows = session.execute(
        select(Source.id, Source.ra_deg, Source.dec_deg, Source.resolved, Source.confused)
        .where(Source.dec_deg >= dec0 - radius, Source.dec_deg <= dec0 + radius)
    ).all()
    arr = np.array([(r[0], r[1], r[2], bool(r[3]), bool(r[4])) for r in rows], dtype=float).reshape(-1, 5)
    sep = np.degrees(angular_separation(math.radians(ra0), math.radians(dec0), np.radians(arr[:, 1]), np.radians(arr[:, 2])))
    keep = sep <= radius
    return {"id": arr[keep, 0].astype(np.int64), "ra_deg": arr[keep, 1], "dec_deg": arr[keep, 2],
            "stable": ~(arr[keep, 3].astype(bool) | arr[keep, 4].astype(bool))}


def catalogue_in_field(session: "Session", image_fits: Path) -> dict[str, np.ndarray]:
    """Catalogue sources inside an image: ``id``, ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz),
    ``spectral_index`` (NaN when unknown) and ``stable`` (neither resolved nor confused)."""
    from sqlalchemy import select

    from contimg.db.models import Source

    _, header = _read_fits(image_fits)
    cone = _sources_in_cone(session, *_field_cone(header))
    extra = {}
    for start in range(0, cone["id"].size, _IN_CHUNK):
        ids = [int(i) for i in cone["id"][start:start + _IN_CHUNK]]
        for sid, s_flux, s_alpha in session.execute(select(Source.id, Source.flux_jy, Source.spectral_index)
                                                    .where(Source.id.in_(ids))):
            extra[sid] = (np.nan if s_flux is None else s_flux, np.nan if s_alpha is None else s_alpha)
    flux = np.array([extra.get(int(i), (np.nan, np.nan))[0] for i in cone["id"]], float)
    alpha = np.array([extra.get(int(i), (np.nan, np.nan))[1] for i in cone["id"]], float)
    keep = np.isfinite(flux)
    return {**{k: v[keep] for k, v in cone.items()}, "flux_jy": flux[keep], "spectral_index": alpha[keep]}


def measure_image(images: ImageSet, ra_deg: np.ndarray, dec_deg: np.ndarray, *, min_beam_response: float,
                  upper_limit_snr: float = UPPER_LIMIT_SNR) -> tuple[np.ndarray, ForcedPhotometry, str]:
    """Measure positions in one product set: (indices of the positions measured, the photometry, the method).

    A position is measured if the beam response there is at least
    ``min_beam_response`` (when the beam is known) and it yields a finite flux.
    Method ``"flat/pb"`` fits the flat-noise image and divides by the beam;
    ``"pbcor"`` fits the PB-corrected image.

    Raises
    ------
    InputFileError
        Neither a flat-noise nor a PB-corrected image exists.
    """
    ra = np.asarray(ra_deg, float)
    dec = np.asarray(dec_deg, float)
    response = beam_response_at(ra, dec, images=images) if ra.size else np.zeros(0)
    if images.flat is not None and response is not None:
        data, header = _read_fits(images.flat)
        method = "flat/pb"
    elif images.pbcor is not None:
        data, header = _read_fits(images.pbcor)
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


def _photometry_rows(session: "Session", source_ids: np.ndarray) -> np.ndarray:
    """(id, source_id, image_id, epoch_mjd, flux, err, norm_flux, norm_err) of every row of these sources (NULL: NaN)."""
    from sqlalchemy import select

    from contimg.db.models import Photometry as P

    out: list[Sequence[Any]] = []
    ids = [int(i) for i in source_ids]
    for lo in range(0, len(ids), _IN_CHUNK):
        out += session.execute(
            select(P.id, P.source_id, P.image_id, P.epoch_mjd, P.flux_jy, P.flux_err_jy, P.norm_flux_jy,
                   P.norm_flux_err_jy)
            .where(P.source_id.in_(ids[lo:lo + _IN_CHUNK]))
        ).all()
    return np.array([[np.nan if v is None else v for v in r] for r in out], dtype=float).reshape(-1, 8)


def _changed(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Values that differ (NaN equals NaN; relative tolerance 1e-9)."""
    both_nan = np.isnan(new) & np.isnan(old)
    with np.errstate(invalid="ignore"):
        same = np.isclose(new, old, rtol=1e-9, atol=0.0)
    return ~(both_nan | same)


def normalize_sources(session: "Session", source_ids: np.ndarray, candidate_ids: np.ndarray, *,
                      settings: "PhotometrySettings", image_id: int | None = None) -> dict[str, Any]:
    """Normalise every photometry row of ``source_ids`` over all their epochs and write the results.

    Epochs are images ordered by (epoch_mjd, image id). Rows whose epoch has
    too few references get NULL normalised values. Only rows whose normalised
    values change are written: once the references' baselines are set (their
    first ``baseline_epochs`` epochs), the corrections of past epochs no
    longer move, so a new image rewrites little more than its own rows.
    Returns a summary (``rows`` considered, ``rows_written``, ``epochs``,
    ``references`` and the correction of ``image_id``'s epoch if given).
    """
    from contimg.db.science import set_normalized_flux
    from contimg.photometry.normalize import normalize_long

    rows = _photometry_rows(session, source_ids)
    summary: dict[str, Any] = {"rows": int(len(rows)), "rows_written": 0, "epochs": 0, "references": 0,
                               "correction": None, "correction_err": None}
    usable = np.isfinite(rows[:, 4]) & np.isfinite(rows[:, 5]) & (rows[:, 5] > 0)
    rows_ok = rows[usable]
    if rows_ok.size == 0:
        return summary
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
    summary.update(rows=int(len(rows)), rows_written=set_normalized_flux(session, updates), epochs=int(epochs.size),
                   references=int(norm.is_reference.sum()))
    if image_id is not None:
        mine = np.flatnonzero(rows_ok[:, 2] == image_id)
        if mine.size:
            e = int(np.searchsorted(epochs, rank[mine[0]]))
            c, ce = norm.correction[e], norm.correction_err[e]
            summary["correction"] = float(c) if np.isfinite(c) else None
            summary["correction_err"] = float(ce) if np.isfinite(ce) else None
            summary["epoch_references"] = int(norm.n_references[e])
    return summary


def _section(settings: "Settings | PhotometrySettings") -> "PhotometrySettings":
    return cast("PhotometrySettings", getattr(settings, "photometry", settings))  # a Settings has a photometry


def photometry_for_image(
    image_id_or_path: int | str | os.PathLike,
    *,
    database: "str | Engine | Settings",
    settings: "Settings | PhotometrySettings",
) -> dict[str, Any]:
    """Forced photometry of the catalogue sources in one image, stored and normalised (see the module docstring).

    Parameters
    ----------
    image_id_or_path
        The Image row's id or path (flat-noise or PB-corrected product).
    database
        URL, engine or settings naming the database.
    settings
        The settings (or their ``photometry`` section): ``min_beam_response``,
        ``reference_min_snr``, ``baseline_epochs``.

    Returns
    -------
    dict
        ``image_id`` (the row the photometry points to), ``path``,
        ``epoch_mjd``, ``method``, ``n_sources`` (catalogue sources in the
        beam), ``n_measured`` (rows written), ``n_upper_limits``,
        ``n_fallback`` (pixel-value fallbacks), ``n_unmeasurable`` (in the beam
        but on blank pixels; not stored), ``normalization`` (rows, epochs,
        references, this epoch's correction), ``seconds``.

    Raises
    ------
    NotFoundError
        No such Image row.
    InputFileError
        Its FITS files are missing or unreadable.
    ValidationError
        No epoch for the image.
    DatabaseBusyError
        The database stayed locked (transient: retry the call).
    """
    from contimg.db import run_transaction
    from contimg.db.science import upsert_photometry

    t0 = time.perf_counter()
    ps = _section(settings)

    def read(session: "Session") -> tuple[ImageSet, dict[str, np.ndarray]]:
        images = resolve_image(session, image_id_or_path)
        first = images.flat or images.pbcor
        if first is None:
            raise InputFileError(f"image {images.path}: none of its FITS files exists")
        _, header = _read_fits(first)
        return images, _sources_in_cone(session, *_field_cone(header))

    images, cone = run_transaction(database, read, readonly=True)
    idx, res, method = measure_image(images, cone["ra_deg"], cone["dec_deg"], min_beam_response=ps.min_beam_response)
    ok = res.measured
    src = cone["id"][idx]
    rows = [{"source_id": int(s), "image_id": images.image_id, "epoch_mjd": images.epoch_mjd, "flux_jy": float(f),
             "flux_err_jy": float(e), "upper_limit": bool(u)}
            for s, f, e, u in zip(src[ok], res.flux_jy[ok], res.flux_err_jy[ok], res.upper_limit[ok])]

    def write(session: "Session") -> tuple[int, dict[str, Any]]:
        n = upsert_photometry(session, rows)
        norm = normalize_sources(session, src[ok], cone["id"][cone["stable"]], settings=ps, image_id=images.image_id)
        return n, norm

    written, norm = run_transaction(database, write) if rows else (0, {"rows": 0, "rows_written": 0})
    summary = {
        "image_id": images.image_id, "path": images.path, "epoch_mjd": images.epoch_mjd, "method": method,
        "n_sources": int(idx.size), "n_measured": int(written), "n_upper_limits": int(res.upper_limit[ok].sum()),
        "n_fallback": int((res.method == "pixel").sum()), "n_unmeasurable": int((~ok).sum()),
        "normalization": norm, "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("photometry %s (image %d, MJD %.5f): %d sources in the beam, %d stored (%d upper limits, %d fallbacks), "
             "normalised %s rows over %s epochs", images.path, images.image_id, images.epoch_mjd, summary["n_sources"],
             written, summary["n_upper_limits"], summary["n_fallback"], norm.get("rows"), norm.get("epochs"))
    return summary
