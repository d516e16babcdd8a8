"""Fixtures of the imaging tests: one small simulated, gain-free group converted to an MS.

20 core antennas (longest baseline ~0.5 km: ~90 arcsec fringes, so images of
a few hundred pixels), 2 channels per subband (32 over the band), no noise, no
gains (CORRECTED_DATA == DATA is calibrated by construction), five sources at
chosen offsets from the group's phase center (on it, 0.9 deg east and 1.1 deg
west along the drift where the time-averaged beam matters most, 1 deg north,
1.2 deg south-east), 1-2.5 Jy with spectral indices -1 ... 0, all above 30 %
primary-beam response. The simulator samples every
visibility at its channel and integration centre (no smearing), so what
imaging recovers is what imaging and primary-beam correction do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

CORE_ANTENNAS = tuple(int(a) for a in np.round(np.linspace(0, 101, 20)))
OFFSETS_DEG = ((0.0, 0.0), (0.9, 0.0), (-1.1, 0.05), (0.1, 1.0), (0.8, -0.9))
"""(east, north) offsets of the sources from the phase center, degrees."""
FLUXES_JY = (1.5, 2.0, 2.5, 1.0, 1.8)
ALPHAS = (-0.7, -1.0, 0.0, -0.5, -0.8)
CELL_ARCSEC = 15.0
"""The core-only array's beam is ~45 x 90 arcsec; the derived cell (lambda/B/3) would give < 2 pixels across it."""


def field_catalog():
    """The test sky around the phase center of the default simulation start (Dec 35 apparent)."""
    from contimg.simulation.config import DEFAULT_START, INTEGRATION_TIME_S, NINTEGRATIONS
    from contimg.simulation.sky import SkyCatalog
    from contimg.stations import apparent_to_icrs, lst_rad
    from astropy.time import Time

    t_mid = Time(DEFAULT_START).jd + NINTEGRATIONS / 2 * INTEGRATION_TIME_S / 86400
    ra0, dec0 = apparent_to_icrs(lst_rad(np.array([t_mid])), np.radians([35.0]), np.array([t_mid]))
    ra0, dec0 = float(np.degrees(ra0[0])), float(np.degrees(dec0[0]))
    east = np.array([o[0] for o in OFFSETS_DEG])
    north = np.array([o[1] for o in OFFSETS_DEG])
    dec = dec0 + north
    ra = ra0 + east / np.cos(np.radians(dec))
    return SkyCatalog.from_sources(ra, dec, np.array(FLUXES_JY), spectral_index=np.array(ALPHAS))


def _simulate_group(out: Path, catalog, *, seed: int):
    """The test array's noise-free, gain-free group of ``catalog`` under ``out``, converted: (SimulationResult, MS)."""
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, simulate

    cfg = SimulationConfig(antenna_numbers=CORE_ANTENNAS, channels_per_subband=2, seed=seed, noise=False, gains=False,
                           jitter_s=0)
    result = simulate(out / "raw", cfg, catalog=catalog)
    ms = out / "group.ms"
    convert_group(result.groups[0].paths, ms, staging_dir=out / "staging", processes=1)
    return result, ms


@pytest.fixture(scope="session")
def sim_group(tmp_path_factory) -> dict:
    """Simulate and convert the group once per session: {'ms': Path, 'truth': Truth, 'dir': Path}."""
    from contimg.simulation import load_truth

    out = tmp_path_factory.mktemp("imaging_sim")
    result, ms = _simulate_group(out, field_catalog(), seed=7)
    shutil.rmtree(out / "raw" / "staging", ignore_errors=True)
    return {"ms": ms, "truth": load_truth(result.truth_path), "dir": out}


@pytest.fixture(scope="session")
def one_source_group(tmp_path_factory) -> dict:
    """The test array and group with a single 2 Jy source 1 deg west of the phase center (no sidelobes of others)."""
    from contimg.simulation.sky import SkyCatalog

    center = field_catalog()
    ra0, dec0 = float(center.ra_deg[0]), float(center.dec_deg[0])
    one = SkyCatalog.from_sources(np.array([ra0 - 1.0 / np.cos(np.radians(dec0))]), np.array([dec0]),
                                  np.array([2.0]), spectral_index=np.array([0.0]))
    out = tmp_path_factory.mktemp("one_source")
    _, ms = _simulate_group(out, one, seed=3)
    return {"ms": ms, "ra": float(one.ra_deg[0]), "dec": float(one.dec_deg[0]), "dir": out}


def model_data_max(ms) -> float:
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        return float(np.abs(t.getcol("MODEL_DATA")).max())


