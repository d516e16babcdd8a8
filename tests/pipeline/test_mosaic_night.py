"""The nightly mosaic's database side: the night's QA-passed sets only, the record, the CLI and the beat job."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from contimg.cli import main
from contimg.cli._vocabulary import vocabulary_problems
from contimg.db import products, session_scope
from contimg.db.models import Mosaic
from contimg.pipeline.mosaic import make_night_mosaic, night_inputs, night_window, run_nightly_mosaic
from mosaic_helpers import drift_inputs

DAY = dt.date(2025, 6, 1)
DAY0 = 60827.0  # 2025-06-01T00:00 UTC
CELL = 20.0 / 3600


def _record(url, tmp_path):
    """Four snapshots of the day (the third failed QA and holds a 50 Jy artefact), one without a beam, one next day."""
    rng = np.random.default_rng(2)
    made = drift_inputs(tmp_path / "img", n=4, ra0_deg=200.0, dec_deg=35.0, step_deg=1.2 / np.cos(np.radians(35)),
                        nx=160, ny=120, cell_deg=CELL, pb_fwhm_deg=2.7, rms_jy=0.002, rng=rng)
    bad_image = made[2][0]
    with fits.open(bad_image, mode="update") as h:
        h[0].data[0, 0, 50:70, 70:90] = 50.0
    ids = []
    with session_scope(url) as s:
        for k, (image, pb, rms) in enumerate(made):
            files = {"image": str(image), "pb": str(pb), "pbcor": str(image).replace(".image.", ".pbcor.")}
            verdict = "fail" if k == 2 else ("warn" if k == 1 else "pass")
            flat = products.upsert_image(s, path=str(image), mid_mjd=DAY0 + 0.4 + 0.0036 * k, rms_jy=rms,
                                         qa_verdict="pass", files=files)
            products.upsert_image(s, path=files["pbcor"], mid_mjd=DAY0 + 0.4 + 0.0036 * k, rms_jy=rms,
                                  pb_corrected=True, qa_verdict=verdict, files=files)
            ids.append(flat.id)
        products.upsert_image(s, path="/img/nopb.image.fits", mid_mjd=DAY0 + 0.5, rms_jy=0.002, qa_verdict="pass",
                              files={"image": "/img/nopb.image.fits"})
        products.upsert_image(s, path="/img/tomorrow.image.fits", mid_mjd=DAY0 + 1.2, rms_jy=0.002,
                              qa_verdict="pass", files={"image": "/img/tomorrow.image.fits", "pb": "/img/t.pb.fits"})
    return made, ids


def test_night_window():
    assert night_window(DAY) == (DAY0, DAY0 + 1)


def test_a_failed_image_is_never_used(db_settings, tmp_path):
    made, ids = _record(db_settings.database_url, tmp_path)
    with session_scope(db_settings, readonly=True) as s:
        use, left_out = night_inputs(s, *night_window(DAY))
    assert [u["image_id"] for u in use] == [ids[0], ids[1], ids[3]]
    assert {e["image"]: e["reason"] for e in left_out} == {
        str(made[2][0]): "QA verdict fail", "/img/nopb.image.fits": "no primary-beam image in the manifest"}
    result = make_night_mosaic(db_settings, DAY)
    assert result["status"] == "ok" and result["n_inputs"] == 3 and result["n_excluded"] == 2
    assert vocabulary_problems(json.loads(json.dumps(result, default=str))) == []
    # the artefact of the failed image is nowhere in the mosaic (the pixels it covers are noise or blank)
    for tile in result["tiles"]:
        data = fits.getdata(tile["files"]["image"])
        assert np.nanmax(np.abs(data)) < 0.1
        assert str(made[2][0]) not in tile["inputs"] and str(ids[2]) not in tile["inputs"]
    with session_scope(db_settings, readonly=True) as s:
        row = s.query(Mosaic).one()
        assert row.night == DAY and row.image_ids == [ids[0], ids[1], ids[3]] and row.n_excluded == 2
        assert row.n_tiles == len(result["tiles"]) and row.beam_major_arcsec == 60.0
        assert row.min_noise_jy is not None and row.min_noise_jy == pytest.approx(0.002, rel=1e-3)  # B = 1 at a centre
        assert Path(row.manifest).parent == db_settings.data_root / "mosaics" / "2025-06-01"


def test_a_rerun_replaces_the_record_and_an_empty_day_is_skipped(db_settings, tmp_path):
    _record(db_settings.database_url, tmp_path)
    first = make_night_mosaic(db_settings, DAY)
    again = run_nightly_mosaic(db_settings, now=dt.datetime(2025, 6, 2, 4, 0, tzinfo=dt.timezone.utc))
    assert again["status"] == "ok" and again["mosaic_id"] == first["mosaic_id"]
    with session_scope(db_settings, readonly=True) as s:
        assert s.query(Mosaic).count() == 1
    empty = make_night_mosaic(db_settings, dt.date(2025, 5, 20))
    assert empty["status"] == "skipped" and empty["n_inputs"] == 0


def test_the_cli(db_settings, clean_env, tmp_path, capsys):
    _record(db_settings.database_url, tmp_path)
    clean_env.setenv("CONTIMG_DATABASE_URL", db_settings.database_url)
    clean_env.setenv("CONTIMG_DATA_ROOT", str(db_settings.data_root))
    assert main(["mosaic", "--night", "2025-06-01", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "ok" and doc["n_inputs"] == 3
    assert main(["mosaic", "--night", "2025-06-01"]) == 0
    out = capsys.readouterr().out
    assert "3 image(s) combined, 2 left out" in out and "QA verdict fail" in out


def test_the_beat_schedule_has_the_mosaic(settings):
    from beat.schedule import beat_schedule
    from contimg.pipeline.stages import task_routes

    sched = beat_schedule(settings)["nightly-mosaic"]
    assert sched["task"] == "contimg.mosaic.nightly"
    assert sched["schedule"].hour == {settings.mosaic.hour_utc}
    assert task_routes()["contimg.mosaic.*"] == {"queue": "image"}
