"""The imaging stage for one group, by key: image the calibrated MS, judge the images, record them.

A thin layer over :func:`contimg.imaging.image_ms`,
:func:`contimg.imaging.gate.judge_image` and
:func:`record_images`. The products of a group go to
``<images>/<YYYY-MM-DDTHHMMSS>/``; rerunning the stage overwrites them and
updates the same rows (images are keyed by path).

Every image is also searched blindly (:func:`blind_components`: PyBDSF
on the flat-noise image, fluxes PB-corrected) and its components cross-matched
with the catalogue; their median offset is the gate's astrometry check, and
the components of an image that did not fail are stored (``components``,
under the PB-corrected image's row like its photometry; replaced on rerun)
and searched for new sources (:mod:`contimg.pipeline.new_sources`).

The gate's flux-scale check needs the catalogue: the bright catalogue sources
in the field (expected at ``qa.flux_scale_min_snr`` times the noise or more)
are measured on the new image and their median ratio to the catalogue flux at
the image's frequency is judged. An image whose verdict is ``fail`` is kept
and recorded with its verdict for inspection, any photometry it had from an
earlier run is deleted, and the group fails with the reasons
(:class:`ImageQaFailed`): it never feeds normalisation, variability scoring
or candidates, and its components are not stored. ``contimg reprocess --from-stage image --tier <tier>`` redoes it
with another tier (kept on the group as ``imaging_tier``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db import groups, run_transaction
from contimg.db.models import Component, Image, MeasurementSet, Photometry
from contimg.db.science import replace_components
from contimg.errors import InputFileError, PermanentError
from contimg.pipeline.alerts import qa_failed
from contimg.pipeline.calibrate import group_ms
from contimg.pipeline.new_sources import refresh_candidates, search_image
from contimg.verdict import jsonable

if TYPE_CHECKING:
    from contimg.imaging.run import CatalogueCone, ImageProducts

log = logging.getLogger(__name__)

STAGE = "image"


def image_dir(settings: Settings, group_key: str) -> Path:
    """Where the group's images are written (``<images>/<YYYY-MM-DDTHHMMSS>``)."""
    return settings.paths.images / group_key.replace(":", "")


def image(settings: Settings, group_key: str, token: str) -> dict[str, Any]:
    """Start the stage, image the group's calibrated MS, record the images, end the stage.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``imaging``, ``qa``, ``photometry``, the images path).
    group_key
        The group's key (its start timestamp, ``YYYY-MM-DDTHH:MM:SS``); the imaging tier is the group's
        ``imaging_tier``.
    token
        The run token; checked at the start and again before the images are published.

    Returns
    -------
    dict
        ``{"image_ids": [flat-noise id, pb-corrected id], "image": path, "pbcor": path,
        "qa_verdict": "pass" or "warn", "qa_reasons": [...], "rms_jy", "peak_jy" (Jy/beam),
        "beam_arcsec": [major, minor (arcsec), pa (deg)], "imager_s", "seconds"}``.

    Raises
    ------
    StaleRunError
        If ``token`` is not the group's current run.
    InputFileError
        If the group's MS is missing or was not calibrated.
    contimg.errors.ExternalToolError
        If the imager failed.
    ImageQaFailed
        If the QA gate failed the image (the images are recorded with their verdict first).
    """
    from contimg.imaging import image_ms

    groups.stage_started(settings, group_key, token, STAGE)
    ms_id, ms = group_ms(settings, group_key)
    calset = run_transaction(settings, lambda s: s.scalar(
        select(MeasurementSet.calibration_set_id).where(MeasurementSet.id == ms_id)), readonly=True)
    if calset is None:
        raise InputFileError(f"group {group_key}: {ms} has no calibration applied; run the calibrate stage first")
    tier = run_transaction(settings, lambda s: groups.get_group(s, group_key).imaging_tier, readonly=True)
    products = image_ms(ms, settings=settings.imaging, out_dir=image_dir(settings, group_key), tier=tier,
                        before_publish=lambda: groups.check_current(settings, group_key, token),
                        catalogue=catalogue_cone(settings))
    verdict, ids = judge_and_record(settings, products, ms_id=ms_id)
    if verdict.failed:
        raise ImageQaFailed(f"group {group_key}: image {products.image} failed QA: {'; '.join(verdict.reasons)}")
    if verdict.status != "pass":
        log.warning("group %s: image QA %s", group_key, verdict.summary())
    seconds = groups.stage_finished(settings, group_key, token, STAGE)
    qa = products.qa
    log.info("group %s: imaged in %.1f s: rms %.3g Jy/beam, beam %.1fx%.1f arcsec", group_key, seconds,
             qa.rms_jy, qa.beam_major_arcsec, qa.beam_minor_arcsec)
    return {"image_ids": ids, "image": products.image, "pbcor": products.pbcor, "qa_verdict": verdict.status,
            "qa_reasons": verdict.reasons, "rms_jy": qa.rms_jy,
            "peak_jy": qa.peak_jy, "beam_arcsec": [qa.beam_major_arcsec, qa.beam_minor_arcsec, qa.beam_pa_deg],
            "imager_s": products.imager_s, "seconds": seconds}


