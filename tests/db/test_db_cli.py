"""``contimg db upgrade|current|check`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import text

from contimg.cli import main
from contimg.db import get_engine, head_revision


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_upgrade_current_check(empty_db_url, clean_env, capsys):
    head = head_revision()
    status, out, _ = _run(capsys, "db", "current", "--url", empty_db_url)
    assert status == 0 and "revision none" in out and "contimg db upgrade" in out
    status, _, err = _run(capsys, "db", "check", "--url", empty_db_url)
    assert status == 1 and f"is not the head {head}" in err
    status, out, _ = _run(capsys, "db", "upgrade", "--url", empty_db_url)
    assert status == 0 and f"upgraded from empty to {head}" in out
    status, out, _ = _run(capsys, "db", "upgrade", "--url", empty_db_url)
    assert status == 0 and "already at revision" in out
    status, out, _ = _run(capsys, "db", "check", "--json", "--url", empty_db_url)
    report = json.loads(out)
    assert status == 0 and report["ok"] and report["revision"] == head
    with get_engine(empty_db_url).begin() as conn:
        conn.execute(text("DROP INDEX ix_observation_groups_task_id"))
    status, _, err = _run(capsys, "db", "check", "--url", empty_db_url)
    assert status == 1 and "add_index: ix_observation_groups_task_id" in err


def test_default_database_comes_from_the_settings(clean_env, tmp_path, capsys):
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "root"))
    status, out, _ = _run(capsys, "db", "upgrade")
    assert status == 0
    assert (tmp_path / "root" / "state" / "contimg.sqlite3").is_file()
    assert str(tmp_path / "root" / "state" / "contimg.sqlite3") in out


def test_safe_url_hides_the_password():
    url = "postgresql+psycopg2://contimg:s3cret@127.0.0.1:1/none"
    from contimg.db import safe_url

    assert "s3cret" not in safe_url(url) and "***" in safe_url(url)


def test_unreachable_server_is_a_clean_error(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_")}
    proc = subprocess.run([sys.executable, "-m", "contimg", "db", "current", "--url", url, "--wait", "1"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}/test did not accept connections within 1 s" in proc.stderr
    assert "Traceback" not in proc.stderr
