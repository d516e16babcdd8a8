"""Portable column types.

SQLite has no timezone-aware timestamp: :class:`UTCDateTime` stores naive UTC
there and timezone-aware ``timestamptz`` on PostgreSQL, and always hands back
timezone-aware UTC :class:`~datetime.datetime` objects. Naive datetimes are
refused on the way in, so local time can never slip into the database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given to the database: "
                "use timezone-aware UTC (e.g. datetime.now(timezone.utc))"
            )
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def copy(self, **kw: Any) -> "UTCDateTime":
        return UTCDateTime()


BigIntegerPK = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit auto-incrementing key; on SQLite, ``INTEGER`` so that it is the rowid."""
