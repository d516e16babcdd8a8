"""Solves: delays, solution-count checks that fail loudly, reference-antenna choice."""

from __future__ import annotations

import numpy as np
import pytest
from casacore import tables

from contimg.calibration.apply import apply_tables
from contimg.calibration.model import write_model_data
from contimg.msmodel import read_ms
from contimg.calibration.solve import SolveError, choose_refant, solve_calibrator, table_stats

from .conftest import truth_sources

pytestmark = pytest.mark.integration

FLAGGED_ANTENNAS = 6
"""Of 20: 30% of the solutions cannot be found, more than the default 20% allowed."""


def _flag_antennas(ms, names):
    msm = read_ms(ms)
    numbers = [int(msm.ant_array[msm.data_antenna_names.index(n)]) for n in names]
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        flag = tb.getcol("FLAG")
        flag[np.isin(a1, numbers) | np.isin(a2, numbers)] = True
        tb.putcol("FLAG", flag)


def corrupt_antennas(ms, names):
    """Replace the antennas' cross-correlations by loud noise: data that CASA cannot solve (SNR < 3)."""
    msm = read_ms(ms)
    numbers = [int(msm.ant_array[msm.data_antenna_names.index(n)]) for n in names]
    rng = np.random.default_rng(3)
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        data = tb.getcol("DATA")
        rows = (np.isin(a1, numbers) | np.isin(a2, numbers)) & (a1 != a2)
        data[rows] = 1e4 * (rng.standard_normal(data[rows].shape) + 1j * rng.standard_normal(data[rows].shape))
        tb.putcol("DATA", data)


@pytest.fixture
def modelled(gained, ms_copy):
    """A private copy of the calibrator group with MODEL_DATA of the true sky."""
    truth, ms = gained
    ms = ms_copy(ms[0])
    write_model_data(ms, truth_sources(truth))
    return truth, ms


def test_delay_bandpass_gain_solve_calibrates_the_data(modelled, tmp_path):
    """With K: every table has its expected solutions and CORRECTED_DATA equals the model within noise."""
    truth, ms = modelled
    sol = solve_calibrator(ms, out_dir=tmp_path / "cal", prefix="k", scratch_dir=tmp_path / "s", do_k=True)
    assert list(sol.tables) == ["K", "B", "G"]
    assert {k: (s.n_solutions, s.n_expected) for k, s in sol.stats.items()} == {
        "K": (40, 40), "B": (20 * 128 * 2, 20 * 128 * 2), "G": (40, 40)}
    assert not (tmp_path / "s" / "k.avg.ms").exists()  # the averaged copy is removed
    apply_tables(ms, list(sol.tables.items()))
    with tables.table(str(ms), ack=False) as tb:
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        c, m = tb.getcol("CORRECTED_DATA")[cross], tb.getcol("MODEL_DATA")[cross]
    chi2 = np.mean(np.abs(c - m) ** 2) / (2 * truth.noise_sigma_jy**2)
    assert chi2 == pytest.approx(1.0, abs=0.03)


def test_refant_avoids_flagged_antennas(modelled):
    _, ms = modelled
    msm = read_ms(ms)
    first = choose_refant(ms)
    _flag_antennas(ms, [first])
    second = choose_refant(ms)
    assert second != first and second in msm.data_antenna_names


def test_too_many_flagged_solutions_fail_the_solve(modelled, tmp_path):
    """Antennas with data whose solutions CASA flags (here: their data replaced by loud noise, SNR < 3)."""
    _, ms = modelled
    msm = read_ms(ms)
    bad = msm.data_antenna_names[:FLAGGED_ANTENNAS]
    corrupt_antennas(ms, bad)
    with pytest.raises(SolveError, match=r"B solve flagged \d+\.\d% of 5120 solutions .* more than the allowed 20\.0%"):
        solve_calibrator(ms, out_dir=tmp_path / "cal", prefix="bad", scratch_dir=tmp_path / "s")
    sol = solve_calibrator(ms, out_dir=tmp_path / "cal", prefix="ok", scratch_dir=tmp_path / "s",
                           max_flagged_fraction=0.9)
    assert sol.stats["B"].flagged_fraction > 0.25
    assert set(bad) <= set(sol.stats["B"].flagged_by_antenna)


