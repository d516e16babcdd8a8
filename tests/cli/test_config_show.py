"""``contimg config show``: the effective settings with their sources, secrets masked."""

from __future__ import annotations

import json
import tomllib

from contimg.cli import main


def test_config_show_masks_secrets_and_names_sources(clean_env, tmp_path, capsys):
    toml = tmp_path / "contimg.toml"
    toml.write_text('log_level = "DEBUG"\n[imaging]\nbackend = "tclean"\n[ingest]\ntolerance_s = 10\n')
    clean_env.setenv("CONTIMG_CONFIG", str(toml))
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    clean_env.setenv("CONTIMG_BROKER_URL", "redis://:brokerpw@redis:6379/0")
    clean_env.setenv("CONTIMG_DATABASE_URL", "postgresql+psycopg2://contimg:dbpw@db/contimg")
    clean_env.setenv("CONTIMG_WEB__OPERATOR_PASSWORD", "operatorpw")
    clean_env.setenv("CONTIMG_INGEST__TOLERANCE_S", "30")  # the environment wins over the file

    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    for secret in ("brokerpw", "dbpw", "operatorpw"):
        assert secret not in out
    doc = json.loads(out)
    s = doc["settings"]
    assert s["broker_url"] == "redis://:***@redis:6379/0"
    assert s["database_url"] == "postgresql+psycopg2://contimg:***@db/contimg"
    assert s["web"]["operator_password"] == "***" and s["web"]["viewer_password"] is None
    assert s["imaging"]["backend"] == "tclean" and s["ingest"]["tolerance_s"] == 30.0 and s["log_level"] == "DEBUG"
    assert doc["sources"] == {"data_root": "env", "broker_url": "env", "database_url": "env", "log_level": "file",
                              "imaging.backend": "file", "ingest.tolerance_s": "env", "web.operator_password": "env"}
    assert doc["derived"]["paths.incoming"] == str((tmp_path / "data" / "incoming").absolute())

    assert main(["config", "show"]) == 0
    text = capsys.readouterr().out
    assert "operatorpw" not in text and 'backend = "tclean"  # file' in text
    parsed = tomllib.loads(text)  # the text is TOML: unset values and sources are comments
    assert parsed["imaging"]["backend"] == "tclean" and parsed["web"]["operator_password"] == "***"
