"""The photometry stage: the database side of forced photometry, for one image or one group.

:func:`photometry_for_image` does, for one image recorded in the ``images`` table:

1. Resolve the product set from its manifest (:func:`resolve_image`):
   :func:`contimg.pipeline.image.record_images` records the flat-noise and the
   PB-corrected image as Image rows, each with the set's files by kind
   (``images.files``: the flat-noise and PB-corrected images, the
   time/band-averaged beam ``pb``, residual, model, PSF, thumbnail, log); no
   file name is parsed. Either row may be given; photometry is always attached
   to the **PB-corrected** row when it is recorded (else to the row given), so
   a rerun through the other row updates the same photometry instead of
   adding a second epoch.
2. Read the catalogue sources (``sources`` table) in a cone holding the image.
3. Measure them (:func:`contimg.photometry.measure.measure_image`, no
   database): those whose averaged primary-beam response is at least
   ``settings.photometry.min_beam_response``.
4. In one transaction: upsert the photometry rows (unique per source and
   image, so a rerun rewrites the same rows and keeps their ids), then
   normalise (:func:`normalize_sources`) every epoch in which these sources
   were measured and write the normalised flux and error of the rows that
   change (NULL where an epoch has too few references).

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

:func:`photometry` runs the stage for a group (every PB-corrected image of its
MS that passed QA, each judged by the photometry gate); rerunning it rewrites
the same rows.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import Image, MeasurementSet, Photometry, Source
from contimg.errors import InputFileError, NotFoundError, PermanentError, ValidationError
from contimg.photometry.measure import ImageSet, field_cone, measure_image, read_header
from contimg.pipeline.alerts import qa_failed
from contimg.pipeline.calibrate import group_ms

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from contimg.config import PhotometrySettings

log = logging.getLogger(__name__)

STAGE = "photometry"
_IN_CHUNK = 1000


def photometry(settings: Settings, group_key: str, token: str) -> dict[str, Any]:
    """Start the stage, measure every PB-corrected image of the group's MS, end the stage.

    Only images whose QA verdict is not ``fail`` are measured, in the order they were recorded.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``photometry`` and ``qa`` sections).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; checked at the start and before each image.

    Returns
    -------
    dict
        ``{"images": [photometry_for_image(...) summary with "qa_verdict" and "qa_reasons", ...],
        "n_measured": total rows, "seconds": the stage's duration}``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        If the group's MS has no recorded images (was it imaged?) or their files are missing.
    PhotometryQaFailed
        If the photometry gate failed any image's normalisation (after every image was measured).
    """
    groups.stage_started(settings, group_key, token, STAGE)
    ms_id, ms = group_ms(settings, group_key)
    image_ids = run_transaction(settings, lambda s: list(s.scalars(
        select(Image.id).where(Image.ms_id == ms_id, Image.pb_corrected.is_(True),
                               or_(Image.qa_verdict.is_(None), Image.qa_verdict != "fail")).order_by(Image.id))),
        readonly=True)
    if not image_ids:
        raise InputFileError(f"group {group_key}: no primary-beam corrected image of {ms} that passed QA is "
                             "recorded; run the image stage first")
    results = []
    failed = []
    for image_id in image_ids:
        groups.check_current(settings, group_key, token)
        result = photometry_for_image(image_id, database=settings, settings=settings)
        verdict = record_verdict(settings, result)
        result["qa_verdict"], result["qa_reasons"] = verdict.status, verdict.reasons
        if verdict.failed:
            failed.append(f"{result['path']}: {'; '.join(verdict.reasons)}")
        results.append(result)
    if failed:
        raise PhotometryQaFailed(f"group {group_key}: photometry failed QA (its rows were removed): "
                                 + " | ".join(failed))
    seconds = groups.stage_finished(settings, group_key, token, STAGE)
    n_measured = sum(int(r.get("n_measured", 0)) for r in results)
    log.info("group %s: photometry of %d source(s) in %d image(s) in %.1f s", group_key, n_measured,
             len(results), seconds)
    return {"images": [_jsonable(r) for r in results], "n_measured": n_measured, "seconds": seconds}


def measure_recorded_image(settings: Settings, image: int | str) -> dict[str, Any]:
    """Forced photometry of one recorded image (by id or path) with its normalisation verdict, as the stage does.

    An image whose QA verdict is ``fail`` is refused: it feeds no science.

    Raises
    ------
    contimg.errors.ValidationError
        If the image failed its QA.
    contimg.errors.NotFoundError
        If no Image row has that id or path.
    """
    def _verdict(session) -> tuple[str, str | None, list[str]]:
        found = resolve_image(session, image)
        row = session.get(Image, found.image_id)
        return found.path, row.qa_verdict, list((row.qa or {}).get("reasons", []))

    path, status, reasons = run_transaction(settings, _verdict, readonly=True)
    if status == "fail":
        raise ValidationError(f"image {path} failed its QA ({'; '.join(reasons)}); it feeds no photometry "
                              "(re-image it, e.g. contimg reprocess --from-stage image --tier ...)")
    result = photometry_for_image(image, database=settings, settings=settings)
    verdict = record_verdict(settings, result)
    result["qa_verdict"], result["qa_reasons"] = verdict.status, verdict.reasons
    return _jsonable(result)


def images_of_ms(settings: Settings, ms_path: str | Path) -> list[int]:
    """Ids of the PB-corrected images recorded for the Measurement Set ``ms_path`` (what photometry measures).

    Raises
    ------
    contimg.errors.NotFoundError
        If the MS is not recorded, or has no PB-corrected image recorded (image it first).
    """
    path = str(Path(ms_path).absolute())

    def _find(session) -> list[int] | None:
        ms_id = session.scalar(select(MeasurementSet.id).where(MeasurementSet.path == path))
        if ms_id is None:
            return None
        return list(session.scalars(select(Image.id).where(Image.ms_id == ms_id, Image.pb_corrected.is_(True))
                                    .order_by(Image.id)))

    ids = run_transaction(settings, _find, readonly=True)
    if ids is None:
        raise NotFoundError(f"{path}: not a Measurement Set recorded in the database (convert it with contimg, "
                            "or give an image)")
    if not ids:
        raise NotFoundError(f"{path}: no primary-beam-corrected image recorded for it; image it first "
                            "(contimg image)")
    return ids


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

def resolve_image(session: Session, image: int | str | os.PathLike) -> ImageSet:
    """Find the Image row (by id or path) and the files of its product set.

    Raises
    ------
    NotFoundError
        No Image row has that id or path.
    ValidationError
        Neither the row nor its MS gives an epoch.
    """
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

def sources_in_cone(session: Session, ra0: float, dec0: float, radius: float) -> dict[str, np.ndarray]:
    """Catalogue sources within ``radius`` (deg) of (``ra0``, ``dec0``) (deg).

    Parameters
    ----------
    session
        An open session.
    ra0, dec0
        The cone's centre (deg).
    radius
        Its radius (deg).

    Returns
    -------
    dict
        Arrays ``id``, ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz), ``spectral_index`` (both NaN when
        unknown) and ``stable`` (neither resolved nor confused).
    """
    from contimg.beam import angular_separation

    rows = session.execute(
        select(Source.id, Source.ra_deg, Source.dec_deg, Source.resolved, Source.confused, Source.flux_jy,
               Source.spectral_index)
        .where(Source.dec_deg >= dec0 - radius, Source.dec_deg <= dec0 + radius)
    ).all()
    arr = np.array([(r[0], r[1], r[2], bool(r[3]), bool(r[4]), np.nan if r[5] is None else r[5],
                     np.nan if r[6] is None else r[6]) for r in rows], dtype=float).reshape(-1, 7)
    sep = np.degrees(angular_separation(math.radians(ra0), math.radians(dec0), np.radians(arr[:, 1]), np.radians(arr[:, 2])))
    keep = sep <= radius
    return {"id": arr[keep, 0].astype(np.int64), "ra_deg": arr[keep, 1], "dec_deg": arr[keep, 2],
            "flux_jy": arr[keep, 5], "spectral_index": arr[keep, 6],
            "stable": ~(arr[keep, 3].astype(bool) | arr[keep, 4].astype(bool))}


def catalogue_in_field(session: Session, image_fits: Path) -> dict[str, np.ndarray]:
    """Catalogue sources with a flux inside an image: ``id``, ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz),
    ``spectral_index`` (NaN when unknown) and ``stable`` (neither resolved nor confused)."""
    cone = sources_in_cone(session, *field_cone(read_header(image_fits)))
    keep = np.isfinite(cone["flux_jy"])
    return {k: v[keep] for k, v in cone.items()}


def photometry_rows(session: Session, source_ids: np.ndarray) -> np.ndarray:
    """(id, source_id, image_id, epoch_mjd, flux, err, norm_flux, norm_err) of every row of these sources (NULL: NaN)."""
    P = Photometry

    out: list[Sequence[Any]] = []
    ids = [int(i) for i in source_ids]
    for lo in range(0, len(ids), _IN_CHUNK):
        out += session.execute(
            select(P.id, P.source_id, P.image_id, P.epoch_mjd, P.flux_jy, P.flux_err_jy, P.norm_flux_jy,
                   P.norm_flux_err_jy)
            .where(P.source_id.in_(ids[lo:lo + _IN_CHUNK]))
        ).all()
    return np.array([[np.nan if v is None else v for v in r] for r in out], dtype=float).reshape(-1, 8)


def normalize_sources(session: Session, source_ids: np.ndarray, candidate_ids: np.ndarray, *,
                      settings: PhotometrySettings, image_id: int | None = None) -> dict[str, Any]:
    """Normalise every photometry row of ``source_ids`` over all their epochs and write what changed.

    Reads the rows (:func:`photometry_rows`), normalises them
    (:func:`contimg.photometry.measure.normalize_rows`) and writes the
    normalised flux and error of the rows whose values change.

    Parameters
    ----------
    session
        An open session; the normalised values are written in its transaction.
    source_ids
        The sources whose rows are normalised (database ids).
    candidate_ids
        The sources that may serve as references (neither resolved nor confused).
    settings
        ``settings.photometry`` (``reference_min_snr``, ``baseline_epochs``).
    image_id
        The image whose epoch's correction factor is reported, if any.

    Returns
    -------
    dict
        ``rows`` considered, ``rows_written``, ``epochs``, ``references`` and,
        with ``image_id``, that epoch's correction.
    """
    from contimg.db.science import set_normalized_flux
    from contimg.photometry.measure import normalize_rows

    updates, summary = normalize_rows(photometry_rows(session, source_ids), candidate_ids, settings=settings,
                                      image_id=image_id)
    summary["rows_written"] = set_normalized_flux(session, updates) if updates else 0
    return summary


def _section(settings: Settings | PhotometrySettings) -> PhotometrySettings:
    return cast("PhotometrySettings", getattr(settings, "photometry", settings))  # a Settings has a photometry


def photometry_for_image(
    image_id_or_path: int | str | os.PathLike,
    *,
    database: str | Engine | Settings,
    settings: Settings | PhotometrySettings,
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
    from contimg.db.science import upsert_photometry

    t0 = time.perf_counter()
    ps = _section(settings)

    def read(session: Session) -> tuple[ImageSet, dict[str, np.ndarray]]:
        images = resolve_image(session, image_id_or_path)
        first = images.flat or images.pbcor
        if first is None:
            raise InputFileError(f"image {images.path}: none of its FITS files exists")
        return images, sources_in_cone(session, *field_cone(read_header(first)))

    images, cone = run_transaction(database, read, readonly=True)
    idx, res, method = measure_image(images, cone["ra_deg"], cone["dec_deg"], min_beam_response=ps.min_beam_response)
    ok = res.measured
    src = cone["id"][idx]
    rows = [{"source_id": int(s), "image_id": images.image_id, "epoch_mjd": images.epoch_mjd, "flux_jy": float(f),
             "flux_err_jy": float(e), "upper_limit": bool(u)}
            for s, f, e, u in zip(src[ok], res.flux_jy[ok], res.flux_err_jy[ok], res.upper_limit[ok])]

    def write(session: Session) -> tuple[int, dict[str, Any]]:
        n = upsert_photometry(session, rows)
        norm = normalize_sources(session, src[ok], cone["id"][cone["stable"]], settings=ps, image_id=images.image_id)
        return n, norm

    written, norm = run_transaction(database, write) if rows else (0, {"rows": 0, "rows_written": 0})
    summary = {
        "image_id": images.image_id, "path": images.path,
        "ms_path": str(Path(images.ms_path).absolute()) if images.ms_path is not None else None,
        "epoch_mjd": images.epoch_mjd, "method": method,
        "n_sources": int(idx.size), "n_measured": int(written), "n_upper_limits": int(res.upper_limit[ok].sum()),
        "n_fallback": int((res.method == "pixel").sum()), "n_unmeasurable": int((~ok).sum()),
        "normalization": norm, "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("photometry %s (image %d, MJD %.5f): %d sources in the beam, %d stored (%d upper limits, %d fallbacks), "
             "normalised %s rows over %s epochs", images.path, images.image_id, images.epoch_mjd, summary["n_sources"],
             written, summary["n_upper_limits"], summary["n_fallback"], norm.get("rows"), norm.get("epochs"))
    return summary


class PhotometryQaFailed(PermanentError):
    """The photometry gate failed an image's normalisation: its photometry rows are removed, the group fails."""