def record_images(session: Session, products: ImageProducts, *, ms: MeasurementSet | int | None = None) -> list[Image]:
    """Create or update the Image rows of ``products`` (keyed by path) in ``session``; the caller commits.

    Parameters
    ----------
    session
        An open session.
    products
        From :func:`contimg.imaging.image_ms`.
    ms
        The MeasurementSet row (or its id) the images were made from; None leaves existing links as they are.

    Returns
    -------
    list[Image]
        The flushed rows: the flat-noise image (``pb_corrected=False``), then the primary-beam corrected one.
    """
    from contimg.db.products import upsert_image
    from contimg.imaging.records import image_records

    return [upsert_image(session, ms=ms, **rec) for rec in image_records(products)]


def judge_and_record(settings: Settings, products: Any, *, ms_id: int | None) -> tuple[Any, list[int]]:
    """Judge an imaging run (:func:`judge_products`) and record its images with the verdict.

    A failed image keeps its rows (for inspection) but loses any photometry and components an earlier run of
    the same image had, and is notified (``qa_failed``, :mod:`contimg.pipeline.alerts`); a passed or warned one
    marks its MS ``imaged``. The blind source finder (:func:`blind_components`) runs on every image whose
    deconvolution did not diverge and whose noise is finite (a diverged image is all spurious islands): its
    astrometry is judged, so that an image whose forced fluxes are low because its positions are off says so,
    and the components of an image that did not fail are stored. Returns the verdict and the Image ids
    (flat-noise, PB-corrected). Used by the image stage and by ``contimg image``.

    Parameters
    ----------
    settings
        The pipeline settings (database, ``qa`` thresholds, ``photometry.min_beam_response``).
    products
        The imaging run's products (:func:`contimg.imaging.image_ms`): image paths, QA, beam, MS path.
    ms_id
        Database id of the imaged MS (None: an MS not in the database; the images are recorded without one).

    Returns
    -------
    tuple
        ``(verdict, ids)``: the :class:`contimg.imaging.gate.Verdict` and the recorded Image ids.
    """
    from contimg.db import session_scope

    from contimg.imaging.gate import judge_astrometry

    verdict = judge_products(settings, products)
    blind = None
    if settings.photometry.find_sources and _searchable(products):
        blind = blind_components(settings, products)
        judge_astrometry(verdict, blind.summary, qa=settings.qa,
                         beam_arcsec=(products.qa.beam_major_arcsec, products.qa.beam_minor_arcsec))
    with session_scope(settings) as session:
        rows = record_images(session, products, ms=ms_id)
        for row in rows:
            row.qa_verdict, row.qa = verdict.status, jsonable(verdict.to_dict())
        ids = [row.id for row in rows]
        if verdict.failed:
            result = session.execute(delete(Photometry).where(Photometry.image_id.in_(ids)))
            dropped = result.rowcount  # type: ignore[attr-defined]  # CursorResult at runtime
            if dropped:
                log.warning("%s: %d photometry row(s) of the earlier images deleted", products.image, dropped)
            session.execute(delete(Component).where(Component.image_id.in_(ids)))
        else:
            if blind is not None and blind.rows is not None:
                replace_components(session, ids[-1], blind.rows)
            if ms_id is not None:
                _mark_imaged(session, ms_id)
        # new-source candidates whose detections went with the components they were
        refresh_candidates(session)
    if verdict.failed:
        qa_failed(settings, product="image", name=str(products.image), reasons=verdict.reasons,
                  data={"image_ids": ids, "ms": str(products.ms_path),
                        "figures": jsonable(verdict.figures)})
    elif blind is not None and blind.rows is not None and settings.new_sources.enabled:
        try:
            search_image(settings, ids[-1])
        except (InputFileError, OSError, ValueError) as exc:  # the image stands; its search can be re-run
            log.warning("%s: new-source search failed (contimg candidates --kind new --search re-runs it): %s",
                        products.image, exc)
    return verdict, ids


