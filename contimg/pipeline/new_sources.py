"""The new-source search of one recorded image, with the database: :func:`search_image`.

The science is :mod:`contimg.photometry.newsource`; this module reads what it
needs and stores what it finds:

1. the image's stored components (``components``, under its PB-corrected row)
   and the catalogue around it; :func:`~contimg.photometry.newsource.select_components`
   keeps the unmatched, compact, unconfused ones at ``new_sources.min_snr`` or more;
2. a kept component within ``association_beams`` of a known candidate (of any
   status: a candidate the operator rejected stays rejected) is another
   detection of it;
3. the others are measured (forced photometry on a cut-out, :func:`measure_positions`)
   in the earlier images that cover them: product sets that did not fail QA,
   whose mid-time is more than ``same_pass_hours`` earlier (another pass over
   the same sky), the ``max_prior_epochs`` most recent; those that stand
   ``detection_sigma`` above the most constraining earlier epoch, where no
   earlier epoch measured ``seen_sigma`` or more
   (:func:`~contimg.photometry.newsource.newness`), become candidates
   (``new_sources``, ``new_source_detections``);
4. a cut-out strip (the earlier epochs that constrain it most, then its
   detections) is drawn for each candidate created or detected again, under
   ``<images>/new_sources/``, and new candidates are notified (``new_source``).

The image stage runs it on every image it records that did not fail
(:func:`contimg.pipeline.image.judge_and_record`); ``contimg candidates --kind
new --search`` runs it over the recorded images in time order (after
reprocessing, or when images arrived out of order). It is idempotent: a
component already recorded as a detection is skipped. Two images of one pass
searched at once by two workers could each create the candidate;
:func:`merge_duplicates` keeps the older and moves the detections to it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contimg.config import Settings
from contimg.db.models import Component, Image, NewSource, NewSourceDetection
from contimg.photometry.measure import ImageSet, field_cone, read_header
from contimg.photometry.newsource import NewSourceCriteria, newness, select_components, source_name

__all__ = ["NewSourceSearch", "measure_positions", "merge_duplicates", "refresh_candidates", "search_image",
           "search_images"]

log = logging.getLogger(__name__)

CUTOUT_PRIORS = 3
"""Earlier epochs drawn in a candidate's cut-out strip (the most constraining, then the most recent)."""
CUTOUT_DETECTIONS = 5
"""Detections drawn (the most recent)."""


@dataclass
class NewSourceSearch:
    """What one image's search found."""

    image_id: int
    considered: int = 0
    """Components kept by the selection."""
    unprobed: int = 0
    """... of which no earlier epoch covered the position."""
    not_new: int = 0
    """... measured earlier but not above the threshold."""
    created: list[int] = field(default_factory=list)
    """Candidates created."""
    detected_again: list[int] = field(default_factory=list)
    """Known candidates detected again."""
    n_prior_images: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "considered": self.considered, "unprobed": self.unprobed,
                "not_new": self.not_new, "created": list(self.created), "detected_again": list(self.detected_again),
                "n_prior_images": self.n_prior_images, "seconds": round(self.seconds, 3)}


def criteria(settings: Settings) -> NewSourceCriteria:
    ns = settings.new_sources
    return NewSourceCriteria(min_snr=ns.min_snr, detection_sigma=ns.detection_sigma, seen_sigma=ns.seen_sigma,
                             max_size_ratio=ns.max_size_ratio, confusion_beams=ns.confusion_beams)


