"""Fixtures of the photometry tests: one small simulated group, converted and imaged with WSClean once per session.

The same kind of field as the imaging tests (copied, not shared: their
conftest belongs to imaging): 20 core antennas, 2 channels per subband, no
gains (CORRECTED_DATA == DATA), thermal noise on (seeded), five 1-2.5 Jy
sources with spectral indices -1 ... 0 at offsets from the phase center where
the primary beam is 0.3-1, imaged at the quicklook tier.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CORE_ANTENNAS = tuple(int(a) for a in np.round(np.linspace(0, 101, 20)))
OFFSETS_DEG = ((0.0, 0.0), (0.9, 0.0), (-1.1, 0.05), (0.1, 1.0), (0.8, -0.9))
"""(east, north) offsets of the simulated sources from the phase center, degrees."""
FLUXES_JY = (1.5, 2.0, 2.5, 1.0, 1.8)
ALPHAS = (-0.7, -1.0, 0.0, -0.5, -0.8)
ABSENT_OFFSETS_DEG = ((-0.5, -0.6), (0.45, 0.5))
"""Catalogue positions with no source in the sky (forced photometry must give upper limits)."""
OUTSIDE_OFFSET_DEG = (0.0, 8.0)
"""A catalogue source far outside the primary beam (must not be measured)."""
CELL_ARCSEC = 15.0


def _phase_center_deg() -> tuple[float, float]:
    from astropy.time import Time

    from contimg.simulation.config import DEFAULT_START, INTEGRATION_TIME_S, NINTEGRATIONS
    from contimg.stations import apparent_to_icrs, lst_rad

    t_mid = Time(DEFAULT_START).jd + NINTEGRATIONS / 2 * INTEGRATION_TIME_S / 86400
    ra0, dec0 = apparent_to_icrs(lst_rad(np.array([t_mid])), np.radians([35.0]), np.array([t_mid]))
    return float(np.degrees(ra0[0])), float(np.degrees(dec0[0]))


def offset_position(east: float, north: float) -> tuple[float, float]:
    """ICRS (ra, dec) degrees of an (east, north) offset from the phase center."""
    ra0, dec0 = _phase_center_deg()
    dec = dec0 + north
    return ra0 + east / np.cos(np.radians(dec)), dec


def field_catalog():
    from contimg.simulation.sky import SkyCatalog

    pos = np.array([offset_position(*o) for o in OFFSETS_DEG])
    return SkyCatalog.from_sources(pos[:, 0], pos[:, 1], np.array(FLUXES_JY), spectral_index=np.array(ALPHAS))


@pytest.fixture(scope="session")
def imaged_field(tmp_path_factory) -> dict:
    """Simulate, convert and image once.

    Returns {'products': ImageProducts, 'truth': Truth, 'dir': Path, 'ms': Path,
    'absent': [(ra, dec), ...] positions without a source, 'outside': (ra, dec) far outside the beam}.
    """
    from contimg.config import ImagingSettings
    from contimg.conversion import convert_group
    from contimg.imaging import image_ms
    from contimg.simulation import SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("photometry_sim")
    cfg = SimulationConfig(antenna_numbers=CORE_ANTENNAS, channels_per_subband=2, seed=11, noise=True, gains=False,
                           jitter_s=0)
    result = simulate(out / "raw", cfg, catalog=field_catalog())
    ms = out / "group.ms"
    convert_group(result.groups[0].paths, ms, staging_dir=out / "staging", processes=1)
    truth = load_truth(result.truth_path)
    shutil.rmtree(out / "raw" / "staging", ignore_errors=True)
    products = image_ms(ms, settings=ImagingSettings(threads=2), out_dir=out / "images", tier="quicklook",
                        cell_arcsec=CELL_ARCSEC)
    return {"products": products, "truth": truth, "dir": out, "ms": ms,
            "absent": [offset_position(*o) for o in ABSENT_OFFSETS_DEG], "outside": offset_position(*OUTSIDE_OFFSET_DEG)}
