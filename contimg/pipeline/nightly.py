"""The nightly variability job (the database side of :mod:`contimg.variability`): score every source with new
photometry, in bulk.

:func:`score_sources` finds the sources whose photometry has rows newer than
their last scoring (``variability_stats.last_photometry_id``), reads their
whole light curves in chunks of source ids (plain ``SELECT`` into numpy, no
ORM objects), computes the variability statistics
(:mod:`contimg.variability.metrics`) and runs the ESE search
(:mod:`contimg.variability.ese`) on every chunk at once, then writes:

* one ``variability_stats`` row per scored source (bulk upsert);
* an ESE candidate (status ``new``) for every source at or above the
  significance threshold, or -- if the source already has an open (``new`` or
  ``confirmed``) candidate -- an update of that candidate's score,
  significance, template and ``last_detected_mjd``: candidates are never
  duplicated. Open candidates whose source fell below the threshold are left
  for review.

Fluxes: a source whose rows all carry a differentially normalised flux is
scored on it (:mod:`contimg.photometry.normalize`), otherwise on the measured
flux; rows with a non-finite flux or a non-positive error are ignored.

Given an :class:`~sqlalchemy.engine.Engine` (or URL/settings), reads run in a
read-only transaction in a reader thread that fetches the next chunk while the
current one is scored, and the writes in one short write transaction, so the
job never holds SQLite's write lock while it computes. Given a
:class:`~sqlalchemy.orm.Session`, everything happens in it and it is only
flushed (the caller commits).

:func:`write_night_summary` draws the previous UTC day's images (noise,
sources measured, flux-scale correction, QA verdicts;
:func:`contimg.plots.night.night_figure`) into ``<data root>/nightly/<date>.png``;
:func:`run_nightly` calls it after scoring.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from contimg.db import science
from contimg.db.engine import session_scope
from contimg.db.models import Photometry, Source, VariabilityStats
from contimg.pipeline.alerts import candidates_found
from contimg.variability.ese import EseResult, EseSearch, detect_ese
from contimg.variability.metrics import VariabilityMetrics, variability_metrics

log = logging.getLogger(__name__)

__all__ = ["NightlySummary", "night_rows", "run_nightly", "score_sources", "sources_to_score", "write_night_summary"]


@dataclass
class NightlySummary:
    """What a nightly run did."""

    sources_scored: int = 0
    rows_read: int = 0
    candidates_created: int = 0
    candidates_updated: int = 0
    examined: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    sources_selected: int = 0
    """Sources with new photometry (all with ``rescore_all``): the work to do (for progress; not reported)."""
    new_candidates: list[dict[str, Any]] = field(default_factory=list)
    """The candidates created by this run (id, source, significance, score, detection epoch), for the notification."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources_scored": self.sources_scored, "rows_read": self.rows_read,
            "candidates_created": self.candidates_created, "candidates_updated": self.candidates_updated,
            "examined": self.examined, "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def sources_to_score(session: Session, *, rescore_all: bool = False) -> np.ndarray:
    """Ids of the sources with photometry newer than their last scoring (sorted).

    Two index-friendly queries: sources never scored that have photometry
    (one index probe per catalogue source), and sources with rows whose id is
    above their ``last_photometry_id`` -- a primary-key range scan from the
    lowest such watermark, so a night's query touches about a night's rows.

    Parameters
    ----------
    session
        An open session.
    rescore_all
        Every source with photometry (e.g. after re-measuring old images,
        which updates rows in place and keeps their ids).
    """
    p, v, src = Photometry.__table__.c, VariabilityStats.__table__.c, Source.__table__.c
    if rescore_all:
        stmt = select(p.source_id).distinct()
        return np.sort(np.fromiter((r[0] for r in session.execute(stmt)), dtype=np.int64))
    never = (
        select(src.id)
        .where(~select(v.source_id).where(v.source_id == src.id).exists())
        .where(select(p.id).where(p.source_id == src.id).exists())
    )
    ids = [r[0] for r in session.execute(never)]
    watermark = session.scalar(select(func.min(v.last_photometry_id)))
    if watermark is not None:
        newer = (
            select(p.source_id)
            .join(VariabilityStats.__table__, v.source_id == p.source_id)
            .where(p.id > watermark, p.id > v.last_photometry_id)
            .distinct()
        )
        ids.extend(r[0] for r in session.execute(newer))
    return np.unique(np.asarray(ids, dtype=np.int64))


