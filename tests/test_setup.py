"""``contimg setup``: the offline CASA site config, the user config left alone, the checks.

The command is run as a real process (``python -m contimg setup``) in a temporary
HOME, with the site config written to a temporary path so the environment's own
``casasiteconfig.py`` is not touched. Each run imports casatools once in a child
process (about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contimg.cli import build_parser
from contimg.cli.setup import Check, _exec_config, _severe_messages, format_table

def _run_setup(home: Path, site_config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTIMG_", "CASA"))}
    env.pop("AIPSPATH", None)
    env.pop("CASACORE_DATADIR", None)
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "contimg", "setup", "--site-config", str(site_config), "--json"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


def _checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    rows = json.loads(proc.stdout)
    return {row["name"]: row for row in rows}


@pytest.fixture(scope="module")
def fresh_home_run(tmp_path_factory):
    """``contimg setup`` in a HOME without ``~/.casa/config.py``."""
    base = tmp_path_factory.mktemp("setup-fresh")
    home = base / "home"
    home.mkdir()
    site = base / "site" / "casasiteconfig.py"
    proc = _run_setup(home, site, base)
    return proc, home, site, base


@pytest.mark.integration
def test_fresh_home_succeeds(fresh_home_run):
    proc, home, site, _ = fresh_home_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = _checks(proc)
    failed = {name: row["detail"] for name, row in checks.items() if row["status"] == "FAIL"}
    assert not failed
    assert checks["CASA site config"]["status"] == "ok"
    assert checks["CASA user config"]["status"] == "ok"
    assert checks["casatools offline"]["status"] == "ok"
    assert "TAI-UTC = 37 s" in checks["casatools offline"]["detail"]
    assert checks["casatools network"]["status"] == "ok", checks["casatools network"]["detail"]
    assert not (home / ".casa" / "config.py").exists()


@pytest.mark.integration
def test_site_config_keeps_auto_updates_off(fresh_home_run):
    _, _, site, _ = fresh_home_run
    values = _exec_config(site.read_text())
    assert values["measures_auto_update"] is False
    assert values["data_auto_update"] is False
    from contimg import casa_env

    assert values["measurespath"] == str(casa_env.casadata_dir())


@pytest.mark.integration
def test_setup_leaves_no_casa_logs_in_cwd(fresh_home_run):
    _, _, _, cwd = fresh_home_run
    assert not list(cwd.glob("casa-*.log"))


@pytest.mark.integration
def test_rerun_is_idempotent(fresh_home_run, tmp_path):
    _, home, site, _ = fresh_home_run
    before = site.read_bytes()
    # a second run over the same site config (own marker): rewritten identically
    proc = _run_setup(home, site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert site.read_bytes() == before


@pytest.mark.integration
@pytest.mark.parametrize(
    "user_text, expect_warning",
    [
        ("measures_auto_update = True\ndata_auto_update = True\n", True),
        ('colors = "Linux"\n', False),
    ],
    ids=["auto-update-on", "harmless"],
)
def test_user_config_is_never_changed(tmp_path, user_text, expect_warning):
    home = tmp_path / "home"
    (home / ".casa").mkdir(parents=True)
    user_cfg = home / ".casa" / "config.py"
    user_cfg.write_text(user_text)
    os.utime(user_cfg, (1_000_000_000, 1_000_000_000))
    before = user_cfg.read_bytes()

    proc = _run_setup(home, tmp_path / "site" / "casasiteconfig.py", tmp_path)

    assert user_cfg.read_bytes() == before
    assert user_cfg.stat().st_mtime == 1_000_000_000
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = _checks(proc)
    row = checks["CASA user config"]
    if expect_warning:
        assert row["status"] == "WARN"
        assert "measures_auto_update = True" in row["detail"]
        assert "left unchanged" in row["detail"]
        # casaconfig reads the user config after the site config: the effective
        # configuration has auto-updates on, and setup says so.
        assert checks["casatools network"]["status"] == "WARN"
        assert "auto-updates on" in checks["casatools network"]["detail"]
    else:
        assert row["status"] == "ok"
        assert "left unchanged" in row["detail"]


@pytest.mark.integration
def test_foreign_site_config_is_not_overwritten(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    site = tmp_path / "site" / "casasiteconfig.py"
    site.parent.mkdir()
    site.write_text("measurespath = '/somewhere/else'\n")
    proc = _run_setup(home, site, tmp_path)
    assert proc.returncode == 1
    assert site.read_text() == "measurespath = '/somewhere/else'\n"
    checks = _checks(proc)
    assert checks["CASA site config"]["status"] == "FAIL"
    assert "not written by contimg" in checks["CASA site config"]["detail"]
    assert "FAILED" in proc.stderr


# ------------------------------------------------------------------ pure helpers
def test_parser_knows_setup():
    args = build_parser().parse_args(["setup", "--site-config", "/tmp/x.py", "--json", "--timeout", "10"])
    assert args.command == "setup"
    assert args.site_config == Path("/tmp/x.py")
    assert args.json and args.timeout == 10.0


def test_severe_messages_first_lines_only():
    text = (
        "2026-11-24 01:18:07\tSEVERE\tMeasTable::dUTC(Double) (file x, line 4290)\tLeap second table TAI_UTC seems out-of-date.\n"
        "2026-11-24 01:18:07\tSEVERE\tMeasTable::dUTC(Double) (file x, line 4290)+\tUntil the table is updated\n"
        "2026-11-24 01:18:07\tINFO\tMeasIERS::fillMeas\tRequested JD 61368.1 is outside the range\n"
        "2026-11-24 01:18:08\tSEVERE\tMeasTable::dUTC(Double) (file x, line 4290)\tLeap second table TAI_UTC seems out-of-date.\n"
    )
    assert _severe_messages(text) == ["Leap second table TAI_UTC seems out-of-date."]


def test_format_table_aligns_columns():
    table = format_table([Check("a", "ok", "fine"), Check("longer name", "FAIL", "broken")])
    lines = table.splitlines()
    assert lines[0].startswith("check")
    assert lines[2].index("ok") == lines[3].index("FAIL") == lines[0].index("status")


# ------------------------------------------------------------------ measures update
def _copy_tables(src: Path, dst: Path, names: list[str]) -> None:
    import shutil

    for name in names:
        shutil.copytree(src / name, dst / name)


@pytest.fixture(scope="module")
def measures_sources(tmp_path_factory):
    """A WSRT_Measures-like tarball built from python-casacore's newer tables, and an older target."""
    import tarfile

    import casacore

    from contimg import casa_env

    newer = Path(casacore.__file__).parent / "data"
    older = casa_env.casadata_dir()
    base = tmp_path_factory.mktemp("measures")
    unpacked = base / "WSRT_Measures"
    (unpacked / "geodetic").mkdir(parents=True)
    (unpacked / "ephemerides").mkdir()
    _copy_tables(newer / "geodetic", unpacked / "geodetic", ["TAI_UTC", "IERSeop2000", "IERSpredict", "TAI_UTC.old"])
    _copy_tables(newer / "ephemerides", unpacked / "ephemerides", ["Lines"])
    (unpacked / "geodetic" / "Observatories").mkdir()
    (unpacked / "geodetic" / "Observatories" / "from-tarball").write_text("must not be installed")
    tarball = base / "WSRT_Measures.ztar"
    with tarfile.open(tarball, "w:gz") as tar:
        for sub in ("geodetic", "ephemerides"):
            tar.add(unpacked / sub, arcname=sub)
    return tarball, unpacked, older