def search_image(settings: Settings, image_id: int, *, cutouts: bool = True, notify: bool = True) -> NewSourceSearch:
    """Search one recorded image's components for new sources and store the candidates (module docstring).

    Parameters
    ----------
    settings
        The pipeline settings (database, ``new_sources``, ``photometry.min_beam_response``, the images path).
    image_id
        The Image row holding the components (either row of a product set: the PB-corrected one is used).
    cutouts
        Draw the cut-out strips of the candidates created or detected again.
    notify
        Send a ``new_source`` notification for the candidates created.

    Returns
    -------
    NewSourceSearch
    """
    from contimg.db import session_scope
    from contimg.pipeline.photometry import resolve_image

    t0 = time.perf_counter()
    ns = settings.new_sources
    out = NewSourceSearch(image_id=image_id)
    with session_scope(settings) as session:
        target = resolve_image(session, image_id)
        row = session.get(Image, target.image_id)
        assert row is not None  # noqa: S101 - resolve_image found it
        out.image_id = row.id
        comps = session.scalars(select(Component).where(Component.image_id == row.id).order_by(Component.id)).all()
        if not comps or row.beam_major_arcsec is None or row.mid_mjd is None or target.flat is None:
            out.seconds = time.perf_counter() - t0
            return out
        already = set(session.scalars(select(NewSourceDetection.component_id)
                                      .where(NewSourceDetection.image_id == row.id)))
        header = read_header(target.flat)
        picked = _select(session, target, comps, beam_major=row.beam_major_arcsec, freq_hz=_freq_hz(header),
                         crit=criteria(settings))
        picked = [c for c in picked if c.id not in already]
        out.considered = len(picked)
        if not picked:
            out.seconds = time.perf_counter() - t0
            return out
        radius_deg = ns.association_beams * row.beam_major_arcsec / 3600.0
        fresh: list[Component] = []
        touched: set[int] = set()
        for comp in picked:
            known = _nearest_candidate(session, comp.ra_deg, comp.dec_deg, radius_deg)
            if known is None:
                fresh.append(comp)
                continue
            session.add(_detection(known.id, comp, row, significance=None))
            touched.add(known.id)
            out.detected_again.append(known.id)
        created: list[NewSource] = []
        if fresh:
            priors = _prior_images(session, row, settings, fresh, radius_deg=field_cone(header)[2])
            out.n_prior_images = len(priors)
            ra = np.array([c.ra_deg for c in fresh])
            dec = np.array([c.dec_deg for c in fresh])
            flux = np.full((len(priors), len(fresh)), np.nan)
            err = np.full_like(flux, np.nan)
            for i, prior in enumerate(priors):
                flux[i], err[i] = measure_positions(prior, ra, dec,
                                                    min_beam_response=settings.photometry.min_beam_response)
            for k, comp in enumerate(fresh):
                nw = newness(comp.peak_flux_jy, flux[:, k], err[:, k], threshold=ns.detection_sigma)
                if nw.n_prior == 0:
                    out.unprobed += 1
                    continue
                if not nw.is_new(ns.detection_sigma, ns.seen_sigma):
                    out.not_new += 1
                    continue
                cand = NewSource(name=_unique_name(session, comp.ra_deg, comp.dec_deg), ra_deg=comp.ra_deg,
                                 dec_deg=comp.dec_deg, first_detected_mjd=row.mid_mjd, last_detected_mjd=row.mid_mjd,
                                 n_detections=0, peak_flux_jy=comp.peak_flux_jy, snr=_snr(comp),
                                 significance=nw.significance, n_prior_epochs=nw.n_prior,
                                 prior_limit_jy=nw.limit_jy, first_image_id=row.id)
                session.add(cand)
                session.flush()
                session.add(_detection(cand.id, comp, row, significance=nw.significance))
                best = priors[nw.best]
                covered = [p.image_id for i, p in enumerate(priors) if np.isfinite(err[i, k]) and p is not best]
                cand.prior_image_ids = [best.image_id, *covered][:CUTOUT_PRIORS]
                created.append(cand)
                touched.add(cand.id)
                log.info("%s: new-source candidate %s: %.3g Jy at SNR %.1f, %.1f sigma above %d earlier epoch(s) "
                         "(deepest limit %.3g Jy)", row.path, cand.name, comp.peak_flux_jy, _snr(comp),
                         nw.significance, nw.n_prior, nw.limit_jy)
        session.flush()
        refresh_candidates(session, touched)
        out.created = [c.id for c in created]
        new_rows = [{"id": c.id, "name": c.name, "ra_deg": c.ra_deg, "dec_deg": c.dec_deg,
                     "peak_flux_jy": c.peak_flux_jy, "snr": c.snr, "significance": c.significance,
                     "n_prior_epochs": c.n_prior_epochs} for c in created]
        image_path = row.path
    if out.created:
        with session_scope(settings) as session:
            merged = merge_duplicates(session, out.created, radius_deg)
        out.created = [c for c in out.created if c not in merged]
        new_rows = [r for r in new_rows if r["id"] not in merged]
    if cutouts and touched:
        draw_cutouts(settings, sorted(touched))
    if notify and new_rows:
        from contimg.pipeline.alerts import new_sources_found

        new_sources_found(settings, image_path, new_rows)
    out.seconds = time.perf_counter() - t0
    log.info("%s: new-source search: %d considered, %d created, %d detected again, %d not new, %d unprobed "
             "(%d earlier images) in %.1f s", image_path, out.considered, len(out.created), len(out.detected_again),
             out.not_new, out.unprobed, out.n_prior_images, out.seconds)
    return out


