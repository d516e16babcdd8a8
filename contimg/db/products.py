"""Recording products: Measurement Sets, calibration sets and tables, images.

Every function takes a Session and only flushes; recording the same product
again (same path) updates its row instead of adding one, so a rerun stage is
harmless.
"""

from __future__ import annotations

import datetime as dt

import logging
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.db.models import CalibrationSet, CalibrationTable, CalTableType, Image, MeasurementSet, Mosaic
from contimg.db.groups import GroupRef, get_group
from contimg.errors import NotFoundError

log = logging.getLogger(__name__)

_PathRow = TypeVar("_PathRow", MeasurementSet, Image)


def _by_path(session: Session, model: type[_PathRow], path: str) -> _PathRow:
    """The ``model`` row whose ``path`` is ``path``, added to the session if new."""
    row = session.scalars(select(model).where(model.path == str(path))).one_or_none()
    if row is None:
        row = model(path=str(path))
        session.add(row)
    return row


def upsert_measurement_set(
    session: Session,
    *,
    path: str,
    group: GroupRef | None = None,
    **fields: Any,
) -> MeasurementSet:
    """Record the MS at ``path`` (created or updated: rerunning a conversion adds no row).

    ``fields`` are :class:`~contimg.db.models.MeasurementSet` columns, e.g.
    ``start_mjd``, ``end_mjd``, ``stage``, ``validation``, ``calibrator_name``.

    Parameters
    ----------
    session
        The caller's session; the row is flushed, not committed.
    path
        The MS's path (its unique key).
    group
        The group it was written from (object, id or key); None leaves the link as it is.
    **fields
        Columns to set (see above); an unknown name raises :class:`TypeError`.

    Returns
    -------
    MeasurementSet
        The row, flushed (its ``id`` is set).
    """
    _check_fields(MeasurementSet, fields)
    ms = _by_path(session, MeasurementSet, path)
    if group is not None:
        ms.group_id = get_group(session, group).id
    for name, value in fields.items():
        setattr(ms, name, value)
    session.flush()
    return ms


def upsert_image(session: Session, *, path: str, ms: MeasurementSet | int | None = None, **fields: Any) -> Image:
    """Record the image at ``path`` (created or updated); ``fields`` are Image columns.

    Parameters
    ----------
    session
        The caller's session; the row is flushed, not committed.
    path
        The FITS image's path (its unique key).
    ms
        The Measurement Set it was made from (row or id); None leaves the link as it is.
    **fields
        :class:`~contimg.db.models.Image` columns, e.g. ``mid_mjd``, ``rms_jy`` (Jy/beam), ``beam_major_arcsec``,
        ``pb_corrected``, ``qa_verdict``; an unknown name raises :class:`TypeError`.

    Returns
    -------
    Image
        The row, flushed (its ``id`` is set).
    """
    _check_fields(Image, fields)
    image = _by_path(session, Image, path)
    if ms is not None:
        image.ms_id = ms if isinstance(ms, int) else ms.id
    for name, value in fields.items():
        setattr(image, name, value)
    session.flush()
    return image


def upsert_mosaic(session: Session, *, night: Any, **fields: Any) -> Mosaic:
    """Record the mosaic of ``night`` (a :class:`datetime.date`), created or replaced; ``fields`` are Mosaic columns.

    Parameters
    ----------
    session
        The caller's session; the row is flushed, not committed.
    night
        The UTC day (its unique key).
    **fields
        :class:`~contimg.db.models.Mosaic` columns; an unknown name raises :class:`TypeError`.

    Returns
    -------
    Mosaic
        The row, flushed.
    """
    _check_fields(Mosaic, fields)
    row = session.scalar(select(Mosaic).where(Mosaic.night == night))
    if row is None:
        row = Mosaic(night=night)
        session.add(row)
    for name, value in fields.items():
        setattr(row, name, value)
    session.flush()
    return row


