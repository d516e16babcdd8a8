"""Published catalogues (NVSS, FIRST, VLASS, the VLA calibrator list) read from fixtures in their own formats.

The fixtures in ``data/`` follow the published layouts: VizieR's ``;``- and
tab-separated output (comments, header, units line, dashes line), the CIRADA
VLASS component CSV and the NRAO VLA calibrator list's text.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from contimg.calibration.catalogues import VLASS_ASSUMED_ALPHA, CatalogueTable, detect_format, read_catalogue
from contimg.db import session_scope
from contimg.db.models import Source
from contimg.errors import InputFileError
from contimg.pipeline import catalog

DATA = Path(__file__).parent / "data"
NVSS = DATA / "nvss_vizier.tsv"
FIRST = DATA / "first_vizier.tsv"
VLASS = DATA / "vlass1_ql_components.csv"
VLA = DATA / "vla_calibrators.txt"
# 3C48: the VLA list's J2000 position, and NVSS's entry 0.4 arcsec east of it
C48_RA, C48_DEC = 15 * (1 + 37 / 60 + 41.299431 / 3600), 33 + 9 / 60 + 35.13299 / 3600


def _all(url):
    with session_scope(url, readonly=True) as s:
        return {r.name: r for r in s.scalars(select(Source)).all()}


def _sep_arcsec(ra1, dec1, ra2, dec2):
    return math.hypot((ra1 - ra2) * math.cos(math.radians(dec1)), dec1 - dec2) * 3600


def test_nvss_vizier_semicolon_tsv():
    t = read_catalogue(NVSS)
    assert t.fmt == "nvss" and t.Nrows == 30
    last = t.records(29)[0]
    assert last["name"] == "NVSS J013741.33+330935.1"
    assert last["flux_jy"] == pytest.approx(15.9982) and last["flux_err_jy"] == pytest.approx(0.4804)  # mJy -> Jy
    assert _sep_arcsec(last["ra_deg"], last["dec_deg"], C48_RA, C48_DEC) < 1.0
    first = t.records(0, 1)[0]
    assert first["ra_deg"] == pytest.approx(15 * (1 + 21 / 60 + 38.06 / 3600))
    assert first["dec_deg"] == pytest.approx(34 + 32 / 60 + 55.2 / 3600)
    assert first["resolved"] and not t.resolved[2]  # MajAxis given vs an upper limit ("<")
    assert t.quality[3] == "P*" and t.quality[0] is None
    assert (t.flux_jy > 0.001).all() and not t.is_calibrator.any()


def test_nvss_tab_separated_fits_votable_and_plain_csv_agree(tmp_path):
    ref = read_catalogue(NVSS)
    tab = tmp_path / "nvss.tsv"
    tab.write_text(NVSS.read_text().replace(";", "\t"))
    # FITS and VOTable as VizieR gives them: decimal degrees, units in TUNIT / unit
    from astropy.table import Table

    tbl = Table({"RAJ2000": ref.ra_deg, "DEJ2000": ref.dec_deg, "S1.4": ref.flux_jy * 1e3,
                 "e_S1.4": ref.flux_err_jy * 1e3})
    tbl["RAJ2000"].unit = tbl["DEJ2000"].unit = "deg"
    tbl["S1.4"].unit = tbl["e_S1.4"].unit = "mJy"
    tbl.write(tmp_path / "nvss.fits")
    tbl.write(tmp_path / "nvss.vot", format="votable")
    for path in (tab, tmp_path / "nvss.fits", tmp_path / "nvss.vot"):
        t = read_catalogue(path)
        assert t.fmt == "nvss" and t.Nrows == 30, path
        np.testing.assert_allclose(t.ra_deg, ref.ra_deg, atol=1e-9)
        np.testing.assert_allclose(t.flux_jy, ref.flux_jy, rtol=1e-12)
    # a CSV without units (as saved by many tools): the flux unit must be given
    plain = tmp_path / "nvss.csv"
    tbl.write(plain, format="ascii.csv")
    with pytest.raises(InputFileError, match=r"nvss\.csv: the flux column 'S1\.4' has no unit; give it with "
                                             r"--flux-unit \(e\.g\. --flux-unit mJy\)"):
        read_catalogue(plain)
    np.testing.assert_allclose(read_catalogue(plain, flux_unit="mJy").flux_jy, ref.flux_jy)
    with pytest.raises(InputFileError, match=r"'S1\.4' is in mJy, not the Jy given"):
        read_catalogue(tmp_path / "nvss.fits", flux_unit="Jy")


def test_first_vizier_tsv_and_survey_fits(tmp_path):
    t = read_catalogue(FIRST)
    assert t.fmt == "first" and t.Nrows == 6
    r = t.records(4, 5)[0]
    assert r["name"] == "FIRST J013741.30+330935.1"
    assert r["flux_jy"] == pytest.approx(16.0121) and r["flux_err_jy"] == pytest.approx(1.012e-3)  # Fint, Rms
    assert t.resolved.tolist() == [True, False, True, True, True, False]  # deconvolved Maj > 0
    from astropy.table import Table

    tbl = Table({"RA": t.ra_deg, "DEC": t.dec_deg, "SIDEPROB": np.zeros(6), "FPEAK": t.flux_jy * 900,
                 "FINT": t.flux_jy * 1e3, "RMS": t.flux_err_jy * 1e3, "MAJOR": np.where(t.resolved, 2.0, 0.0),
                 "MINOR": np.zeros(6)})
    tbl["RA"].unit = tbl["DEC"].unit = "deg"
    for c in ("FPEAK", "RMS"):
        tbl[c].unit = "mJy/beam"
    tbl["FINT"].unit = "mJy"
    tbl.write(tmp_path / "first_14dec17.fits")
    f = read_catalogue(tmp_path / "first_14dec17.fits")
    assert f.fmt == "first"
    np.testing.assert_allclose(f.flux_jy, t.flux_jy)
    assert f.resolved.tolist() == t.resolved.tolist() and f.name.tolist() == t.name.tolist()


def test_vlass_components_need_a_unit_and_are_scaled_to_1400_mhz(tmp_path):
    with pytest.raises(InputFileError, match=r"'Total_flux' has no unit; give it with --flux-unit"):
        read_catalogue(VLASS)
    t = read_catalogue(VLASS, flux_unit="mJy")
    assert t.fmt == "vlass" and t.Nrows == 6  # the Duplicate_flag = 2 copy is skipped
    scale = (1.4 / 3.0) ** VLASS_ASSUMED_ALPHA
    k = t.name.tolist().index("VLASS1QLCIR J013741.30+330935.1")
    assert t.flux_jy[k] == pytest.approx(8.311442 * scale)
    assert t.flux_err_jy[k] == pytest.approx(0.41559 * scale) and t.quality[k] == "4"
    assert t.resolved.tolist() == [False, True, False, True, False, False]
    from astropy.table import Table

    tbl = Table.read(VLASS, format="ascii.csv")
    for c in ("Total_flux", "E_Total_flux"):
        tbl[c].unit = "mJy"
    tbl.write(tmp_path / "vlass.xml", format="votable")
    np.testing.assert_allclose(read_catalogue(tmp_path / "vlass.xml").flux_jy, t.flux_jy)


def test_vla_calibrator_list():
    t = read_catalogue(VLA)
    assert t.fmt == "vla-calibrators"
    names = t.name.tolist()
    assert names == ["0137+331", "0319+415", "0521+166", "0542+498", "1331+305", "1800+784", "2253+161"]
    assert t.is_calibrator.all()  # and 0006-063, without a 20cm flux, is skipped
    k = names.index("0137+331")
    assert t.flux_jy[k] == 16.5 and t.quality[k] == "L:XPPP"
    assert _sep_arcsec(t.ra_deg[k], t.dec_deg[k], C48_RA, C48_DEC) < 1e-3
    assert t.spectral_index[k] == pytest.approx(math.log(5.48 / 16.5) / math.log(4.86 / 1.4))
    assert t.dec_deg[names.index("1800+784")] == pytest.approx(78 + 28 / 60 + 4.01848 / 3600)
    assert t.quality[names.index("0319+415")] == "L:PPXX"


def test_vla_calibrator_list_epoch_first_layout(tmp_path):
    path = tmp_path / "callist.txt"
    path.write_text("J2000  A 0137+331   01h37m41.299431s  33d09'35.132990\"  Aug01  3C48\n"
                    "B1950  A 0134+329   01h34m49.826400s  32d54'20.259000\"\n"
                    "-----------------------------------------------------\n"
                    "BAND        A B C D    FLUX(Jy)    UVMIN(kL)  UVMAX(kL)\n"
                    "=====================================================\n"
                    "20cm    L  P  P  P  P    16.50\n")
    t = read_catalogue(path)
    assert t.name.tolist() == ["0137+331"] and t.flux_jy.tolist() == [16.5] and t.quality[0] == "L:PPPP"


def test_format_detection_and_refusals(tmp_path):
    assert detect_format(NVSS) == "nvss" and detect_format(FIRST) == "first"
    assert detect_format(VLASS) == "vlass" and detect_format(VLA) == "vla-calibrators"
    odd = tmp_path / "odd.csv"
    odd.write_text("x,y\n1,2\n")
    with pytest.raises(InputFileError, match="cannot tell the catalogue format.*give --format"):
        read_catalogue(odd)
    with pytest.raises(InputFileError, match=r"missing column\(s\) \['S1\.4'\] of the nvss format"):
        read_catalogue(FIRST, fmt="nvss")
    # a position out of range, named by file and row
    lines = NVSS.read_text().splitlines()
    k = lines.index("-----------;-----------;-----;----;--------;------;-;-----;-;-----;--") + 3
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines[:k] + ["01 23 45.00;+91 00 00.0; 0.1; 1.0;    10.0;   0.5;<; 10.0;<;  9.0;  "]
                             + lines[k + 1:]))
    with pytest.raises(InputFileError, match=r"bad\.tsv, row 3: position ra=20\.9.*dec=91\.0 deg is out of range"):
        read_catalogue(bad)
    bad.write_text("name,ra_deg,dec_deg,flux_jy\nA,10,20,1\nB,360.0,20,1\n")
    with pytest.raises(InputFileError, match=r"bad\.tsv, line 3: position ra=360\.0"):
        read_catalogue(bad)
    # a renamed flux column of contimg's CSV: refused, naming it
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("name,ra_deg,dec_deg,s1400\nA,10,20,1234.5\n")
    with pytest.raises(InputFileError, match=r"renamed\.csv: the flux column 's1400' has no unit"):
        read_catalogue(renamed)
    assert read_catalogue(renamed, flux_unit="mJy").flux_jy[0] == pytest.approx(1.2345)


def test_match_existing_one_row_per_source():
    existing = [(1, "A", 10.0, 20.0, False), (2, "B", 50.0, -30.0, True)]
    t = CatalogueTable.from_records("x", "contimg", [
        {"name": "a1", "ra_deg": 10.0 + 0.5 / 3600, "dec_deg": 20.0},   # 0.47" from A
        {"name": "a2", "ra_deg": 10.0, "dec_deg": 20.0 + 0.2 / 3600},   # nearer A: wins
        {"name": "far", "ra_deg": 10.0, "dec_deg": 20.0 + 2 / 3600},    # 2": added
        {"name": "B", "ra_deg": 51.0, "dec_deg": -30.0},                # by name, though it moved
    ])
    assert catalog.match_existing(t, existing, 1.0).tolist() == [-1, 0, -1, 1]
    assert catalog.match_existing(t, existing, 0.0).tolist() == [-1, -1, -1, 1]


def test_second_import_updates_instead_of_duplicating(db_url):
    with session_scope(db_url) as s:
        rep = catalog.import_catalogue(s, NVSS)
    assert (rep.n_added, rep.n_updated) == (30, 0)
    with session_scope(db_url) as s:
        rep = catalog.import_catalogue(s, NVSS)
    assert (rep.n_added, rep.n_updated) == (0, 30)
    # the VLA list: 3C48 lies 0.4" from NVSS's entry, which it updates (keeping NVSS's name); the rest are new
    with session_scope(db_url) as s:
        rep = catalog.import_calibrators(s, VLA)
    assert (rep.n_rows, rep.n_added, rep.n_updated, rep.n_calibrators) == (7, 6, 1, 7)
    rows = _all(db_url)
    assert len(rows) == 36 and "0137+331" not in rows
    c48 = rows["NVSS J013741.33+330935.1"]
    assert c48.is_calibrator and c48.flux_jy == 16.5 and c48.quality == "L:XPPP"
    # NVSS again: updates, and never clears the calibrator flag
    with session_scope(db_url) as s:
        rep = catalog.import_catalogue(s, NVSS)
    assert (rep.n_added, rep.n_updated) == (0, 30)
    assert _all(db_url)["NVSS J013741.33+330935.1"].is_calibrator
    # told to, a positional match takes the file's name
    with session_scope(db_url) as s:
        catalog.import_calibrators(s, VLA, rename=True)
    rows = _all(db_url)
    assert len(rows) == 36 and "0137+331" in rows and "NVSS J013741.33+330935.1" not in rows


def test_simulation_csv_then_truth_like_rows_do_not_duplicate(db_url, tmp_path):
    csv = tmp_path / "sources.csv"
    csv.write_text("id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator\n"
                   "0,283.100000000,35.000000000,10,-0.7,1\n1,283.500000000,35.200000000,0.5,-0.7,0\n")
    with session_scope(db_url) as s:
        catalog.import_sources(s, csv)
    truth = CatalogueTable.from_records("truth.json", "truth", [
        {"name": "SIM-000000", "ra_deg": 283.1, "dec_deg": 35.0, "flux_jy": 10.0, "is_calibrator": True},
        {"name": "SIM-000001", "ra_deg": 283.5, "dec_deg": 35.2, "flux_jy": 0.5},
        {"name": "SIM-000002", "ra_deg": 284.0, "dec_deg": 35.4, "flux_jy": 0.2},
    ])
    with session_scope(db_url) as s:
        rep = catalog.import_table(s, truth)
    assert (rep.n_added, rep.n_updated) == (1, 2)
    assert set(_all(db_url)) == {"0", "1", "SIM-000002"}


def test_cli_catalogue_formats(tmp_path, clean_env, capsys):
    from contimg.cli import main
    from contimg.db import dispose_engines

    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    try:
        assert main(["catalog", "import-sources", str(NVSS)]) == 0
        assert "30 rows imported (nvss format): 30 added, 0 updated" in capsys.readouterr().out
        assert main(["catalog", "import-sources", str(VLASS)]) != 0
        assert "'Total_flux' has no unit; give it with --flux-unit" in capsys.readouterr().err
        assert main(["catalog", "import-sources", str(VLASS), "--format", "vlass", "--flux-unit", "mJy"]) == 0
        out = capsys.readouterr().out
        assert "6 rows imported (vlass format): 2 added, 4 updated" in out  # 4 lie within 1" of NVSS sources
        assert main(["catalog", "import-calibrators", str(VLA), "--match-radius", "0"]) == 0
        assert "7 rows imported (vla-calibrators format): 7 added, 0 updated (7 calibrators)" in capsys.readouterr().out
        with pytest.raises(SystemExit):
            main(["catalog", "import-sources", "--help"])
        helptext = capsys.readouterr().out
        assert "VizieR VIII/65" in helptext and "--flux-unit" in helptext and "docs/catalogues.md" in helptext
    finally:
        dispose_engines()


def test_sexagesimal_forms_and_bad_values(tmp_path):
    from contimg.calibration.catalogues import _sexagesimal

    p = tmp_path / "x"
    texts = np.array(["01 37 41.3", "01:37:41.3", "01h37m41.3s"])
    np.testing.assert_allclose(_sexagesimal(p, "RA", texts, hours=True), 24.422083333, rtol=1e-9)
    np.testing.assert_allclose(_sexagesimal(p, "Dec", np.array(["-00 30 00", "+33 09 35.1", "-12 30"]),
                                            hours=False), [-0.5, 33.159750, -12.5])
    with pytest.raises(InputFileError, match=r"x, row 2: Dec='\+10 75 00' is not a sexagesimal angle"):
        _sexagesimal(p, "Dec", np.array(["+10 00 00", "+10 75 00"]), hours=False)
    with pytest.raises(InputFileError, match="row 1: RA='' is empty|row 1: RA is empty"):
        _sexagesimal(p, "RA", np.array(["", "01 00 00"]), hours=True)


def test_a_name_outside_the_files_declination_band_is_updated_not_duplicated(db_url):
    def table(dec, cal):
        return CatalogueTable.from_records("t", "contimg", [
            {"name": "X", "ra_deg": 10.0, "dec_deg": dec, "flux_jy": 1.0, "is_calibrator": cal}])

    with session_scope(db_url) as s:
        catalog.import_table(s, table(10.0, True))
        catalog.import_table(s, CatalogueTable.from_records("t", "contimg", [
            {"name": "Y", "ra_deg": 20.0, "dec_deg": 50.0}]))
    with session_scope(db_url) as s:
        rep = catalog.import_table(s, table(50.0, False))  # X moved 40 deg: only its name matches
    assert (rep.n_added, rep.n_updated) == (0, 1)
    rows = _all(db_url)
    assert len(rows) == 2 and rows["X"].dec_deg == 50.0 and rows["X"].is_calibrator