def search_images(settings: Settings, *, start_mjd: float | None = None, end_mjd: float | None = None,
                  progress: Any = None) -> list[NewSourceSearch]:
    """Run :func:`search_image` over the recorded images with components, in time order (``contimg candidates
    --kind new --search``).

    Parameters
    ----------
    settings
        The pipeline settings.
    start_mjd, end_mjd
        Only images with mid-time in ``[start_mjd, end_mjd)`` (None: no bound).
    progress
        Called as ``progress(done, total)`` after each image.

    Returns
    -------
    list[NewSourceSearch]
    """
    from contimg.db import session_scope

    with session_scope(settings, readonly=True) as session:
        q = (select(Image.id).where(Image.id.in_(select(Component.image_id).distinct()),
                                    func.coalesce(Image.qa_verdict, "pass") != "fail")
             .order_by(Image.mid_mjd, Image.id))
        if start_mjd is not None:
            q = q.where(Image.mid_mjd >= start_mjd)
        if end_mjd is not None:
            q = q.where(Image.mid_mjd < end_mjd)
        ids = list(session.scalars(q))
    results = []
    for n, image_id in enumerate(ids, 1):
        results.append(search_image(settings, image_id, notify=False))
        if progress is not None:
            progress(n, len(ids))
    return results


# --------------------------------------------------------------------------- selection and priors
def _snr(comp: Component) -> float:
    if not comp.local_rms_jy or not comp.beam_response:
        return math.nan
    return float(comp.peak_flux_jy * comp.beam_response / comp.local_rms_jy)


def _select(session: Session, target: ImageSet, comps: Any, *, beam_major: float, freq_hz: float,
            crit: NewSourceCriteria) -> list:
    from contimg.pipeline.photometry import catalogue_in_field

    def col(name: str, default: float = np.nan) -> np.ndarray:
        return np.array([default if getattr(c, name) is None else getattr(c, name) for c in comps], float)

    columns = {name: col(name) for name in ("ra_deg", "dec_deg", "peak_flux_jy", "int_flux_jy", "local_rms_jy",
                                            "beam_response", "peak_flux_err_jy", "int_flux_err_jy")}
    columns["flags"] = np.array([c.flags for c in comps], int)
    match = np.array([-1 if c.source_id is None else 0 for c in comps], int)
    assert target.flat is not None  # noqa: S101 - checked by the caller
    catalogue = catalogue_in_field(session, target.flat)
    mask = select_components(columns, match, catalogue, beam_major_arcsec=beam_major, freq_hz=freq_hz, criteria=crit)
    return [c for c, keep in zip(comps, mask) if keep]


def _freq_hz(header: Any) -> float:
    for k in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{k}", "")).upper().startswith("FREQ"):
            return float(header[f"CRVAL{k}"])
    return 1.4e9


