"""The night summary's rows from the database and its PNG under <data root>/nightly/."""

from __future__ import annotations

import datetime as dt

from contimg.db import products, session_scope
from contimg.db import science as sci
from contimg.pipeline.nightly import night_rows, run_nightly, write_night_summary

DAY0 = 60827.0  # 2025-06-01T00:00 UTC


def _load(url):
    with session_scope(url) as s:
        ids = sci.upsert_sources(s, [{"name": f"S{i}", "ra_deg": 280.0 + i, "dec_deg": 35.0} for i in range(3)])
        files_a = {"image": "/img/a.image.fits", "pbcor": "/img/a.image.pbcor.fits"}
        products.upsert_image(s, path=files_a["image"], mid_mjd=DAY0 + 0.42, rms_jy=3e-4, qa_verdict="pass",
                              files=files_a)
        pbcor = products.upsert_image(
            s, path=files_a["pbcor"], mid_mjd=DAY0 + 0.42, rms_jy=3e-4, pb_corrected=True, qa_verdict="warn",
            files=files_a, qa={"status": "warn", "photometry": {"figures": {"correction": 1.02}}})
        sci.upsert_photometry(s, [
            {"source_id": ids[f"S{i}"], "image_id": pbcor.id, "epoch_mjd": DAY0 + 0.42, "flux_jy": f,
             "flux_err_jy": 1e-3, "upper_limit": f < 3e-3}
            for i, f in enumerate([0.02, 0.01, 0.001])])
        # a set with only its flat-noise row and no photometry yet
        products.upsert_image(s, path="/img/b.image.fits", mid_mjd=DAY0 + 0.3, rms_jy=5e-4, qa_verdict="fail",
                              files={"image": "/img/b.image.fits"})
        # another day
        products.upsert_image(s, path="/img/c.image.fits", mid_mjd=DAY0 + 1.2, rms_jy=4e-4, qa_verdict="pass")


def test_night_rows_one_entry_per_product_set(db_url):
    _load(db_url)
    with session_scope(db_url, readonly=True) as s:
        rows = night_rows(s, DAY0, DAY0 + 1)
    assert [r["image"] for r in rows] == ["/img/b.image.fits", "/img/a.image.fits"]  # by time
    b, a = rows
    assert a["n_measured"] == 3 and a["n_detected"] == 2 and a["correction"] == 1.02
    assert a["verdict"] == "warn" and a["rms_jy"] == 3e-4  # the worse of the two rows' verdicts
    assert b["n_measured"] == 0 and b["correction"] is None and b["verdict"] == "fail"


def test_the_nightly_job_draws_yesterday(db_settings):
    _load(db_settings.database_url)
    png = write_night_summary(db_settings, dt.date(2025, 6, 1))
    assert png == db_settings.data_root / "nightly" / "2025-06-01.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_night_summary(db_settings, dt.date(2025, 5, 30)) is None  # no images that day
    result = run_nightly(db_settings, now=dt.datetime(2025, 6, 3, 3, 0, tzinfo=dt.timezone.utc))
    assert result["sources_scored"] == 3
    assert result["night_summary"] == str(db_settings.data_root / "nightly" / "2025-06-02.png")
