"""WSClean end to end on the small simulated group: products, headers, accuracy against truth, safety."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select
from astropy.io import fits

from contimg.imaging import image_ms
from contimg.msmodel import read_ms
from contimg.imaging.geometry import ImageGeometry
from contimg.imaging.tiers import tier_parameters
from contimg.imaging.wsclean import wsclean_arguments

CELL_ARCSEC = 15.0  # as in conftest: the core array's beam is ~45 x 90 arcsec

pytestmark = pytest.mark.integration


def test_arguments_protect_model_data():
    geom = ImageGeometry(cell_arcsec=5.0, nx=100, ny=80, pb_limit=0.2, pb_radius_deg=2.0, drift_deg=1.0)
    args = wsclean_arguments("x.ms", prefix="p", geometry=geom, tier=tier_parameters("standard"), threads=2)
    assert "-no-update-model-required" in args
    assert args[args.index("-beam-fitting-size") + 1] == "1.5"  # WSClean's default box fits a far too long beam
    assert args[args.index("-size") + 1:args.index("-size") + 3] == ["100", "80"]
    assert args[args.index("-weight") + 1:args.index("-weight") + 3] == ["briggs", "0"]
    assert args[-1] == "x.ms" and "-auto-mask" in args
    masked = wsclean_arguments("x.ms", prefix="p", geometry=geom, tier=tier_parameters("standard"), fits_mask="m.fits")
    assert "-fits-mask" in masked and "-auto-mask" not in masked


def test_products_complete_and_atomic(wsclean_products):
    p, out = wsclean_products["products"], wsclean_products["out"]
    for path in (p.image, p.pbcor, p.pb, p.residual, p.model, p.psf, p.thumbnail, p.log):
        assert path is not None and (out / path.split("/")[-1]).exists(), path
    assert not [x for x in out.iterdir() if x.name.startswith(".")], "temporary files left behind"
    assert "-no-update-model-required" in p.arguments
    assert "-baseline-averaging" in p.arguments  # standard tier: 1 % smearing budget at the field edge


def test_headers(wsclean_products, sim_group):
    p = wsclean_products["products"]
    msm = read_ms(sim_group["ms"])
    for path in (p.image, p.pbcor):
        h = fits.getheader(path)
        assert h["CTYPE1"] == "RA---SIN" and h["CTYPE2"] == "DEC--SIN"
        # WSClean writes FK5 J2000: the ICRS phase center moves by the ~20 mas frame bias
        assert h["RADESYS"] == "FK5"
        assert h["CRVAL1"] == pytest.approx(np.degrees(msm.phase_center_ra), abs=2e-5)
        assert h["CRVAL2"] == pytest.approx(np.degrees(msm.phase_center_dec), abs=2e-5)
        assert abs(h["CDELT2"]) * 3600 == pytest.approx(CELL_ARCSEC)
        assert h["BUNIT"].upper() == "JY/BEAM"
        assert 20 < h["BMIN"] * 3600 <= h["BMAJ"] * 3600 < 200
        assert "BPA" in h
        assert h["CRVAL3"] == pytest.approx(msm.freq_mean, rel=1e-6)
    assert fits.getheader(p.pbcor)["PBCOR"] is True
    pbc = fits.getdata(p.pbcor)
    pb = fits.getdata(p.pb)
    assert np.isnan(pbc[pb < 0.2]).all() and np.isfinite(pbc[pb >= 0.2]).all()


def test_model_data_not_overwritten(wsclean_products, sim_group):
    assert wsclean_products["model_data_max"](sim_group["ms"]) == wsclean_products["model_before"]


def test_restoring_beam_is_the_main_lobe(wsclean_products, beam_to_psf_area):
    """The fitted beam's half-power ellipse covers the PSF's half-power main lobe (pixelised at 15 arcsec)."""
    assert 0.7 < beam_to_psf_area(wsclean_products["products"]) < 1.4


def test_flux_and_position_against_truth(wsclean_products, sim_group, source_errors):
    """Every source (SNR > 300 here) within 2 % of its intrinsic flux after PB correction, within 0.1 beam."""
    p = wsclean_products["products"]
    errors = source_errors(p.pbcor, sim_group["truth"], p.ref_freq_hz)
    bmin = p.qa.beam_minor_arcsec
    for e in errors:
        assert e["ok"], e
        assert abs(e["ratio"] - 1) < 0.02, e
        assert e["offset_arcsec"] < 0.1 * bmin, e


def test_qa(wsclean_products):
    qa = wsclean_products["products"].qa
    assert qa.rms_jy > 0 and qa.peak_jy > 1.0
    assert qa.dynamic_range == pytest.approx(qa.peak_jy / qa.rms_jy)
    assert qa.dynamic_range > 100


def test_record_images(wsclean_products, tmp_path):
    from contimg.db import init_db, session_scope
    from contimg.db.models import Image
    from contimg.pipeline.image import record_images

    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    init_db(url)
    p = wsclean_products["products"]
    with session_scope(url) as s:
        record_images(s, p)
        record_images(s, p)  # idempotent: keyed by path
    with session_scope(url, readonly=True) as s:
        rows = {r.path: r for r in s.query(Image).all()}
    assert set(rows) == {p.image, p.pbcor}
    assert rows[p.pbcor].pb_corrected and not rows[p.image].pb_corrected
    assert rows[p.image].rms_jy == pytest.approx(p.qa.rms_jy)
    assert rows[p.image].beam_major_arcsec == pytest.approx(p.qa.beam_major_arcsec)
    assert rows[p.image].tier == "standard" and rows[p.image].backend == "wsclean"


def test_catalog_mask_and_cli(sim_group, tmp_path, clean_env, capsys, source_errors):
    """``contimg image MS`` with a catalogue mask and the quicklook tier."""
    from contimg.cli import main

    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    clean_env.setenv("CONTIMG_IMAGING__THREADS", "2")
    csv = sim_group["truth"].path / "sources.csv"
    rc = main(["image", str(sim_group["ms"]), "--out-dir", str(tmp_path / "img"), "--tier", "quicklook",
               "--mask-catalog", str(csv), "--cell", str(CELL_ARCSEC), "--json"])
    assert rc == 0
    products = json.loads(capsys.readouterr().out)
    assert products["tier"] == "quicklook"
    assert "-fits-mask" in products["arguments"]
    errors = source_errors(products["pbcor"], sim_group["truth"], products["ref_freq_hz"])
    assert max(abs(e["ratio"] - 1) for e in errors) < 0.05
    # recorded as the cluster records images: both rows, with the gate's verdict
    from contimg.pipeline.catalog import import_truth
    from contimg.config import load_settings
    from contimg.db import session_scope
    from contimg.db.models import Image, Photometry

    settings = load_settings()
    rec = products["recorded"]
    assert len(rec["image_ids"]) == 2 and rec["qa_verdict"] in ("pass", "warn", "fail")
    with session_scope(settings) as s:
        rows = {i.path: i for i in s.scalars(select(Image))}
        assert set(rows) == {products["image"], products["pbcor"]}
        assert {i.qa_verdict for i in rows.values()} == {rec["qa_verdict"]} and rows[products["image"]].tier == "quicklook"
        import_truth(s, sim_group["truth"].path)
        rows[products["pbcor"]].qa_verdict = rows[products["image"]].qa_verdict = "pass"
    # `contimg photometry IMAGE`: forced photometry of the recorded image, stored
    rc = main(["photometry", products["pbcor"], "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_measured"] >= 3 and result["qa_verdict"] in ("pass", "warn")
    with session_scope(settings, readonly=True) as s:
        assert len(s.scalars(select(Photometry)).all()) == result["n_measured"]
    # a failed image feeds no photometry
    with session_scope(settings) as s:
        for i in s.scalars(select(Image)):
            i.qa_verdict, i.qa = "fail", {"reasons": ["fail: made up for the test"]}
    assert main(["photometry", str(rec["image_ids"][1])]) != 0
    assert "failed its QA (fail: made up for the test)" in capsys.readouterr().err


def _catalogue_lookup(truth):
    """The simulated sky as the pipeline's catalogue lookup returns it (``image_ms(catalogue=...)``)."""
    cat = truth.catalog

    def lookup(ra_deg: float, dec_deg: float, radius_deg: float) -> dict:
        return {"ra_deg": np.asarray(cat.ra_deg), "dec_deg": np.asarray(cat.dec_deg),
                "flux_jy": np.asarray(cat.flux_jy), "spectral_index": np.asarray(cat.spectral_index)}

    return lookup


