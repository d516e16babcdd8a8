"""Small simulated data sets shared by the simulator's tests (built once per session).

All use few antennas (always including outriggers, whose heights differ from
the core's) and few channels so the whole directory runs in well under a
minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Core stations on both arms plus five outriggers at heights 1181.3-1186.3 m.
ANTENNAS = (0, 30, 51, 80, 101, 102, 105, 110, 113, 115)


def _read_group(paths: list[Path], **kw):
    """A whole group read with pyuvdata along the frequency axis."""
    from pyuvdata import UVData

    uvd = UVData()
    uvd.read([str(p) for p in paths], file_type="uvh5", axis="freq", **kw)
    return uvd


@pytest.fixture(scope="session")
def read_group():
    """``read_group(paths)``: a whole group read with pyuvdata along the frequency axis."""
    return _read_group


@pytest.fixture(scope="session")
def mixed_antennas() -> tuple[int, ...]:
    """Antenna numbers on both arms and five outriggers (heights differ by 5 m)."""
    return ANTENNAS


@pytest.fixture(scope="session")
def small_group(tmp_path_factory):
    """(result, truth): the CLI's small case with a calibrator: 8 antennas, 4 channels, noise and gains."""
    from contimg.simulation import SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("sim_small")
    cfg = SimulationConfig(n_antennas=8, channels_per_subband=4, seed=1, n_sources=20, calibrator_flux_jy=10.0)
    res = simulate(out, cfg)
    return res, load_truth(res.truth_path)


@pytest.fixture(scope="session")
def noise_only(tmp_path_factory):
    """(uvd, truth): an empty sky, thermal noise only, no gains, two subbands."""
    from contimg.simulation import SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("sim_noise")
    cfg = SimulationConfig(n_antennas=12, channels_per_subband=8, subbands=(0, 9), seed=5, n_sources=0, gains=False)
    res = simulate(out, cfg)
    return _read_group(res.groups[0].paths), load_truth(res.truth_path)


@pytest.fixture(scope="session")
def calibrator_with_gains(tmp_path_factory):
    """(uvd, truth): noise-free, gains on, only a 10 Jy calibrator transiting mid-group."""
    from contimg.simulation import SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("sim_gains")
    cfg = SimulationConfig(
        antenna_numbers=ANTENNAS, channels_per_subband=6, subbands=(0, 7, 15), seed=9, n_sources=0,
        calibrator_flux_jy=10.0, noise=False, gains=True,
    )
    res = simulate(out, cfg)
    return _read_group(res.groups[0].paths), load_truth(res.truth_path)


@pytest.fixture(scope="session")
def light_curve_days(tmp_path_factory):
    """(result, truth): 6 daily epochs, one subband, an injected ESE and random ones, flux-scale errors."""
    from contimg.simulation import EseInjection, SimulationConfig, load_truth, simulate

    out = tmp_path_factory.mktemp("sim_days")
    cfg = SimulationConfig(
        n_antennas=6, channels_per_subband=2, subbands=(3,), n_days=6, seed=21, n_sources=12,
        calibrator_flux_jy=5.0, noise=False, gains=False, ese_fraction=0.25, flux_scale_error=0.05,
        events=(EseInjection(source_id=0, t_center_days=2.5, duration_days=2.0, depth=0.4),),
    )
    res = simulate(out, cfg)
    return res, load_truth(res.truth_path)


@pytest.fixture
def sim_rng() -> np.random.Generator:
    return np.random.default_rng(1234)
