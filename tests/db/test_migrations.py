"""The Alembic migrations create exactly what the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from contimg.db import current_revision, get_engine, head_revision, init_db, schema_differences
from contimg.db.migrate import alembic_config
from contimg.db.models import Base

REPO = Path(__file__).resolve().parents[2]


def test_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    assert all(not r.is_merge_point for r in revisions)


def test_init_db_creates_the_schema_idempotently(empty_db_url):
    assert current_revision(empty_db_url) is None
    assert init_db(empty_db_url) == head_revision()
    assert init_db(empty_db_url) == head_revision()  # a second run changes nothing
    tables = set(inspect(get_engine(empty_db_url)).get_table_names())
    assert tables == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}


def test_models_and_migrations_agree(empty_db_url):
    init_db(empty_db_url)
    assert schema_differences(empty_db_url) == []


def test_the_comparison_sees_a_difference(empty_db_url):
    """Guard against a vacuous check: a schema that lacks an index is reported."""
    init_db(empty_db_url)
    with get_engine(empty_db_url).begin() as conn:
        conn.execute(text("DROP INDEX ix_photometry_source_id_epoch_mjd"))
    diffs = schema_differences(empty_db_url)
    assert [d[0] for d in diffs] == ["add_index"]
    assert diffs[0][1].name == "ix_photometry_source_id_epoch_mjd"


def test_downgrade_to_base_and_upgrade_again(empty_db_url):
    init_db(empty_db_url)
    cfg = alembic_config(empty_db_url)
    with get_engine(empty_db_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(get_engine(empty_db_url)).get_table_names()) <= {"alembic_version"}
    assert init_db(empty_db_url) == head_revision()
    assert schema_differences(empty_db_url) == []


def _init_in_child(url: str, out) -> None:
    from contimg.db import init_db

    try:
        out.put(init_db(url))
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")
        raise


def test_concurrent_init_db(empty_db_url):
    """Workers starting together all migrate the same fresh database without error."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_init_in_child, args=(empty_db_url, out)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [head_revision()] * 3
    assert schema_differences(empty_db_url) == []


def test_alembic_check_with_the_shipped_ini(tmp_path):
    """What a developer runs: ``alembic -c contimg/db/alembic.ini check`` (SQLite)."""
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    init_db(url)
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "contimg" / "db" / "alembic.ini"),
               "-x", f"url={url}"]
    proc = subprocess.run([*alembic, "check"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "No new upgrade operations detected" in proc.stdout + proc.stderr


@pytest.mark.parametrize("table", ["photometry"])
def test_bigint_key_autoincrements(empty_db_url, table):
    """The photometry key is 64-bit on PostgreSQL and the rowid on SQLite; both autoincrement."""
    init_db(empty_db_url)
    with get_engine(empty_db_url).begin() as conn:
        conn.execute(text("INSERT INTO sources (name, ra_deg, dec_deg, resolved, confused, is_calibrator) "
                          "VALUES ('s', 0, 0, false, false, false)"))
        conn.execute(text("INSERT INTO images (path, pb_corrected, created_at) VALUES ('i', false, :t)"),
                     {"t": "2025-10-02 10:02:45+00:00"})
        conn.execute(text(f"INSERT INTO {table} (source_id, image_id, epoch_mjd, flux_jy, flux_err_jy, "
                          "upper_limit) VALUES (1, 1, 1.0, 1.0, 0.1, false)"))
        assert conn.execute(text(f"SELECT id FROM {table}")).scalar() == 1


def test_check_constraints_are_compared(empty_db_url):
    """A CHECK constraint in the models but not in the database is reported (and the reverse)."""
    from sqlalchemy import CheckConstraint, MetaData

    init_db(empty_db_url)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["images"].append_constraint(CheckConstraint("rms_jy > 0", name="rms_positive"))
    diffs = schema_differences(empty_db_url, metadata=changed)
    assert [(d[0], d[1].name) for d in diffs] == [("add_constraint", "ck_images_rms_positive")]
    ck = changed.tables["subband_files"].constraints
    ck.remove(next(c for c in ck if c.name == "ck_subband_files_subband_range"))
    diffs = schema_differences(empty_db_url, metadata=changed)
    assert sorted((d[0], d[1].name) for d in diffs) == [("add_constraint", "ck_images_rms_positive"),
                                                        ("remove_constraint", "ck_subband_files_subband_range")]


def test_unknown_revision_is_a_clear_error(empty_db_url):
    from contimg.errors import PermanentError

    init_db(empty_db_url)
    with get_engine(empty_db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(PermanentError, match="cannot upgrade the schema.*ffff_from_the_future"):
        init_db(empty_db_url)
