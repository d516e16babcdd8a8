"""Bulk reads and writes of the science tables: sources, photometry, variability, ESE candidates.

Like the session-level functions of :mod:`contimg.db.groups`, every function takes a Session and only
flushes. Writes are bulk ``INSERT ... ON CONFLICT`` statements sent with
``executemany`` in chunks (idempotent: re-measuring a source in an image updates
its row), so millions of photometry rows do not pass through the ORM.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from contimg.db._upsert import upsert_rows
from contimg.db.models import (
    OPEN_CANDIDATE_STATUSES,
    CandidateStatus,
    Component,
    EseCandidate,
    NewSource,
    Photometry,
    Source,
    VariabilityStats,
)
from contimg.db.states import utcnow
from contimg.errors import NotFoundError, ValidationError

log = logging.getLogger(__name__)

_SOURCE_FIELDS = ("ra_deg", "dec_deg", "flux_jy", "flux_err_jy", "spectral_index",
                  "resolved", "confused", "is_calibrator", "quality")
_PHOTOMETRY_FIELDS = ("epoch_mjd", "flux_jy", "flux_err_jy", "norm_flux_jy", "norm_flux_err_jy", "upper_limit")
_COMPONENT_FIELDS = ("ra_deg", "dec_deg", "peak_flux_jy")
_COMPONENT_OPTIONAL = {c: None for c in ("ra_err_arcsec", "dec_err_arcsec", "peak_flux_err_jy", "int_flux_jy",
                                          "int_flux_err_jy", "major_arcsec", "minor_arcsec", "pa_deg",
                                          "local_rms_jy", "beam_response", "source_id", "separation_arcsec")}
_STATS_FIELDS = ("n_epochs", "weighted_mean_jy", "chi2_nu", "eta", "v", "modulation_index", "max_vs", "max_m",
                 "ese_score", "ese_significance", "last_photometry_id", "last_epoch_mjd")


def _complete(rows: Iterable[Mapping[str, Any]], required: Sequence[str], optional: Mapping[str, Any],
              what: str) -> list[dict[str, Any]]:
    """Rows with every column present (optional ones defaulted), refusing unknown columns."""
    allowed = set(required) | set(optional)
    out = []
    for i, row in enumerate(rows):
        missing = [c for c in required if c not in row]
        unknown = sorted(set(row) - allowed)
        if missing or unknown:
            raise ValueError(f"{what} row {i}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
        out.append({**optional, **row})
    return out


def upsert_sources(session: Session, rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Insert or update catalogue sources by ``name``; returns ``{name: id}`` for the given names.

    Each row needs ``name``, ``ra_deg``, ``dec_deg``; other :class:`Source`
    columns are optional (defaults: no flux, not resolved/confused/calibrator).
    """
    full = _complete(rows, ["name", "ra_deg", "dec_deg"],
                     {"flux_jy": None, "flux_err_jy": None, "spectral_index": None, "resolved": False,
                      "confused": False, "is_calibrator": False, "quality": None}, "source")
    upsert_rows(session, Source.__table__, full, keys=["name"], update=list(_SOURCE_FIELDS))
    return source_ids(session, [r["name"] for r in full])


