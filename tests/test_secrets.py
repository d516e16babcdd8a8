"""No secret in output: masking URLs' passwords and known secrets (contimg.secrets), and the CLI."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from contimg.secrets import (
    MASK,
    SecretMaskingFilter,
    mask_text,
    mask_url,
    settings_secrets,
    url_passwords,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url, masked", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
    ("rediss://default:s3cr%40t@redis.example:6380/1?ssl_cert_reqs=required",
     "rediss://default:***@redis.example:6380/1?ssl_cert_reqs=required"),
    ("amqp://guest:guest@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
    ("postgresql+psycopg2://contimg:pw@postgres:5432/contimg",
     "postgresql+psycopg2://contimg:***@postgres:5432/contimg"),
    ("sentinel://:pw@s1:26379;sentinel://:pw@s2:26379;sentinel://s3:26379",
     "sentinel://:***@s1:26379;sentinel://:***@s2:26379;sentinel://s3:26379"),
    # an unencoded @ or : in the password is still masked as a whole
    ("redis://:p@ss:w@rd@host/0", "redis://:***@host/0"),
    ("redis://user:p:w@host", "redis://user:***@host"),
    # passwords in the query string
    ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
    ("sentinel://s1:26379?sentinel_password=pw", "sentinel://s1:26379?sentinel_password=***"),
    ("postgresql://u@h/db?sslmode=require&PASSWORD=pw", "postgresql://u@h/db?sslmode=require&PASSWORD=***"),
    ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ("unix://:pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
])
def test_mask_url_replaces_passwords(url, masked):
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # idempotent


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0",
    "redis://user@host:6379/0",
    "redis://:@host/0",  # an empty password reveals nothing
    "rediss://host:6380",
    "postgresql+psycopg2://contimg@postgres/contimg",
    "sqlite:////data/state/contimg.sqlite3",
    "sqlite:////data/a@b/contimg.sqlite3",
    "sentinel://s1:26379;sentinel://s2:26379",
    "memory://",
    "",
    "not a url",
    "key=value",
    "://:@",
])
def test_mask_url_leaves_urls_without_a_password_unchanged(url):
    assert mask_url(url) == url


@pytest.mark.parametrize("odd", [None, 42, b"redis://:pw@h", object(), "redis://" + "@" * 10000, "\x00://:x@"])
def test_mask_url_never_raises(odd):
    out = mask_url(odd)  # type: ignore[arg-type]
    assert isinstance(out, str)
    assert "pw@" not in out


def test_mask_url_inside_text():
    text = "Error connecting to redis://:pw@host:6379/0. Connection refused; retry postgresql://u:pw2@db/x"
    assert mask_url(text) == ("Error connecting to redis://:***@host:6379/0. Connection refused; "
                              "retry postgresql://u:***@db/x")


def test_mask_text_removes_known_secrets():
    msg = "FATAL: password s3cret rejected for s3cret2 (redis://:other@h/0)"
    out = mask_text(msg, ["s3cret", "s3cret2", "", None])
    assert out == f"FATAL: password {MASK} rejected for {MASK} (redis://:{MASK}@h/0)"
    assert mask_text("nothing to hide", []) == "nothing to hide"
    assert mask_text(ValueError("x s3cret"), ["s3cret"]) == f"x {MASK}"  # type: ignore[arg-type]


def test_mask_text_takes_urls_as_their_passwords():
    """A URL given as a secret masks its password (encoded and decoded), not the whole URL."""
    url = "redis://:p%40ss@host:6379/0"
    out = mask_text("auth failed with p@ss and p%40ss at redis://host:6379/0", [url, "redis://host:6379/0"])
    assert out == f"auth failed with {MASK} and {MASK} at redis://host:6379/0"


def test_url_passwords():
    assert url_passwords("redis://:p%40ss@h/0?password=q") == ["p%40ss", "p@ss", "q"]
    assert url_passwords("redis://h/0") == []
    assert url_passwords(None) == []


def test_settings_secrets(monkeypatch):
    from contimg.config import Settings

    s = Settings(broker_url="redis://:b@h/0", result_backend="redis://:rb@h/1",
                 database_url="postgresql://u:dbpw@h/db")
    # the default Flower password is public: masking it would blank every "contimg" in a message
    assert settings_secrets(s) == ["dbpw", "rb", "b"]
    s2 = Settings(monitoring={"flower_password": "flowerpw"})
    assert settings_secrets(s2) == ["flowerpw"]


def test_logging_filter_masks_messages_and_tracebacks():
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(SecretMaskingFilter(["flowerpw"]))
    logger = logging.getLogger("contimg.test_secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot reach %s (%s)", "redis://:pw@h/0", "flowerpw")
        try:
            raise RuntimeError("bad redis://u:pw@h/0 flowerpw")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert records[0] == f"cannot reach redis://:{MASK}@h/0 ({MASK})"
    assert "pw@" not in records[1] and "flowerpw" not in records[1]
    assert f"RuntimeError: bad redis://u:{MASK}@h/0 {MASK}" in records[1]


# --------------------------------------------------------------------------- the CLI


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _contimg(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_")}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "contimg", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_status_never_prints_the_broker_password(tmp_path):
    env = {"CONTIMG_DATA_ROOT": str(tmp_path), "CONTIMG_BROKER_URL": "redis://:s3cret@127.0.0.1:1/0"}
    assert _contimg(["db", "upgrade"], env, tmp_path).returncode == 0
    text = _contimg(["status"], env, tmp_path)
    assert text.returncode == 0, text.stderr
    assert "s3cret" not in text.stdout and "s3cret" not in text.stderr
    assert "cannot read queue lengths from redis://:***@127.0.0.1:1/0" in text.stderr
    assert "broker redis://:***@127.0.0.1:1/0 unreachable" in text.stdout
    js = _contimg(["status", "--json"], env, tmp_path)
    assert js.returncode == 0, js.stderr
    assert "s3cret" not in js.stdout and "s3cret" not in js.stderr
    status = json.loads(js.stdout)
    assert status["broker"] == "redis://:***@127.0.0.1:1/0"
    assert set(status["queues"].values()) == {None}


def test_database_connection_error_never_prints_the_password(tmp_path):
    env = {"CONTIMG_DATA_ROOT": str(tmp_path), "CONTIMG_BROKER_URL": "redis://:s3cret@127.0.0.1:1/0",
           "CONTIMG_DATABASE_URL": f"postgresql+psycopg2://contimg:pgs3cret@127.0.0.1:{_closed_port()}/contimg"}
    for args in (["status"], ["status", "--json"], ["db", "upgrade"], ["-vv", "db", "current"]):
        out = _contimg(args, env, tmp_path)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "contimg:***@127.0.0.1" in out.stderr, (args, out.stderr)
        for secret in ("s3cret", "pgs3cret"):
            assert secret not in out.stdout and secret not in out.stderr, (args, out.stderr)


def test_unexpected_errors_are_masked_too(tmp_path):
    """A library's error that is not a contimg error: the traceback is printed, masked."""
    env = {"CONTIMG_DATA_ROOT": str(tmp_path),
           "CONTIMG_DATABASE_URL": "postgresql+psycopg2://contimg:pgs3cret@127.0.0.1:1/contimg?no_such_option=1"}
    out = _contimg(["db", "current"], env, tmp_path)
    assert out.returncode == 1
    assert "Traceback" in out.stderr
    assert "pgs3cret" not in out.stdout + out.stderr


def test_invalid_database_url_is_masked(tmp_path):
    env = {"CONTIMG_DATA_ROOT": str(tmp_path), "CONTIMG_DATABASE_URL": "postgresql+psycopg2://u:pgs3cret@h:notaport/x"}
    out = _contimg(["db", "current"], env, tmp_path)
    assert out.returncode != 0
    assert "pgs3cret" not in out.stdout + out.stderr
    assert "CONTIMG_DATABASE_URL" in out.stderr
