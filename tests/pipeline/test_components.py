"""The image stage's blind components: found, cross-matched, judged by the gate, stored (idempotently),
on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from contimg.db import session_scope
from contimg.db.models import Component, Image, Source
from contimg.simulation.image import synthetic_image

BEAM = (30.0, 15.0, 0.0)


def _products(tmp_path, *, shift=(0.0, 0.0)):
    east, north = np.meshgrid(np.linspace(-0.25, 0.25, 4), np.linspace(-0.2, 0.2, 3))
    dec = 35.0 + north.ravel()
    ra = 150.0 + east.ravel() / np.cos(np.radians(dec))
    flux = np.geomspace(0.02, 0.3, ra.size)
    syn = synthetic_image(tmp_path / "syn", shape=(384, 448), cell_arcsec=5.0, ra0_deg=150.0, dec0_deg=35.0,
                          ra_deg=ra, dec_deg=dec, flux_jy=flux, noise_jy=3e-4, beam_arcsec=BEAM, pb_fwhm_deg=2.0,
                          seed=5, shift_arcsec=shift)
    pbcor = tmp_path / "syn.image.pbcor.fits"
    shutil.copy(syn.image, pbcor)
    qa = SimpleNamespace(rms_jy=3e-4, peak_jy=0.3, dynamic_range=1000.0, beam_major_arcsec=BEAM[0],
                         beam_minor_arcsec=BEAM[1], beam_pa_deg=BEAM[2])
    products = SimpleNamespace(image=str(syn.image), pbcor=str(pbcor), pb=str(syn.pb), ms_path=str(tmp_path / "x.ms"),
                               qa=qa, ref_freq_hz=1.4e9, mid_mjd=61000.0, ra_deg=150.0, dec_deg=35.0,
                               tier="standard", backend="wsclean", residual=None, model=None, psf=None,
                               thumbnail=None, log=None, negative_jy=-1e-3, predicted_rms_jy=3e-4,
                               deconvolution=None)
    return syn, products


def _settings(settings, db_url, syn):
    s = settings.model_copy(update={"database_url": db_url})
    with session_scope(db_url) as session:
        for k in range(syn.ra_deg.size):
            session.add(Source(name=f"T{k}", ra_deg=float(syn.ra_deg[k]), dec_deg=float(syn.dec_deg[k]),
                               flux_jy=float(syn.flux_jy[k]), spectral_index=0.0))
    return s


def test_components_are_judged_stored_and_replaced_on_rerun(tmp_path, settings, db_url):
    from contimg.pipeline.image import judge_and_record

    syn, products = _products(tmp_path)
    s = _settings(settings, db_url, syn)
    verdict, ids = judge_and_record(s, products, ms_id=None)
    assert verdict.status == "pass", verdict.summary()
    astrometry = verdict.figures["astrometry"]
    assert astrometry["n_clean"] >= 10 and astrometry["offset_arcsec"] < 0.5
    assert verdict.figures["blind_flux_ratio"] == pytest.approx(1.0, abs=0.03)
    with session_scope(db_url, readonly=True) as session:
        pbcor_id = session.scalar(select(Image.id).where(Image.pb_corrected.is_(True)))
        rows = session.scalars(select(Component).where(Component.image_id == pbcor_id)).all()
        assert len(rows) == syn.ra_deg.size
        assert all(r.source_id is not None and r.separation_arcsec < 3 for r in rows)
        assert all(r.local_rms_jy > 0 and r.int_flux_err_jy > 0 and r.beam_response > 0.5 for r in rows)
        names = {session.get(Source, r.source_id).name for r in rows}
        assert len(names) == syn.ra_deg.size
    # a rerun of the same image replaces its components, it does not add to them
    judge_and_record(s, products, ms_id=None)
    with session_scope(db_url, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Component)) == syn.ra_deg.size


def test_a_shifted_image_fails_the_gate_and_keeps_no_components(tmp_path, settings, db_url):
    from contimg.pipeline.image import judge_and_record

    syn, products = _products(tmp_path, shift=(0.0, 0.0))
    s = _settings(settings, db_url, syn)
    judge_and_record(s, products, ms_id=None)
    # the same image path re-made with a 9 arcsec astrometric error (0.6 of the 15 arcsec minor axis)
    syn2, products2 = _products(tmp_path, shift=(9.0, 0.0))
    verdict, _ = judge_and_record(s, products2, ms_id=None)
    assert verdict.status == "fail", verdict.summary()
    # forced photometry at the catalogue positions sees about half the flux (it fits at a fixed position):
    # the astrometry says why
    assert any("catalogue flux" in r for r in verdict.reasons), verdict.summary()
    assert any("fail: components are offset from their catalogue matches" in r for r in verdict.reasons)
    assert verdict.figures["astrometry"]["ra_offset_arcsec"] == pytest.approx(9.0, abs=0.5)
    assert verdict.figures["blind_flux_ratio"] == pytest.approx(1.0, abs=0.03)  # the components are not biased
    with session_scope(db_url, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Component)) == 0


def test_a_finder_failure_warns_and_stores_nothing(tmp_path, settings, db_url, monkeypatch):
    import bdsf

    from contimg.pipeline.image import judge_and_record

    syn, products = _products(tmp_path)
    s = _settings(settings, db_url, syn)
    monkeypatch.setattr(bdsf, "process_image",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("No islands found")))
    verdict, _ = judge_and_record(s, products, ms_id=None)
    assert verdict.status == "warn" and any("blind source finding failed" in r for r in verdict.reasons)
    assert str(products.image) in verdict.reasons[-1]
    with session_scope(db_url, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Component)) == 0


def test_a_diverged_image_is_not_searched(tmp_path, settings, db_url, monkeypatch):
    import contimg.photometry.finder as finder
    from contimg.pipeline.image import judge_and_record

    syn, products = _products(tmp_path)
    products.deconvolution = {"diverged": True, "final_reason": "iterations", "stops": [[-264.0, "x"]]}
    s = _settings(settings, db_url, syn)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the finder ran on a diverged image")

    monkeypatch.setattr(finder, "find_components", must_not_run)
    verdict, _ = judge_and_record(s, products, ms_id=None)
    assert verdict.status == "fail" and "astrometry" not in verdict.figures
