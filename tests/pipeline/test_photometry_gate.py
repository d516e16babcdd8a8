"""The photometry gate in the database: a failed normalisation removes the image's rows and says why."""

from __future__ import annotations

from sqlalchemy import func, select

from contimg.db import session_scope
from contimg.db.models import Image, Photometry, Source
from contimg.db.science import upsert_photometry
from contimg.pipeline.photometry import record_verdict


def _image_with_photometry(settings) -> int:
    with session_scope(settings) as s:
        image = Image(path="/x/g.image.pbcor.fits", pb_corrected=True, mid_mjd=60000.5, qa_verdict="pass",
                      qa={"status": "pass", "reasons": []})
        s.add(image)
        src = [Source(name=f"S{k}", ra_deg=10.0 + k, dec_deg=35.0, flux_jy=1.0) for k in range(3)]
        s.add_all(src)
        s.flush()
        upsert_photometry(s, [{"source_id": x.id, "image_id": image.id, "epoch_mjd": 60000.5, "flux_jy": 1.0,
                               "flux_err_jy": 0.01} for x in src])
        return image.id


def test_a_failed_normalisation_removes_the_rows_and_is_recorded(db_settings):
    image_id = _image_with_photometry(db_settings)
    ok = record_verdict(db_settings, {"image_id": image_id, "path": "/x/g.image.pbcor.fits",
                                      "normalization": {"correction": 1.01, "correction_err": 0.004, "references": 5}})
    assert ok.status == "pass"
    bad = record_verdict(db_settings, {"image_id": image_id, "path": "/x/g.image.pbcor.fits",
                                       "normalization": {"correction": 0.5, "correction_err": 0.004, "references": 5}})
    assert bad.failed
    with session_scope(db_settings, readonly=True) as s:
        image = s.get(Image, image_id)
        assert image.qa_verdict == "fail" and image.qa["photometry"]["status"] == "fail"
        assert image.qa["status"] == "pass"  # the image gate's own verdict stays beside it
        assert s.scalar(select(func.count()).select_from(Photometry)) == 0