def write_sources(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert or update (by ``name``) complete source records without reading ids back: the bulk path.

    Every row must carry every :class:`Source` column but ``id``; returns
    the number of rows written.
    """
    return upsert_rows(session, Source.__table__, rows, keys=["name"], update=list(_SOURCE_FIELDS))


_SOURCE_COLUMNS = ("name", *_SOURCE_FIELDS)


def _csv_buffer(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """``rows`` as CSV for PostgreSQL's ``COPY ... (FORMAT csv, NULL '\\N')`` (floats at full precision)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(["\\N" if r[c] is None else repr(r[c]) if isinstance(r[c], float) else r[c] for c in columns])
    buf.seek(0)
    return buf


def insert_new_sources(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert complete source records that are known not to exist yet (an empty table): the fastest path.

    ``COPY`` on PostgreSQL, a plain ``executemany`` on SQLite; a name that
    does exist raises the database's unique-constraint error.

    Parameters
    ----------
    session
        An open session; the caller commits.
    rows
        Records with every :class:`Source` column but ``id``.

    Returns
    -------
    int
        Number of rows inserted.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.copy_expert(f"COPY sources ({', '.join(_SOURCE_COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                            _csv_buffer(rows, _SOURCE_COLUMNS))
        return len(rows)
    sql = f"INSERT INTO sources ({', '.join(_SOURCE_COLUMNS)}) VALUES ({', '.join('?' for _ in _SOURCE_COLUMNS)})"
    conn.exec_driver_sql(sql, [tuple(r[c] for c in _SOURCE_COLUMNS) for r in rows])
    return len(rows)


def update_sources_by_id(session: Session, rows: Sequence[Mapping[str, Any]], *, rename: bool = False) -> int:
    """Overwrite the catalogue columns of existing sources given by ``id`` (the name too when ``rename``).

    Parameters
    ----------
    session
        An open session; the caller commits.
    rows
        Complete source records with the ``id`` of the row each replaces.
    rename
        Also set ``name`` (otherwise the existing name is kept).

    Returns
    -------
    int
        Number of rows updated.
    """
    fields = [*_SOURCE_FIELDS, *(("name",) if rename else ())]
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # COPY into a temporary table, then one UPDATE ... FROM: psycopg2's executemany goes row by row
        cols = ("id", *fields)
        with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute("DROP TABLE IF EXISTS _sources_update")
            cur.execute(f"CREATE TEMPORARY TABLE _sources_update ON COMMIT DROP AS SELECT {', '.join(cols)} "
                        "FROM sources WITH NO DATA")
            cur.copy_expert(f"COPY _sources_update ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                            _csv_buffer(rows, cols))
            cur.execute(f"UPDATE sources AS s SET {', '.join(f'{f} = v.{f}' for f in fields)} "
                        "FROM _sources_update AS v WHERE s.id = v.id")
        return len(rows)
    sql = f"UPDATE sources SET {', '.join(f'{f} = ?' for f in fields)} WHERE id = ?"
    for start in range(0, len(rows), 20000):
        conn.exec_driver_sql(sql, [(*(r[f] for f in fields), r["id"]) for r in rows[start:start + 20000]])
    return len(rows)


def sources_in_dec_band(session: Session, dec_lo: float, dec_hi: float) -> list[Any]:
    """Every source in a declination band (for matching a catalogue against the existing ones).

    Parameters
    ----------
    session
        An open session.
    dec_lo, dec_hi
        The band's limits (deg, inclusive).

    Returns
    -------
    list
        ``(id, name, ra_deg, dec_deg, is_calibrator)`` tuples.
    """
    stmt = select(Source.id, Source.name, Source.ra_deg, Source.dec_deg, Source.is_calibrator).where(
        Source.dec_deg >= dec_lo, Source.dec_deg <= dec_hi)
    return list(session.execute(stmt).tuples().all())


def count_sources(session: Session) -> int:
    """Number of rows of the ``sources`` table."""
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(Source)) or 0)


def source_ids(session: Session, names: Sequence[str]) -> dict[str, int]:
    """``{name: id}`` of the sources among ``names`` that exist."""
    ids: dict[str, int] = {}
    for start in range(0, len(names), 1000):
        chunk = list(names[start:start + 1000])
        ids.update(session.execute(select(Source.name, Source.id).where(Source.name.in_(chunk))).tuples().all())
    return ids


def upsert_photometry(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update photometry by (``source_id``, ``image_id``); returns the number of rows written.

    Each row needs ``source_id``, ``image_id``, ``epoch_mjd``, ``flux_jy``,
    ``flux_err_jy``; ``norm_flux_jy``, ``norm_flux_err_jy`` and ``upper_limit``
    are optional. A re-measured row is updated in place and keeps its id: a
    job that scores "photometry with id > N" does not see re-measurements, so
    re-measuring should be followed by re-scoring the sources concerned.
    """
    full = _complete(rows, ["source_id", "image_id", "epoch_mjd", "flux_jy", "flux_err_jy"],
                     {"norm_flux_jy": None, "norm_flux_err_jy": None, "upper_limit": False}, "photometry")
    return upsert_rows(session, Photometry.__table__, full, keys=["source_id", "image_id"],
                       update=list(_PHOTOMETRY_FIELDS))


def set_normalized_flux(session: Session, rows: Iterable[Mapping[str, Any]]) -> int:
    """Set ``norm_flux_jy``/``norm_flux_err_jy`` of existing photometry rows given by ``id``."""
    full = [{"id": r["id"], "norm_flux_jy": r["norm_flux_jy"], "norm_flux_err_jy": r["norm_flux_err_jy"]}
            for r in rows]
    if full:
        session.execute(
            Photometry.__table__.update()
            .where(Photometry.__table__.c.id == bindparam("b_id"))
            .values(norm_flux_jy=bindparam("b_nf"), norm_flux_err_jy=bindparam("b_nfe")),
            [{"b_id": r["id"], "b_nf": r["norm_flux_jy"], "b_nfe": r["norm_flux_err_jy"]} for r in full],
        )
    return len(full)


def upsert_variability_stats(session: Session, rows: Iterable[Mapping[str, Any]], *,
                             now: datetime | None = None) -> int:
    """Insert or replace the variability statistics of sources (one row per ``source_id``).

    Each row needs ``source_id`` and ``n_epochs``; the other statistics are
    optional (None when not computable).

    Parameters
    ----------
    session
        The caller's session; the rows are written in its transaction.
    rows
        One row per source (no ``source_id`` twice): ``source_id``, ``n_epochs`` and any of ``weighted_mean_jy``,
        ``chi2_nu``, ``eta``, ``v``, ``modulation_index``, ``max_vs``, ``max_m``, ``ese_score``,
        ``ese_significance``, ``last_photometry_id``, ``last_epoch_mjd``; another column raises :class:`ValueError`.
    now
        The rows' ``updated_at`` (default: now, UTC).

    Returns
    -------
    int
        Number of rows written.
    """
    now = now or utcnow()
    optional: dict[str, Any] = {f: None for f in _STATS_FIELDS if f != "n_epochs"}
    optional["updated_at"] = now
    full = _complete(rows, ["source_id", "n_epochs"], optional, "variability")
    return upsert_rows(session, VariabilityStats.__table__, full, keys=["source_id"],
                       update=[*_STATS_FIELDS, "updated_at"])


def open_candidate(session: Session, source_id: int) -> EseCandidate | None:
    """The source's open (``new`` or ``confirmed``) ESE candidate, if any."""
    return session.scalars(
        select(EseCandidate)
        .where(EseCandidate.source_id == source_id, EseCandidate.status.in_(OPEN_CANDIDATE_STATUSES))
        .with_for_update()
    ).one_or_none()


def upsert_ese_candidate(
    session: Session,
    *,
    source_id: int,
    score: float,
    significance: float,
    detected_mjd: float,
    first_detected_mjd: float | None = None,
    template: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[EseCandidate, bool]:
    """Create the source's ESE candidate (status ``new``), or update its open one.

    An open candidate (``new`` or ``confirmed``) keeps its status and first
    detection; its score, significance, template and ``last_detected_mjd`` are
    replaced. A source with only closed (rejected/ended) candidates gets a new one.

    Parameters
    ----------
    session
        The caller's session; the open candidate's row is locked, the change flushed.
    source_id
        The source's id.
    score
        The ESE score of this detection (as ``VariabilityStats.ese_score``).
    significance
        Its significance (as ``VariabilityStats.ese_significance``).
    detected_mjd
        Epoch (MJD) of this detection: the candidate's ``last_detected_mjd``.
    first_detected_mjd
        ``first_detected_mjd`` of a new candidate (default: ``detected_mjd``); ignored for an open one.
    template
        Best-fit template parameters (e.g. ``t_center_mjd``, ``duration_days``, ``depth``), stored as JSON;
        None clears them.
    now
        ``created_at``/``updated_at`` of the candidate (default: now, UTC).

    Returns
    -------
    (candidate, created)
    """
    now = now or utcnow()
    cand = open_candidate(session, source_id)
    created = cand is None
    if cand is None:
        cand = EseCandidate(source_id=source_id, status=CandidateStatus.NEW,
                            first_detected_mjd=detected_mjd if first_detected_mjd is None else first_detected_mjd,
                            created_at=now)
        session.add(cand)
    cand.last_detected_mjd = detected_mjd
    cand.score = score
    cand.significance = significance
    cand.template = dict(template) if template is not None else None
    cand.updated_at = now
    session.flush()
    return cand, created


def _review_status(what: str, candidate_id: int, status: CandidateStatus | str) -> CandidateStatus:
    try:
        return CandidateStatus(status)
    except ValueError:
        raise ValidationError(f"{what} {candidate_id}: unknown status {status!r} (one of "
                              f"{', '.join(c.value for c in CandidateStatus)})") from None


def set_candidate_status(session: Session, candidate_id: int, status: CandidateStatus | str, *,
                         notes: str | None = None) -> EseCandidate:
    """Change a candidate's review status (e.g. ``confirmed``, ``rejected``), with optional notes.

    Parameters
    ----------
    session
        The caller's session; the row is locked and the change flushed.
    candidate_id
        The candidate's id; an unknown one raises :class:`~contimg.errors.NotFoundError`.
    status
        The new status (``new``, ``confirmed``, ``rejected`` or ``ended``).
    notes
        The reviewer's notes, replacing any earlier ones; None keeps them.

    Returns
    -------
    EseCandidate
        The updated candidate.

    Raises
    ------
    contimg.errors.NotFoundError
        No candidate has that id.
    contimg.errors.ValidationError
        An unknown status, or reopening a closed candidate (``new``/``confirmed``) while its source
        already has another open one (a source has at most one open candidate).
    """
    new = _review_status("ESE candidate", candidate_id, status)
    cand = session.get(EseCandidate, candidate_id, with_for_update=True)
    if cand is None:
        raise NotFoundError(f"no ESE candidate with id {candidate_id}")
    if new in OPEN_CANDIDATE_STATUSES and cand.status not in OPEN_CANDIDATE_STATUSES:
        other = open_candidate(session, cand.source_id)
        if other is not None and other.id != cand.id:
            raise ValidationError(f"ESE candidate {candidate_id} cannot be reopened as {new.value}: its source "
                                  f"already has open candidate {other.id} ({other.status.value})")
    cand.status = new
    if notes is not None:
        cand.notes = notes
    session.flush()
    return cand


def set_new_source_status(session: Session, candidate_id: int, status: CandidateStatus | str, *,
                          notes: str | None = None) -> NewSource:
    """Change a new-source candidate's review status, with optional notes.

    Parameters
    ----------
    session
        The caller's session; the row is locked and the change flushed.
    candidate_id
        The candidate's id (``new_sources.id``).
    status
        The new status (``new``, ``confirmed``, ``rejected`` or ``ended``).
    notes
        The reviewer's notes, replacing any earlier ones; None keeps them.

    Returns
    -------
    NewSource
        The updated candidate.

    Raises
    ------
    contimg.errors.NotFoundError
        No new-source candidate has that id.
    contimg.errors.ValidationError
        An unknown status.
    """
    new = _review_status("new-source candidate", candidate_id, status)
    cand = session.get(NewSource, candidate_id, with_for_update=True)
    if cand is None:
        raise NotFoundError(f"no new-source candidate with id {candidate_id}")
    cand.status = new
    if notes is not None:
        cand.notes = notes
    session.flush()
    return cand


def catalogue_in_box(session: Session, box: Any, *, calibrators_only: bool = False) -> list[Any]:
    """The catalogue sources inside a sky box, ordered by name.

    Parameters
    ----------
    session
        An open session.
    box
        A :class:`contimg.calibration.select.SkyBox` (declination band and RA range, deg).
    calibrators_only
        Only sources flagged ``is_calibrator``.

    Returns
    -------
    list
        Rows with the attributes of :class:`contimg.calibration.select.CatalogueRow`: ``name``,
        ``ra_deg``, ``dec_deg`` (deg), ``flux_jy`` (1.4 GHz, Jy, or None) and ``spectral_index`` (or None).
    """
    from sqlalchemy import and_, or_

    if box.all_ra:
        ra_cond = Source.ra_deg >= 0
    elif box.ra_lo <= box.ra_hi:
        ra_cond = and_(Source.ra_deg >= box.ra_lo, Source.ra_deg <= box.ra_hi)
    else:
        ra_cond = or_(Source.ra_deg >= box.ra_lo, Source.ra_deg <= box.ra_hi)
    stmt = select(Source.name, Source.ra_deg, Source.dec_deg, Source.flux_jy, Source.spectral_index).where(
        Source.dec_deg >= box.dec_lo, Source.dec_deg <= box.dec_hi, ra_cond)
    if calibrators_only:
        stmt = stmt.where(Source.is_calibrator.is_(True))
    return list(session.execute(stmt.order_by(Source.name)).all())


def replace_components(session: Session, image_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Store the blind-finder components of one image, replacing any it had (idempotent on rerun).

    Parameters
    ----------
    session
        An open session; only flushed.
    image_id
        The Image row the components were found in.
    rows
        One mapping per component: ``ra_deg``, ``dec_deg``, ``peak_flux_jy`` required; the other
        :class:`~contimg.db.models.Component` columns optional (NULL; ``flags`` 0). Non-finite floats are
        stored as NULL.

    Returns
    -------
    int
        The number of components stored.
    """
    full = _complete(rows, _COMPONENT_FIELDS, {**_COMPONENT_OPTIONAL, "flags": 0}, "component")
    for row in full:
        row["image_id"] = image_id
        for key, value in row.items():
            if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                row[key] = None
    session.execute(delete(Component).where(Component.image_id == image_id))
    for start in range(0, len(full), 5000):
        session.execute(insert(Component), full[start:start + 5000])
    session.flush()
    return len(full)