def test_spectral_fit_arguments():
    geom = ImageGeometry(cell_arcsec=5.0, nx=100, ny=80, pb_limit=0.2, pb_radius_deg=2.0, drift_deg=1.0)
    args = wsclean_arguments("x.ms", prefix="p", geometry=geom, tier=tier_parameters("standard"), channels_out=3)
    assert args[args.index("-channels-out") + 1] == "3" and "-join-channels" in args
    assert args[args.index("-fit-spectral-pol") + 1] == "2" and args[-1] == "x.ms"
    plain = wsclean_arguments("x.ms", prefix="p", geometry=geom, tier=tier_parameters("standard"))
    assert "-channels-out" not in plain and "-join-channels" not in plain


def test_take_mfs_products(tmp_path):
    from contimg.imaging.wsclean import take_mfs_products

    for name in ("img-MFS-image", "img-MFS-residual", "img-MFS-model", "img-MFS-psf", "img-0000-image",
                 "img-0001-residual", "img-0001-psf", "other-0000-image"):
        (tmp_path / f"{name}.fits").write_text(name)
    renamed = take_mfs_products(tmp_path / "img")
    assert sorted(p.name for p in renamed) == ["img-image.fits", "img-model.fits", "img-psf.fits", "img-residual.fits"]
    assert (tmp_path / "img-image.fits").read_text() == "img-MFS-image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img-image.fits", "img-model.fits", "img-psf.fits",
                                                          "img-residual.fits", "other-0000-image.fits"]


