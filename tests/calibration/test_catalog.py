"""Catalogue imports: calibrators and sources from CSV and simulator truth, idempotent, with clear errors."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from contimg.calibration import catalog as files
from contimg.pipeline import catalog
from contimg.db import session_scope
from contimg.db.models import Source
from contimg.errors import InputFileError

CALIBRATORS = """name,ra_deg,dec_deg,flux_jy,spectral_index,quality
3C286,202.784533,30.509155,14.9,-0.46,P
3C48,24.422081,33.159758,16.0,-0.7,
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _all(url):
    with session_scope(url, readonly=True) as s:
        return {r.name: r for r in s.scalars(select(Source)).all()}


def test_import_calibrators_is_an_idempotent_upsert(db_url, tmp_path):
    path = _write(tmp_path, "cal.csv", CALIBRATORS)
    for _ in range(2):
        with session_scope(db_url) as s:
            report = catalog.import_calibrators(s, path)
        assert report.n_rows == 2 and report.n_calibrators == 2
    rows = _all(db_url)
    assert set(rows) == {"3C286", "3C48"}
    assert rows["3C286"].is_calibrator and rows["3C286"].flux_jy == 14.9
    assert rows["3C286"].spectral_index == -0.46 and rows["3C286"].quality == "P"
    assert rows["3C48"].quality is None
    path.write_text(CALIBRATORS.replace("14.9", "15.1"))
    with session_scope(db_url) as s:
        catalog.import_calibrators(s, path)
    assert _all(db_url)["3C286"].flux_jy == 15.1


@pytest.mark.parametrize("flux", ["", "nan", "-1"])
def test_calibrator_without_flux_is_refused_naming_file_and_line(db_url, tmp_path, flux):
    text = CALIBRATORS + f"J1234+5678,188.5,56.9,{flux},-0.7,\n"
    path = _write(tmp_path, "cal.csv", text)
    with pytest.raises(InputFileError, match=r"cal\.csv, line 4: .*J1234\+5678"):
        with session_scope(db_url) as s:
            catalog.import_calibrators(s, path)
    assert _all(db_url) == {}  # nothing half-imported


def test_calibrator_csv_errors(tmp_path):
    with pytest.raises(InputFileError, match="missing column"):
        files.read_calibrator_csv(_write(tmp_path, "a.csv", "name,ra_deg,dec_deg\nX,1,2\n"))
    with pytest.raises(InputFileError, match="line 2: position"):
        files.read_calibrator_csv(_write(tmp_path, "b.csv", "name,ra_deg,dec_deg,flux_jy\nX,400,2,1\n"))
    with pytest.raises(InputFileError, match="line 3: calibrator X already on line 2"):
        files.read_calibrator_csv(_write(tmp_path, "c.csv", "name,ra,dec,flux_1400_jy\nX,1,2,1\nX,1,2,1\n"))
    with pytest.raises(InputFileError, match="no such file|cannot read"):
        files.read_calibrator_csv(tmp_path / "missing.csv")


def test_import_sources_with_flags_and_aliases_keeps_calibrator_flags(db_url, tmp_path):
    with session_scope(db_url) as s:
        catalog.import_calibrators(s, _write(tmp_path, "cal.csv", CALIBRATORS))
    src = _write(tmp_path, "nvss.csv",
                 "id,ra,dec,flux,e_flux_jy,resolved,confused\n"
                 "NVSS J000001+350000,0.004,35.0,0.25,0.01,1,0\n"
                 "NVSS J000002+350000,0.008,35.0,,,false,true\n"
                 "3C286,202.784533,30.509155,14.9,0.5,0,0\n")
    with pytest.raises(InputFileError, match=r"nvss\.csv: the flux column 'flux' has no unit; give it with --flux-unit"):
        files.read_source_csv(src)  # a unitless flux column is not guessed to be Jy
    for _ in range(2):
        with session_scope(db_url) as s:
            report = catalog.import_sources(s, src, flux_unit="Jy")
        assert report.n_rows == 3
    rows = _all(db_url)
    assert len(rows) == 4
    a, b = rows["NVSS J000001+350000"], rows["NVSS J000002+350000"]
    assert (a.flux_jy, a.flux_err_jy, a.resolved, a.confused) == (0.25, 0.01, True, False)
    assert (b.flux_jy, b.resolved, b.confused, b.is_calibrator) == (None, False, True, False)
    assert rows["3C286"].is_calibrator  # importing it as a source does not clear the flag
    with pytest.raises(InputFileError, match=r"nvss2\.csv, line 2: resolved='maybe'"):
        files.read_source_csv(_write(tmp_path, "nvss2.csv", "name,ra_deg,dec_deg,resolved\nX,1,2,maybe\n"))


def test_import_truth(db_url, noisefree):
    truth, _ = noisefree
    for _ in range(2):
        with session_scope(db_url) as s:
            report = catalog.import_truth(s, truth.path)
    assert report.n_rows == truth.catalog.Nsrc and report.n_calibrators == 1
    with session_scope(db_url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Source)) == truth.catalog.Nsrc
        cal = s.scalars(select(Source).where(Source.is_calibrator)).one()
    assert cal.name == files.simulated_source_name(truth.calibrator_id)
    assert cal.flux_jy == pytest.approx(10.0)


def test_cli_catalog(tmp_path, clean_env, capsys):
    from contimg.cli import main

    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    path = _write(tmp_path, "cal.csv", CALIBRATORS)
    assert main(["catalog", "import-calibrators", str(path)]) == 0
    assert "2 rows imported (contimg format): 2 added, 0 updated (2 calibrators)" in capsys.readouterr().out
    bad = _write(tmp_path, "bad.csv", "name,ra_deg,dec_deg,flux_jy\nX,1,2,\n")
    assert main(["catalog", "import-calibrators", str(bad)]) != 0
    assert "bad.csv, line 2" in capsys.readouterr().err
    from contimg.db import dispose_engines

    dispose_engines()


def test_simulation_csv_then_truth_updates_instead_of_duplicating(db_url, noisefree):
    truth, _ = noisefree
    with session_scope(db_url) as s:
        first = catalog.import_sources(s, truth.path / "sources.csv")
    with session_scope(db_url) as s:
        second = catalog.import_truth(s, truth.path)
    n = truth.catalog.Nsrc
    assert (first.n_added, first.n_updated) == (n, 0)
    assert (second.n_added, second.n_updated) == (0, n)
    rows = _all(db_url)
    assert len(rows) == n and str(truth.calibrator_id) in rows  # the CSV's names are kept
    assert rows[str(truth.calibrator_id)].is_calibrator