_SELECT = (
    "SELECT source_id, epoch_mjd, "
    "CASE WHEN norm_flux_err_jy > 0 THEN norm_flux_jy ELSE flux_jy END, "
    "CASE WHEN norm_flux_err_jy > 0 THEN norm_flux_err_jy ELSE flux_err_jy END "
    "FROM photometry WHERE source_id >= {lo:d} AND source_id <= {hi:d}"
)
_SELECT_SUMMARY = (
    "SELECT source_id, MAX(id), COUNT(*), SUM(CASE WHEN norm_flux_err_jy > 0 THEN 1 ELSE 0 END) "
    "FROM photometry WHERE source_id >= {lo:d} AND source_id <= {hi:d} GROUP BY source_id"
)
_SELECT_RAW = "SELECT source_id, epoch_mjd, flux_jy, flux_err_jy FROM photometry WHERE source_id IN ({ids})"


def _fetch(session: Session, sql: str, n_cols: int) -> np.ndarray:
    """Rows of a numeric query as a float array, through the DBAPI cursor (no Row objects)."""
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * n_cols)
    return flat.reshape(len(rows), n_cols)


def _read_chunk(session: Session, lo: int, hi: int) -> tuple[np.ndarray, dict[int, int]]:
    """Photometry of sources ``lo..hi``.

    Returns a (rows, 4) array of source id, epoch, flux and error, and the
    highest photometry id of every source. A source is scored on its
    normalised fluxes only if all its rows have one; the (rare) sources with
    only some rows normalised are read again with their measured fluxes.
    Four numeric columns, with the per-source summary aggregated in SQL: the
    cost of a bulk read is the Python objects the driver creates per value.
    """
    summary = _fetch(session, _SELECT_SUMMARY.format(lo=int(lo), hi=int(hi)), 4)
    last_id = dict(zip(summary[:, 0].astype(np.int64).tolist(), summary[:, 1].astype(np.int64).tolist()))
    data = _fetch(session, _SELECT.format(lo=int(lo), hi=int(hi)), 4)
    mixed = summary[(summary[:, 3] > 0) & (summary[:, 3] < summary[:, 2]), 0].astype(np.int64)
    if mixed.size:
        data = data[~np.isin(data[:, 0].astype(np.int64), mixed)]
        parts = [data]
        for start in range(0, mixed.size, 500):
            ids = ", ".join(str(i) for i in mixed[start:start + 500].tolist())
            parts.append(_fetch(session, _SELECT_RAW.format(ids=ids), 4))
        data = np.concatenate(parts)
    return data, last_id


@dataclass(frozen=True)
class _Scored:
    metrics: VariabilityMetrics
    ese: EseResult
    last_id: np.ndarray
    last_mjd: np.ndarray


def _score_rows(data: np.ndarray, last_ids: dict[int, int], wanted: np.ndarray, search: EseSearch) -> _Scored | None:
    """Statistics and ESE search for the light curves of the ``wanted`` sources in ``data`` (see ``_read_chunk``)."""
    data = data[np.isin(data[:, 0].astype(np.int64), wanted)]
    if data.size == 0:
        return None
    src = data[:, 0].astype(np.int64)
    order = np.lexsort((data[:, 1], src))
    data, src = data[order], src[order]
    change = np.flatnonzero(np.diff(src)) + 1
    starts = np.concatenate(([0], change))
    t, flux, err = data[:, 1], data[:, 2], data[:, 3]
    last_mjd = np.maximum.reduceat(t, starts)
    ids = src[starts]
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0) & np.isfinite(t)
    if not ok.all():
        src, t, flux, err = src[ok], t[ok], flux[ok], err[ok]
    metrics = variability_metrics(src, flux, err)
    ese = detect_ese(src, t, flux, err, search=search)
    keep = np.isin(ids, metrics.source_id)  # sources without a usable row are skipped
    last_id = np.array([last_ids[i] for i in ids[keep].tolist()], dtype=np.int64)
    return _Scored(metrics, ese, last_id, last_mjd[keep])


