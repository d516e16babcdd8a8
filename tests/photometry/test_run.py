"""photometry_for_image against the simulator's truth, on SQLite and PostgreSQL.

One simulated group is converted and imaged with WSClean once per session
(``imaged_field`` in conftest.py); each test records it in a fresh database
together with a catalogue of the five simulated sources, two positions with no
source and one source far outside the primary beam.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import select

pytestmark = pytest.mark.integration


def _record(database: str, field: dict) -> dict[str, int]:
    """Record the MS, both images and the catalogue; returns {source name: id}."""
    from contimg.db import session_scope
    from contimg.db.products import upsert_measurement_set
    from contimg.db.science import upsert_sources
    from contimg.pipeline.image import record_images

    products, cat = field["products"], field["truth"].catalog
    rows = [{"name": f"SIM {int(cat.source_id[k])}", "ra_deg": float(cat.ra_deg[k]), "dec_deg": float(cat.dec_deg[k]),
             "flux_jy": float(cat.flux_jy[k]), "spectral_index": float(cat.spectral_index[k])} for k in range(cat.Nsrc)]
    for k, (ra, dec) in enumerate(field["absent"]):
        rows.append({"name": f"ABSENT {k}", "ra_deg": float(ra), "dec_deg": float(dec), "flux_jy": 0.01})
    ra, dec = field["outside"]
    rows.append({"name": "OUTSIDE", "ra_deg": float(ra), "dec_deg": float(dec), "flux_jy": 5.0})
    with session_scope(database) as s:
        ms = upsert_measurement_set(s, path=str(field["ms"]), start_mjd=products.mid_mjd - 0.0018,
                                    end_mjd=products.mid_mjd + 0.0018)
        record_images(s, products, ms=ms)
        return upsert_sources(s, rows)


def _photometry(database: str) -> list[tuple]:
    from contimg.db import session_scope
    from contimg.db.models import Photometry as P
    from contimg.db.models import Source

    with session_scope(database, readonly=True) as s:
        return s.execute(
            select(P.id, Source.name, P.image_id, P.epoch_mjd, P.flux_jy, P.flux_err_jy, P.upper_limit,
                   P.norm_flux_jy, P.norm_flux_err_jy)
            .join(Source, Source.id == P.source_id).order_by(P.image_id, Source.name)
        ).tuples().all()


@pytest.fixture
def field_db(imaged_field, db_settings) -> dict:
    p = imaged_field["products"]
    ids = _record(db_settings.database, imaged_field)
    return {"url": db_settings.database, "settings": db_settings, "ids": ids, "products": p,
            "truth": imaged_field["truth"]}


def _pbcor_image_id(url: str, path: str) -> int:
    from contimg.db import session_scope
    from contimg.db.models import Image

    with session_scope(url, readonly=True) as s:
        return s.scalars(select(Image.id).where(Image.path == path)).one()


def test_fluxes_match_truth_and_absent_positions_are_upper_limits(field_db):
    from contimg.pipeline.photometry import photometry_for_image

    p, truth, url = field_db["products"], field_db["truth"], field_db["url"]
    summary = photometry_for_image(p.image, database=url, settings=field_db["settings"])
    assert summary["image_id"] == _pbcor_image_id(url, p.pbcor)  # attached to the PB-corrected row
    assert summary["method"] == "flat/pb"
    assert summary["epoch_mjd"] == pytest.approx(p.mid_mjd, abs=1e-9)
    assert summary["n_sources"] == 7 and summary["n_measured"] == 7 and summary["n_upper_limits"] == 2
    rows = {r[1]: r for r in _photometry(url)}
    assert "OUTSIDE" not in rows
    cat = truth.catalog
    ratios = []
    for k in range(cat.Nsrc):
        _, _, _, epoch, flux, err, upper, _, _ = rows[f"SIM {int(cat.source_id[k])}"]
        true = cat.flux_jy[k] * (p.ref_freq_hz / 1.4e9) ** cat.spectral_index[k]
        assert flux / err > 50 and not upper
        ratios.append(flux / true)
    np.testing.assert_allclose(ratios, 1.0, atol=0.03)
    for k in range(2):
        _, _, _, _, flux, err, upper, _, _ = rows[f"ABSENT {k}"]
        assert upper
        # a sensible error: the image noise (flat rms / beam response), not zero, not huge
        assert 0.5 * p.qa.rms_jy < err < 5 * p.qa.rms_jy / 0.3
        assert abs(flux) < 4 * err


def test_agrees_with_the_imaging_fit_on_the_pbcor_image(field_db):
    """Flat image / beam (our default) and the free-position qa fit on the PB-corrected image agree within the errors.

    The two use different pixels (half-power contour vs a one-beam box) of a
    noisy image, so they agree to within a few sigma, not exactly.
    """
    from astropy.io import fits

    from contimg.imaging.qa import fit_point_source
    from contimg.pipeline.photometry import photometry_for_image

    p, truth, url = field_db["products"], field_db["truth"], field_db["url"]
    photometry_for_image(p.pbcor, database=url, settings=field_db["settings"])
    rows = {r[1]: r for r in _photometry(url)}
    data, header = fits.getdata(p.pbcor), fits.getheader(p.pbcor)
    cat = truth.catalog
    for k in range(cat.Nsrc):
        fit = fit_point_source(data, header, float(cat.ra_deg[k]), float(cat.dec_deg[k]))
        _, _, _, _, flux, err, *_ = rows[f"SIM {int(cat.source_id[k])}"]
        assert abs(flux - fit.flux_jy) < 3 * err


def test_rerun_is_idempotent(field_db):
    from contimg.pipeline.photometry import photometry_for_image

    p, url, s = field_db["products"], field_db["url"], field_db["settings"]
    photometry_for_image(p.image, database=url, settings=s)
    first = _photometry(url)
    pbcor_id = _pbcor_image_id(url, p.pbcor)
    again = photometry_for_image(pbcor_id, database=url, settings=s.photometry)  # by id, through the other row
    assert again["image_id"] == pbcor_id
    assert _photometry(url) == first


def test_normalization_over_epochs_removes_flux_scale_errors(field_db, tmp_path):
    """Copies of the image scaled by per-epoch flux-scale errors: normalised fluxes agree across epochs."""
    from astropy.io import fits

    from contimg.db import session_scope
    from contimg.db.products import upsert_image
    from contimg.pipeline.photometry import photometry_for_image

    p, url, s = field_db["products"], field_db["url"], field_db["settings"]
    scales = (1.0, 1.04, 0.97, 1.02)
    summaries = []
    for day, scale in enumerate(scales):
        base = tmp_path / f"day{day}"
        for src, suffix in ((p.image, ".image.fits"), (p.pb, ".pb.fits")):
            shutil.copyfile(src, f"{base}{suffix}")
        with fits.open(f"{base}.image.fits", mode="update") as hdul:
            hdul[0].data *= scale
        with session_scope(url) as session:
            upsert_image(session, path=f"{base}.image.fits", mid_mjd=p.mid_mjd + day, pb_corrected=False,
                         files={"image": f"{base}.image.fits", "pb": f"{base}.pb.fits"})
        summaries.append(photometry_for_image(f"{base}.image.fits", database=url, settings=s))
    last = summaries[-1]["normalization"]
    assert last["epochs"] == len(scales) and last["references"] == 5
    assert summaries[0]["normalization"]["correction"] is None  # one epoch: no baseline yet
    before = _photometry(url)
    rerun = photometry_for_image(f"{tmp_path / 'day0'}.image.fits", database=url, settings=s)
    # the upsert clears the image's own normalised values, so only those are rewritten; nothing else moved
    assert rerun["normalization"]["rows_written"] == rerun["n_measured"] and _photometry(url) == before
    assert last["correction"] / rerun["normalization"]["correction"] == pytest.approx(scales[-1], rel=1e-5)
    rows = [r for r in _photometry(url) if r[1].startswith("SIM")]
    by_source: dict[str, list] = {}
    for r in rows:
        by_source.setdefault(r[1], []).append(r)
    for name, rs in by_source.items():
        rs.sort(key=lambda r: r[3])
        raw = np.array([r[4] for r in rs])
        norm = np.array([r[7] for r in rs])
        np.testing.assert_allclose(raw / raw[0], scales, rtol=1e-5)
        np.testing.assert_allclose(norm / norm[0], 1.0, rtol=1e-5)
        assert all(r[8] is not None and r[8] > 0 for r in rs)
    # the non-detections are normalised too, and stay upper limits
    assert all(r[6] and r[7] is not None for r in _photometry(url) if r[1].startswith("ABSENT"))


def test_unknown_image_and_missing_files(field_db, tmp_path):
    from contimg.db import session_scope
    from contimg.db.products import upsert_image
    from contimg.errors import InputFileError, NotFoundError
    from contimg.pipeline.photometry import photometry_for_image

    url, s = field_db["url"], field_db["settings"]
    with pytest.raises(NotFoundError, match="999999"):
        photometry_for_image(999999, database=url, settings=s)
    with pytest.raises(NotFoundError, match="nowhere"):
        photometry_for_image(tmp_path / "nowhere.image.fits", database=url, settings=s)
    with session_scope(url) as session:
        upsert_image(session, path=str(tmp_path / "gone.image.fits"), mid_mjd=60000.0)
    with pytest.raises(InputFileError, match="gone"):
        photometry_for_image(str(tmp_path / "gone.image.fits"), database=url, settings=s)


def test_beam_from_ms_and_pbcor_only_products_agree(field_db, tmp_path):
    """Without a pb file in the manifest the beam comes from the MS; with only the PB-corrected image it is measured
    there. Files named like image_ms's products but not in the manifest are not used (no name is parsed)."""
    from contimg.db import session_scope
    from contimg.db.models import MeasurementSet
    from contimg.db.products import upsert_image
    from contimg.pipeline.photometry import photometry_for_image

    p, url, s = field_db["products"], field_db["url"], field_db["settings"]
    ref = photometry_for_image(p.image, database=url, settings=s)
    shutil.copyfile(p.image, tmp_path / "nopb.image.fits")
    shutil.copyfile(p.pb, tmp_path / "nopb.pb.fits")  # beside it, named as image_ms names a beam: not recorded
    shutil.copyfile(p.pbcor, tmp_path / "only.image.pbcor.fits")
    with session_scope(url) as session:
        ms_id = session.scalars(select(MeasurementSet.id)).one()
        upsert_image(session, path=str(tmp_path / "nopb.image.fits"), ms=ms_id, mid_mjd=p.mid_mjd + 1)
        upsert_image(session, path=str(tmp_path / "only.image.pbcor.fits"), pb_corrected=True, mid_mjd=p.mid_mjd + 2)
    from_ms = photometry_for_image(str(tmp_path / "nopb.image.fits"), database=url, settings=s)
    only = photometry_for_image(str(tmp_path / "only.image.pbcor.fits"), database=url, settings=s)
    assert from_ms["method"] == "flat/pb" and only["method"] == "pbcor"
    assert from_ms["n_measured"] == ref["n_measured"] == 7
    assert only["n_measured"] == 7  # beam unknown: every catalogue position on finite pixels
    rows = _photometry(url)
    by_image: dict[int, dict[str, tuple]] = {}
    for r in rows:
        by_image.setdefault(r[2], {})[r[1]] = r
    a, b, c = by_image[ref["image_id"]], by_image[from_ms["image_id"]], by_image[only["image_id"]]
    for name in (n for n in a if n.startswith("SIM")):
        assert b[name][4] == pytest.approx(a[name][4], rel=1e-3)  # pb.fits is the same beam, interpolated
        assert abs(c[name][4] - a[name][4]) < 2 * a[name][5]
        assert c[name][5] == pytest.approx(a[name][5], rel=0.3)


