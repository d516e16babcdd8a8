"""Science tables: sources, photometry, variability statistics, ESE candidates (both backends)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from contimg.db import get_engine, session_scope
from contimg.db import products
from contimg.db import science as sci
from contimg.db.models import CandidateStatus, EseCandidate, Photometry, VariabilityStats
from contimg.errors import NotFoundError, ValidationError


def _sources_and_images(url, n_sources=3, n_images=2):
    with session_scope(url) as s:
        ids = sci.upsert_sources(s, [{"name": f"NVSS J{k:06d}", "ra_deg": 10.0 + k, "dec_deg": 35.0,
                                      "flux_jy": 0.1 * (k + 1)} for k in range(n_sources)])
        images = [products.upsert_image(s, path=f"/img/{k}.fits", mid_mjd=60950.0 + k).id for k in range(n_images)]
    return ids, images


def test_upsert_sources_updates_by_name(db_url):
    ids, _ = _sources_and_images(db_url)
    with session_scope(db_url) as s:
        again = sci.upsert_sources(s, [{"name": "NVSS J000001", "ra_deg": 11.0, "dec_deg": 35.0, "flux_jy": 5.0,
                                        "is_calibrator": True}])
        assert again == {"NVSS J000001": ids["NVSS J000001"]}
        assert sci.source_ids(s, ["NVSS J000000", "missing"]) == {"NVSS J000000": ids["NVSS J000000"]}
    with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
        with session_scope(db_url) as s:
            sci.upsert_sources(s, [{"name": "x", "ra_deg": 1.0, "dec_deg": 2.0, "colour": "red"}])


def test_photometry_is_unique_per_source_and_image(db_url, rng):
    ids, images = _sources_and_images(db_url)
    rows = [{"source_id": sid, "image_id": img, "epoch_mjd": 60950.0 + k, "flux_jy": float(rng.normal(1, 0.01)),
             "flux_err_jy": 0.01} for sid in ids.values() for k, img in enumerate(images)]
    with session_scope(db_url) as s:
        assert sci.upsert_photometry(s, rows) == 6
    remeasured = [dict(r, flux_jy=2.0) for r in rows[:2]]
    with session_scope(db_url) as s:
        sci.upsert_photometry(s, remeasured)  # idempotent: updates, adds no row
    with session_scope(db_url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Photometry)) == 6
        fluxes = s.scalars(select(Photometry.flux_jy).order_by(Photometry.id)).all()
        assert fluxes[:2] == [2.0, 2.0] and fluxes[2] == rows[2]["flux_jy"]
        assert s.scalar(select(Photometry.upper_limit).limit(1)) is False
    with pytest.raises(IntegrityError):
        with session_scope(db_url) as s:
            s.add(Photometry(source_id=rows[0]["source_id"], image_id=rows[0]["image_id"], epoch_mjd=1.0,
                             flux_jy=1.0, flux_err_jy=0.1))


def test_photometry_index_on_source_and_epoch(db_url):
    indexes = inspect(get_engine(db_url)).get_indexes("photometry")
    assert any(ix["column_names"] == ["source_id", "epoch_mjd"] for ix in indexes)


def test_normalized_flux_is_set_by_id(db_url):
    ids, images = _sources_and_images(db_url, n_sources=1, n_images=2)
    sid = ids["NVSS J000000"]
    with session_scope(db_url) as s:
        sci.upsert_photometry(s, [{"source_id": sid, "image_id": img, "epoch_mjd": 1.0 * k, "flux_jy": 1.0,
                                   "flux_err_jy": 0.1} for k, img in enumerate(images)])
        pids = s.scalars(select(Photometry.id).order_by(Photometry.id)).all()
        sci.set_normalized_flux(s, [{"id": pids[1], "norm_flux_jy": 0.98, "norm_flux_err_jy": 0.02}])
    with session_scope(db_url, readonly=True) as s:
        assert s.execute(select(Photometry.norm_flux_jy).order_by(Photometry.id)).scalars().all() == [None, 0.98]


def test_variability_stats_one_row_per_source(db_url):
    ids, _ = _sources_and_images(db_url, n_sources=2)
    a, b = ids.values()
    with session_scope(db_url) as s:
        sci.upsert_variability_stats(s, [{"source_id": a, "n_epochs": 10, "chi2_nu": 1.1, "eta": 1.0},
                                         {"source_id": b, "n_epochs": 1}])
    with session_scope(db_url) as s:
        sci.upsert_variability_stats(s, [{"source_id": a, "n_epochs": 11, "chi2_nu": 1.3, "last_photometry_id": 99}])
    with session_scope(db_url, readonly=True) as s:
        rows = {r.source_id: r for r in s.scalars(select(VariabilityStats))}
        assert len(rows) == 2
        assert (rows[a].n_epochs, rows[a].chi2_nu, rows[a].eta, rows[a].last_photometry_id) == (11, 1.3, None, 99)
        assert rows[b].chi2_nu is None and rows[a].updated_at.tzinfo is not None


def test_one_open_ese_candidate_per_source(db_url):
    ids, _ = _sources_and_images(db_url, n_sources=1)
    sid = ids["NVSS J000000"]
    with session_scope(db_url) as s:
        c1, created = sci.upsert_ese_candidate(s, source_id=sid, score=6.0, significance=5.5, detected_mjd=60950.0,
                                               first_detected_mjd=60940.0, template={"duration_days": 30})
        assert created and c1.status is CandidateStatus.NEW
    with session_scope(db_url) as s:
        c2, created = sci.upsert_ese_candidate(s, source_id=sid, score=8.0, significance=7.0, detected_mjd=60951.0)
        assert not created and c2.id == c1.id
    with session_scope(db_url, readonly=True) as s:
        (c,) = s.scalars(select(EseCandidate)).all()
        assert (c.first_detected_mjd, c.last_detected_mjd, c.score, c.template) == (60940.0, 60951.0, 8.0, None)
    with session_scope(db_url) as s:  # a rejected candidate is closed: the next detection opens a new one
        sci.set_candidate_status(s, c1.id, "rejected", notes="RFI")
        c3, created = sci.upsert_ese_candidate(s, source_id=sid, score=9.0, significance=8.0, detected_mjd=60990.0)
        assert created and c3.id != c1.id
    with pytest.raises(IntegrityError):  # the partial unique index enforces it in the schema
        with session_scope(db_url) as s:
            s.add(EseCandidate(source_id=sid, status=CandidateStatus.CONFIRMED, first_detected_mjd=1.0,
                               last_detected_mjd=1.0, score=1.0, significance=1.0))
    with pytest.raises(NotFoundError):
        with session_scope(db_url) as s:
            sci.set_candidate_status(s, 12345, "confirmed")
    # reopening the rejected one while c3 is open is refused with a message, not an IntegrityError
    with pytest.raises(ValidationError, match=f"already has open candidate {c3.id}"):
        with session_scope(db_url) as s:
            sci.set_candidate_status(s, c1.id, "confirmed")
    with pytest.raises(ValidationError, match="unknown status 'maybe'"):
        with session_scope(db_url) as s:
            sci.set_candidate_status(s, c1.id, "maybe")
    with session_scope(db_url) as s:  # once c3 is closed, c1 may be reopened
        sci.set_candidate_status(s, c3.id, "ended")
        assert sci.set_candidate_status(s, c1.id, "confirmed").status is CandidateStatus.CONFIRMED