@dataclass
class BlindComponents:
    """What :func:`blind_components` found: the rows to store and the cross-match figures for the gate."""

    rows: list[dict[str, Any]] | None
    """One dict per component (``components`` columns, with ``source_id`` and ``separation_arcsec``);
    None when the finder failed."""
    summary: dict[str, Any]
    """:meth:`contimg.photometry.crossmatch.Crossmatch.summary` plus ``n_components`` and ``seconds``,
    or ``{"error": ...}``."""


def blind_components(settings: Settings, products: Any) -> BlindComponents:
    """Run the blind source finder on a product set's flat-noise image and cross-match it with the catalogue.

    The components (:func:`contimg.photometry.finder.find_components`, fluxes corrected by the product
    set's ``pb`` image) are matched to the catalogue in the field
    (:func:`contimg.photometry.crossmatch.crossmatch`); the summary feeds the image gate's astrometry check.
    A finder failure (:class:`contimg.errors.SourceFindingError`) is logged and reported in the summary
    (the gate warns); it does not fail the image.

    Parameters
    ----------
    settings
        The pipeline settings (database catalogue; ``photometry`` finder settings; ``qa.flux_scale_min_snr``
        for the clean matches).
    products
        The imaging run's products: flat-noise image, beam image, restoring beam, reference frequency.

    Returns
    -------
    BlindComponents
    """
    import time

    import numpy as np

    from contimg.db import session_scope
    from contimg.errors import SourceFindingError
    from contimg.photometry.crossmatch import crossmatch
    from contimg.photometry.finder import find_components
    from contimg.pipeline.photometry import catalogue_in_field

    t0 = time.perf_counter()
    ph = settings.photometry
    pb = Path(products.pb) if products.pb and Path(products.pb).exists() else None
    try:
        comps = find_components(products.image, pb=pb, seed_clip=ph.finder_seed_clip,
                                flood_clip=ph.finder_flood_clip, min_beam_response=settings.imaging.pb_limit,
                                rms_box_beams=ph.finder_rms_box_beams)
    except SourceFindingError as exc:
        log.warning("%s", exc)
        return BlindComponents(rows=None, summary={"error": str(exc)})
    with session_scope(settings, readonly=True) as session:
        cat = catalogue_in_field(session, Path(products.image))
    qa = products.qa
    freq = products.ref_freq_hz if np.isfinite(products.ref_freq_hz) else 1.4e9
    match = crossmatch(comps.columns, cat, beam_major_arcsec=qa.beam_major_arcsec, freq_hz=freq,
                       radius_beams=ph.crossmatch_radius_beams, min_snr=settings.qa.flux_scale_min_snr)
    rows = comps.rows()
    for row, k, sep in zip(rows, match.index, match.separation_arcsec):
        row["source_id"] = int(cat["id"][k]) if k >= 0 else None
        row["separation_arcsec"] = float(sep) if k >= 0 else None
    seconds = time.perf_counter() - t0
    summary = match.summary() | {"n_components": len(rows), "seconds": seconds}
    log.info("%s: %d components, %d matched, %d clean; offset RA %s Dec %s arcsec; %.1f s", products.image,
             len(rows), match.n_matches, match.n_clean, match.ra_offset_arcsec, match.dec_offset_arcsec, seconds)
    return BlindComponents(rows=rows, summary=summary)


class ImageQaFailed(PermanentError):
    """The image QA gate failed an image: the group fails with the gate's reasons (the products are kept)."""


def catalogue_cone(settings: Settings) -> "CatalogueCone":
    """The database catalogue as :func:`contimg.imaging.image_ms` asks for it: sources with a flux in a cone."""

    def lookup(ra_deg: float, dec_deg: float, radius_deg: float) -> dict:
        import numpy as np

        from contimg.db import session_scope
        from contimg.pipeline.photometry import sources_in_cone

        with session_scope(settings, readonly=True) as session:
            cone = sources_in_cone(session, ra_deg, dec_deg, radius_deg)
        keep = np.isfinite(cone["flux_jy"])
        return {k: v[keep] for k, v in cone.items()}

    return lookup


