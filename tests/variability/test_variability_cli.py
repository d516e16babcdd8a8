"""``contimg candidates`` and ``contimg lightcurve`` on a database with simulated photometry."""

from __future__ import annotations

import json

import numpy as np

from contimg.cli import main
from contimg.cli._vocabulary import vocabulary_problems


def _run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().out


def test_candidates_and_lightcurve(db_url, clean_env, tmp_path, capsys, population, load_photometry):
    clean_env.setenv("CONTIMG_DATABASE_URL", db_url)
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    index = load_photometry(db_url, population)
    status, out = _run(capsys, "candidates", "--score", "--json")
    assert status == 0
    cands = json.loads(out)
    ese = {f"SRC{i:04d}" for i in np.flatnonzero(population.true_has_ese)}
    assert {c["source"] for c in cands} == ese
    assert all(c["status"] == "new" and c["significance"] >= 5.0 for c in cands)
    status, out = _run(capsys, "candidates")
    assert status == 0 and cands[0]["source"] in out
    status, out = _run(capsys, "candidates", "--set-status", str(cands[0]["id"]), "rejected", "--notes", "RFI")
    assert status == 0 and "rejected" in out
    status, out = _run(capsys, "candidates", "--json")
    assert cands[0]["id"] not in {c["id"] for c in json.loads(out)}

    name = cands[1]["source"]
    png = tmp_path / "lc.png"
    status, out = _run(capsys, "lightcurve", name, "--json", "--plot", str(png))
    doc = json.loads(out)
    assert status == 0 and doc["source"] == name and png.stat().st_size > 10_000
    i = int(name[3:])
    assert len(doc["photometry"]) == int((population.source_idx == i).sum())
    assert all(r["upper_limit"] is False for r in doc["photometry"])  # the loader stores detections only
    assert "catalog_flux_jy" in doc
    assert doc["statistics"]["ese_significance"] >= 5.0
    assert doc["source_id"] == index[i]
    # the images of this test database are not on disk: the strip is drawn with blank panels
    status, out = _run(capsys, "lightcurve", name, "--cutouts", str(tmp_path / "cut.png"), "--max-cutouts", "3")
    assert status == 0 and (tmp_path / "cut.png").read_bytes()[:4] == b"\x89PNG"
    status, out = _run(capsys, "lightcurve", str(index[i]))
    assert status == 0 and "ESE candidate" in out
    status = main(["lightcurve", "NO-SUCH-SOURCE"])
    assert status != 0


def test_light_curves_and_candidates_export_with_units(db_url, clean_env, tmp_path, capsys, population,
                                                       load_photometry):
    """CSV (ECSV) and VOTable exports read back with astropy: same rows, units Jy, d (MJD) and deg."""
    import astropy.units as u
    from astropy.table import Table

    clean_env.setenv("CONTIMG_DATABASE_URL", db_url)
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    load_photometry(db_url, population)
    status, out = _run(capsys, "candidates", "--score", "--json")
    cands = json.loads(out)
    assert status == 0 and cands
    name = cands[0]["source"]
    _, out = _run(capsys, "lightcurve", name, "--json")
    doc = json.loads(out)
    assert vocabulary_problems(doc) == [] and vocabulary_problems(cands) == []  # docs/json.md
    for fmt, suffix in (("csv", "csv"), ("votable", "xml")):
        path = tmp_path / f"lc.{suffix}"
        status, out = _run(capsys, "lightcurve", name, "--format", fmt, "--output", str(path))
        assert status == 0 and out == ""
        lc = Table.read(path, format="ascii.ecsv" if fmt == "csv" else "votable")
        assert len(lc) == len(doc["photometry"]) > 0
        assert lc["epoch_mjd"].unit == u.d and lc["flux_jy"].unit == u.Jy and lc["norm_flux_err_jy"].unit == u.Jy
        np.testing.assert_allclose(lc["epoch_mjd"], [r["epoch_mjd"] for r in doc["photometry"]])
        np.testing.assert_allclose(lc["flux_jy"], [r["flux_jy"] for r in doc["photometry"]])
        if fmt == "csv":
            assert lc.meta["source"] == name and lc.meta["ra_deg"] == doc["ra_deg"]

        path = tmp_path / f"cands.{suffix}"
        status, _ = _run(capsys, "candidates", "--format", fmt, "--output", str(path))
        assert status == 0
        ct = Table.read(path, format="ascii.ecsv" if fmt == "csv" else "votable")
        assert [str(s) for s in ct["source"]] == [c["source"] for c in cands]
        assert ct["ra_deg"].unit == u.deg and ct["t_center_mjd"].unit == u.d and ct["duration_days"].unit == u.d
        np.testing.assert_allclose(ct["significance"], [c["significance"] for c in cands])
        np.testing.assert_allclose(ct["dec_deg"], [c["dec_deg"] for c in cands])
    status, out = _run(capsys, "candidates", "--format", "csv")  # to standard output
    assert status == 0 and Table.read(out, format="ascii.ecsv")["source"][0] == cands[0]["source"]
