"""The photometry stage for one group, by key: forced photometry of the group's images.

A thin layer over :func:`contimg.photometry.run.photometry_for_image`, which
measures the catalogue sources in the beam, stores one row per source and
image, and renormalises the differential fluxes of those sources over every
epoch. It is called with the PB-corrected image of each product set the
group's MS has (one, unless images of several tiers were recorded); rerunning
the stage rewrites the same rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import Image, MeasurementSet
from contimg.errors import InputFileError, PermanentError
from contimg.pipeline.calibrate import group_ms

log = logging.getLogger(__name__)

STAGE = "photometry"


def photometry(settings: Settings, group_key: str, token: str) -> dict[str, Any]:
    """Start the stage, measure every PB-corrected image of the group's MS, end the stage.

    Returns
    -------
    dict
        ``{"images": [photometry_for_image(...) summary, ...], "n_measured": total rows, "seconds"}``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        If the group's MS has no recorded images (was it imaged?) or their files are missing.
    """
    from contimg.photometry.run import photometry_for_image

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
    from contimg.errors import ValidationError
    from contimg.photometry.run import photometry_for_image, resolve_image

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
    from contimg.errors import NotFoundError

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


class PhotometryQaFailed(PermanentError):
    """The photometry gate failed an image's normalisation: its photometry rows are removed, the group fails."""


def record_verdict(settings: Settings, result: dict[str, Any]) -> Any:
    """Judge one image's normalisation (:mod:`contimg.photometry.gate`) and record it with the image.

    The image's ``qa`` gains a ``photometry`` entry and its ``qa_verdict``
    becomes the worse of the image's and the photometry's. A failed
    normalisation deletes the image's photometry rows, so they never reach
    variability scoring.

    Returns
    -------
    contimg.verdict.Verdict
    """
    from sqlalchemy import delete

    from contimg.db import session_scope
    from contimg.db.models import Photometry
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
    return verdict


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