def judge_products(settings: Settings, products: Any, *, astrometry: dict[str, Any] | None = None) -> Any:
    """The QA verdict on one imaging run (:func:`contimg.imaging.gate.judge_image`), with the flux-scale check.

    Parameters
    ----------
    settings
        The pipeline settings (database catalogue, ``qa`` thresholds).
    products
        The imaging run's products (:func:`contimg.imaging.image_ms`).
    astrometry
        :attr:`BlindComponents.summary` (None: astrometry not judged).

    Returns
    -------
    contimg.imaging.gate.Verdict
    """
    from contimg.imaging.gate import judge_image

    qa = products.qa
    # the noise the image really has: near a bright source its residuals exceed the thermal noise, and a
    # source that is "bright" only against the thermal noise is too faint there to judge the flux scale
    noise = max(products.predicted_rms_jy or 0.0, qa.rms_jy)
    ratio, n, brightest = flux_scale(settings, products, noise_jy=noise)
    return judge_image(rms_jy=qa.rms_jy, peak_jy=qa.peak_jy, negative_jy=products.negative_jy,
                       dynamic_range=qa.dynamic_range, predicted_rms_jy=products.predicted_rms_jy,
                       expected_peak_jy=brightest, deconvolution=products.deconvolution,
                       beam_arcsec=(qa.beam_major_arcsec, qa.beam_minor_arcsec), flux_ratio=ratio,
                       flux_sources=n, qa=settings.qa, astrometry=astrometry)


def flux_scale(settings: Settings, products: Any, *, noise_jy: float) -> tuple[float | None, int, float | None]:
    """(median measured/catalogue flux of the bright sources, how many, brightest apparent catalogue flux).

    Bright sources are expected at ``qa.flux_scale_min_snr`` times ``noise_jy`` (the image's own noise) or more.

    Catalogue fluxes are taken to the image's frequency with each source's
    spectral index (:data:`DEFAULT_SPECTRAL_INDEX` when unknown). Sources
    that are resolved or confused in the catalogue are left out.

    Parameters
    ----------
    settings
        The pipeline settings (database catalogue, ``qa.flux_scale_min_snr``, ``photometry.min_beam_response``).
    products
        The imaging run's products: flat-noise, PB-corrected and beam images, MS, mid MJD and reference
        frequency (1.4 GHz assumed when not finite).
    noise_jy
        The image's noise (Jy/beam) that sets the brightness threshold.

    Returns
    -------
    tuple
        ``(ratio, n, brightest)``: the median ratio of measured (PB-corrected) to catalogue flux, or None when
        no bright source was measured; the number of finite ratios; the largest apparent (beam-attenuated)
        catalogue flux in the field (Jy), or None when the field holds no catalogue source or the beam is
        unknown.
    """
    import numpy as np

    from contimg.db import session_scope
    from contimg.imaging.run import DEFAULT_SPECTRAL_INDEX
    from contimg.photometry.measure import ImageSet, beam_response_at, measure_image
    from contimg.pipeline.photometry import catalogue_in_field

    images = ImageSet(image_id=0, path=products.pbcor, epoch_mjd=products.mid_mjd, flat=Path(products.image),
                      pbcor=Path(products.pbcor), pb=Path(products.pb), ms_path=Path(products.ms_path))
    with session_scope(settings, readonly=True) as session:
        cat = catalogue_in_field(session, Path(products.image))
    if cat["id"].size == 0:
        return None, 0, None
    freq = products.ref_freq_hz if np.isfinite(products.ref_freq_hz) else 1.4e9
    alpha = np.where(np.isfinite(cat["spectral_index"]), cat["spectral_index"], DEFAULT_SPECTRAL_INDEX)
    flux = cat["flux_jy"] * (freq / 1.4e9) ** alpha
    response = beam_response_at(cat["ra_deg"], cat["dec_deg"], images=images)
    if response is None:
        return None, 0, None
    apparent = np.nan_to_num(flux * response)
    brightest = float(apparent.max()) if apparent.size else None
    bright = np.flatnonzero((apparent >= settings.qa.flux_scale_min_snr * noise_jy) & cat["stable"]
                            & (response >= settings.photometry.min_beam_response))
    if bright.size == 0:
        return None, 0, brightest
    idx, res, _ = measure_image(images, cat["ra_deg"][bright], cat["dec_deg"][bright],
                                min_beam_response=settings.photometry.min_beam_response)
    ratios = res.flux_jy / flux[bright][idx]
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return None, 0, brightest
    return float(np.median(ratios)), int(ratios.size), brightest


def _searchable(products: Any) -> bool:
    """Worth a blind search: a deconvolution that did not diverge and a finite noise."""
    import math

    qa = products.qa
    diverged = bool((products.deconvolution or {}).get("diverged"))
    return not diverged and math.isfinite(qa.rms_jy) and qa.rms_jy > 0


def _mark_imaged(session: Session, ms_id: int) -> None:
    row = session.get(MeasurementSet, ms_id)
    if row is not None:
        row.stage = "imaged"
