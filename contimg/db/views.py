"""Read-only views of the products database for people: the JSON of ``contimg web`` and its pages.

Every function takes an open session, runs a bounded number of queries
(paged lists: one count and one page; a light curve: one query) and returns
JSON-ready dicts (ISO times, plain numbers, ``None`` for NULL). The web layer
(:mod:`contimg.web`) is a thin shell over these; ``contimg status`` shares
:func:`contimg.cluster.status.group_summary` for a group's row.

Paging: ``limit`` rows from ``offset`` in a stable order; each list returns
``{"total", "limit", "offset", "items"}``.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, selectinload

from contimg.db.models import (
    OPEN_CANDIDATE_STATUSES,
    CalibrationSet,
    CandidateStatus,
    EseCandidate,
    GroupState,
    Image,
    MeasurementSet,
    NewSource,
    ObservationGroup,
    Photometry,
    Source,
    VariabilityStats,
)
from contimg.errors import ValidationError

__all__ = ["QA_VERDICTS", "calibration_sets_page", "candidates_page", "new_sources_page", "group_detail", "groups_page", "image_detail",
           "images_page", "light_curve", "night_summary", "source_detail", "sources_page"]

QA_VERDICTS = ("pass", "warn", "fail")
SOURCE_ORDERS: dict[str, tuple[Any, bool]] = {
    "significance": (VariabilityStats.ese_significance, True),
    "chi2": (VariabilityStats.chi2_nu, True),
    "modulation": (VariabilityStats.modulation_index, True),
    "flux": (Source.flux_jy, True),
    "name": (Source.name, False),
}
"""How ``sources_page`` may order: column, descending (NULLs last, then by id)."""


def _utc(value: datetime | None) -> datetime | None:
    """A bound for the database: timezone-aware UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _num(value: Any) -> float | None:
    """A float for JSON: None for NULL and for non-finite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _enum(value: Any) -> Any:
    return getattr(value, "value", value)


def _page(session: Session, stmt: Select, *, limit: int, offset: int, rows: bool = False) -> tuple[int, list[Any]]:
    """(total, the page): entities, or whole rows with ``rows``."""
    if limit < 1 or offset < 0:
        raise ValidationError(f"limit must be at least 1 and offset at least 0 (got {limit}, {offset})")
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page = stmt.limit(limit).offset(offset)
    return int(total), list(session.execute(page).all() if rows else session.scalars(page))


def _check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValidationError(f"unknown {name} {value!r}; known: {', '.join(choices)}")


# ---------------------------------------------------------------------------- groups
def _image_row(i: Image) -> dict[str, Any]:
    qa = i.qa or {}
    return {
        "id": i.id, "path": i.path, "pb_corrected": bool(i.pb_corrected), "epoch_mjd": _num(i.mid_mjd),
        "ra_deg": _num(i.ra_deg), "dec_deg": _num(i.dec_deg), "rms_jy": _num(i.rms_jy), "peak_jy": _num(i.peak_jy),
        "dynamic_range": _num(i.dynamic_range),
        "beam_arcsec": [_num(i.beam_major_arcsec), _num(i.beam_minor_arcsec), _num(i.beam_pa_deg)],
        "tier": i.tier, "backend": i.backend, "qa_verdict": i.qa_verdict, "qa_reasons": list(qa.get("reasons", [])),
        "files": dict(i.files or {}), "ms_id": i.ms_id, "created": _iso(i.created_at),
    }


def _group_row(g: ObservationGroup) -> dict[str, Any]:
    from contimg.cluster.status import group_summary

    row = group_summary(g)
    images = [i for m in g.measurement_sets for i in m.images]
    flat = [i for i in images if not i.pb_corrected] or images
    row["timestamp"] = _iso(g.timestamp)
    row["rms_jy"] = _num(min((i.rms_jy for i in flat if i.rms_jy is not None), default=None))
    row["image_ids"] = [i.id for i in images]
    row["calibrator"] = g.calibrator_name
    return row


def groups_page(session: Session, *, state: str | None = None, qa: str | None = None,
                start: datetime | None = None, end: datetime | None = None, limit: int = 100,
                offset: int = 0, newest_first: bool = True) -> dict[str, Any]:
    """Groups with their state, stage timings of the latest attempt, QA verdict and image rms.

    Parameters
    ----------
    session
        An open session.
    state
        Only groups in this state (``collecting``, ``pending``, ``in_progress``, ``completed``, ``failed`` ...).
    qa
        Only groups with an image of this verdict (``pass``, ``warn``, ``fail``).
    start, end
        Only groups whose timestamp is in ``[start, end)`` (UTC, naive).
    limit, offset
        The page.
    newest_first
        Order by timestamp, newest first (default) or oldest first.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``, each item the group's summary
        (:func:`contimg.cluster.status.group_summary`) with ``timestamp``, ``rms_jy`` (its flat-noise image),
        ``image_ids`` and ``calibrator``.

    Raises
    ------
    ValidationError
        For an unknown state or verdict, or a bad page.
    """
    _check_choice("state", state, [s.value for s in GroupState])
    _check_choice("QA verdict", qa, QA_VERDICTS)
    start, end = _utc(start), _utc(end)
    stmt = select(ObservationGroup)
    if state is not None:
        stmt = stmt.where(ObservationGroup.state == GroupState(state))
    if start is not None:
        stmt = stmt.where(ObservationGroup.timestamp >= start)
    if end is not None:
        stmt = stmt.where(ObservationGroup.timestamp < end)
    if qa is not None:
        with_verdict = (select(MeasurementSet.group_id).join(Image, Image.ms_id == MeasurementSet.id)
                        .where(Image.qa_verdict == qa))
        stmt = stmt.where(ObservationGroup.id.in_(with_verdict))
    order = ObservationGroup.timestamp.desc() if newest_first else ObservationGroup.timestamp.asc()
    stmt = stmt.order_by(order, ObservationGroup.id).options(
        selectinload(ObservationGroup.stage_timings),
        selectinload(ObservationGroup.measurement_sets).selectinload(MeasurementSet.images))
    total, groups = _page(session, stmt, limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": [_group_row(g) for g in groups]}


def _calset_row(c: CalibrationSet) -> dict[str, Any]:
    qa = c.qa or {}
    return {
        "id": c.id, "name": c.name, "calibrator": c.calibrator_name, "solve_mjd": _num(c.solve_mjd),
        "active": bool(c.active), "created": _iso(c.created_at), "qa_verdict": c.qa_verdict,
        "qa_reasons": list(qa.get("reasons", [])),
        "tables": [{"type": _enum(t.table_type), "path": t.path, "plot": t.path + ".png",
                    "valid_start_mjd": _num(t.valid_start_mjd), "valid_end_mjd": _num(t.valid_end_mjd),
                    "flagged_fraction": _num(t.flagged_fraction), "n_solutions": t.n_solutions,
                    "n_expected": t.n_expected, "active": bool(t.active)}
                   for t in sorted(c.tables, key=lambda t: t.apply_order)],
    }


def group_detail(session: Session, group_key: str) -> dict[str, Any] | None:
    """One group with everything it made: subband files, every attempt's timings, MSs, calibration, images.

    Parameters
    ----------
    session
        An open session.
    group_key
        The group's key (``YYYY-MM-DDTHH:MM:SS``).

    Returns
    -------
    dict or None
        The group's summary (as in :func:`groups_page`) with ``files`` (subband, path), ``attempts`` (every stage
        timing), ``measurement_sets`` (path, stage, validation, calibration set with its tables and plots) and
        ``images`` (with QA); None when there is no such group.
    """
    g = session.scalars(
        select(ObservationGroup).where(ObservationGroup.group_key == group_key).options(
            selectinload(ObservationGroup.stage_timings), selectinload(ObservationGroup.subband_files),
            selectinload(ObservationGroup.measurement_sets).selectinload(MeasurementSet.images),
            selectinload(ObservationGroup.measurement_sets).selectinload(MeasurementSet.calibration_set)
            .selectinload(CalibrationSet.tables))).first()
    if g is None:
        return None
    row = _group_row(g)
    row["files"] = [{"subband": f.subband, "path": f.path} for f in g.subband_files]
    row["attempts"] = [{"attempt": t.attempt, "stage": t.stage, "status": t.status, "seconds": _num(t.seconds),
                        "wait_seconds": _num(t.wait_seconds), "queued": _iso(t.queued_at),
                        "started": _iso(t.started_at), "finished": _iso(t.finished_at), "host": t.hostname}
                       for t in g.stage_timings]
    row["measurement_sets"] = [
        {"id": m.id, "path": m.path, "stage": m.stage, "start_mjd": _num(m.start_mjd), "end_mjd": _num(m.end_mjd),
         "calibrator": m.calibrator_name, "calibrator_beam_response": _num(m.calibrator_beam_response),
         "validation": m.validation,
         "calibration_set": _calset_row(m.calibration_set) if m.calibration_set is not None else None}
        for m in g.measurement_sets]
    row["images"] = [_image_row(i) for m in g.measurement_sets for i in m.images]
    row["enqueued"] = _iso(g.enqueued_at)
    return row


# ---------------------------------------------------------------------------- images and calibration
def images_page(session: Session, *, qa: str | None = None, start_mjd: float | None = None,
                end_mjd: float | None = None, pb_corrected: bool | None = None, limit: int = 100,
                offset: int = 0) -> dict[str, Any]:
    """Images with their QA, newest first.

    Parameters
    ----------
    session
        An open session.
    qa
        Only this verdict.
    start_mjd, end_mjd
        Only images whose mid-time is in ``[start_mjd, end_mjd)``.
    pb_corrected
        Only PB-corrected (True) or flat-noise (False) images.
    limit, offset
        The page.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``.
    """
    _check_choice("QA verdict", qa, QA_VERDICTS)
    stmt = select(Image)
    if qa is not None:
        stmt = stmt.where(Image.qa_verdict == qa)
    if start_mjd is not None:
        stmt = stmt.where(Image.mid_mjd >= start_mjd)
    if end_mjd is not None:
        stmt = stmt.where(Image.mid_mjd < end_mjd)
    if pb_corrected is not None:
        stmt = stmt.where(Image.pb_corrected == pb_corrected)
    total, rows = _page(session, stmt.order_by(Image.mid_mjd.desc(), Image.id.desc()), limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": [_image_row(i) for i in rows]}


def image_detail(session: Session, image_id: int) -> dict[str, Any] | None:
    """One image with its QA details, its group and how many sources it measured (None: no such image)."""
    i = session.get(Image, image_id)
    if i is None:
        return None
    row = _image_row(i)
    row["qa"] = i.qa
    row["group_key"] = session.scalar(select(ObservationGroup.group_key).join(MeasurementSet)
                                  .where(MeasurementSet.id == i.ms_id)) if i.ms_id is not None else None
    row["photometry_rows"] = int(session.scalar(select(func.count()).where(Photometry.image_id == i.id)) or 0)
    return row


def calibration_sets_page(session: Session, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Calibration sets (newest solve first) with their tables, validity windows, QA and plots.

    Parameters
    ----------
    session
        An open session.
    limit, offset
        The page.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``; each set with its ``tables`` (type, path, ``plot``
        beside the table, validity window, solutions and flags).
    """
    stmt = (select(CalibrationSet).options(selectinload(CalibrationSet.tables))
            .order_by(CalibrationSet.solve_mjd.desc(), CalibrationSet.id.desc()))
    total, rows = _page(session, stmt, limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "items": [_calset_row(c) for c in rows]}


