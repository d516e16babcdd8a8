"""New-source candidates from the image stage's components, against what earlier epochs measured, on SQLite and
PostgreSQL (synthetic images through the real finder, cross-match and forced photometry)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from contimg.db import session_scope
from contimg.db.models import Component, Image, NewSource, NewSourceDetection, Source
from contimg.simulation.image import synthetic_image

BEAM = (30.0, 15.0, 0.0)
NOISE = 3e-4
RA0, DEC0 = 150.0, 35.0
TRANSIENT = (RA0 + 0.15 / np.cos(np.radians(DEC0 - 0.1)), DEC0 - 0.1, 0.006)
"""(ra, dec, flux): not in the catalogue, on from the second epoch (SNR ~ 19 where the beam is ~0.95)."""
PERSISTENT = (RA0 - 0.2 / np.cos(np.radians(DEC0 + 0.12)), DEC0 + 0.12, 0.005)
"""Not in the catalogue either, but there from the first epoch: never new."""


def _catalogue():
    east, north = np.meshgrid(np.linspace(-0.3, 0.3, 4), np.linspace(-0.25, 0.25, 3))
    dec = DEC0 + north.ravel()
    ra = RA0 + east.ravel() / np.cos(np.radians(dec))
    return ra, dec, np.geomspace(0.02, 0.3, ra.size)


def _epoch(tmp_path, k: int, *, transient: bool, seed: int):
    ra, dec, flux = _catalogue()
    extra = [PERSISTENT] + ([TRANSIENT] if transient else [])
    ra = np.concatenate([ra, [e[0] for e in extra]])
    dec = np.concatenate([dec, [e[1] for e in extra]])
    flux = np.concatenate([flux, [e[2] for e in extra]])
    d = tmp_path / f"e{k}"
    d.mkdir()
    syn = synthetic_image(d / "img", shape=(384, 448), cell_arcsec=5.0, ra0_deg=RA0, dec0_deg=DEC0, ra_deg=ra,
                          dec_deg=dec, flux_jy=flux, noise_jy=NOISE, beam_arcsec=BEAM, pb_fwhm_deg=2.0, seed=seed)
    pbcor = d / "img.image.pbcor.fits"
    shutil.copy(syn.image, pbcor)  # (the pictures only; the science reads the flat image and the beam)
    qa = SimpleNamespace(rms_jy=NOISE, peak_jy=0.3, dynamic_range=1000.0, beam_major_arcsec=BEAM[0],
                         beam_minor_arcsec=BEAM[1], beam_pa_deg=BEAM[2])
    return SimpleNamespace(image=str(syn.image), pbcor=str(pbcor), pb=str(syn.pb), ms_path=str(d / "x.ms"), qa=qa,
                           ref_freq_hz=1.4e9, mid_mjd=61000.0 + k, ra_deg=RA0, dec_deg=DEC0, tier="standard",
                           backend="wsclean", residual=None, model=None, psf=None, thumbnail=None, log=None,
                           negative_jy=-1e-3, predicted_rms_jy=NOISE, deconvolution=None)


def _with_catalogue(settings, db_url):
    s = settings.model_copy(update={"database_url": db_url})
    ra, dec, flux = _catalogue()
    with session_scope(db_url) as session:
        for k in range(ra.size):
            session.add(Source(name=f"T{k}", ra_deg=float(ra[k]), dec_deg=float(dec[k]), flux_jy=float(flux[k]),
                               spectral_index=0.0))
    return s


def _candidates(db_url):
    with session_scope(db_url, readonly=True) as session:
        return [(c.name, c.ra_deg, c.dec_deg, c.n_detections, c.significance, c.n_prior_epochs, c.cutouts,
                 c.prior_image_ids) for c in session.scalars(select(NewSource).order_by(NewSource.id))]


def _sep_arcsec(ra1, dec1, ra2, dec2):
    from contimg.beam import angular_separation

    return float(np.degrees(angular_separation(*np.radians([ra1, dec1, ra2, dec2]))) * 3600)


def test_a_transient_becomes_one_candidate_and_a_persistent_uncatalogued_source_does_not(tmp_path, settings, db_url):
    from contimg.pipeline.image import judge_and_record

    s = _with_catalogue(settings, db_url)
    # first epoch: both uncatalogued sources are unmatched, but nothing earlier covered them: no candidate
    judge_and_record(s, _epoch(tmp_path, 0, transient=False, seed=1), ms_id=None)
    assert _candidates(db_url) == []
    with session_scope(db_url, readonly=True) as session:
        unmatched = session.scalar(select(func.count()).select_from(Component).where(Component.source_id.is_(None)))
    assert unmatched == 1  # the persistent source

    # second epoch: the transient appears
    judge_and_record(s, _epoch(tmp_path, 1, transient=True, seed=2), ms_id=None)
    cands = _candidates(db_url)
    assert len(cands) == 1, cands
    name, ra, dec, n_det, significance, n_prior, cutouts, priors = cands[0]
    assert _sep_arcsec(ra, dec, TRANSIENT[0], TRANSIENT[1]) < 3.0
    assert name.startswith("CTG J")
    assert n_det == 1 and n_prior == 1 and len(priors) == 1
    # the transient's flux over the first epoch's noise there (no flux there then): SNR ~ 19
    assert 12 < significance < 26
    assert cutouts and (tmp_path / "data" / "images" / "new_sources").is_dir()
    from PIL import Image as PILImage

    assert PILImage.open(cutouts).size[0] > 200

    # third epoch: detected again, the same candidate; re-searching the image adds nothing
    judge_and_record(s, _epoch(tmp_path, 2, transient=True, seed=3), ms_id=None)
    cands = _candidates(db_url)
    assert len(cands) == 1 and cands[0][3] == 2
    from contimg.pipeline.new_sources import search_images

    search_images(s)
    assert _candidates(db_url)[0][3] == 2


def test_a_source_that_was_there_before_is_not_new_even_when_first_found_now(tmp_path, settings, db_url):
    """The persistent source's forced flux in the earlier epoch is what it is now: without subtracting it the
    significance would be its SNR (~16) and it would be a candidate as soon as the finder first found it."""
    from contimg.photometry.newsource import newness
    from contimg.pipeline.new_sources import measure_positions, search_image
    from contimg.pipeline.image import judge_and_record
    from contimg.pipeline.photometry import resolve_image

    s = _with_catalogue(settings, db_url).model_copy(update={"new_sources": settings.new_sources.model_copy(
        update={"enabled": False})})
    _, first = judge_and_record(s, _epoch(tmp_path, 0, transient=False, seed=1), ms_id=None)
    # the first image's components are forgotten, as if the finder had missed the persistent source there
    with session_scope(db_url) as session:
        session.execute(Component.__table__.delete().where(Component.image_id == first[-1]))
    _, second = judge_and_record(s, _epoch(tmp_path, 1, transient=False, seed=2), ms_id=None)
    result = search_image(s.model_copy(update={"new_sources": settings.new_sources}), second[-1])
    assert result.considered == 1 and result.not_new == 1 and result.created == []
    assert _candidates(db_url) == []
    with session_scope(db_url, readonly=True) as session:
        earlier = resolve_image(session, first[-1])
    f, e = measure_positions(earlier, np.array([PERSISTENT[0]]), np.array([PERSISTENT[1]]), min_beam_response=0.3)
    assert f[0] == pytest.approx(PERSISTENT[2], rel=0.25) and e[0] == pytest.approx(NOISE / 0.97, rel=0.3)
    naive = newness(PERSISTENT[2], np.zeros(1), e, threshold=5.0)
    assert naive.is_new(5.0)  # the rule without the earlier flux would have flagged it


def test_a_failed_rerun_of_the_detecting_image_removes_the_unreviewed_candidate(tmp_path, settings, db_url):
    from contimg.pipeline.image import judge_and_record

    s = _with_catalogue(settings, db_url)
    judge_and_record(s, _epoch(tmp_path, 0, transient=False, seed=1), ms_id=None)
    products = _epoch(tmp_path, 1, transient=True, seed=2)
    judge_and_record(s, products, ms_id=None)
    assert len(_candidates(db_url)) == 1
    products.deconvolution = {"diverged": True, "final_reason": "iterations", "stops": [[-264.0, "x"]]}
    verdict, _ = judge_and_record(s, products, ms_id=None)
    assert verdict.status == "fail"
    assert _candidates(db_url) == []
    with session_scope(db_url, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(NewSourceDetection)) == 0
        assert session.scalar(select(func.count()).select_from(Image)) == 4


def test_new_source_candidates_are_listed_and_reviewed_by_the_cli(tmp_path, settings, db_url, capsys, monkeypatch):
    from contimg.cli import main
    from contimg.pipeline.image import judge_and_record

    s = _with_catalogue(settings, db_url)
    judge_and_record(s, _epoch(tmp_path, 0, transient=False, seed=1), ms_id=None)
    judge_and_record(s, _epoch(tmp_path, 1, transient=True, seed=2), ms_id=None)
    monkeypatch.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CONTIMG_DATABASE_URL", db_url)
    assert main(["candidates", "--kind", "new", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 1 and listed[0]["name"].startswith("CTG J") and listed[0]["n_detections"] == 1
    assert listed[0]["cutouts"].endswith(".png")
    cid = listed[0]["id"]
    assert main(["candidates", "--kind", "new", "--set-status", str(cid), "rejected", "--notes", "sidelobe"]) == 0
    capsys.readouterr()
    assert main(["candidates", "--kind", "new", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["candidates", "--kind", "new", "--status", "rejected", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "rejected"
