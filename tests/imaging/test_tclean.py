"""The tclean backend on the small simulated group: same interface, headers and accuracy as WSClean."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from contimg.imaging import image_ms
from contimg.msmodel import read_ms

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tclean_products(sim_group, imaging_settings, cell_arcsec, tmp_path_factory):
    from contimg import casa_env

    out = tmp_path_factory.mktemp("tclean_images")
    casa_env.configure_environment(log_dir=tmp_path_factory.mktemp("casa_logs"))
    return image_ms(sim_group["ms"], settings=imaging_settings, out_dir=out, backend="tclean",
                    cell_arcsec=cell_arcsec), out


def test_products_and_headers(tclean_products, sim_group, cell_arcsec):
    p, out = tclean_products
    assert p.backend == "tclean" and p.arguments == []
    assert not [x for x in out.iterdir() if x.name.startswith(".")], "temporary files left behind"
    assert not list(out.glob("*.image")), "CASA images must not be left as products"
    msm = read_ms(sim_group["ms"])
    h = fits.getheader(p.image)
    assert h["CTYPE1"] == "RA---SIN" and h["CTYPE2"] == "DEC--SIN"
    assert h["CRVAL1"] == pytest.approx(np.degrees(msm.phase_center_ra), abs=2e-5)
    assert h["CRVAL2"] == pytest.approx(np.degrees(msm.phase_center_dec), abs=2e-5)
    assert abs(h["CDELT2"]) * 3600 == pytest.approx(cell_arcsec)
    assert h["BUNIT"].upper() == "JY/BEAM"
    assert 20 < h["BMIN"] * 3600 <= h["BMAJ"] * 3600 < 200
    assert (h["NAXIS1"], h["NAXIS2"]) == (p.geometry.nx, p.geometry.ny)
    assert h["CRVAL3"] == pytest.approx(msm.freq_mean, rel=1e-3)


def test_restoring_beam_is_the_main_lobe(tclean_products, beam_to_psf_area):
    """The fitted beam's half-power ellipse covers the PSF's half-power main lobe (pixelised at 15 arcsec)."""
    assert 0.7 < beam_to_psf_area(tclean_products[0]) < 1.4


def test_flux_and_position_against_truth(tclean_products, sim_group, source_errors):
    p, _ = tclean_products
    errors = source_errors(p.pbcor, sim_group["truth"], p.ref_freq_hz)
    for e in errors:
        assert e["ok"], e
        assert abs(e["ratio"] - 1) < 0.02, e
        assert e["offset_arcsec"] < 0.1 * p.qa.beam_minor_arcsec, e


@pytest.mark.slow
def test_catalog_mask_quicklook(sim_group, imaging_settings, cell_arcsec, tmp_path, source_errors):
    """tclean with a user mask of circles around the catalogue sources (a CASA region file)."""
    cat = sim_group["truth"].catalog
    p = image_ms(sim_group["ms"], settings=imaging_settings, out_dir=tmp_path, backend="tclean", tier="quicklook",
                 cell_arcsec=cell_arcsec, mask_positions_deg=list(zip(cat.ra_deg, cat.dec_deg)))
    errors = source_errors(p.pbcor, sim_group["truth"], p.ref_freq_hz)
    assert max(abs(e["ratio"] - 1) for e in errors) < 0.05


def test_catalog_region_text():
    from contimg.imaging.tclean import catalog_region

    text = catalog_region([(10.0, 35.0), (11.5, -2.25)], 60.0)
    assert text.splitlines() == ["#CRTFv0", "circle[[10.000000deg, 35.000000deg], 60.0arcsec]",
                                 "circle[[11.500000deg, -2.250000deg], 60.0arcsec]"]
