"""The imaging stage for one group, by key: image the calibrated MS and record the images with QA.

A thin layer over :func:`contimg.imaging.image_ms` and
:func:`contimg.imaging.record_images`. The products of a group go to
``<images>/<YYYY-MM-DDTHHMMSS>/``; rerunning the stage overwrites them and
updates the same rows (images are keyed by path).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import run_transaction
from contimg.db.models import MeasurementSet
from contimg.errors import InputFileError
from contimg.pipeline import state
from contimg.pipeline.calibrate import group_ms

log = logging.getLogger(__name__)

STAGE = "image"


def image_dir(settings: Settings, group_key: str) -> Path:
    """Where the group's images are written (``<images>/<YYYY-MM-DDTHHMMSS>``)."""
    return settings.paths.images / group_key.replace(":", "")


def image(settings: Settings, group_key: str, token: str) -> dict[str, Any]:
    """Start the stage, image the group's calibrated MS, record the images, end the stage.

    Returns
    -------
    dict
        ``{"image_ids": [flat-noise id, pb-corrected id], "image": path, "pbcor": path,
        "rms_jy", "peak_jy", "beam_arcsec": [major, minor, pa], "imager_s", "seconds"}``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        If the group's MS is missing or was not calibrated.
    contimg.errors.ExternalToolError
        If the imager failed.
    """
    from contimg.db import session_scope
    from contimg.imaging import image_ms, record_images

    state.stage_started(settings, group_key, token, STAGE)
    ms_id, ms = group_ms(settings, group_key)
    calset = run_transaction(settings, lambda s: s.scalar(
        select(MeasurementSet.calibration_set_id).where(MeasurementSet.id == ms_id)), readonly=True)
    if calset is None:
        raise InputFileError(f"group {group_key}: {ms} has no calibration applied; run the calibrate stage first")
    products = image_ms(ms, settings=settings.imaging, out_dir=image_dir(settings, group_key),
                        before_publish=lambda: state.check_current(settings, group_key, token))
    with session_scope(settings) as session:
        rows = record_images(session, products, ms=ms_id)
        ids = [row.id for row in rows]
        _mark_imaged(session, ms_id)
    seconds = state.stage_finished(settings, group_key, token, STAGE)
    qa = products.qa
    log.info("group %s: imaged in %.1f s: rms %.3g Jy/beam, beam %.1fx%.1f arcsec", group_key, seconds,
             qa.rms_jy, qa.beam_major_arcsec, qa.beam_minor_arcsec)
    return {"image_ids": ids, "image": products.image, "pbcor": products.pbcor, "rms_jy": qa.rms_jy,
            "peak_jy": qa.peak_jy, "beam_arcsec": [qa.beam_major_arcsec, qa.beam_minor_arcsec, qa.beam_pa_deg],
            "imager_s": products.imager_s, "seconds": seconds}


def _mark_imaged(session: Session, ms_id: int) -> None:
    row = session.get(MeasurementSet, ms_id)
    if row is not None:
        row.stage = "imaged"
