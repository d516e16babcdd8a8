"""Typed settings: defaults, environment and TOML overrides, validation errors, the CLI's exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from contimg.config import DEFAULT_REDIS_URL, Settings, load_settings
from contimg.errors import ConfigError, PermanentError

REPO = Path(__file__).resolve().parents[1]
_Usage = namedtuple("_Usage", "total used free")


# --------------------------------------------------------------------------- defaults
def test_defaults_run_on_one_machine(clean_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    root = tmp_path / "contimg-data"
    assert s.data_root == Path("contimg-data") and s.paths.root == root
    assert (s.paths.incoming, s.paths.ms, s.paths.images, s.paths.caltables, s.paths.state) == (
        root / "incoming", root / "ms", root / "images", root / "caltables", root / "state")
    assert s.database == f"sqlite:///{root / 'state' / 'contimg.sqlite3'}"
    assert s.broker_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert not s.broker_configured
    assert s.result_backend_url == s.broker_url
    assert s.imaging.backend == "wsclean" and s.ingest.tolerance_s == 60.0 and s.ingest.min_subbands == 12
    assert s.log_level == "INFO"
    assert not root.exists()  # reading settings creates nothing


def test_paths_ensure_creates_the_directories(settings):
    for p in (settings.paths.incoming, settings.paths.ms, settings.paths.images, settings.paths.caltables,
              settings.paths.state, settings.paths.staging):
        assert p.is_dir()


def test_settings_are_frozen(clean_env):
    s = load_settings()
    with pytest.raises(PydanticValidationError):
        s.broker_url = "redis://elsewhere"  # type: ignore[misc]
    with pytest.raises(PydanticValidationError):
        s.ingest.tolerance_s = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- staging
def test_staging_uses_dev_shm_when_it_has_room(clean_env, tmp_path, monkeypatch):
    if not (Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK)):
        pytest.skip("/dev/shm is not a writable directory here")
    monkeypatch.setattr("contimg.config.shutil.disk_usage", lambda p: _Usage(64e9, 0, 64e9))
    s = load_settings(data_root=tmp_path)
    assert s.paths.staging == Path("/dev/shm/contimg")


def test_staging_falls_back_to_the_data_root_when_dev_shm_is_small(clean_env, tmp_path, monkeypatch):
    seen = []

    def small(path):
        seen.append(Path(path))
        return _Usage(8e9, 7e9, 1e9)  # 1 GB free < 4 GB required

    monkeypatch.setattr("contimg.config.shutil.disk_usage", small)
    s = load_settings(data_root=tmp_path)
    assert s.paths.staging == tmp_path / "tmp"
    if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        assert seen == [Path("/dev/shm")]


def test_staging_threshold_and_explicit_directory(clean_env, tmp_path, monkeypatch):
    monkeypatch.setattr("contimg.config.shutil.disk_usage", lambda p: _Usage(8e9, 0, 8e9))
    monkeypatch.setenv("CONTIMG_CONVERSION__STAGING_MIN_FREE_GB", "10")
    assert load_settings(data_root=tmp_path).paths.staging == tmp_path / "tmp"
    monkeypatch.setenv("CONTIMG_STAGING_DIR", str(tmp_path / "fast"))
    assert load_settings(data_root=tmp_path).paths.staging == tmp_path / "fast"


# --------------------------------------------------------------------------- environment and TOML
def test_environment_overrides(clean_env, tmp_path):
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "root"))
    clean_env.setenv("CONTIMG_DATABASE_URL", "postgresql+psycopg2://contimg@db:5432/contimg")
    clean_env.setenv("CONTIMG_BROKER_URL", "redis://broker:6379/1")
    clean_env.setenv("CONTIMG_INGEST__TOLERANCE_S", "30")
    clean_env.setenv("CONTIMG_IMAGING__BACKEND", "tclean")
    clean_env.setenv("CONTIMG_CALIBRATION__DO_K", "true")
    clean_env.setenv("CONTIMG_TEST_SOMETHING", "tests' own variables are not settings")
    s = load_settings()
    assert s.paths.root == tmp_path / "root"
    assert s.database == "postgresql+psycopg2://contimg@db:5432/contimg"
    assert s.broker_url == "redis://broker:6379/1" and s.broker_configured
    assert s.ingest.tolerance_s == 30.0 and isinstance(s.ingest.tolerance_s, float)
    assert s.ingest.min_subbands == 12  # the rest of the section keeps its defaults
    assert s.imaging.backend == "tclean" and s.calibration.do_k is True


def test_toml_file(clean_env, tmp_path):
    cfg = tmp_path / "contimg.toml"
    cfg.write_text(f'data_root = "{tmp_path / "from-toml"}"\nlog_level = "DEBUG"\n\n'
                   "[ingest]\ntolerance_s = 45\nmin_subbands = 14\n\n[imaging]\nrobust = -0.5\n")
    clean_env.setenv("CONTIMG_CONFIG", str(cfg))
    s = load_settings()
    assert s.paths.root == tmp_path / "from-toml" and s.log_level == "DEBUG"
    assert (s.ingest.tolerance_s, s.ingest.min_subbands, s.imaging.robust) == (45.0, 14, -0.5)
    # the environment beats the file, key by key inside a section
    clean_env.setenv("CONTIMG_INGEST__TOLERANCE_S", "20")
    s = load_settings()
    assert (s.ingest.tolerance_s, s.ingest.min_subbands) == (20.0, 14)
    # and explicit overrides beat both
    assert load_settings(log_level="ERROR").log_level == "ERROR"


def test_missing_or_broken_toml_file(clean_env, tmp_path):
    clean_env.setenv("CONTIMG_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"CONTIMG_CONFIG=.*absent\.toml: no such file"):
        load_settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest\ntolerance_s = 1\n")
    clean_env.setenv("CONTIMG_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("var", "value", "expected"), [
    ("CONTIMG_IMAGING__BACKEND", "casa", "Input should be 'wsclean' or 'tclean'"),
    ("CONTIMG_IMAGING__TIER", "best", "'quicklook', 'standard' or 'deep'"),
    ("CONTIMG_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("CONTIMG_INGEST__MIN_SUBBANDS", "17", "less than or equal to 16"),
    ("CONTIMG_INGEST__TOLERANCE_S", "-1", "greater than 0"),
    ("CONTIMG_INGEST__TOLERANCE_S", "soon", "valid number"),
    ("CONTIMG_MONITORING__FLOWER_PORT", "70000", "less than or equal to 65535"),
])
def test_bad_values_name_the_variable_and_what_is_accepted(clean_env, var, value, expected):
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    msg = str(info.value)
    assert f"{var}={value!r}" in msg and expected in msg
    assert isinstance(info.value, PermanentError)


def test_unknown_variables_are_rejected(clean_env):
    clean_env.setenv("CONTIMG_DATAROOT", "/typo")
    with pytest.raises(ConfigError, match="unknown setting.*CONTIMG_DATAROOT.*known: CONTIMG_DATA_ROOT"):
        load_settings()
    clean_env.delenv("CONTIMG_DATAROOT")
    clean_env.setenv("CONTIMG_INGEST__TOLERANCE", "30")
    with pytest.raises(ConfigError, match="CONTIMG_INGEST__TOLERANCE: unknown setting"):
        load_settings()


def test_unknown_keys_in_the_toml_file_are_rejected(clean_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ingest]\ntolerance = 30\n")
    clean_env.setenv("CONTIMG_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings()


def test_settings_class_is_the_public_type(clean_env):
    assert isinstance(load_settings(), Settings)


# --------------------------------------------------------------------------- the command line
def _contimg(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONTIMG_") or k.startswith("CONTIMG_TEST_")}
    return subprocess.run([sys.executable, "-m", "contimg", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_help_works_and_lists_commands(tmp_path):
    proc = _contimg("--help", env={}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage: contimg" in proc.stdout and " db " in proc.stdout


def test_cli_exits_2_naming_the_bad_setting(tmp_path):
    proc = _contimg("db", "current", env={"CONTIMG_IMAGING__BACKEND": "casa"}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "CONTIMG_IMAGING__BACKEND" in proc.stderr
    assert "'wsclean' or 'tclean'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "contimg-data").exists()  # nothing was touched


@pytest.mark.parametrize(("env", "expected"), [
    ({"CONTIMG_INGEST__STALE_IN_PROGRESS_S": "3000"},
     r"the image step may run 4500 s \(CONTIMG_IMAGING__TIMEOUT_S x 1.25\), not less than "
     r"CONTIMG_INGEST__STALE_IN_PROGRESS_S=3000"),
    ({"CONTIMG_CALIBRATION__TIMEOUT_S": "8000"}, r"the calibrate step may run 8000 s"),
    ({"CONTIMG_CELERY__VISIBILITY_TIMEOUT_S": "3600"},
     r"CONTIMG_INGEST__STALE_IN_PROGRESS_S=7200 must be less than CONTIMG_CELERY__VISIBILITY_TIMEOUT_S=3600"),
    ({"CONTIMG_CELERY__PRESENCE_TTL_S": "6"}, r"PRESENCE_TTL_S=6 must be at least twice"),
])
def test_timeouts_are_checked_against_each_other(clean_env, monkeypatch, env, expected):
    """Step time limits < stale threshold < visibility timeout: a live step is never taken for a lost one."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_default_timeouts_are_in_order(clean_env):
    s = load_settings()
    assert max(s.step_time_limits().values()) < s.ingest.stale_in_progress_s < s.celery.visibility_timeout_s
