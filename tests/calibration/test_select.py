"""Finding the calibrator in the beam, and the catalogue sources of the sky model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.calibration.catalog import simulated_source_name
from contimg.pipeline.calibrate import catalogue_near_track
from contimg.pipeline.catalog import import_truth
from contimg.msmodel import read_ms
from contimg.calibration.select import CatalogueRow, choose_calibrator, search_box, sources_near_track
from contimg.db import session_scope
from contimg.db.science import upsert_sources


def _choose(session, msm, **thresholds):
    return choose_calibrator(catalogue_near_track(session, msm, calibrators_only=True), msm, **thresholds)


@pytest.fixture
def catalogue(db_url, gained):
    truth, ms = gained
    with session_scope(db_url) as s:
        import_truth(s, truth.path)
    return db_url, truth, {k: read_ms(p) for k, p in ms.items()}


def test_calibrator_transiting_the_group_is_chosen(catalogue):
    url, truth, msm = catalogue
    with session_scope(url, readonly=True) as s:
        choice = _choose(s, msm[0], min_beam_response=0.3, min_calibrator_flux_jy=1.0)
    assert choice.name == simulated_source_name(truth.calibrator_id)
    assert choice.beam_response > 0.99 and choice.transits_in_group
    assert choice.apparent_flux_jy == pytest.approx(10.0 * choice.beam_response)
    assert msm[0].start_mjd < choice.peak_mjd < msm[0].end_mjd


def test_thresholds_make_a_science_group(catalogue):
    url, truth, msm = catalogue
    with session_scope(url, readonly=True) as s:
        late = _choose(s, msm[2], min_beam_response=0.3, min_calibrator_flux_jy=1.0)
        assert 0.3 < late.beam_response < 0.5 and not late.transits_in_group  # 10 min after transit
        assert _choose(s, msm[2], min_beam_response=0.5, min_calibrator_flux_jy=1.0) is None
        assert _choose(s, msm[0], min_beam_response=0.3, min_calibrator_flux_jy=20.0) is None


def test_brighter_apparent_calibrator_wins(catalogue):
    url, truth, msm = catalogue
    m = msm[0]
    ra0, dec0 = math.degrees(m.phase_center_ra), math.degrees(m.phase_center_dec)
    with session_scope(url) as s:
        upsert_sources(s, [
            # 30 Jy but 2 deg north: beam response ~0.2, apparent ~6 Jy < 10 Jy: loses, and is below 0.3 anyway
            {"name": "north", "ra_deg": ra0, "dec_deg": dec0 + 2.0, "flux_jy": 30.0, "is_calibrator": True},
            # 15 Jy at 0.3 deg: response ~0.95, apparent ~14 Jy: wins
            {"name": "near", "ra_deg": ra0, "dec_deg": dec0 + 0.3, "flux_jy": 15.0, "is_calibrator": True},
        ])
    with session_scope(url, readonly=True) as s:
        assert _choose(s, m, min_beam_response=0.3, min_calibrator_flux_jy=1.0).name == "near"


def test_sources_near_track(catalogue):
    url, truth, msm = catalogue
    m = msm[0]
    ra0, dec0 = math.degrees(m.phase_center_ra), math.degrees(m.phase_center_dec)
    with session_scope(url) as s:
        upsert_sources(s, [
            {"name": "far", "ra_deg": ra0, "dec_deg": dec0 + 10.0, "flux_jy": 5.0},
            {"name": "noflux", "ra_deg": ra0, "dec_deg": dec0 + 0.5},
            {"name": "wrap", "ra_deg": (ra0 + 180.0) % 360.0, "dec_deg": dec0, "flux_jy": 5.0},
        ])
    with session_scope(url, readonly=True) as s:
        model = catalogue_near_track(s, m)
        cals = catalogue_near_track(s, m, calibrators_only=True)
    assert "far" not in model.name and "noflux" not in model.name and "wrap" not in model.name
    assert simulated_source_name(truth.calibrator_id) in model.name
    assert cals.name == [simulated_source_name(truth.calibrator_id)]
    assert 5 < model.Nsrc <= truth.catalog.Nsrc


def test_sources_near_track_works_on_rows_without_a_database(catalogue):
    """The science takes the rows it is given: the same cut as through the database, no session."""
    _, truth, msm = catalogue
    m = msm[0]
    ra0, dec0 = math.degrees(m.phase_center_ra), math.degrees(m.phase_center_dec)
    rows = [CatalogueRow("in", ra0, dec0 + 0.5, 2.0, -0.7), CatalogueRow("far", ra0, dec0 + 10.0, 5.0, None),
            CatalogueRow("noflux", ra0, dec0 + 0.2, None, None)]
    got = sources_near_track(rows, m)
    assert got.name == ["in"] and got.flux_jy.tolist() == [2.0] and got.spectral_index.tolist() == [-0.7]
    assert sources_near_track([], m).Nsrc == 0


def _track(ra_deg, dec_deg):
    """A stand-in for an MS's metadata with only the pointing track (what search_box reads)."""
    from types import SimpleNamespace

    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return SimpleNamespace(pointing=SimpleNamespace(icrs=lambda _t: (ra, dec)), time_array=np.zeros(ra.size))


@pytest.mark.parametrize("dec", [30.0, 60.0, 80.0, 82.06, 83.5, 86.0, -82.06])
def test_the_search_box_holds_every_source_within_the_radius(dec):
    """Near the pole the RA padding approaches 180 deg: the box must then take every RA, not wrap to a sliver.

    (Before: with padding under 180 deg but the padded range over 360 deg, the
    range wrapped to a few degrees and nearly every source was left out.)
    """
    from contimg.beam import angular_separation

    msm = _track(np.linspace(10.0, 21.0, 24), np.full(24, dec))  # an 11 deg track in RA
    box = search_box(msm, radius_deg=6.0)
    rng = np.random.default_rng(1)
    ra = rng.uniform(0, 360, 20000)
    de = np.degrees(np.arcsin(rng.uniform(-1, 1, 20000)))
    track_ra, track_dec = msm.pointing.icrs(None)
    sep = np.degrees(angular_separation(track_ra[None, :], track_dec[None, :], np.radians(ra)[:, None],
                                        np.radians(de)[:, None]).min(axis=1))
    near = sep <= 6.0
    assert near.sum() > 10
    in_dec = (de >= box.dec_lo) & (de <= box.dec_hi)
    if box.all_ra:
        in_ra = np.ones_like(in_dec)
    elif box.ra_lo <= box.ra_hi:
        in_ra = (ra >= box.ra_lo) & (ra <= box.ra_hi)
    else:
        in_ra = (ra >= box.ra_lo) | (ra <= box.ra_hi)
    missed = near & ~(in_dec & in_ra)
    assert not missed.any(), f"{missed.sum()} sources within 6 deg left out of {box}"