def _nearest_candidate(session: Session, ra: float, dec: float, radius_deg: float, *,
                       before_id: int | None = None) -> NewSource | None:
    """The candidate nearest to (ra, dec) within ``radius_deg`` (only those older than ``before_id`` if given)."""
    from contimg.photometry.newsource import _separation_deg

    q = select(NewSource).where(NewSource.dec_deg >= dec - radius_deg, NewSource.dec_deg <= dec + radius_deg)
    if before_id is not None:
        q = q.where(NewSource.id < before_id)
    near = session.scalars(q).all()
    if not near:
        return None
    sep = _separation_deg(ra, dec, np.array([c.ra_deg for c in near]), np.array([c.dec_deg for c in near]))
    k = int(np.argmin(sep))
    return near[k] if sep[k] <= radius_deg else None


def _prior_images(session: Session, row: Image, settings: Settings, comps: list[Component], *,
                  radius_deg: float) -> list[ImageSet]:
    """The earlier product sets that may cover the components: PB-corrected rows of another pass, not failed,
    phase centre within ``radius_deg`` (the image's field radius) of a component, the most recent first."""
    from contimg.photometry.newsource import _separation_deg
    from contimg.pipeline.photometry import resolve_image

    assert row.mid_mjd is not None  # noqa: S101 - checked by the caller
    ns = settings.new_sources
    decs = [c.dec_deg for c in comps]
    rows = session.execute(
        select(Image.id, Image.ra_deg, Image.dec_deg)
        .where(Image.pb_corrected.is_(True), Image.mid_mjd < row.mid_mjd - ns.same_pass_hours / 24.0,
               func.coalesce(Image.qa_verdict, "pass") != "fail",
               Image.dec_deg >= min(decs) - radius_deg, Image.dec_deg <= max(decs) + radius_deg)
        .order_by(Image.mid_mjd.desc(), Image.id.desc())).all()
    chosen: list[ImageSet] = []
    ra = np.array([c.ra_deg for c in comps])
    dec = np.array(decs)
    for image_id, ra0, dec0 in rows:
        if ra0 is None or dec0 is None:
            continue
        if not (_separation_deg(ra0, dec0, ra, dec) <= radius_deg).any():
            continue
        try:
            chosen.append(resolve_image(session, image_id))
        except Exception as exc:  # noqa: BLE001 - a broken earlier row must not stop the search
            log.warning("new-source search: earlier image %d skipped: %s", image_id, exc)
            continue
        if len(chosen) >= ns.max_prior_epochs:
            break
    return chosen