@pytest.fixture(scope="session")
def wsclean_products(sim_group, imaging_settings, tmp_path_factory):
    """The simulated group imaged once with the default settings (no catalogue): products, out dir, MODEL_DATA
    maximum before imaging."""
    from contimg.imaging import image_ms

    before = model_data_max(sim_group["ms"])
    out = tmp_path_factory.mktemp("wsclean_images")
    products = image_ms(sim_group["ms"], settings=imaging_settings, out_dir=out, cell_arcsec=CELL_ARCSEC)
    return {"products": products, "out": out, "model_before": before, "model_data_max": model_data_max}


@pytest.fixture
def ms_copy(sim_group, tmp_path) -> Path:
    """A private copy of the simulated MS, for tests that change it."""
    dest = tmp_path / "copy.ms"
    shutil.copytree(sim_group["ms"], dest)
    return dest


@pytest.fixture(scope="session")
def imaging_settings():
    from contimg.config import ImagingSettings

    return ImagingSettings(threads=2)


def _source_errors(pbcor_fits: str, truth, ref_freq_hz: float) -> list[dict]:
    """Per truth source: fitted/true flux ratio at the image reference frequency and position offset (arcsec).

    True flux = S_1.4GHz (nu_ref / 1.4 GHz)^alpha, the intrinsic flux at the
    image's reference frequency (CRVAL3, the mean channel frequency).
    """
    from astropy.io import fits

    from contimg.imaging.qa import fit_point_source

    data = fits.getdata(pbcor_fits)
    header = fits.getheader(pbcor_fits)
    cat = truth.catalog
    out = []
    for k in range(cat.Nsrc):
        true = cat.flux_jy[k] * (ref_freq_hz / 1.4e9) ** cat.spectral_index[k]
        fit = fit_point_source(data, header, float(cat.ra_deg[k]), float(cat.dec_deg[k]))
        out.append({"id": int(cat.source_id[k]), "ratio": fit.flux_jy / true, "offset_arcsec": fit.offset_arcsec,
                    "peak_pixel_ratio": fit.peak_pixel_jy / true, "ok": fit.ok})
    return out


def _median_abs_error(errors: list[dict]) -> float:
    return float(np.median([abs(e["ratio"] - 1) for e in errors if e["ok"]]))


@pytest.fixture(scope="session")
def source_errors():
    """``source_errors(pbcor_fits, truth, ref_freq_hz)`` -> per source: flux ratio to truth and offset."""
    return _source_errors


@pytest.fixture(scope="session")
def cell_arcsec() -> float:
    return CELL_ARCSEC


def _beam_to_psf_area(products) -> float:
    """Area of the fitted restoring beam's half-power ellipse over the PSF's half-power main lobe (1 = agree)."""
    import math

    from astropy.io import fits
    from scipy import ndimage

    psf = np.squeeze(fits.getdata(products.psf))
    cell = abs(float(fits.getheader(products.psf)["CDELT2"])) * 3600
    peak = np.unravel_index(np.nanargmax(psf), psf.shape)
    labels, _ = ndimage.label(psf > 0.5)
    lobe = float((labels == labels[peak]).sum()) * cell ** 2
    h = fits.getheader(products.image)
    return math.pi / 4 * h["BMAJ"] * h["BMIN"] * 3600 ** 2 / lobe


@pytest.fixture(scope="session")
def beam_to_psf_area():
    """``beam_to_psf_area(products)``: the restoring beam must describe the PSF's main lobe, not its sidelobes."""
    return _beam_to_psf_area


def _settings_with_catalogue(tmp_path: Path, flux_factor: float):
    from contimg.config import load_settings
    from contimg.db import init_db, session_scope
    from contimg.db.models import Source

    settings = load_settings(data_root=tmp_path / "data")
    settings.paths.ensure()
    init_db(settings)
    cat = field_catalog()
    with session_scope(settings) as s:
        for k in range(len(cat.ra_deg)):
            s.add(Source(name=f"T{k}", ra_deg=float(cat.ra_deg[k]), dec_deg=float(cat.dec_deg[k]),
                         flux_jy=float(cat.flux_jy[k]) * flux_factor,
                         spectral_index=float(cat.spectral_index[k])))
    return settings


@pytest.fixture(scope="session")
def catalogue_settings():
    """``catalogue_settings(tmp_path, flux_factor)``: settings of a fresh SQLite database holding the test sky
    as its catalogue, every flux multiplied by ``flux_factor``."""
    return _settings_with_catalogue
