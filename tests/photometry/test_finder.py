"""Blind source finding against a synthetic truth: the finder recovers injected sources, the cross-match
recovers an injected astrometric shift, and the finder's failures name the image."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.errors import InputFileError, SourceFindingError
from contimg.photometry.crossmatch import crossmatch
from contimg.photometry.finder import COMPONENT_COLUMNS, find_components
from contimg.simulation.image import synthetic_image

BEAM = (30.0, 15.0, 20.0)
NOISE = 3e-4
RA0, DEC0 = 150.0, 35.0
SHIFT = (6.0, -4.0)
"""(east, north) arcsec: the astrometric error injected into the shifted image."""


def _sky():
    """20 sources on a grid (no confusion), 5 mJy to 0.3 Jy, out to where the 0.6 deg primary beam is ~0.45."""
    rng = np.random.default_rng(3)
    east, north = np.meshgrid(np.linspace(-0.25, 0.25, 5), np.linspace(-0.2, 0.2, 4))
    east = east.ravel() + rng.uniform(-0.01, 0.01, east.size)
    north = north.ravel() + rng.uniform(-0.01, 0.01, north.size)
    dec = DEC0 + north
    ra = RA0 + east / np.cos(np.radians(dec))
    flux = np.geomspace(5e-3, 0.3, ra.size)
    rng.shuffle(flux)
    return ra, dec, flux


def _image(tmp_path_factory, name: str, shift=(0.0, 0.0)):
    ra, dec, flux = _sky()
    out = tmp_path_factory.mktemp(name)
    return synthetic_image(out / "syn", shape=(384, 448), cell_arcsec=5.0, ra0_deg=RA0, dec0_deg=DEC0, ra_deg=ra,
                           dec_deg=dec, flux_jy=flux, noise_jy=NOISE, beam_arcsec=BEAM, pb_fwhm_deg=0.6, seed=11,
                           shift_arcsec=shift)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    syn = _image(tmp_path_factory, "finder_syn")
    return syn, find_components(syn.image, pb=syn.pb, min_beam_response=0.2)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    syn = _image(tmp_path_factory, "finder_shift", shift=SHIFT)
    return syn, find_components(syn.image, pb=syn.pb, min_beam_response=0.2)


def _catalogue(syn):
    n = syn.ra_deg.size
    return {"id": np.arange(n) + 100, "ra_deg": syn.ra_deg, "dec_deg": syn.dec_deg, "flux_jy": syn.flux_jy,
            "spectral_index": np.full(n, np.nan), "stable": np.ones(n, bool)}


def test_the_finder_recovers_the_injected_sources(synthetic):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    syn, comps = synthetic
    assert set(comps.columns) == set(COMPONENT_COLUMNS)
    true = SkyCoord(syn.ra_deg * u.deg, syn.dec_deg * u.deg)
    found = SkyCoord(comps.columns["ra_deg"] * u.deg, comps.columns["dec_deg"] * u.deg)
    idx, sep, _ = true.match_to_catalog_sky(found)
    from contimg.photometry.measure import ImageSet, beam_response_at

    images = ImageSet(image_id=0, path="", epoch_mjd=0.0, flat=None, pbcor=None, pb=syn.pb, ms_path=None)
    snr = syn.flux_jy * beam_response_at(syn.ra_deg, syn.dec_deg, images=images) / NOISE
    ok = sep.arcsec < 0.2 * BEAM[1]
    # every injected source at >= 15 sigma is found, and nothing that was not injected. PyBDSF misses some
    # fainter ones: here a 12 sigma source 0.06 deg from the image's edge (docs/source_finding.md)
    assert ok[snr >= 15].all(), (sep.arcsec, snr)
    assert ok.sum() >= syn.ra_deg.size - 1
    _, sep_back, _ = found.match_to_catalog_sky(true)
    assert np.all(sep_back.arcsec < 0.2 * BEAM[1])
    c = {k: v[idx[ok]] for k, v in comps.columns.items()}
    truth = syn.flux_jy[ok]
    # positions within their errors (x4) and a fraction of the beam
    dra, ddec = true[ok].spherical_offsets_to(found[idx[ok]])
    assert np.all(np.abs(dra.arcsec) < 4 * c["ra_err_arcsec"] + 0.3)
    assert np.all(np.abs(ddec.arcsec) < 4 * c["dec_err_arcsec"] + 0.3)
    # PB-corrected fluxes equal the truth within their errors (beam responses down to ~0.5 were corrected)
    assert c["beam_response"].min() < 0.7
    pull = (c["peak_flux_jy"] - truth) / c["peak_flux_err_jy"]
    assert np.all(np.abs(pull) < 4), pull
    pull_int = (c["int_flux_jy"] - truth) / c["int_flux_err_jy"]
    assert np.all(np.abs(pull_int) < 4), pull_int
    # the local rms is the flat-noise image's
    assert np.median(c["local_rms_jy"]) == pytest.approx(NOISE, rel=0.15)
    # shapes: point sources come out as the restoring beam
    assert np.median(c["major_arcsec"]) == pytest.approx(BEAM[0], rel=0.1)
    assert np.median(c["minor_arcsec"]) == pytest.approx(BEAM[1], rel=0.1)
    assert np.median(np.abs(c["pa_deg"] - BEAM[2])) < 10


def test_the_crossmatch_finds_no_offset_on_the_unshifted_image(synthetic):
    syn, comps = synthetic
    match = crossmatch(comps.columns, _catalogue(syn), beam_major_arcsec=BEAM[0], freq_hz=1.4e9, min_snr=20)
    assert match.n_matches == len(comps) and match.n_clean >= 10
    assert abs(match.ra_offset_arcsec) < 0.5 and abs(match.dec_offset_arcsec) < 0.5
    assert match.flux_ratio == pytest.approx(1.0, abs=0.02)


def test_the_crossmatch_gives_the_injected_offset(shifted):
    syn, comps = shifted
    match = crossmatch(comps.columns, _catalogue(syn), beam_major_arcsec=BEAM[0], freq_hz=1.4e9, min_snr=20)
    assert match.n_clean >= 10
    assert match.ra_offset_arcsec == pytest.approx(SHIFT[0], abs=0.5)
    assert match.dec_offset_arcsec == pytest.approx(SHIFT[1], abs=0.5)
    assert match.summary()["offset_arcsec"] == pytest.approx(np.hypot(*SHIFT), abs=0.5)
    # every component carries its match and separation
    assert np.all(match.index >= 0) and np.all(match.separation_arcsec > 3)


def test_the_crossmatch_uses_the_spectral_index_and_leaves_out_confused_and_faint_matches(synthetic):
    syn, comps = synthetic
    cat = _catalogue(syn)
    # the catalogue quotes 1.4 GHz fluxes of sources with alpha -1 seen at 1.4 GHz x 1.2: ratio 1 after scaling
    cat["flux_jy"] = syn.flux_jy * 1.2
    cat["spectral_index"] = np.full(syn.ra_deg.size, -1.0)
    match = crossmatch(comps.columns, cat, beam_major_arcsec=BEAM[0], freq_hz=1.4e9 * 1.2, min_snr=20)
    assert match.flux_ratio == pytest.approx(1.0, abs=0.02)
    cat["stable"][:] = False
    assert crossmatch(comps.columns, cat, beam_major_arcsec=BEAM[0], freq_hz=1.4e9).n_clean == 0
    assert crossmatch(comps.columns, _catalogue(syn), beam_major_arcsec=BEAM[0], freq_hz=1.4e9,
                      min_snr=1e6).ra_offset_arcsec is None


def test_a_failing_finder_names_the_image(synthetic, monkeypatch):
    import bdsf

    syn, _ = synthetic

    def boom(*args, **kwargs):
        raise IndexError("Illegal index None")

    monkeypatch.setattr(bdsf, "process_image", boom)
    with pytest.raises(SourceFindingError, match=str(syn.image)) as info:
        find_components(syn.image, pb=syn.pb)
    assert isinstance(info.value.__cause__, IndexError)


def test_an_image_without_a_restoring_beam_is_refused(tmp_path, synthetic):
    from astropy.io import fits

    syn, _ = synthetic
    with fits.open(syn.image) as hdul:
        del hdul[0].header["BMAJ"]
        hdul.writeto(tmp_path / "nobeam.fits")
    with pytest.raises(InputFileError, match="nobeam.fits"):
        find_components(tmp_path / "nobeam.fits", pb=None)
    with pytest.raises(InputFileError, match="missing.fits"):
        find_components(tmp_path / "missing.fits", pb=None)


def test_the_finder_leaves_numpy_error_handling_alone(synthetic):
    syn, _ = synthetic
    before = np.geterr()
    find_components(syn.image, pb=syn.pb)
    assert np.geterr() == before


def test_the_finder_leaves_nothing_beside_the_image_and_no_log_handlers(synthetic):
    import logging

    syn, _ = synthetic
    before = set(syn.image.parent.iterdir())
    find_components(syn.image, pb=syn.pb)
    assert set(syn.image.parent.iterdir()) == before  # PyBDSF writes <image>.pybdsf.log beside its input
    assert logging.getLogger("PyBDSF").handlers == []


def _find_in_child(image: str, pb: str, out) -> None:
    try:
        out.put(len(find_components(image, pb=pb)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(repr(exc))


def test_the_finder_runs_in_a_daemonic_process_as_in_a_celery_worker(synthetic):
    """A Celery prefork worker's process is daemonic: PyBDSF's process map (which starts a manager and a child even
    with ncores=1) failed there with "daemonic processes are not allowed to have children" on every image whose
    noise map it computed, so the cluster stored no components for them."""
    import multiprocessing

    syn, comps = synthetic
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_find_in_child, args=(str(syn.image), str(syn.pb), out), daemon=True)
    child.start()
    found = out.get(timeout=120)
    child.join(timeout=30)
    assert found == len(comps), found