def _none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _stats_rows(s: _Scored) -> list[dict[str, Any]]:
    m, e = s.metrics, s.ese
    cols = [m.source_id, m.n_epochs, m.weighted_mean, m.chi2_nu, m.eta, m.v, m.m_debiased, m.vs_max, m.m_max,
            e.score, e.significance, s.last_id, s.last_mjd]
    out = []
    for sid, n, wm, chi, eta, v, mod, vs, mm, score, sig, lid, lmjd in zip(*(c.tolist() for c in cols)):
        out.append({
            "source_id": sid, "n_epochs": n, "weighted_mean_jy": _none(wm), "chi2_nu": _none(chi), "eta": _none(eta),
            "v": _none(v), "modulation_index": _none(mod), "max_vs": _none(vs), "max_m": _none(mm),
            "ese_score": _none(score), "ese_significance": _none(sig), "last_photometry_id": lid,
            "last_epoch_mjd": _none(lmjd),
        })
    return out


def _template(e: EseResult, i: int) -> dict[str, Any]:
    return {
        "t_center_mjd": _none(e.t_center[i]), "duration_days": _none(e.duration_days[i]),
        "depth": _none(e.depth[i]), "depth_err": _none(e.depth_err[i]),
        "caustic_amplitude": _none(e.caustic_amplitude[i]), "caustic_width_frac": _none(e.caustic_width_frac[i]),
        "red_noise_amplitude": _none(e.red_noise_amplitude[i]),
        "red_noise_timescale_days": _none(e.red_noise_timescale_days[i]),
        "error_scale": _none(e.error_scale[i]),
        "n_epochs": int(e.n_epochs[i]), "n_clipped": int(e.n_clipped[i]),
    }


def _write(session: Session, scored: list[_Scored], threshold: float, summary: NightlySummary) -> None:
    rows = [r for s in scored for r in _stats_rows(s)]
    for start in range(0, len(rows), 20000):
        science.upsert_variability_stats(session, rows[start:start + 20000])
    for s in scored:
        e = s.ese
        for i in e.candidates(threshold):
            detected = float(s.last_mjd[i]) if np.isfinite(s.last_mjd[i]) else 0.0
            candidate, created = science.upsert_ese_candidate(
                session, source_id=int(e.source_id[i]), score=float(e.score[i]),
                significance=float(e.significance[i]), detected_mjd=detected, template=_template(e, i),
            )
            if created:
                summary.candidates_created += 1
                summary.new_candidates.append({
                    "candidate_id": candidate.id, "source_id": candidate.source_id, "score": candidate.score,
                    "significance": candidate.significance, "detected_mjd": candidate.last_detected_mjd})
            else:
                summary.candidates_updated += 1
    session.flush()


