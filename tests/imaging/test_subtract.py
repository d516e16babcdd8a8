"""Bright sources subtracted from the visibilities before WSClean and restored after it (real WSClean and
casacore on the small simulated group; truth from the simulator)."""

from __future__ import annotations

import numpy as np
import pytest
from casacore.tables import table

from contimg.imaging import image_ms
from contimg.imaging.subtract import SUBTRACTED_COLUMN

pytestmark = pytest.mark.integration

CELL_ARCSEC = 15.0


def _lookup(truth, *, scale: np.ndarray | None = None):
    cat = truth.catalog
    flux = np.asarray(cat.flux_jy, float) * (1.0 if scale is None else scale)

    def lookup(ra_deg: float, dec_deg: float, radius_deg: float) -> dict:
        return {"ra_deg": np.asarray(cat.ra_deg), "dec_deg": np.asarray(cat.dec_deg), "flux_jy": flux,
                "spectral_index": np.asarray(cat.spectral_index)}

    return lookup


def _columns(ms) -> list[str]:
    with table(str(ms), ack=False) as t:
        return t.colnames()


@pytest.fixture(scope="module")
def subtract_settings(imaging_settings):
    # every source of the test sky subtracted (its noise is ~1e-3 of them), no spectral fit
    return imaging_settings.model_copy(update={"subtract_dynamic_range": 1.0, "spectral_fit_dynamic_range": 1e12})


def test_subtracted_and_restored_sources_meet_the_truth(ms_copy, sim_group, subtract_settings, wsclean_products,
                                                        source_errors, tmp_path):
    """All five sources taken out by their model and put back in the image: fluxes against the simulator's truth
    at least as good as CLEAN's own; the scratch column is gone afterwards and DATA, CORRECTED_DATA untouched."""
    with table(str(ms_copy), ack=False) as t:
        before = t.getcol("CORRECTED_DATA", 0, 2000)
    p = image_ms(ms_copy, settings=subtract_settings, out_dir=tmp_path, cell_arcsec=CELL_ARCSEC,
                 catalogue=_lookup(sim_group["truth"]))
    assert p.subtracted is not None and p.subtracted["n_sources"] == 5
    assert p.arguments[p.arguments.index("-data-column") + 1] == SUBTRACTED_COLUMN
    assert SUBTRACTED_COLUMN not in _columns(ms_copy)
    with table(str(ms_copy), ack=False) as t:
        assert np.array_equal(t.getcol("CORRECTED_DATA", 0, 2000), before)
    truth = sim_group["truth"]
    errors = [abs(e["ratio"] - 1) for e in source_errors(p.pbcor, truth, p.ref_freq_hz)]
    plain = wsclean_products["products"]
    plain_errors = [abs(e["ratio"] - 1) for e in source_errors(plain.pbcor, truth, plain.ref_freq_hz)]
    assert max(errors) < 0.02, errors
    assert float(np.median(errors)) <= float(np.median(plain_errors)) + 0.002, (errors, plain_errors)
    # the residual of a perfect model is (numerically) empty: nothing for CLEAN to do
    assert p.qa.rms_jy < 1e-3 * plain.qa.rms_jy  # noise-free data: the model is the whole sky
    # nothing left above CLEAN's threshold: no minor loop ran (CLEAN's own run needed two)
    assert p.deconvolution["stops"] == [] and len(plain.deconvolution["stops"]) == 2


def test_a_catalogue_flux_that_is_wrong_still_measures_the_truth(ms_copy, sim_group, subtract_settings,
                                                                 source_errors, tmp_path):
    """The subtraction only moves the catalogue's flux out of CLEAN's way: a source the catalogue has 20 % too
    bright (a variable that faded) leaves -20 % of it in the residual, which CLEAN models, so the image measures
    the true flux, not the catalogue's."""
    scale = np.ones(5)
    scale[2] = 1.2  # the 2.5 Jy flat-spectrum source 1.1 deg west
    p = image_ms(ms_copy, settings=subtract_settings, out_dir=tmp_path, cell_arcsec=CELL_ARCSEC,
                 catalogue=_lookup(sim_group["truth"], scale=scale))
    assert p.subtracted["n_sources"] == 5
    ratios = [e["ratio"] for e in source_errors(p.pbcor, sim_group["truth"], p.ref_freq_hz)]
    assert abs(ratios[2] - 1) < 0.03, ratios  # the truth, not the catalogue's 1.2
    assert max(abs(r - 1) for r in ratios) < 0.03, ratios


def test_the_scratch_column_is_removed_when_the_imager_fails(ms_copy, sim_group, subtract_settings, tmp_path,
                                                             monkeypatch):
    import contimg.imaging.wsclean as wsclean
    from contimg.errors import ExternalToolError

    def fails(*args, **kwargs):
        assert SUBTRACTED_COLUMN in _columns(ms_copy)  # written before the imager runs
        raise ExternalToolError("made to fail by the test")

    monkeypatch.setattr(wsclean, "run_wsclean", fails)
    with pytest.raises(ExternalToolError, match="made to fail"):
        image_ms(ms_copy, settings=subtract_settings, out_dir=tmp_path / "out", cell_arcsec=CELL_ARCSEC,
                 catalogue=_lookup(sim_group["truth"]))
    assert SUBTRACTED_COLUMN not in _columns(ms_copy)
    assert list((tmp_path / "out").iterdir()) == []