def record_verdict(settings: Settings, result: dict[str, Any]) -> Any:
    """Judge one image's normalisation (:mod:`contimg.photometry.gate`) and record it with the image.

    The image's ``qa`` gains a ``photometry`` entry and its ``qa_verdict``
    becomes the worse of the image's and the photometry's. A failed
    normalisation deletes the image's photometry rows, so they never reach
    variability scoring, and is notified (``qa_failed``, :mod:`contimg.pipeline.alerts`).

    Returns
    -------
    contimg.verdict.Verdict
    """
    from sqlalchemy import delete

    from contimg.db import session_scope
    from contimg.photometry.gate import judge_normalization
    from contimg.verdict import jsonable, worst

    verdict = judge_normalization(result.get("normalization") or {}, qa=settings.qa)
    with session_scope(settings) as session:
        image = session.get(Image, result["image_id"])
        if image is not None:
            image.qa = {**(image.qa or {}), "photometry": jsonable(verdict.to_dict())}
            image.qa_verdict = worst([image.qa_verdict, verdict.status])
        if verdict.failed:
            session.execute(delete(Photometry).where(Photometry.image_id == result["image_id"]))
    if verdict.reasons:
        log.warning("photometry of %s: QA %s", result["path"], verdict.summary())
    if verdict.failed:
        qa_failed(settings, product="photometry", name=str(result["path"]), reasons=verdict.reasons,
                  data={"image_id": result["image_id"], "figures": jsonable(verdict.figures)})
    return verdict


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
