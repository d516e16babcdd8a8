"""Full scale (96 antennas, 48 channels): one subband file, its size and content. Slow."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_full_scale_subband(tmp_path, read_group):
    from contimg.simulation import SimulationConfig, load_truth, simulate

    cfg = SimulationConfig(subbands=(7,), seed=2, calibrator_flux_jy=10.0)
    res = simulate(tmp_path, cfg)
    (path,) = res.groups[0].paths
    size_mb = path.stat().st_size / 1e6
    assert 85 < size_mb < 115  # ~100 MB a file, as the real array writes
    uvd = read_group([path])
    uvd.check()
    assert uvd.Nants_data == 96 and uvd.Nbls == 4656 and uvd.Ntimes == 24 and uvd.Nfreqs == 48
    assert uvd.Nblts == 4656 * 24
    truth = load_truth(res.truth_path)
    cross = uvd.ant_1_array != uvd.ant_2_array
    # calibrated noise: divide out the true gains and subtract the model; rms as the radiometer equation says
    from contimg.simulation import predict_uvdata

    times, tidx = np.unique(uvd.time_array, return_inverse=True)
    g = truth.gains(truth.antenna_numbers, uvd.freq_array, times)
    row = {int(a): k for k, a in enumerate(truth.antenna_numbers)}
    i = np.array([row[a] for a in uvd.ant_1_array[cross]])
    j = np.array([row[a] for a in uvd.ant_2_array[cross]])
    model = predict_uvdata(uvd, truth.catalog_for_epoch(0))[cross]
    gij = g[i, :, tidx[cross]] * np.conj(g[j, :, tidx[cross]])  # (Nblts, 2, Nfreqs)
    resid = uvd.data_array[cross] / np.transpose(gij, (0, 2, 1)) - model
    assert resid.real.std() == pytest.approx(truth.noise_sigma_jy, rel=0.01)
    assert resid.imag.std() == pytest.approx(truth.noise_sigma_jy, rel=0.01)
