"""Reading the files' flags and sample counts: shortcuts for constant arrays, exact results otherwise."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from casacore import tables

from contimg.conversion import convert_group, plan_group
from contimg.conversion.subband import sigma_per_sample, uniform_value


@pytest.mark.parametrize(
    ("values", "chunks", "compression", "expected"),
    [
        (np.ones((64, 8, 2), np.float32), (16, 4, 1), "lzf", 1.0),
        (np.zeros((64, 8, 2), bool), (16, 4, 1), "lzf", False),
        (np.full((64, 8, 2), 0.5, np.float32), (16, 4, 1), "gzip", 0.5),
        (np.ones((64, 8, 2), np.float32), (16, 4, 1), None, None),  # unfiltered: not worth it
        (np.ones((64, 8, 2), np.float32), (10, 4, 1), "lzf", None),  # partial edge chunks
    ],
)
def test_uniform_value(tmp_path, values, chunks, compression, expected):
    with h5py.File(tmp_path / "x.h5", "w") as fh:
        fh.create_dataset("d", data=values, chunks=chunks, compression=compression)
    with h5py.File(tmp_path / "x.h5", "r") as fh:
        got = uniform_value(fh["d"])
    assert got == expected if expected is not None else got is None


@pytest.mark.parametrize("where", [(0, 0, 0), (63, 7, 1), (17, 5, 0)])
def test_uniform_value_sees_a_single_odd_element(tmp_path, where):
    values = np.ones((64, 8, 2), np.float32)
    values[where] = 0.5
    with h5py.File(tmp_path / "x.h5", "w") as fh:
        fh.create_dataset("d", data=values, chunks=(16, 4, 1), compression="lzf")
    with h5py.File(tmp_path / "x.h5", "r") as fh:
        assert uniform_value(fh["d"]) is None


def test_unwritten_chunks_are_not_uniform(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as fh:
        d = fh.create_dataset("d", shape=(64, 8, 2), dtype=np.float32, chunks=(16, 4, 1), compression="lzf")
        d[:16, :4, :1] = 1.0  # one chunk written, the others are fill values
    with h5py.File(tmp_path / "x.h5", "r") as fh:
        assert uniform_value(fh["d"]) is None


def test_file_flags_and_sample_counts_reach_the_ms(group_copy, tmp_path):
    """Flags and nsamples that vary in a file end up, channel for channel, in FLAG / *_SPECTRUM."""
    victim = next(f for f in group_copy if f.name.endswith("_sb04.hdf5"))
    rng = np.random.default_rng(5)
    with h5py.File(victim, "r+") as fh:
        shape = fh["Data"]["flags"].shape
        flags = rng.random(shape) < 0.1
        nsamples = rng.choice(np.array([0.5, 1.0], np.float32), size=shape)
        freq = np.ravel(fh["Header"]["freq_array"][()])
        fh["Data"]["flags"][...] = flags
        fh["Data"]["nsamples"][...] = nsamples
        ant1, ant2 = fh["Header"]["ant_1_array"][()], fh["Header"]["ant_2_array"][()]
    plan = plan_group(group_copy)
    convert_group(group_copy, tmp_path / "out.ms", staging_dir=tmp_path / "staging", processes=1)
    order = np.argsort(freq)  # the MS is ascending in frequency
    c = slice(plan.channel_offset(4), plan.channel_offset(4) + plan.Nfreqs_subband)
    sigma1 = sigma_per_sample(plan)
    with tables.table(str(tmp_path / "out.ms"), ack=False) as t:
        ms_flags = t.getcol("FLAG")
        weight = t.getcol("WEIGHT_SPECTRUM")
        sigma = t.getcol("SIGMA_SPECTRUM")
    assert ms_flags.shape[0] == shape[0]  # same baseline-time order as the files
    expected_flags = flags[:, order] | (ant1 == ant2)[:, None, None]
    assert np.array_equal(ms_flags[:, c], expected_flags)
    np.testing.assert_allclose(weight[:, c], nsamples[:, order] / sigma1**2, rtol=1e-6)
    np.testing.assert_allclose(sigma[:, c], sigma1 / np.sqrt(nsamples[:, order]), rtol=1e-6)
    # the other subbands kept their clear flags (apart from autocorrelations) and unit samples
    assert not ms_flags[ant1 != ant2][:, : c.start].any()
    np.testing.assert_allclose(weight[:, : c.start], 1.0 / sigma1**2, rtol=1e-6)