# ---------------------------------------------------------------------------- sources
def _stats_row(v: VariabilityStats | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"n_epochs": v.n_epochs, "weighted_mean_jy": _num(v.weighted_mean_jy), "chi2_nu": _num(v.chi2_nu),
            "eta": _num(v.eta), "v": _num(v.v), "modulation_index": _num(v.modulation_index),
            "max_vs": _num(v.max_vs), "max_m": _num(v.max_m), "ese_score": _num(v.ese_score),
            "ese_significance": _num(v.ese_significance), "last_epoch_mjd": _num(v.last_epoch_mjd),
            "updated": _iso(v.updated_at)}


def _source_row(s: Source, v: VariabilityStats | None) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "ra_deg": s.ra_deg, "dec_deg": s.dec_deg, "flux_jy": _num(s.flux_jy),
            "flux_err_jy": _num(s.flux_err_jy), "spectral_index": _num(s.spectral_index),
            "calibrator": bool(s.is_calibrator), "resolved": bool(s.resolved), "confused": bool(s.confused),
            "stats": _stats_row(v)}


def sources_page(session: Session, *, name: str | None = None, min_flux_jy: float | None = None,
                 min_significance: float | None = None, order: str = "significance", limit: int = 100,
                 offset: int = 0) -> dict[str, Any]:
    """Catalogue sources with their variability statistics.

    Parameters
    ----------
    session
        An open session.
    name
        Only sources whose name contains this (case-insensitive).
    min_flux_jy
        Only sources at least this bright in the catalogue (1.4 GHz).
    min_significance
        Only sources whose ESE significance is at least this.
    order
        One of :data:`SOURCE_ORDERS` (default: most significant ESE first).
    limit, offset
        The page.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``, each item the source with ``stats`` (None if never scored).
    """
    _check_choice("order", order, list(SOURCE_ORDERS))
    stmt = select(Source, VariabilityStats).join(VariabilityStats, VariabilityStats.source_id == Source.id,
                                                 isouter=True)
    if name:
        stmt = stmt.where(func.lower(Source.name).contains(name.lower()))
    if min_flux_jy is not None:
        stmt = stmt.where(Source.flux_jy >= min_flux_jy)
    if min_significance is not None:
        stmt = stmt.where(VariabilityStats.ese_significance >= min_significance)
    column, descending = SOURCE_ORDERS[order]
    stmt = stmt.order_by(column.is_(None), column.desc() if descending else column.asc(), Source.id)
    total, rows = _page(session, stmt, limit=limit, offset=offset, rows=True)
    return {"total": total, "limit": limit, "offset": offset, "items": [_source_row(s, v) for s, v in rows]}


