"""Recording products: Measurement Sets, calibration sets and tables, images.

Every function takes a Session and only flushes; recording the same product
again (same path) updates its row instead of adding one, so a rerun stage is
harmless.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from contimg.db.models import CalibrationSet, CalibrationTable, CalTableType, Image, MeasurementSet
from contimg.db.groups import GroupRef, get_group

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
    """Record the image at ``path`` (created or updated); ``fields`` are Image columns."""
    _check_fields(Image, fields)
    image = _by_path(session, Image, path)
    if ms is not None:
        image.ms_id = ms if isinstance(ms, int) else ms.id
    for name, value in fields.items():
        setattr(image, name, value)
    session.flush()
    return image


def upsert_calibration_set(session: Session, *, name: str, **fields: Any) -> CalibrationSet:
    """The calibration set called ``name``, created or updated (``calibrator_name``, ``solve_mjd``, ``active``)."""
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
    """Record the ``table_type`` table of a calibration set (one per type and set; re-recording updates it)."""
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

