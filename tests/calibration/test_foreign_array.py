"""Another array's Measurement Set: the instrument (dish, site, pointing) is read from the data.

The MS is written by pyuvdata's own ``write_ms`` from what pyuvdata ships: HERA's
antenna layout (``hera_ant_pos.csv``), site and 14 m dishes. Twice:

* **pointed**: steerable (alt-az) 14 m dishes tracking a 10 Jy calibrator two
  hours west of the meridian, 30 deg south. DSA-110's assumptions (a 4.65 m
  beam on the meridian at OVRO) put the calibrator at beam response 0: "no
  calibrator in the beam", model visibilities 10^4 too faint, a PB-corrected
  image of NaN. Read from the data, the model, the solve, the image, PB
  correction and forced photometry must all follow the 14 m beam at that
  pointing: a 2 Jy source 0.35 deg off axis (response ~0.6, computed here
  with its own Airy formula) is measured within 3 %.
* **zenith drift**: HERA's own fixed-mount dishes. pyuvdata writes its
  "ZENITH" placeholder into POINTING; for fixed mounts it is the truth: a
  drift at HERA's latitude.

DATA is filled by contimg's predictor with the beam switched off and the
fluxes already attenuated by the test's Airy beam (the predictor itself is
proven against pyuvdata and CASA in ``test_model.py``), then corrupted by
known antenna gains.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from casacore import tables
from scipy.special import j1

from contimg.pipeline.calibrate import calibrate_ms
from contimg.calibration.model import PointSources, write_model_data
from contimg.msmodel import read_ms
from contimg.config import CalibrationSettings, ImagingSettings
from contimg.db import dispose_engine, init_db, session_scope
from contimg.db.science import upsert_sources
from contimg.errors import InputFileError

pytestmark = pytest.mark.integration

C = 299792458.0
DISH_M = 14.0
CAL = ("J_CAL", 10.0, -0.7)
OFF = ("J_OFF", 2.0, -0.7)
OFFSET_DEG = 0.35


def _airy(sep_rad, freq_hz, d=DISH_M):
    x = np.pi * d * np.sin(np.asarray(sep_rad, float)) * np.asarray(freq_hz, float) / C
    x = np.where(x == 0, 1e-12, x)
    return (2 * j1(x) / x) ** 2


def _write_hera_ms(out: Path, *, mount: str, ha_deg: float, dec_deg: float | None,
                   pols: tuple[str, ...] = ("xx", "yy")) -> tuple[float, float]:
    """A 39-antenna HERA-layout MS phased to (LST_mid - ha, dec); returns that ICRS (ra, dec) in radians."""
    import pyuvdata
    from astropy.time import Time
    from pyuvdata import Telescope, UVData
    from pyuvdata.telescopes import KNOWN_TELESCOPES

    known = KNOWN_TELESCOPES["HERA"]
    with open(Path(pyuvdata.__file__).parent / "data" / known["antenna_positions_file"]) as fh:
        rows = list(csv.DictReader(fh))[::9]  # 39 antennas over the whole 0.5 km hexagon
    tel = Telescope.new(name="HERA", instrument="HERA", location=known["location"],
                        antenna_names=[r["name"] for r in rows], antenna_numbers=[int(r["number"]) for r in rows],
                        antenna_positions=np.array([[float(r[k]) for k in "xyz"] for r in rows]),
                        antenna_diameters=np.full(len(rows), float(known["antenna_diameters"])), mount_type=mount)
    times = Time("2025-06-01T04:00:00", scale="utc").jd + np.arange(12) * 20.0 / 86400
    lst_mid = Time(times.mean(), format="jd").sidereal_time("apparent", longitude=tel.location.lon).rad
    ra = (lst_mid - math.radians(ha_deg)) % (2 * math.pi)
    dec = math.radians(dec_deg if dec_deg is not None else tel.location.lat.deg)
    nums = tel.antenna_numbers
    uvd = UVData.new(freq_array=1.35e9 + np.arange(16) * 6.25e6, polarization_array=list(pols),
                     antpairs=[(a, b) for i, a in enumerate(nums) for b in nums[i:]], times=times, telescope=tel,
                     phase_center_catalog={0: dict(cat_name="J_CAL", cat_type="sidereal", cat_lon=ra, cat_lat=dec,
                                                   cat_frame="icrs", cat_epoch=2000.0)},
                     integration_time=20.0, channel_width=6.25e6, empty=True)
    uvd.write_ms(str(out), clobber=True)
    return ra, dec


def _offset(ra: float, dec: float, deg: float) -> tuple[float, float]:
    """A position ``deg`` north-east of (ra, dec), radians."""
    d = math.radians(deg) / math.sqrt(2)
    return ra + d / math.cos(dec), dec + d


@pytest.fixture(scope="module")
def pointed(tmp_path_factory):
    """The pointed 14 m observation with the two sources and known gains, and a catalogue database."""
    root = tmp_path_factory.mktemp("foreign")
    ms = root / "hera_pointed.ms"
    ra, dec = _write_hera_ms(ms, mount="alt-az", ha_deg=30.0, dec_deg=-30.0)
    ra2, dec2 = _offset(ra, dec, OFFSET_DEG)
    from contimg.beam import angular_separation

    sep = float(angular_separation(ra, dec, ra2, dec2))
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as t:
        freq = np.asarray(t.getcell("CHAN_FREQ", 0), float)
    response = float(_airy(sep, 1.4e9))
    # the data: the calibrator on axis, the off-axis source attenuated by the 14 m beam (per channel: the
    # predictor takes one flux per source, so the beam's slope across 100 MHz enters the spectral index)
    slope = np.polyfit(np.log(freq / 1.4e9), np.log(_airy(sep, freq) / response), 1)[0]
    sky = PointSources([CAL[0], OFF[0]], np.degrees([ra, ra2]), np.degrees([dec, dec2]),
                       np.array([CAL[1], OFF[1] * response]), np.array([CAL[2], OFF[2] + slope]))
    write_model_data(ms, sky, diameter_m=None, column="DATA")
    rng = np.random.default_rng(7)
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        nant = int(max(a1.max(), a2.max())) + 1  # ANTENNA rows run up to the largest antenna number
        gains = (1 + 0.15 * rng.standard_normal(nant)) * np.exp(1j * rng.uniform(-np.pi, np.pi, nant))
        data = tb.getcol("DATA")
        data *= (gains[a1] * np.conj(gains[a2]))[:, None, None]
        data += 0.02 * (rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))
        data[a1 == a2] = 0
        tb.putcol("DATA", data)
    url = f"sqlite:///{root / 'catalog.sqlite3'}"
    init_db(url)
    with session_scope(url) as s:
        upsert_sources(s, [
            {"name": CAL[0], "ra_deg": math.degrees(ra), "dec_deg": math.degrees(dec), "flux_jy": CAL[1],
             "spectral_index": CAL[2], "is_calibrator": True},
            {"name": OFF[0], "ra_deg": math.degrees(ra2), "dec_deg": math.degrees(dec2), "flux_jy": OFF[1],
             "spectral_index": OFF[2], "is_calibrator": False},
        ])
    yield dict(ms=ms, root=root, url=url, ra=ra, dec=dec, ra2=ra2, dec2=dec2, response=response, gains=gains)
    dispose_engine(url)


def test_the_pointing_site_and_dish_come_from_the_ms(pointed):
    msm = read_ms(pointed["ms"])
    assert msm.dish_diameter == DISH_M
    assert msm.pointing.kind == "fixed"
    assert "no POINTING rows" in msm.pointing.origin  # pyuvdata's ZENITH placeholder is ignored: alt-az mounts
    assert (msm.pointing.lon_rad, msm.pointing.lat_rad) == pytest.approx((pointed["ra"], pointed["dec"]))
    assert msm.location.lat.deg == pytest.approx(-30.72, abs=0.01)  # HERA, not OVRO


def test_calibrate_solves_on_the_pointed_calibrator(pointed):
    """The calibrator sits at the pointing: response 1 (DSA-110's meridian beam said 0), model at full flux,
    the solve recovers the antenna gains, and the calibration gate passes it."""
    root = pointed["root"]
    out = calibrate_ms(pointed["ms"], database=pointed["url"], calibration=CalibrationSettings(),
                       caltable_dir=root / "caltables", scratch_dir=root / "scratch")
    assert out.mode == "solved" and out.calibrator_name == CAL[0]
    assert out.calibrator_beam_response == pytest.approx(1.0, abs=1e-6)
    assert out.qa_verdict in ("pass", "warn"), out.qa_reasons
    with tables.table(str(pointed["ms"]), ack=False) as tb:
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        model = tb.getcol("MODEL_DATA")[cross]
        corrected = tb.getcol("CORRECTED_DATA")[cross]
    # the model's calibrator is not 10^4 too faint: the mean over baselines is the flux on axis plus the
    # off-axis source's (its fringes average down)
    assert np.abs(model.mean()) == pytest.approx(CAL[1] * (1.375 / 1.4) ** CAL[2], rel=0.03)
    ratio = np.abs(corrected).mean() / np.abs(model).mean()
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_image_and_photometry_follow_the_14m_beam(pointed):
    """WSClean image, PB-corrected with the 14 m Airy beam at the fixed pointing; the off-axis source's forced
    flux is its catalogue flux (DSA-110's 4.65 m beam would give 0.95 instead of ~0.6: a 50 % error)."""
    from contimg.imaging import image_ms
    from contimg.photometry.measure import ImageSet, measure_image

    if not (pointed["root"] / "caltables").exists():
        pytest.skip("needs the calibration test's solution")
    products = image_ms(pointed["ms"], settings=ImagingSettings(threads=2), out_dir=pointed["root"] / "images")
    assert products.geometry.drift_deg == 0.0  # a pointed observation does not sweep
    from astropy.io import fits

    with fits.open(products.pb) as hd:
        assert hd[0].header["PBDIAM"] == DISH_M
        pb = np.squeeze(hd[0].data)
        assert np.isfinite(pb).any() and np.nanmax(pb) == pytest.approx(1.0, abs=0.01)
    images = ImageSet(image_id=0, path=products.pbcor, epoch_mjd=products.mid_mjd, flat=Path(products.image),
                      pbcor=Path(products.pbcor), pb=Path(products.pb), ms_path=Path(pointed["ms"]))
    ra_deg = np.degrees([pointed["ra"], pointed["ra2"]])
    dec_deg = np.degrees([pointed["dec"], pointed["dec2"]])
    idx, phot, _ = measure_image(images, ra_deg, dec_deg, min_beam_response=0.1)
    assert list(idx) == [0, 1]
    assert phot.beam_response[1] == pytest.approx(pointed["response"], rel=0.02)
    expected = np.array([CAL[1], OFF[1]]) * (products.ref_freq_hz / 1.4e9) ** CAL[2]
    np.testing.assert_allclose(phot.flux_jy, expected, rtol=0.03)


def test_pyuvdata_zenith_placeholder_is_a_drift_for_fixed_mounts(tmp_path):
    """HERA's fixed dishes: the ZENITH rows pyuvdata writes mean a drift through the zenith at HERA's latitude."""
    ms = tmp_path / "hera_drift.ms"
    _write_hera_ms(ms, mount="fixed", ha_deg=0.0, dec_deg=None)
    msm = read_ms(ms)
    assert msm.pointing.kind == "drift" and msm.pointing.origin.startswith("POINTING table ZENITH")
    assert (msm.pointing.lon_rad, math.degrees(msm.pointing.lat_rad)) == pytest.approx((0.0, -30.72), abs=0.01)
    ra, dec = msm.pointing.icrs(msm.time_array)
    assert math.degrees(ra[-1] - ra[0]) == pytest.approx(11 * 20.0 / 86164.09 * 360, rel=0.01)  # it drifts


def test_a_moving_pointing_is_refused_naming_the_ms(pointed, tmp_path):
    """A POINTING table that moves across the sky (a mosaic or a scan) is not silently taken for one pointing."""
    import shutil

    ms = tmp_path / "scan.ms"
    shutil.copytree(pointed["ms"], ms)
    with tables.table(str(ms / "POINTING"), readonly=False, ack=False) as t:
        n = t.nrows()
        d = np.zeros((n, 2, 1))
        d[:, 0, 0] = pointed["ra"] + np.linspace(0, math.radians(2.0), n)
        d[:, 1, 0] = pointed["dec"]
        t.putcol("DIRECTION", d)
        t.putcol("NAME", np.array(["SCAN"] * n))
    with pytest.raises(InputFileError, match=f"{ms}.*spread over .* not a mosaic or a scan"):
        read_ms(ms)


def test_read_ms_agrees_with_pyuvdata(tmp_path):
    """The model of another array's MS, written by pyuvdata, is what pyuvdata itself reads from it."""
    from pyuvdata import UVData

    ms = tmp_path / "hera.ms"
    ra, dec = _write_hera_ms(ms, mount="alt-az", ha_deg=30.0, dec_deg=-30.0)
    msm = read_ms(ms)
    uvd = UVData.from_file(str(ms), file_type="ms")
    for name in ("Nblts", "Nbls", "Ntimes", "Nfreqs", "Npols", "Nants_data"):
        assert getattr(msm, name) == getattr(uvd, name), name
    np.testing.assert_array_equal(msm.freq_array, uvd.freq_array)
    assert msm.channel_width == uvd.channel_width[0] and msm.integration_time == uvd.integration_time[0]
    assert msm.polarization_array.tolist() == uvd.polarization_array.tolist() == [-5, -6]
    np.testing.assert_allclose(msm.time_array, np.unique(uvd.time_array), rtol=0, atol=1e-6 / 86400)
    np.testing.assert_allclose(msm.lst_array, np.unique(uvd.lst_array), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(msm.ant_1_array, uvd.ant_1_array)
    np.testing.assert_array_equal(msm.ant_2_array, uvd.ant_2_array)
    np.testing.assert_allclose(msm.uvw_array, -uvd.uvw_array, rtol=0, atol=1e-9)  # the MS's sign, not pyuvdata's
    # ANTENNA rows run up to the largest number (HERA's are sparse); the antennas with data are pyuvdata's
    assert msm.Nants_telescope == int(uvd.telescope.antenna_numbers.max()) + 1
    idx = [list(uvd.telescope.antenna_numbers).index(a) for a in msm.ant_array]
    assert list(msm.data_antenna_names) == [uvd.telescope.antenna_names[i] for i in idx]
    np.testing.assert_allclose(msm.data_antenna_positions, uvd.telescope.antenna_positions[idx], rtol=0, atol=1e-6)
    loc = uvd.telescope.location
    np.testing.assert_allclose(msm.telescope_location, [loc.x.value, loc.y.value, loc.z.value], rtol=0, atol=1e-6)
    assert (msm.phase_center_ra, msm.phase_center_dec) == pytest.approx((ra, dec), abs=1e-12)
    assert msm.telescope_name == "HERA" and msm.dish_diameter == DISH_M
    assert msm.location.lat.deg == pytest.approx(-30.72, abs=0.01)