def upsert_calibration_set(session: Session, *, name: str, **fields: Any) -> CalibrationSet:
    """The calibration set called ``name``, created or updated (``calibrator_name``, ``solve_mjd``, ``active``).

    Parameters
    ----------
    session
        The caller's session; the row is flushed, not committed.
    name
        The set's unique name.
    **fields
        :class:`~contimg.db.models.CalibrationSet` columns (also ``qa``, ``qa_verdict``); ``solve_mjd`` is an
        MJD; an unknown name raises :class:`TypeError`.

    Returns
    -------
    CalibrationSet
        The row, flushed (its ``id`` is set).
    """
    _check_fields(CalibrationSet, fields)
    calset = session.scalars(select(CalibrationSet).where(CalibrationSet.name == name)).one_or_none()
    if calset is None:
        calset = CalibrationSet(name=name)
        session.add(calset)
    for key, value in fields.items():
        setattr(calset, key, value)
    session.flush()
    return calset


def upsert_calibration_table(
    session: Session,
    *,
    calibration_set: CalibrationSet,
    table_type: CalTableType | str,
    path: str,
    apply_order: int,
    valid_start_mjd: float,
    valid_end_mjd: float,
    **fields: Any,
) -> CalibrationTable:
    """Record the ``table_type`` table of a calibration set (one per type and set; re-recording updates it).

    Parameters
    ----------
    session
        The caller's session; the row is flushed, not committed.
    calibration_set
        The set it belongs to (flushed: its ``id`` is used).
    table_type
        ``K`` (delays), ``B`` (bandpass) or ``G`` (gains), as :class:`~contimg.db.models.CalTableType` or value.
    path
        The CASA table's path.
    apply_order
        Position of the table when the set is applied (unique within the set).
    valid_start_mjd, valid_end_mjd
        The time range (MJD) of the data the table may be applied to; the end must not precede the start.
    **fields
        Other :class:`~contimg.db.models.CalibrationTable` columns (``active``, ``source_ms_id``,
        ``calibrator_name``, ``flagged_fraction``, ``n_solutions`` ...); an unknown name raises :class:`TypeError`.

    Returns
    -------
    CalibrationTable
        The row, flushed (its ``id`` is set).
    """
    _check_fields(CalibrationTable, fields)
    table_type = CalTableType(table_type)
    table = session.scalars(select(CalibrationTable).where(
        CalibrationTable.calibration_set_id == calibration_set.id, CalibrationTable.table_type == table_type)
    ).one_or_none()
    if table is None:
        table = CalibrationTable(calibration_set_id=calibration_set.id, table_type=table_type)
        session.add(table)
    table.path = str(path)
    table.apply_order = apply_order
    table.valid_start_mjd = valid_start_mjd
    table.valid_end_mjd = valid_end_mjd
    for key, value in fields.items():
        setattr(table, key, value)
    session.flush()
    return table


def active_calibration_tables(session: Session, *, mjd: float) -> list[CalibrationTable]:
    """The tables to apply to data at ``mjd``, in apply order.

    For each type (K, B, G) the active table whose validity window contains
    ``mjd`` and whose window centre is closest to it (newest on a tie); types
    with no valid table are absent.
    """
    rows = session.scalars(
        select(CalibrationTable)
        .join(CalibrationSet)
        .where(CalibrationTable.active.is_(True), CalibrationSet.active.is_(True),
               CalibrationTable.valid_start_mjd <= mjd, CalibrationTable.valid_end_mjd >= mjd)
    ).all()
    best: dict[CalTableType, CalibrationTable] = {}
    for row in rows:
        key = (abs(0.5 * (row.valid_start_mjd + row.valid_end_mjd) - mjd), -row.id)
        cur = best.get(row.table_type)
        if cur is None or key < (abs(0.5 * (cur.valid_start_mjd + cur.valid_end_mjd) - mjd), -cur.id):
            best[row.table_type] = row
    return sorted(best.values(), key=lambda t: (t.apply_order, t.table_type.value))


def _check_fields(model: type, fields: dict[str, Any]) -> None:
    columns = set(model.__table__.columns.keys())  # type: ignore[attr-defined]
    unknown = sorted(set(fields) - columns)
    if unknown:
        raise TypeError(f"{model.__name__} has no column(s) {', '.join(unknown)}")