def test_dead_antennas_are_not_flagged_solutions(modelled, tmp_path):
    """20 % and more of the array flagged (dead antennas) is a smaller array, not a failed solve: the statistics
    name them apart, and the other antennas' solutions are all there."""
    _, ms = modelled
    msm = read_ms(ms)
    dead = msm.data_antenna_names[:FLAGGED_ANTENNAS]
    _flag_antennas(ms, dead)
    sol = solve_calibrator(ms, out_dir=tmp_path / "cal", prefix="dead", scratch_dir=tmp_path / "s")
    assert sol.stats["B"].flagged_fraction == 0.0
    assert sol.stats["B"].n_expected == (msm.Nants_data - FLAGGED_ANTENNAS) * 128 * 2
    assert set(sol.stats["G"].antennas_without_data) == set(dead)
    from contimg.calibration.gate import judge_calibration
    from contimg.config import QaSettings

    verdict = judge_calibration(flagged={"B": 0.0, "G": 0.0}, snr={}, agreement=None, scatter=None,
                                max_flagged_fraction=0.2, qa=QaSettings(), dead_antennas=dead, n_antennas=msm.Nants_data)
    assert verdict.status == "warn" and "6 of 20 antennas have no unflagged data" in verdict.summary()


def test_table_stats_counts_against_channels_with_data(modelled, tmp_path):
    """Channels flagged in every baseline (a missing subband) are not expected to have solutions."""
    _, ms = modelled
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        flag = tb.getcol("FLAG")
        flag[:, :8, :] = True  # the lowest subband is missing
        tb.putcol("FLAG", flag)
    sol = solve_calibrator(ms, out_dir=tmp_path / "cal", prefix="m", scratch_dir=tmp_path / "s")
    assert sol.stats["B"].n_expected == 20 * 120 * 2
    assert sol.stats["B"].flagged_fraction == 0.0
    msm = read_ms(ms)
    chans = np.ones((128, 2), bool)
    again = table_stats(sol.tables["B"], "B", ms=msm, channels_with_data=chans)
    assert again.flagged_fraction == pytest.approx(8 / 128)


def test_native_average_equals_mstransform(modelled, tmp_path):
    """Our python-casacore time average gives what CASA's mstransform gives (cross-correlations)."""
    from contimg.calibration.solve import average_for_solve, average_with_mstransform

    _, ms = modelled
    ours = average_for_solve(ms, tmp_path / "ours.ms")
    casa = average_with_mstransform(ms, tmp_path / "casa.ms")
    with tables.table(str(ours), ack=False) as a, tables.table(str(casa), ack=False) as b:
        assert a.nrows() == b.nrows() == 20 * 21 // 2
        np.testing.assert_array_equal(a.getcol("ANTENNA1"), b.getcol("ANTENNA1"))
        np.testing.assert_array_equal(a.getcol("ANTENNA2"), b.getcol("ANTENNA2"))
        cross = a.getcol("ANTENNA1") != a.getcol("ANTENNA2")
        for col, tol in (("DATA", 1e-5), ("MODEL_DATA", 1e-5), ("WEIGHT_SPECTRUM", 1e-3), ("UVW", 1e-6),
                         ("TIME", 1e-3)):
            x, y = a.getcol(col), b.getcol(col)
            if x.ndim > 1:
                x, y = x[cross], y[cross]
            np.testing.assert_allclose(x, y, atol=tol * max(1.0, float(np.abs(y).max())), err_msg=col)
        np.testing.assert_array_equal(a.getcol("FLAG")[cross], b.getcol("FLAG")[cross])


def test_bandpass_split_over_processes_equals_one_solve(modelled, tmp_path):
    """Two processes on halves of the band, merged and normalised, give the single solve's B and G."""
    _, ms = modelled
    one = solve_calibrator(ms, out_dir=tmp_path / "one", prefix="p", scratch_dir=tmp_path / "s", processes=1)
    two = solve_calibrator(ms, out_dir=tmp_path / "two", prefix="p", scratch_dir=tmp_path / "s",
                           refant=one.refant, processes=2)
    assert {k: s.n_solutions for k, s in two.stats.items()} == {k: s.n_solutions for k, s in one.stats.items()}
    assert not list((tmp_path / "two").glob("*part*"))  # the parts are removed
    for kind, tol in (("B", 2e-3), ("G", 2e-3)):
        with tables.table(one.tables[kind], ack=False) as a, tables.table(two.tables[kind], ack=False) as b:
            fa, fb = a.getcol("FLAG"), b.getcol("FLAG")
            np.testing.assert_array_equal(fa, fb)
            np.testing.assert_allclose(b.getcol("CPARAM")[~fb], a.getcol("CPARAM")[~fa], atol=tol, err_msg=kind)
    with tables.table(str(two.tables["B"]) + "/SPECTRAL_WINDOW", ack=False) as sw, \
            tables.table(str(ms) + "/SPECTRAL_WINDOW", ack=False) as ref:
        assert sw.getcol("NUM_CHAN")[0] == 128
        np.testing.assert_array_equal(sw.getcol("CHAN_FREQ"), ref.getcol("CHAN_FREQ"))