def light_curve(session: Session, source_id: int) -> dict[str, list[Any]]:
    """Every photometry row of a source, by epoch, with its image's QA (columns as lists).

    Returns
    -------
    dict
        ``epoch_mjd``, ``flux_jy``, ``flux_err_jy``, ``norm_flux_jy``, ``norm_flux_err_jy``, ``upper_limit``,
        ``image_id``, ``image_path``, ``qa_verdict``: one entry per row. Rows of images that failed QA are
        included (the science never uses them: normalisation, scoring and candidates skip them) and marked.
    """
    rows = session.execute(
        select(Photometry.epoch_mjd, Photometry.flux_jy, Photometry.flux_err_jy, Photometry.norm_flux_jy,
               Photometry.norm_flux_err_jy, Photometry.upper_limit, Photometry.image_id, Image.path,
               Image.qa_verdict)
        .join(Image, Image.id == Photometry.image_id)
        .where(Photometry.source_id == source_id).order_by(Photometry.epoch_mjd, Photometry.id)).all()
    names = ("epoch_mjd", "flux_jy", "flux_err_jy", "norm_flux_jy", "norm_flux_err_jy", "upper_limit", "image_id",
             "image_path", "qa_verdict")
    out: dict[str, list[Any]] = {n: [] for n in names}
    for r in rows:
        for n, value in zip(names, r):
            if n in ("epoch_mjd", "flux_jy", "flux_err_jy", "norm_flux_jy", "norm_flux_err_jy"):
                value = _num(value)
            elif n == "upper_limit":
                value = bool(value)
            out[n].append(value)
    return out