def test_which_sources_are_subtracted(sim_group, imaging_settings):
    from contimg.imaging.geometry import ImageGeometry
    from contimg.imaging.run import field_sources, sources_to_subtract
    from contimg.msmodel import read_ms

    info = read_ms(sim_group["ms"])
    geom = ImageGeometry(cell_arcsec=CELL_ARCSEC, nx=1200, ny=900, pb_limit=0.2, pb_radius_deg=2.0, drift_deg=1.0)
    field = field_sources(_lookup(sim_group["truth"]), info, geom)
    noise = float(np.sort(field.apparent_jy)[-2]) / imaging_settings.subtract_dynamic_range
    bright = sources_to_subtract(field, noise_jy=noise, settings=imaging_settings)
    assert bright is not None and bright.sum() == 2  # the two brightest reach the default 2000 x the noise
    assert sources_to_subtract(field, noise_jy=noise * 10, settings=imaging_settings) is None
    off = imaging_settings.model_copy(update={"subtract_dynamic_range": 0.0})
    assert sources_to_subtract(field, noise_jy=noise, settings=off) is None
    assert sources_to_subtract(None, noise_jy=noise, settings=imaging_settings) is None
    assert sources_to_subtract(field, noise_jy=None, settings=imaging_settings) is None


def test_a_wrong_flux_scale_in_the_data_still_fails_the_gate(ms_copy, sim_group, subtract_settings,
                                                             catalogue_settings, tmp_path):
    """Subtraction does not make the image agree with the catalogue by construction: data calibrated to twice
    the flux leave +1x each model in the residual, CLEAN restores it, and the gate fails the flux scale."""
    from contimg.pipeline.image import judge_products

    with table(str(ms_copy), readonly=False, ack=False) as t:
        t.putcol("CORRECTED_DATA", 2.0 * t.getcol("CORRECTED_DATA"))
    p = image_ms(ms_copy, settings=subtract_settings, out_dir=tmp_path / "img", cell_arcsec=CELL_ARCSEC,
                 catalogue=_lookup(sim_group["truth"]))
    assert p.subtracted["n_sources"] == 5
    verdict = judge_products(catalogue_settings(tmp_path / "cat", 1.0), p)
    assert verdict.status == "fail" and any("catalogue flux" in r for r in verdict.reasons), verdict.summary()
    assert verdict.figures["flux_ratio"] == pytest.approx(2.0, rel=0.05)


def test_an_ms_that_changed_since_it_was_read_is_refused_by_name(ms_copy, sim_group):
    """The subtraction (and the model it shares the row check with) refuses an MS whose rows are no longer those
    of its model, naming it, and writes nothing."""
    from contimg.calibration.model import PointSources, write_model_data
    from contimg.errors import InputFileError
    from contimg.imaging.subtract import subtract_sources
    from contimg.msmodel import read_ms

    import shutil

    model = read_ms(ms_copy)
    smaller = ms_copy.parent / "smaller.ms"
    with table(str(ms_copy), ack=False) as t:  # the MS replaced by one with a row less (rewritten on disk)
        sel = t.selectrows(list(range(1, t.nrows())))
        sel.copy(str(smaller), deep=True, valuecopy=True).close()
        sel.close()
    shutil.rmtree(ms_copy)
    smaller.rename(ms_copy)
    cat = sim_group["truth"].catalog
    sources = PointSources(["a"], np.asarray(cat.ra_deg[:1]), np.asarray(cat.dec_deg[:1]), np.ones(1), np.zeros(1))
    with pytest.raises(InputFileError, match=rf"{ms_copy.name}: has {model.Nblts - 1} rows, {model.Nblts} when"):
        subtract_sources(model, sources, data_column="CORRECTED_DATA", robust=0.0, fov_rad=(0.1, 0.1))
    assert SUBTRACTED_COLUMN not in _columns(ms_copy)
    with pytest.raises(InputFileError, match="rows"):
        write_model_data(model, sources)


def test_the_runaway_check_still_knows_the_subtracted_source(sim_group, subtract_settings, ms_copy, tmp_path,
                                                             monkeypatch):
    """The runaway check compares the restored image's peak with the brightest catalogue source: a subtracted
    source is still the field's brightest (the image shows it again), even when no spectral fit is asked for."""
    import contimg.imaging.run as run

    seen: list[float | None] = []
    real = run.ran_away

    def spy(path, **kw):
        seen.append(kw.get("brightest_jy"))
        return real(path, **kw)

    monkeypatch.setattr(run, "ran_away", spy)
    p = image_ms(ms_copy, settings=subtract_settings, out_dir=tmp_path / "img", cell_arcsec=CELL_ARCSEC,
                 catalogue=_lookup(sim_group["truth"]))
    assert p.spectral_fit is None and p.subtracted["n_sources"] == 5
    assert len(seen) == 1 and seen[0] is not None
    # the field's time- and band-averaged apparent flux, close to the brightest effective flux restored
    assert seen[0] == pytest.approx(max(p.subtracted["effective_jy"]), rel=0.05)