def register_calibration_set(session: Session, *, name: str, calibrator_name: str, solve_mjd: float,
                             tables: list[dict[str, Any]], source_ms_id: int | None = None,
                             qa: dict[str, Any] | None = None) -> CalibrationSet:
    """Record (or re-record) the tables of one solve as the active calibration set ``name``.

    Re-registering the same name updates the rows in place (idempotent
    reruns); tables of a type the new solve lacks (e.g. K after rerunning
    without ``do_k``) are deleted from the set.

    Parameters
    ----------
    session
        An open session; rows are flushed, not committed.
    name
        The calibration set's name (unique; an existing set of that name is updated and re-activated).
    calibrator_name
        The calibrator solved on.
    solve_mjd
        The solve's time (MJD): the calibrator group's mid-time.
    tables
        The tables' records (:func:`contimg.calibration.registry.table_rows`).
    source_ms_id
        Database id of the MS solved on, recorded on each table (None: unknown).
    qa
        JSON-ready QA record of the set (verdict, reasons, figures, plots); None stores none.

    Returns
    -------
    CalibrationSet
        The set's row, refreshed with its tables (its ``qa_verdict`` is left for the caller to set).
    """
    calset = upsert_calibration_set(session, name=name, calibrator_name=calibrator_name, solve_mjd=solve_mjd,
                                    active=True, qa=qa)
    kinds = {t["table_type"] for t in tables}
    for row in list(calset.tables):
        if row.table_type.value not in kinds:
            session.delete(row)
    session.flush()
    for t in tables:
        upsert_calibration_table(session, calibration_set=calset, active=True, source_ms_id=source_ms_id,
                                 calibrator_name=calibrator_name, **t)
    session.flush()
    session.refresh(calset)
    log.info("registered calibration set %s (%s) solved at MJD %.5f", name,
             ", ".join(t.table_type.value for t in calset.tables), solve_mjd)
    return calset


def active_calibration_sets(session: Session) -> list[CalibrationSet]:
    """Every active calibration set (with its tables: read them inside the session)."""
    return list(session.scalars(select(CalibrationSet).where(CalibrationSet.active.is_(True))).all())


def set_calibration_set_active(session: Session, name: str, active: bool) -> None:
    """Switch a calibration set on or off (a bad set is deactivated, never deleted).

    Parameters
    ----------
    session
        An open session; the change is flushed, not committed.
    name
        The calibration set's name.
    active
        True makes the set eligible for :func:`contimg.calibration.registry.choose_valid_set`, False
        withdraws it.

    Raises
    ------
    contimg.errors.NotFoundError
        If no set is called ``name``.
    """
    cs = session.scalars(select(CalibrationSet).where(CalibrationSet.name == name)).one_or_none()
    if cs is None:
        raise NotFoundError(f"calibration set {name!r} does not exist")
    cs.active = active
    session.flush()


def night_window(day: "dt.date") -> tuple[float, float]:
    """The UTC day ``day`` as ``[start_mjd, end_mjd)``."""
    start = (day - dt.date(1858, 11, 17)).days
    return float(start), float(start + 1)


def image_sets(session: Session, start_mjd: float, end_mjd: float) -> dict[str, list[Image]]:
    """The image product sets with mid-time in ``[start_mjd, end_mjd)``, in time order.

    A set's rows (its flat-noise and PB-corrected images) share the manifest's ``files["image"]``, which keys
    the set (a row without a manifest is a set of its own, keyed by its path).

    Parameters
    ----------
    session
        An open session.
    start_mjd, end_mjd
        The time window (MJD).

    Returns
    -------
    dict
        Set key (the flat-noise image's path) -> its Image rows, sets and rows ordered by mid-time, then id.
    """
    rows = session.scalars(select(Image).where(Image.mid_mjd >= start_mjd, Image.mid_mjd < end_mjd)
                           .order_by(Image.mid_mjd, Image.id))
    sets: dict[str, list[Image]] = {}
    for img in rows:
        sets.setdefault(str((img.files or {}).get("image") or img.path), []).append(img)
    return sets