def _candidate_row(c: EseCandidate, s: Source | None = None) -> dict[str, Any]:
    row = {"id": c.id, "source_id": c.source_id, "status": _enum(c.status),
           "first_detected_mjd": _num(c.first_detected_mjd), "last_detected_mjd": _num(c.last_detected_mjd),
           "score": _num(c.score), "significance": _num(c.significance), "template": c.template, "notes": c.notes,
           "created": _iso(c.created_at), "updated": _iso(c.updated_at)}
    if s is not None:
        row.update(source=s.name, ra_deg=s.ra_deg, dec_deg=s.dec_deg, catalogue_flux_jy=_num(s.flux_jy))
    return row


def source_detail(session: Session, source_id: int, *, with_light_curve: bool = True) -> dict[str, Any] | None:
    """A source with its statistics, ESE candidates and (by default) its light curve.

    Parameters
    ----------
    session
        An open session.
    source_id
        The source's id.
    with_light_curve
        Add its light curve (:func:`light_curve`).

    Returns
    -------
    dict or None
        The source's row with ``stats``, ``candidates`` and ``light_curve``; None when there is no such source.
    """
    s = session.get(Source, source_id)
    if s is None:
        return None
    row = _source_row(s, session.get(VariabilityStats, source_id))
    row["candidates"] = [_candidate_row(c) for c in session.scalars(
        select(EseCandidate).where(EseCandidate.source_id == source_id).order_by(EseCandidate.id.desc()))]
    if with_light_curve:
        row["light_curve"] = light_curve(session, source_id)
    return row


def _candidate_filter(stmt: Select, model: Any, status: str | None, min_significance: float | None) -> Select:
    """``stmt`` restricted to candidates (ESE or new-source ``model``) of a review status (``open``: new or
    confirmed) and a least significance; an unknown status is a ValidationError."""
    _check_choice("candidate status", status, [*(s.value for s in CandidateStatus), "open"])
    if status == "open":
        stmt = stmt.where(model.status.in_(OPEN_CANDIDATE_STATUSES))
    elif status is not None:
        stmt = stmt.where(model.status == CandidateStatus(status))
    if min_significance is not None:
        stmt = stmt.where(model.significance >= min_significance)
    return stmt