def test_synthetic_field_across_ra_zero(db_settings, tmp_path):
    """A synthetic image centred on RA 0: sources either side of the wrap are selected and divided by the beam."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.db import session_scope
    from contimg.db.products import upsert_image
    from contimg.db.science import upsert_sources
    from contimg.pipeline.photometry import photometry_for_image
    from contimg.photometry.forced import BeamShape, beam_template

    n, cell = 200, 10.0 / 3600
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [0.0, 20.0]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    w.wcs.cdelt = [-cell, cell]
    h = w.to_header()
    h["BMAJ"], h["BMIN"], h["BPA"] = 50 / 3600, 30 / 3600, 30.0
    ra = np.array([359.8, 0.2, 0.0, 0.05, 0.0])
    dec = np.array([20.05, 19.9, 20.0, 19.78, 30.0])  # W2: nothing there; W3: low beam; W4: off the image
    true = np.array([1.0, 2.0, 0.0, 1.5, 3.0])
    beam = np.full((n, n), 0.5, dtype=np.float32)
    beam[:45, :] = 0.25  # below min_beam_response (0.3) at the southern edge
    x, y = w.world_to_pixel_values(ra, dec)
    gx, gy = np.meshgrid(np.arange(n), np.arange(n))
    shape = BeamShape.from_header(h)
    resp_true = np.array([beam[int(round(y[k])), int(round(x[k]))] for k in range(4)] + [0.0])
    img = sum(true[k] * resp_true[k] * beam_template(gx - x[k], gy - y[k], shape) for k in range(4))
    img = img + 1e-3 * np.random.default_rng(3).standard_normal((n, n))
    fits.PrimaryHDU(img.astype(np.float32), h).writeto(tmp_path / "wrap.image.fits")
    fits.PrimaryHDU(beam, h).writeto(tmp_path / "wrap.pb.fits")
    url = db_settings.database
    with session_scope(url) as s:
        upsert_sources(s, [{"name": f"W{k}", "ra_deg": float(ra[k]), "dec_deg": float(dec[k])} for k in range(5)])
        upsert_image(s, path=str(tmp_path / "wrap.image.fits"), mid_mjd=60500.25,
                     files={"image": str(tmp_path / "wrap.image.fits"), "pb": str(tmp_path / "wrap.pb.fits")})
    summary = photometry_for_image(str(tmp_path / "wrap.image.fits"), database=url, settings=db_settings)
    measured = {r[1]: r for r in _photometry(url)}
    assert resp_true[3] == 0.25 and set(measured) == {"W0", "W1", "W2"} and summary["n_sources"] == 3
    for k in range(3):
        _, _, _, epoch, flux, err, upper, _, _ = measured[f"W{k}"]
        assert flux == pytest.approx(true[k], abs=5 * err) and epoch == 60500.25
        assert err == pytest.approx(1e-3 / 0.5, rel=0.3)
        assert upper == (k == 2)  # nothing at the centre: an upper limit, stored all the same


def test_the_manifest_names_the_files(field_db, tmp_path):
    """A product set recorded under names image_ms would never give is measured from its manifest alone."""
    from contimg.db import session_scope
    from contimg.db.products import upsert_image
    from contimg.pipeline.photometry import photometry_for_image

    p, url, s = field_db["products"], field_db["url"], field_db["settings"]
    ref = photometry_for_image(p.image, database=url, settings=s)
    files = {"image": tmp_path / "flat-noise.fits", "pb": tmp_path / "beam.fits", "pbcor": tmp_path / "corrected.fits"}
    for kind, path in files.items():
        shutil.copyfile(getattr(p, kind), path)
    manifest = {k: str(v) for k, v in files.items()}
    with session_scope(url) as session:
        upsert_image(session, path=manifest["image"], mid_mjd=p.mid_mjd + 3, files=manifest)
        upsert_image(session, path=manifest["pbcor"], mid_mjd=p.mid_mjd + 3, pb_corrected=True, files=manifest)
    got = photometry_for_image(manifest["image"], database=url, settings=s)
    assert got["method"] == "flat/pb" and got["path"] == manifest["pbcor"]  # attached to the PB-corrected row
    assert got["n_measured"] == ref["n_measured"]
