"""Simulated groups and converted Measurement Sets for the calibration tests, built once per session.

* ``noisefree``: 16 antennas, 4 channels per subband (64 in the MS), 40 random
  sources and a 10 Jy calibrator, no noise, no gains: DATA is exactly the sky.
* ``gained``: 20 antennas, 8 channels per subband (128), 40 sources, a 10 Jy
  calibrator transiting group 0, thermal noise (SEFD 6500 Jy) and random gains
  (10% amplitude rms, 2 ns delays, 3% ripples) *without* the slow phase drift,
  3 consecutive groups: group 0 is the calibrator group, group 2 (10 min
  later, calibrator at beam response 0.37) serves as a science group.

Tests that change an MS work on a private copy (``ms_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

NOISEFREE = dict(n_antennas=16, channels_per_subband=4, seed=3, noise=False, gains=False,
                 calibrator_flux_jy=10.0, n_sources=40)
GAINED = dict(n_antennas=20, channels_per_subband=8, seed=5, calibrator_flux_jy=10.0, n_sources=40, n_groups=3,
              gain_phase_drift_deg=0.0)


def _simulate_and_convert(out: Path, kw: dict, groups: tuple[int, ...]):
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, load_truth, simulate

    res = simulate(out / "sim", SimulationConfig(**kw))
    paths = {}
    for k in groups:
        ms = out / f"g{k}.ms"
        convert_group(res.groups[k].paths, ms, staging_dir=out / "staging", processes=1)
        paths[k] = ms
    return load_truth(res.truth_path), paths


@pytest.fixture(scope="session")
def noisefree(tmp_path_factory):
    """(truth, ms_path) of the noise-free, gain-free group."""
    truth, paths = _simulate_and_convert(tmp_path_factory.mktemp("cal_noisefree"), NOISEFREE, (0,))
    return truth, paths[0]


@pytest.fixture(scope="session")
def gained(tmp_path_factory):
    """(truth, {0: calibrator MS, 2: science MS}) of the noisy group sequence with gains."""
    return _simulate_and_convert(tmp_path_factory.mktemp("cal_gained"), GAINED, (0, 2))


@pytest.fixture
def ms_copy(tmp_path):
    """Copy an MS into this test's directory: ``ms_copy(path) -> new path``."""

    def make(path: Path, name: str | None = None) -> Path:
        dest = tmp_path / (name or Path(path).name)
        shutil.copytree(path, dest)
        return dest

    return make


def truth_sources(truth, *, day: int = 0):
    """The simulated sky as :class:`~contimg.calibration.model.PointSources` (the fluxes put into the data)."""
    from contimg.calibration.catalog import simulated_source_name
    from contimg.calibration.model import PointSources

    cat = truth.catalog_for_epoch(day)
    return PointSources([simulated_source_name(i) for i in cat.source_id], np.asarray(cat.ra_deg, float),
                        np.asarray(cat.dec_deg, float), np.asarray(cat.flux_jy, float),
                        np.asarray(cat.spectral_index, float))


def gain_errors(truth, tables: dict[str, str], ms_path: Path, refant: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-antenna |amplitude error| (fraction) and |phase error| (deg), medians over channels and feeds.

    The CASA solution ``G * B`` (solved without K) is compared with the complex conjugate of
    the simulator's gains (UVCal convention, NOTES) at the MS's mid time, after
    removing the reference antenna's phase per channel and feed.
    """
    from contimg.msmodel import read_ms
    from contimg.calibration.qa import solution_errors

    msm = read_ms(ms_path)
    t_mid = 0.5 * (msm.time_array[0] + msm.time_array[-1])
    true = truth.gains(msm.ant_array, msm.freq_array, t_mid)[:, :, 0, :]
    return solution_errors(tables, antenna_numbers=msm.ant_array, true_gains=true,
                           refant_index=msm.data_antenna_names.index(refant))