def candidates_page(session: Session, *, status: str | None = None, min_significance: float | None = None,
                    limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """ESE candidates, most significant first, with their source.

    Parameters
    ----------
    session
        An open session.
    status
        Only this review status (``new``, ``confirmed``, ``rejected``, ...); ``open`` for new or confirmed.
    min_significance
        Only candidates at least this significant.
    limit, offset
        The page.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``.
    """
    stmt = _candidate_filter(select(EseCandidate, Source).join(Source, Source.id == EseCandidate.source_id),
                             EseCandidate, status, min_significance)
    total, rows = _page(session, stmt.order_by(EseCandidate.significance.desc(), EseCandidate.id), limit=limit,
                        offset=offset, rows=True)
    return {"total": total, "limit": limit, "offset": offset, "items": [_candidate_row(c, s) for c, s in rows]}


def _new_source_row(c: NewSource) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "ra_deg": c.ra_deg, "dec_deg": c.dec_deg, "status": _enum(c.status),
            "significance": _num(c.significance), "snr": _num(c.snr), "peak_flux_jy": _num(c.peak_flux_jy),
            "n_detections": c.n_detections, "n_prior_epochs": c.n_prior_epochs,
            "prior_limit_jy": _num(c.prior_limit_jy), "first_detected_mjd": _num(c.first_detected_mjd),
            "last_detected_mjd": _num(c.last_detected_mjd), "first_image_id": c.first_image_id,
            "cutouts": c.cutouts, "notes": c.notes, "created": _iso(c.created_at), "updated": _iso(c.updated_at)}


def new_sources_page(session: Session, *, status: str | None = None, min_significance: float | None = None,
                     limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """New-source candidates (:mod:`contimg.pipeline.new_sources`), most significant first.

    Parameters
    ----------
    session
        An open session.
    status
        Only this review status; ``open`` for new or confirmed.
    min_significance
        Only candidates at least this significant.
    limit, offset
        The page.

    Returns
    -------
    dict
        ``{"total", "limit", "offset", "items"}``; each item with its ``detections`` (image, epoch, flux, SNR).
    """
    stmt = _candidate_filter(select(NewSource), NewSource, status, min_significance)
    total, rows = _page(session, stmt.order_by(NewSource.significance.desc(), NewSource.id), limit=limit,
                        offset=offset)
    items = []
    for c in rows:
        row = _new_source_row(c)
        row["detections"] = [{"image_id": d.image_id, "epoch_mjd": _num(d.epoch_mjd), "flux_jy": _num(d.flux_jy),
                              "snr": _num(d.snr)} for d in c.detections]
        items.append(row)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def night_summary(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Per state counts and per image figures of the groups with a timestamp in ``[start, end)``.

    Parameters
    ----------
    session
        An open session.
    start, end
        The night's bounds (UTC; naive times are taken as UTC).

    Returns
    -------
    dict
        ``counts`` (state: groups), ``images`` (flat-noise images: ``mid_mjd``, ``rms_jy``, ``qa_verdict``,
        ``n_sources`` measured) in time order.
    """
    lo, hi = _utc(start), _utc(end)
    counts = dict(session.execute(
        select(ObservationGroup.state, func.count()).where(and_(ObservationGroup.timestamp >= lo,
                                                                ObservationGroup.timestamp < hi))
        .group_by(ObservationGroup.state)).all())
    n_rows = (select(Photometry.image_id, func.count().label("n")).group_by(Photometry.image_id).subquery())
    rows = session.execute(
        select(Image.mid_mjd, Image.rms_jy, Image.qa_verdict, Image.id, n_rows.c.n)
        .join(MeasurementSet, MeasurementSet.id == Image.ms_id).join(ObservationGroup)
        .join(n_rows, n_rows.c.image_id == Image.id, isouter=True)
        .where(ObservationGroup.timestamp >= lo, ObservationGroup.timestamp < hi)
        .order_by(Image.mid_mjd)).all()
    return {"counts": {_enum(k): int(v) for k, v in counts.items()},
            "images": [{"mid_mjd": _num(m), "rms_jy": _num(r), "qa_verdict": q, "image_id": i, "n_sources": int(n or 0)}
                       for m, r, q, i, n in rows]}