def score_sources(
    session_or_engine: Session | Engine | Any,
    *,
    threshold: float = 5.0,
    search: EseSearch = EseSearch(),
    chunk_sources: int = 5000,
    rescore_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> NightlySummary:
    """Score every source with new photometry and record statistics and ESE candidates.

    Parameters
    ----------
    session_or_engine
        A :class:`~sqlalchemy.orm.Session` (flushed, not committed), or an
        engine, URL or settings (own transactions: a read-only one for the
        reads, one write transaction at the end).
    threshold
        ESE significance (sigma) at which a source becomes a candidate
        (``settings.variability.ese_threshold``).
    search
        ESE search parameters.
    chunk_sources
        Sources read and scored together (bounds the memory: ~rows per source
        x this x 56 bytes).
    rescore_all
        Score every source, not only those with new rows.
    progress
        Called after each chunk with (sources examined so far, sources to score), e.g. for a progress bar.

    Returns
    -------
    NightlySummary
    """
    summary = NightlySummary()
    summary.seconds.update(select=0.0, read=0.0, score=0.0)
    t0 = time.perf_counter()
    if isinstance(session_or_engine, Session):
        chunks = _read_chunks(session_or_engine, chunk_sources, rescore_all, summary)
        scored = _score_chunks(chunks, search, summary, progress)
        t1 = time.perf_counter()
        _write(session_or_engine, scored, threshold, summary)
    else:
        # a reader thread with its own read-only session fetches the next
        # chunk while this thread scores the current one (the compiled kernels
        # and large numpy operations release the GIL)
        scored = _score_chunks(_prefetched(session_or_engine, chunk_sources, rescore_all, summary), search, summary,
                               progress)
        t1 = time.perf_counter()
        with session_scope(session_or_engine) as session:
            _write(session, scored, threshold, summary)
    summary.seconds["write"] = time.perf_counter() - t1
    summary.seconds["total"] = time.perf_counter() - t0
    log.info("nightly scoring: %s", summary.as_dict())
    return summary


_Chunk = tuple[np.ndarray, np.ndarray, dict[int, int]]
"""(wanted source ids, rows from :func:`_read_chunk`, highest photometry id per source)."""


def _read_chunks(session: Session, chunk_sources: int, rescore_all: bool, summary: NightlySummary) -> Iterator[_Chunk]:
    t = time.perf_counter()
    wanted = sources_to_score(session, rescore_all=rescore_all)
    summary.seconds["select"] += time.perf_counter() - t
    summary.sources_selected = int(wanted.size)
    for start in range(0, wanted.size, chunk_sources):
        chunk = wanted[start:start + chunk_sources]
        t = time.perf_counter()
        data, last_ids = _read_chunk(session, int(chunk[0]), int(chunk[-1]))
        summary.seconds["read"] += time.perf_counter() - t
        yield chunk, data, last_ids


def _prefetched(target: Any, chunk_sources: int, rescore_all: bool, summary: NightlySummary) -> Iterator[_Chunk]:
    """:func:`_read_chunks` in a reader thread (own session), one chunk ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def reader() -> None:
        try:
            with session_scope(target, readonly=True) as session:
                for item in _read_chunks(session, chunk_sources, rescore_all, summary):
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)
            return
        q.put(done)

    thread = threading.Thread(target=reader, name="contimg-nightly-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.1)


def _score_chunks(chunks: Iterator[_Chunk], search: EseSearch, summary: NightlySummary,
                  progress: Callable[[int, int], None] | None = None) -> list[_Scored]:
    scored = []
    done = 0
    for chunk, data, last_ids in chunks:
        t = time.perf_counter()
        s = _score_rows(data, last_ids, chunk, search)
        summary.seconds["score"] += time.perf_counter() - t
        done += len(chunk)
        if progress is not None:
            progress(done, summary.sources_selected)
        if s is None:
            continue
        summary.rows_read += int(data.shape[0])
        summary.sources_scored += len(s.metrics)
        summary.examined += int(s.ese.examined.sum())
        scored.append(s)
        log.debug("scored sources %d..%d (%d rows)", chunk[0], chunk[-1], data.shape[0])
    return scored


def night_rows(session: Session, start_mjd: float, end_mjd: float) -> list[dict[str, Any]]:
    """One entry per product set imaged with mid-time in ``[start_mjd, end_mjd)``, for :func:`night_figure`.

    A set's flat-noise and PB-corrected rows are one entry (grouped by the set's ``files["image"]``): the
    rms of either, the photometry of the row it is attached to (the PB-corrected one), that row's
    flux-scale correction (``qa["photometry"]["figures"]["correction"]``) and the worst verdict of the two.

    Parameters
    ----------
    session
        An open session.
    start_mjd, end_mjd
        The time window (MJD).

    Returns
    -------
    list[dict]
        ``mid_mjd``, ``rms_jy``, ``n_measured``, ``n_detected``, ``correction`` (None: not normalised),
        ``verdict`` and ``image`` (the flat-noise image's path), ordered by time.
    """
    from contimg.verdict import worst

    from contimg.db.products import image_sets

    sets = image_sets(session, start_mjd, end_mjd)
    images = [m for members in sets.values() for m in members]
    if not images:
        return []
    counts = {
        r[0]: (int(r[1]), int(r[2] or 0))
        for r in session.execute(
            select(Photometry.image_id, func.count(), func.sum(case((Photometry.upper_limit.is_(False), 1), else_=0)))
            .where(Photometry.image_id.in_([i.id for i in images])).group_by(Photometry.image_id)
        )
    }
    out = []
    for key, members in sets.items():
        measured = [m for m in members if m.id in counts] or members
        phot = measured[0]
        n_meas, n_det = counts.get(phot.id, (0, 0))
        correction = (((phot.qa or {}).get("photometry") or {}).get("figures") or {}).get("correction")
        out.append({
            "mid_mjd": phot.mid_mjd, "rms_jy": next((m.rms_jy for m in members if m.rms_jy is not None), None),
            "n_measured": n_meas, "n_detected": n_det, "correction": correction,
            "verdict": worst([m.qa_verdict for m in members]), "image": key,
        })
    return sorted(out, key=lambda r: r["mid_mjd"])


def write_night_summary(settings: Any, day: dt.date) -> Path | None:
    """Draw the images of one UTC day into ``<data root>/nightly/<YYYY-MM-DD>.png`` (None: no images that day).

    Parameters
    ----------
    settings
        Application settings (database and ``data_root``).
    day
        The UTC date: images with mid-time from its 00:00 to the next day's 00:00.

    Returns
    -------
    pathlib.Path or None
        The PNG written.
    """
    from contimg.plots.common import save_png
    from contimg.plots.night import night_figure

    from contimg.db.products import night_window

    start, end = night_window(day)
    with session_scope(settings, readonly=True) as session:
        rows = night_rows(session, start, end)
    if not rows:
        log.info("night summary %s: no images", day.isoformat())
        return None
    out = Path(settings.data_root) / "nightly"
    out.mkdir(parents=True, exist_ok=True)
    png = save_png(night_figure(rows, title=f"Night summary {day.isoformat()} (UTC)"), out / f"{day.isoformat()}.png")
    log.info("night summary %s: %s (%d images)", day.isoformat(), png, len(rows))
    return png


def _with_sources(settings: Any, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``candidates`` with their source's ``source_name``, ``ra_deg`` and ``dec_deg`` (as they are if unreadable)."""
    if not candidates:
        return candidates
    try:
        ids = [c["source_id"] for c in candidates]
        with session_scope(settings, readonly=True) as session:
            rows = {r.id: (r.name, r.ra_deg, r.dec_deg)
                    for r in session.execute(select(Source.id, Source.name, Source.ra_deg, Source.dec_deg)
                                             .where(Source.id.in_(ids)))}
    except SQLAlchemyError as exc:
        log.warning("new ESE candidates: their sources could not be read (%s)", exc)
        return candidates
    return [{**c, **dict(zip(("source_name", "ra_deg", "dec_deg"), rows.get(c["source_id"], (None,) * 3)))}
            for c in candidates]


def run_nightly(settings: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The scheduled job's entry point: :func:`score_sources` on the configured database, then the night summary.

    Called by :func:`contimg.pipeline.housekeeping.nightly_variability` (beat
    task ``contimg.variability.nightly``) with the application settings; the
    candidate threshold is ``settings.variability.ese_threshold``; the candidates it creates are notified
    (``ese_candidate``, one message per run: :func:`contimg.pipeline.alerts.candidates_found`). The summary
    picture (:func:`write_night_summary`) is of the UTC day before ``now``; a
    picture that cannot be drawn is logged, never fails the job.

    Parameters
    ----------
    settings
        Application settings.
    now
        The current time (None: the clock's, UTC).

    Returns
    -------
    dict
        :meth:`NightlySummary.as_dict`, with ``night_summary``: the PNG's path (None if none was written).
    """
    summary = score_sources(settings, threshold=settings.variability.ese_threshold)
    candidates_found(settings, _with_sources(settings, summary.new_candidates))
    result = summary.as_dict()
    day = ((now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
    try:
        png = write_night_summary(settings, day)
    except (OSError, ValueError, SQLAlchemyError) as exc:
        log.warning("night summary %s not drawn: %s", day.isoformat(), exc)
        png = None
    result["night_summary"] = str(png) if png else None
    return result