def measure_positions(images: ImageSet, ra_deg: np.ndarray, dec_deg: np.ndarray, *,
                      min_beam_response: float) -> tuple[np.ndarray, np.ndarray]:
    """Forced photometry of a few positions in one product set, reading only cut-outs around them.

    Each position is measured (:func:`contimg.photometry.forced.forced_photometry`) on a cut-out of the
    flat-noise image large enough for the fit and the local-noise annulus, read through a memory map, and
    divided by the primary beam there (read off the set's ``pb`` image). A position off the image, without a
    flat-noise image and beam, or where the beam is below ``min_beam_response``, gives NaN.

    Parameters
    ----------
    images
        The product set (its ``flat`` and ``pb`` files).
    ra_deg, dec_deg
        Positions (deg).
    min_beam_response
        Positions where the beam is below this are not measured.

    Returns
    -------
    tuple
        ``(flux_jy, flux_err_jy)`` arrays (PB-corrected).
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.photometry.forced import BeamShape, forced_photometry

    ra = np.atleast_1d(np.asarray(ra_deg, float))
    dec = np.atleast_1d(np.asarray(dec_deg, float))
    flux = np.full(ra.size, np.nan)
    err = np.full(ra.size, np.nan)
    if images.flat is None or images.pb is None or ra.size == 0:
        return flux, err
    with fits.open(images.flat, memmap=True) as hf, fits.open(images.pb, memmap=True) as hp:
        header = hf[0].header
        data = hf[0].data
        beam_data = hp[0].data
        while data.ndim > 2:
            data = data[0]
        while beam_data.ndim > 2:
            beam_data = beam_data[0]
        try:
            beam = BeamShape.from_header(header)
        except ValueError:
            return flux, err
        wcs = WCS(header).celestial
        ny, nx = data.shape
        half = int(math.ceil(8.0 * beam.major_pix)) + 2  # the fit (1 beam) and the noise annulus (6 beams)
        x, y = wcs.world_to_pixel_values(ra, dec)
        for k in range(ra.size):
            if not (np.isfinite(x[k]) and np.isfinite(y[k])):
                continue
            xi, yi = int(round(float(x[k]))), int(round(float(y[k])))
            if not (0 <= xi < nx and 0 <= yi < ny):
                continue
            response = float(beam_data[yi, xi])
            if not (np.isfinite(response) and response >= min_beam_response):
                continue
            x0, x1 = max(0, xi - half), min(nx, xi + half + 1)
            y0, y1 = max(0, yi - half), min(ny, yi + half + 1)
            patch = np.array(data[y0:y1, x0:x1], dtype=np.float64)
            sub = header.copy()
            sub["CRPIX1"] = float(header["CRPIX1"]) - x0
            sub["CRPIX2"] = float(header["CRPIX2"]) - y0
            sub["NAXIS1"], sub["NAXIS2"] = patch.shape[1], patch.shape[0]
            res = forced_photometry(patch, sub, ra[k:k + 1], dec[k:k + 1], beam_response=np.array([response]))
            flux[k], err[k] = float(res.flux_jy[0]), float(res.flux_err_jy[0])
    return flux, err


# --------------------------------------------------------------------------- candidates
def _detection(new_source_id: int, comp: Component, row: Image, *, significance: float | None) -> NewSourceDetection:
    return NewSourceDetection(new_source_id=new_source_id, component_id=comp.id, image_id=row.id,
                              epoch_mjd=float(row.mid_mjd or math.nan), ra_deg=comp.ra_deg, dec_deg=comp.dec_deg,
                              flux_jy=comp.peak_flux_jy, flux_err_jy=comp.peak_flux_err_jy, snr=_snr(comp),
                              significance=significance)


def _unique_name(session: Session, ra: float, dec: float) -> str:
    base = source_name(ra, dec)
    name, n = base, 1
    while session.scalar(select(NewSource.id).where(NewSource.name == name)) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def refresh_candidates(session: Session, ids: set[int] | list[int] | None = None) -> int:
    """Recompute candidates' summaries from their detections; delete unreviewed (``new``) ones left without any.

    A detection goes when its component does (an image re-made replaces its components; a failed one drops
    them): the candidates of ``ids`` (None: every candidate whose ``n_detections`` disagrees with its
    detections) are brought up to date: position (SNR²-weighted mean), first and last detection, peak flux,
    best SNR and detection count. The significance and the earlier epochs stay those of the creation.

    Returns
    -------
    int
        Candidates deleted.
    """
    if ids is None:
        counts = (select(NewSourceDetection.new_source_id, func.count().label("n"))
                  .group_by(NewSourceDetection.new_source_id).subquery())
        ids = set(session.scalars(
            select(NewSource.id).outerjoin(counts, counts.c.new_source_id == NewSource.id)
            .where(func.coalesce(counts.c.n, 0) != NewSource.n_detections)))
    deleted = 0
    for cid in sorted(ids):
        cand = session.get(NewSource, cid)
        if cand is None:
            continue
        session.refresh(cand, ["detections"])
        dets = list(cand.detections)
        if not dets:
            if cand.status.value == "new":
                session.delete(cand)
                deleted += 1
            else:
                cand.n_detections = 0
            continue
        w = np.array([max(d.snr, 1.0) ** 2 if math.isfinite(d.snr) else 1.0 for d in dets])
        cand.ra_deg, cand.dec_deg = _mean_position(np.array([d.ra_deg for d in dets]),
                                                   np.array([d.dec_deg for d in dets]), w)
        cand.first_detected_mjd = min(d.epoch_mjd for d in dets)
        cand.last_detected_mjd = max(d.epoch_mjd for d in dets)
        cand.n_detections = len(dets)
        cand.peak_flux_jy = max(d.flux_jy for d in dets)
        cand.snr = max((d.snr for d in dets if math.isfinite(d.snr)), default=cand.snr)
    session.flush()
    return deleted


def _mean_position(ra: np.ndarray, dec: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    r, d = np.radians(ra), np.radians(dec)
    v = np.array([np.sum(w * np.cos(d) * np.cos(r)), np.sum(w * np.cos(d) * np.sin(r)), np.sum(w * np.sin(d))])
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1]))))


def merge_duplicates(session: Session, ids: list[int], radius_deg: float) -> set[int]:
    """Merge each of ``ids`` into an older candidate within ``radius_deg``, if there is one.

    Parameters
    ----------
    session
        An open session (flushed).
    ids
        Candidates just created.
    radius_deg
        The association radius.

    Returns
    -------
    set[int]
        The ids merged into an older candidate (and deleted).
    """
    merged: set[int] = set()
    for cid in ids:
        cand = session.get(NewSource, cid)
        if cand is None:
            continue
        older = _nearest_candidate(session, cand.ra_deg, cand.dec_deg, radius_deg, before_id=cand.id)
        if older is None:
            continue
        for det in list(cand.detections):
            det.new_source_id = older.id
        session.flush()
        session.expire(cand, ["detections"])
        session.delete(cand)
        session.flush()
        refresh_candidates(session, {older.id})
        merged.add(cid)
        log.info("new-source candidate %s merged into %s (found by two images of one pass at once)",
                 cand.name, older.name)
    return merged


def draw_cutouts(settings: Settings, ids: list[int]) -> None:
    """Draw (replace) the cut-out strips of candidates: up to :data:`CUTOUT_PRIORS` earlier epochs, then the last
    :data:`CUTOUT_DETECTIONS` detections, PB-corrected images on one colour scale; a drawing that fails is logged.

    The earlier epochs are those recorded when the candidate was created (``prior_image_ids``: the most
    constraining one, then the most recent others that covered it)."""
    from contimg.db import session_scope
    from contimg.plots.sky import write_cutout_strip_png

    out_dir = settings.paths.images / "new_sources"
    for cid in ids:
        with session_scope(settings, readonly=True) as session:
            cand = session.get(NewSource, cid)
            if cand is None:
                continue
            epochs: list[tuple[str, str]] = []
            for det in cand.detections[-CUTOUT_DETECTIONS:]:
                img = session.get(Image, det.image_id)
                if img is not None:
                    epochs.append((img.path, f"{_date(det.epoch_mjd)} SNR {det.snr:.1f}"))
            priors = []
            for image_id in (cand.prior_image_ids or [])[:CUTOUT_PRIORS]:
                img = session.get(Image, image_id)
                if img is not None and img.mid_mjd is not None:
                    priors.append((img.mid_mjd, img.path, f"{_date(img.mid_mjd)} before"))
            name, ra, dec = cand.name, cand.ra_deg, cand.dec_deg
        panels = [(path, label) for _, path, label in sorted(priors)] + epochs
        if not panels:
            continue
        png = out_dir / f"{cid:07d}.png"
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            write_cutout_strip_png(panels, ra, dec, png, title=f"{name} (new-source candidate {cid})", per_row=8)
        except (OSError, ValueError) as exc:
            log.warning("new-source candidate %s: cut-outs not drawn: %s", name, exc)
            continue
        with session_scope(settings) as session:
            cand = session.get(NewSource, cid)
            if cand is not None:
                cand.cutouts = str(png)


def _date(mjd: float) -> str:
    from astropy.time import Time

    return str(Time(mjd, format="mjd").utc.strftime("%Y-%m-%d %H:%M"))