def test_spectral_fit_decision(sim_group, imaging_settings):
    """On when the brightest source's apparent flux reaches the dynamic-range setting times the noise, else off."""
    from contimg.imaging.run import field_sources, spectral_fit_decision

    info = read_ms(sim_group["ms"])
    geom = ImageGeometry(cell_arcsec=CELL_ARCSEC, nx=1200, ny=900, pb_limit=0.2, pb_radius_deg=2.0, drift_deg=1.0)
    field = field_sources(_catalogue_lookup(sim_group["truth"]), info, geom)
    on = spectral_fit_decision(field, noise_jy=1e-5, settings=imaging_settings)
    assert on is not None and on["channels_out"] == imaging_settings.spectral_fit_channels
    # the 2.5 Jy flat-spectrum source 1.1 deg west, attenuated by the beam, is the brightest
    assert 0.5 < on["brightest_jy"] < 2.5 and on["dynamic_range"] == pytest.approx(on["brightest_jy"] / 1e-5, rel=1e-3)
    assert spectral_fit_decision(field, noise_jy=on["brightest_jy"] / 6500,
                                 settings=imaging_settings) is None  # 6500 < the default 7000
    assert spectral_fit_decision(field, noise_jy=on["brightest_jy"] / 7100, settings=imaging_settings) is not None
    assert field_sources(None, info, geom) is None
    assert spectral_fit_decision(None, noise_jy=1e-4, settings=imaging_settings) is None
    assert spectral_fit_decision(field, noise_jy=None, settings=imaging_settings) is None
    empty = {k: np.zeros(0) for k in ("ra_deg", "dec_deg", "flux_jy", "spectral_index")}
    assert spectral_fit_decision(field_sources(lambda *_: empty, info, geom), noise_jy=1e-4,
                                 settings=imaging_settings) is None


def test_spectral_fit_recovers_steep_spectra_better(sim_group, imaging_settings, wsclean_products, source_errors,
                                                    tmp_path):
    """Five sources of spectral index -1 ... 0 without noise: the spectrum is the only error single-term CLEAN
    leaves. Deconvolved with a spectral fit, the band-averaged products are published under the usual names and
    the fluxes come closer to the truth than without it."""
    settings = imaging_settings.model_copy(update={"spectral_fit_dynamic_range": 1.0})
    fit = image_ms(sim_group["ms"], settings=settings, out_dir=tmp_path, cell_arcsec=CELL_ARCSEC,
                   catalogue=_catalogue_lookup(sim_group["truth"]))
    assert fit.spectral_fit is not None and fit.spectral_fit["channels_out"] == 2
    assert "-join-channels" in fit.arguments
    assert sorted(p.name for p in tmp_path.glob("*.fits")) == sorted(
        f"group.{k}.fits" for k in ("image", "image.pbcor", "pb", "residual", "model", "psf"))
    plain = wsclean_products["products"]
    assert plain.spectral_fit is None  # no catalogue given: never
    truth = sim_group["truth"]
    with_fit = [abs(e["ratio"] - 1) for e in source_errors(fit.pbcor, truth, fit.ref_freq_hz)]
    without = [abs(e["ratio"] - 1) for e in source_errors(plain.pbcor, truth, plain.ref_freq_hz)]
    assert fit.ref_freq_hz == pytest.approx(plain.ref_freq_hz, rel=1e-6)
    assert max(with_fit) < 0.02
    assert float(np.median(with_fit)) < float(np.median(without)), (with_fit, without)


def test_a_runaway_spectral_fit_is_imaged_again_with_one_term(sim_group, imaging_settings, tmp_path, monkeypatch):
    """The safe run after a divergence drops the spectral fit as well as lowering mgain (real WSClean both
    times; only the first run's verdict is forced, as a run that ran away on the core-only array)."""
    import contimg.imaging.run as run

    real = run.ran_away
    calls: list[int] = []

    def first_runs_away(path, **kw):
        calls.append(1)
        return "forced: the first run ran away" if len(calls) == 1 else real(path, **kw)

    monkeypatch.setattr(run, "ran_away", first_runs_away)
    settings = imaging_settings.model_copy(update={"spectral_fit_dynamic_range": 1.0})
    p = image_ms(sim_group["ms"], settings=settings, out_dir=tmp_path, cell_arcsec=CELL_ARCSEC,
                 catalogue=_catalogue_lookup(sim_group["truth"]))
    assert len(calls) == 1
    assert p.deconvolution["retried_with_mgain"] == 0.8
    assert p.arguments[p.arguments.index("-gain") + 1] == "0.1"
    assert "-channels-out" not in p.arguments and p.spectral_fit["dropped_after_divergence"] is True
    assert p.qa.peak_jy > 0.5  # a real image came out of the safe run
