"""Fixtures shared by every test: a seeded generator, settings on a temporary data root, databases.

Database fixtures are parametrized over SQLite and PostgreSQL. The PostgreSQL
variants run when ``CONTIMG_TEST_POSTGRES_URL`` names a server (``make test``
sets it when one answers on 127.0.0.1:5432) and are skipped otherwise. Each
test session works in its own uniquely named schemas (``contimg_test_<pid>_<hex>``,
selected through the connection's ``search_path``), which are dropped at the end,
so concurrent runs never collide and nothing persists.

Stage-specific fixtures belong in the conftest of the stage's test directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

POSTGRES_URL_VAR = "CONTIMG_TEST_POSTGRES_URL"
SEED = 20251002


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (same numbers in every run)."""
    return np.random.default_rng(SEED)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``CONTIMG_*`` settings from the caller's environment (``CONTIMG_TEST_*`` are kept)."""
    for name in list(os.environ):
        if name.startswith("CONTIMG_") and not name.startswith("CONTIMG_TEST_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def settings(tmp_path, clean_env):
    """Default settings on a fresh data root ``tmp_path/data`` (directories created), staging in ``tmp_path``."""
    from contimg.config import load_settings

    s = load_settings(data_root=tmp_path / "data", staging_dir=tmp_path / "staging")
    s.paths.ensure()
    return s


# ---------------------------------------------------------------------------- PostgreSQL
def _schema_url(base_url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[Callable[[], str]]:
    """Factory of URLs, each on a new empty schema of this session's; all dropped at the end."""
    base_url = os.environ.get(POSTGRES_URL_VAR)
    if not base_url:
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: PostgreSQL tests skipped "
                    f"(e.g. {POSTGRES_URL_VAR}=postgresql+psycopg2://postgres@127.0.0.1:5432/test)")
    from sqlalchemy import create_engine, text

    from contimg.db import dispose_engines

    admin = create_engine(base_url)
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - report any connection failure as a test failure
        admin.dispose()
        pytest.fail(f"{POSTGRES_URL_VAR}={base_url}: cannot connect: {exc}")
    prefix = f"contimg_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    created: list[str] = []

    def make() -> str:
        schema = f"{prefix}_{len(created)}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        return _schema_url(base_url, schema)

    yield make
    dispose_engines()
    with admin.begin() as conn:
        for schema in created:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_migrated(postgres_schemas) -> str:
    """URL of this session's migrated PostgreSQL schema (shared; tables are emptied per test)."""
    from contimg.db import init_db

    url = postgres_schemas()
    init_db(url)
    return url


def _truncate_all(url: str) -> None:
    from sqlalchemy import text

    from contimg.db import get_engine
    from contimg.db.models import Base

    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_engine(url).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[pytest.mark.postgres, pytest.mark.integration]),
]


@pytest.fixture(params=_BACKENDS)
def empty_db_url(request, tmp_path) -> str:
    """URL of an empty database without any schema (SQLite file in ``tmp_path`` / new PG schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'state' / 'contimg.sqlite3'}"
    return request.getfixturevalue("postgres_schemas")()


@pytest.fixture(params=_BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """URL of an empty database migrated to the newest schema, on SQLite and on PostgreSQL.

    On SQLite it is the default database of the ``settings`` fixture's data root.
    """
    from contimg.db import dispose_engine, init_db

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'state' / 'contimg.sqlite3'}"  # = settings.database
        init_db(url)
        yield url
        dispose_engine(url)
        return
    url = request.getfixturevalue("postgres_migrated")
    _truncate_all(url)
    yield url


@pytest.fixture
def db_settings(tmp_path, clean_env, db_url):
    """The ``settings`` fixture's settings, with ``database_url`` set to ``db_url`` (both backends)."""
    from contimg.config import load_settings

    s = load_settings(data_root=tmp_path / "data", staging_dir=tmp_path / "staging", database_url=db_url)
    s.paths.ensure()
    return s
