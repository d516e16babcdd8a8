"""Simulated groups and their converted Measurement Sets, built once per session.

Small data: 8 antennas, 4 channels per subband (64 in the MS), 24 integrations.

* ``calibrator_group``: a 10 Jy calibrator transiting the meridian at the
  pointing declination in the middle of the group, no noise, no gains (the
  source sits exactly at the conversion's phase center);
* ``offcenter_group``: one 5 Jy source 0.2 deg east and 0.15 deg north of the
  phase center, with thermal noise, no gains.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

N_ANTENNAS = 8
CHANNELS = 4
SEED = 11


def _config(**kw):
    from contimg.simulation import SimulationConfig

    base = dict(n_antennas=N_ANTENNAS, channels_per_subband=CHANNELS, seed=SEED, gains=False, jitter_s=3.0)
    base.update(kw)
    return SimulationConfig(**base)


@pytest.fixture(scope="session")
def calibrator_group(tmp_path_factory):
    """(files, truth) of a noise-free group with a 10 Jy calibrator at the phase center."""
    from contimg.simulation import load_truth, simulate

    out = tmp_path_factory.mktemp("sim_calibrator")
    res = simulate(out, _config(noise=False, n_sources=0, calibrator_flux_jy=10.0))
    return [Path(p) for p in res.groups[0].paths], load_truth(res.truth_path)


@pytest.fixture(scope="session")
def calibrator_ms(calibrator_group, tmp_path_factory):
    """(ms_path, ConversionResult, plan) of ``calibrator_group`` converted with 2 processes."""
    from contimg.conversion import convert_group, plan_group

    files, _ = calibrator_group
    out = tmp_path_factory.mktemp("conv_calibrator")
    result = convert_group(files, out / "cal.ms", staging_dir=out / "staging", processes=2)
    return out / "cal.ms", result, plan_group(files)


@pytest.fixture(scope="session")
def offcenter_group(tmp_path_factory, calibrator_ms):
    """(files, truth, (ra_deg, dec_deg)) of a noisy group with one 5 Jy source off the phase center."""
    from contimg.simulation import load_truth, simulate
    from contimg.simulation.sky import SkyCatalog

    _, _, plan = calibrator_ms
    ra0, dec0 = math.degrees(plan.ms.phase_center_ra), math.degrees(plan.ms.phase_center_dec)
    ra = ra0 + 0.2 / math.cos(math.radians(dec0))
    dec = dec0 + 0.15
    catalog = SkyCatalog.from_sources([ra], [dec], [5.0], spectral_index=0.0)
    out = tmp_path_factory.mktemp("sim_offcenter")
    res = simulate(out, _config(noise=True), catalog=catalog)
    return [Path(p) for p in res.groups[0].paths], load_truth(res.truth_path), (ra, dec)


@pytest.fixture(scope="session")
def offcenter_ms(offcenter_group, tmp_path_factory):
    from contimg.conversion import convert_group

    files, _, _ = offcenter_group
    out = tmp_path_factory.mktemp("conv_offcenter")
    convert_group(files, out / "off.ms", staging_dir=out / "staging", processes=1)
    return out / "off.ms"


@pytest.fixture
def group_copy(calibrator_group, tmp_path):
    """A private copy of the calibrator group's files (tests may damage it)."""
    files, _ = calibrator_group
    d = tmp_path / "incoming"
    d.mkdir()
    for f in files:
        shutil.copy2(f, d / f.name)
    return sorted(d.glob("*.hdf5"))


def simulate_single_subband(tmp_path: Path, subband: int, **kw) -> Path:
    """One subband file of a group simulated with different options (for mixing into a group)."""
    from contimg.simulation import simulate

    out = tmp_path / f"odd_{subband}_{abs(hash(tuple(sorted(kw.items())))) % 10**6}"
    res = simulate(out, _config(noise=False, n_sources=0, calibrator_flux_jy=10.0, subbands=(subband,), **kw))
    return Path(res.groups[0].paths[0])


def snapshot(directory: Path) -> dict[str, tuple[int, float]]:
    """Every path under ``directory`` with size and mtime (to assert nothing changed)."""
    out = {}
    for p in sorted(directory.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(directory))] = (st.st_size, st.st_mtime_ns)
    return out


def expected_apparent_flux(truth, source_index: int, freq_hz: np.ndarray) -> np.ndarray:
    """S(ν) × primary beam(t, ν) of a catalogue source, shape (Ntimes, Nfreqs), as the simulator defines it."""
    from contimg.beam import airy_power, angular_separation
    from contimg.stations import DISH_DIAMETER_M, icrs_to_apparent

    g = truth.groups[0]
    cat = truth.catalog_for_epoch(0)
    t = np.asarray(g.time_jd)
    lst = np.asarray(g.lst_rad)
    app_ra, app_dec = icrs_to_apparent(np.radians(cat.ra_deg[source_index]), np.radians(cat.dec_deg[source_index]), t)
    sep = angular_separation(lst, math.radians(truth.config.dec_deg), app_ra, app_dec)
    spec = cat.flux_at(freq_hz)[source_index]
    return spec[None, :] * airy_power(sep[:, None], freq_hz[None, :], DISH_DIAMETER_M)
