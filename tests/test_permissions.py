"""Products and the database are not world-readable unless configured (``CONTIMG_UMASK``)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _contimg(args: list[str], root: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # the inherited umask must not decide the outcome: start the child with a permissive one
    return subprocess.run([sys.executable, "-m", "contimg", *args], cwd=root, capture_output=True, text=True,
                          env={**base, "CONTIMG_DATA_ROOT": str(root), **env}, timeout=120, umask=0o000)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_is_not_world_readable_by_default(tmp_path):
    out = _contimg(["db", "upgrade"], tmp_path)
    assert out.returncode == 0, out.stderr
    db = tmp_path / "state" / "contimg.sqlite3"
    assert _mode(db) & 0o007 == 0, oct(_mode(db))
    assert _mode(db) == 0o640
    assert _mode(db.parent) & 0o007 == 0, oct(_mode(db.parent))  # state/ made with the same umask
    for extra in db.parent.glob("contimg.sqlite3-*"):  # WAL and shared-memory files follow the database
        assert _mode(extra) & 0o007 == 0, (extra, oct(_mode(extra)))


def test_umask_022_makes_the_database_world_readable(tmp_path):
    out = _contimg(["db", "upgrade"], tmp_path, CONTIMG_UMASK="022")
    assert out.returncode == 0, out.stderr
    db = tmp_path / "state" / "contimg.sqlite3"
    assert _mode(db) & 0o004, oct(_mode(db))
    assert _mode(db) == 0o644


@pytest.mark.parametrize("bad", ["999", "27", "0o27", "rwx", "00027"])
def test_a_bad_umask_is_a_clear_error(tmp_path, bad):
    out = _contimg(["db", "upgrade"], tmp_path, CONTIMG_UMASK=bad)
    assert out.returncode == 2
    assert f"CONTIMG_UMASK={bad!r}" in out.stderr, out.stderr
    assert "[0-7]" in out.stderr  # says what is accepted
    assert not (tmp_path / "state").exists()