def _older_target(older: Path, dest: Path) -> Path:
    (dest / "geodetic").mkdir(parents=True)
    (dest / "ephemerides").mkdir()
    _copy_tables(older / "geodetic", dest / "geodetic", ["TAI_UTC", "IERSeop2000", "Observatories"])
    return dest


def test_measures_tarball_updates_every_target(measures_sources, tmp_path):
    from contimg.cli.setup import _table_info, update_measures

    tarball, _, older = measures_sources
    targets = [_older_target(older, tmp_path / "a"), _older_target(older, tmp_path / "b")]
    before_obs = (targets[0] / "geodetic" / "Observatories" / "table.dat").read_bytes()
    eop_before = _table_info(targets[0] / "geodetic" / "IERSeop2000")

    checks = update_measures(tarball, targets)

    assert [c.status for c in checks] == ["ok", "ok"], checks
    for target in targets:
        geodetic = target / "geodetic"
        assert _table_info(geodetic / "IERSeop2000")[1] > eop_before[1]
        assert (geodetic / "IERSpredict" / "table.dat").is_file()
        assert (target / "ephemerides" / "Lines" / "table.dat").is_file()
        # CASA's own Observatories table and *.old backups are left alone
        assert (geodetic / "Observatories" / "table.dat").read_bytes() == before_obs
        assert not (geodetic / "Observatories" / "from-tarball").exists()
        assert not (geodetic / "TAI_UTC.old").exists()
        assert not [p for p in geodetic.iterdir() if p.name.startswith(".")]
    assert "4 tables" in checks[0].detail


def test_measures_update_from_an_unpacked_directory(measures_sources, tmp_path):
    from contimg.cli.setup import update_measures

    _, unpacked, older = measures_sources
    target = _older_target(older, tmp_path / "t")
    assert update_measures(unpacked, [target])[0].status == "ok"


def test_measures_update_rejects_bad_input(measures_sources, tmp_path):
    import io
    import tarfile

    from contimg.cli.setup import update_measures

    _, _, older = measures_sources
    target = _older_target(older, tmp_path / "t")
    before = sorted(p.name for p in (target / "geodetic").iterdir())

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../geodetic/TAI_UTC/table.dat")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    empty = tmp_path / "empty"
    (empty / "geodetic").mkdir(parents=True)

    for source, words in ((evil, "unsafe"), (empty, "TAI_UTC"), (tmp_path / "missing.ztar", "No such file")):
        (check,) = update_measures(source, [target])
        assert check.status == "FAIL" and words in check.detail, check
    assert sorted(p.name for p in (target / "geodetic").iterdir()) == before
    assert not (tmp_path / "geodetic").exists()


def test_measures_update_reports_unwritable_target(measures_sources, tmp_path):
    from contimg.cli.setup import update_measures

    tarball, _, _ = measures_sources
    (check,) = update_measures(tarball, [tmp_path / "not-a-measures-dir"])
    assert check.status == "FAIL" and "no geodetic/" in check.detail
