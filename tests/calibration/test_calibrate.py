"""calibrate_ms end to end on simulated data with known gains: solve on the calibrator group, apply to a science group.

Tolerances (``gained`` fixture: 20 antennas, 128 channels of 3.8 MHz, 24 x 12.9 s,
SEFD 6500 Jy): the noise of one visibility is 0.65 Jy per real/imaginary part,
so one antenna's per-channel solution against a ~10 Jy calibrator from 19
baselines x 24 integrations has an error of ~0.65 / (10 sqrt(456)) = 0.3% in
amplitude and 0.17 deg in phase (per feed). The medians over channels and
antennas land near 0.2-0.4% and 0.2-0.3 deg; we require the issue's full-scale
floor (1%, 1 deg), which leaves a 3x margin for noise and fails for any
systematic error (a wrong sign, a missing conjugation, a model without the
beam or without the other sources).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables
from sqlalchemy import func, select

from contimg.calibration import NoValidCalibration
from contimg.calibration.catalog import simulated_source_name
from contimg.pipeline.calibrate import calibrate_ms
from contimg.pipeline.catalog import import_truth
from contimg.calibration.model import write_model_data
from contimg.config import CalibrationSettings
from contimg.db import dispose_engine, init_db, session_scope
from contimg.db.models import CalibrationSet, MeasurementSet

from .conftest import gain_errors, truth_sources

pytestmark = pytest.mark.integration


def _catalogue_db(path: Path, truth) -> str:
    """A new SQLite database at ``path`` holding the simulation's catalogue; returns its URL."""
    url = f"sqlite:///{path}"
    init_db(url)
    with session_scope(url) as s:
        import_truth(s, truth.path)
    return url


@pytest.fixture(scope="module")
def calibrated(gained, tmp_path_factory):
    """Calibrate group 0 (calibrator) then group 2 (science, with a stricter beam threshold)."""
    truth, ms = gained
    root = tmp_path_factory.mktemp("calibrate")
    url = _catalogue_db(root / "db.sqlite3", truth)
    cal_ms, sci_ms = root / "g0.ms", root / "g2.ms"
    shutil.copytree(ms[0], cal_ms)
    shutil.copytree(ms[2], sci_ms)
    dirs = dict(caltable_dir=root / "caltables", scratch_dir=root / "scratch")
    solved = calibrate_ms(cal_ms, database=url, calibration=CalibrationSettings(), **dirs)
    # at 10 min from transit the calibrator is still at beam response 0.37: a stricter threshold makes group 2
    # a science group
    science = calibrate_ms(sci_ms, database=url, calibration=CalibrationSettings(min_beam_response=0.5), **dirs)
    yield dict(truth=truth, url=url, cal_ms=cal_ms, sci_ms=sci_ms, solved=solved, science=science, dirs=dirs)
    dispose_engine(url)


def test_calibrator_group_is_solved_and_recorded(calibrated):
    out, truth = calibrated["solved"], calibrated["truth"]
    assert out.mode == "solved"
    assert out.calibrator_name == simulated_source_name(truth.calibrator_id)
    assert out.calibrator_beam_response > 0.95
    assert [Path(p).suffix for p in out.tables] == [".B", ".G"]
    assert out.flagged_fraction == {"B": 0.0, "G": 0.0}
    assert out.data_flagged_fraction == 0.0
    assert out.n_model_sources > 1  # the calibrator and the other sources in the beam
    for png in out.plots.values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with session_scope(calibrated["url"], readonly=True) as s:
        ms = s.scalars(select(MeasurementSet).where(MeasurementSet.path == str(calibrated["cal_ms"]))).one()
        assert (ms.stage, ms.calibration_set_id, ms.calibrator_name) == ("calibrated", out.calibration_set_id,
                                                                          out.calibrator_name)
        cs = s.get(CalibrationSet, out.calibration_set_id)
        assert cs.qa["plots"] == out.plots and cs.qa["refant"] == out.refant
        assert {t.table_type.value: (t.n_solutions, t.n_expected) for t in cs.tables} == {
            "B": (20 * 128 * 2, 20 * 128 * 2), "G": (40, 40)}


def test_gains_match_the_simulated_truth(calibrated):
    out = calibrated["solved"]
    tables_ = dict(zip(("B", "G"), out.tables))
    amp, phase = gain_errors(calibrated["truth"], tables_, calibrated["cal_ms"], out.refant)
    assert np.median(amp) < 0.01
    assert np.median(phase) < 1.0
    assert np.max(amp) < 0.02 and np.max(phase) < 2.0


def _chi2_and_scale(ms: Path, column: str, sigma: float) -> tuple[float, float]:
    with tables.table(str(ms), ack=False) as tb:
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        c = tb.getcol(column)[cross]
        m = tb.getcol("MODEL_DATA")[cross]
        f = tb.getcol("FLAG")[cross]
    c, m = c[~f], m[~f]
    chi2 = float(np.mean(np.abs(c - m) ** 2) / (2 * sigma**2))
    scale = float(np.real(np.sum(c * np.conj(m))) / np.sum(np.abs(m) ** 2))
    return chi2, scale


def test_solutions_applied_to_another_group_give_the_true_visibilities(calibrated):
    out, truth = calibrated["science"], calibrated["truth"]
    assert out.mode == "applied"
    assert out.calibration_set == calibrated["solved"].calibration_set
    assert out.calibrator_name is None
    sci = calibrated["sci_ms"]
    write_model_data(sci, truth_sources(truth))  # the truth: every simulated source, beam-attenuated
    chi2, scale = _chi2_and_scale(sci, "CORRECTED_DATA", truth.noise_sigma_jy)
    # residual = thermal noise only: chi2 = 1 within its sampling error (~0.3%) plus the solutions' own noise
    assert chi2 == pytest.approx(1.0, abs=0.03)
    assert scale == pytest.approx(1.0, abs=0.01)
    raw_chi2, _ = _chi2_and_scale(sci, "DATA", truth.noise_sigma_jy)
    assert raw_chi2 > 2.0  # the uncalibrated data do not match: the test has teeth
    with session_scope(calibrated["url"], readonly=True) as s:
        ms = s.scalars(select(MeasurementSet).where(MeasurementSet.path == str(sci))).one()
        assert ms.calibration_set_id == calibrated["solved"].calibration_set_id and ms.stage == "calibrated"


def test_rerun_is_idempotent(calibrated):
    cal_ms, url = calibrated["cal_ms"], calibrated["url"]
    with tables.table(str(cal_ms), ack=False) as tb:
        before = tb.getcol("CORRECTED_DATA")
    again = calibrate_ms(cal_ms, database=url, calibration=CalibrationSettings(), **calibrated["dirs"])
    assert again.calibration_set_id == calibrated["solved"].calibration_set_id
    assert again.tables == calibrated["solved"].tables
    with session_scope(url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(CalibrationSet)) == 1
        rows = select(func.count()).select_from(MeasurementSet).where(MeasurementSet.path == str(cal_ms))
        assert s.scalar(rows) == 1
    with tables.table(str(cal_ms), ack=False) as tb:
        np.testing.assert_allclose(tb.getcol("CORRECTED_DATA"), before, atol=1e-4)


def test_science_group_without_valid_set_is_refused(gained, tmp_path):
    truth, ms = gained
    url = _catalogue_db(tmp_path / "empty.sqlite3", truth)
    sci = tmp_path / "g2.ms"
    shutil.copytree(ms[2], sci)
    with pytest.raises(NoValidCalibration, match="g2.ms: no calibrator in the beam and no valid calibration set"):
        calibrate_ms(sci, database=url, calibration=CalibrationSettings(min_beam_response=0.5),
                     caltable_dir=tmp_path / "cal", scratch_dir=tmp_path / "scratch")
    dispose_engine(url)


def test_cli_calibrate(gained, tmp_path, clean_env, capsys):
    """``contimg catalog import-truth`` then ``contimg calibrate MS --do-k --json``."""
    import json

    from contimg.cli import main
    from contimg.db import dispose_engines

    truth, ms = gained
    clean_env.setenv("CONTIMG_DATA_ROOT", str(tmp_path / "data"))
    clean_env.setenv("CONTIMG_STAGING_DIR", str(tmp_path / "staging"))
    assert main(["catalog", "import-truth", str(truth.path)]) == 0
    cal = tmp_path / "g0.ms"
    shutil.copytree(ms[0], cal)
    capsys.readouterr()
    assert main(["calibrate", str(cal), "--do-k", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "solved" and [Path(p).suffix for p in out["tables"]] == [".K", ".B", ".G"]
    assert all(Path(p).parent == tmp_path / "data" / "caltables" for p in out["tables"])
    assert set(out["plots"]) == {"K", "B", "G"}
    dispose_engines()


@pytest.mark.slow
def test_full_scale_gain_accuracy(tmp_path):
    """96 antennas, 768 channels, 10 Jy calibrator with noise: median errors <= 1% and 1 deg (the issue's floor).

    Takes ~10 minutes (simulation 3, conversion 2-3, calibration 1-5 depending on load);
    ``benchmarks/calibration.py`` measures the same with timings.
    """
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, load_truth, simulate

    res = simulate(tmp_path / "sim", SimulationConfig(seed=1, calibrator_flux_jy=10.0, processes=2))
    truth = load_truth(res.truth_path)
    ms = tmp_path / "g0.ms"
    convert_group(res.groups[0].paths, ms, staging_dir=tmp_path / "staging", processes=2)
    url = _catalogue_db(tmp_path / "db.sqlite3", truth)
    out = calibrate_ms(ms, database=url, calibration=CalibrationSettings(), caltable_dir=tmp_path / "cal",
                       scratch_dir=tmp_path / "scratch")
    amp, phase = gain_errors(truth, dict(zip(("B", "G"), out.tables)), ms, out.refant)
    assert np.median(amp) <= 0.01 and np.median(phase) <= 1.0
    dispose_engine(url)


def test_failed_solve_falls_back_to_the_valid_set(calibrated, ms_copy):
    """A calibrator group whose solve fails its checks is calibrated with the registry's set, and says why."""
    from .test_solve import FLAGGED_ANTENNAS, corrupt_antennas
    from contimg.msmodel import read_ms

    ms = ms_copy(calibrated["cal_ms"], "g0_damaged.ms")
    corrupt_antennas(ms, read_ms(ms).data_antenna_names[:FLAGGED_ANTENNAS])
    out = calibrate_ms(ms, database=calibrated["url"], calibration=CalibrationSettings(), **calibrated["dirs"])
    assert out.mode == "applied" and out.calibration_set == calibrated["solved"].calibration_set
    assert re.search(r"B solve flagged \d+\.\d% of \d+ solutions", out.solve_error), out.solve_error
    assert not list(Path(calibrated["dirs"]["caltable_dir"]).glob("*g0_damaged*"))  # nothing half-written kept


def test_a_calibrator_transit_is_solved_once_on_its_own_group(gained, tmp_path):
    """Group 2 sees the calibrator 10 min past transit (response 0.37, usable at the default threshold 0.3):
    it waits for the transit group's set instead of solving its own, unless told to (a setting, or the
    fallback once the wait is over)."""
    truth, ms = gained
    url = _catalogue_db(tmp_path / "db.sqlite3", truth)
    dirs = dict(caltable_dir=tmp_path / "cal", scratch_dir=tmp_path / "scratch")
    cal, sci = tmp_path / "g0.ms", tmp_path / "g2.ms"
    shutil.copytree(ms[0], cal)
    shutil.copytree(ms[2], sci)
    defaults = CalibrationSettings()
    with pytest.raises(NoValidCalibration, match=r"g2.ms: calibrator \S+ is past its transit here \(response 0.3"):
        calibrate_ms(sci, database=url, calibration=defaults, **dirs)
    solved = calibrate_ms(cal, database=url, calibration=defaults, **dirs)
    assert solved.mode == "solved" and solved.calibrator_beam_response > 0.98
    applied = calibrate_ms(sci, database=url, calibration=defaults, **dirs)
    assert applied.mode == "applied" and applied.calibration_set == solved.calibration_set
    assert "past its transit" in applied.solve_skipped
    with session_scope(url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(CalibrationSet)) == 1
    # the old behaviour, as a setting: every group with a usable calibrator solves
    again = calibrate_ms(sci, database=url, calibration=CalibrationSettings(resolve_low_response=True), **dirs)
    assert again.mode == "solved" and again.calibration_set == "g2"
    dispose_engine(url)


def test_a_group_past_the_transit_solves_when_the_transit_group_never_comes(gained, tmp_path):
    truth, ms = gained
    url = _catalogue_db(tmp_path / "db.sqlite3", truth)
    sci = tmp_path / "g2.ms"
    shutil.copytree(ms[2], sci)
    out = calibrate_ms(sci, database=url, calibration=CalibrationSettings(), fallback_solve=True,
                       caltable_dir=tmp_path / "cal", scratch_dir=tmp_path / "scratch")
    assert out.mode == "solved" and out.calibration_set == "g2"
    dispose_engine(url)


def test_the_calibration_gate_judges_the_solved_set(calibrated, tmp_path):
    """The solved set passes the gate (its figures recorded); the checks fail what they should."""
    from casacore import tables as ctables

    from contimg.calibration.gate import judge_calibration, model_agreement
    from contimg.config import QaSettings

    out = calibrated["solved"]
    assert out.qa_verdict == "pass" and out.qa_reasons == []
    with session_scope(calibrated["url"], readonly=True) as s:
        cs = s.get(CalibrationSet, out.calibration_set_id)
        assert cs.qa_verdict == "pass"
        figures = cs.qa["figures"]
    assert abs(figures["model"]["amplitude_ratio"] - 1) < 0.01 and 0.5 < figures["model"]["chi2_reduced"] < 2
    assert figures["snr"]["B"] > 20 and figures["snr"]["G"] > 20
    # the calibrated calibrator group against its model, then the same with a 10 % flux-scale error
    ms = tmp_path / "g0.ms"
    shutil.copytree(calibrated["cal_ms"], ms)
    good = model_agreement(ms)
    assert abs(good["amplitude_ratio"] - 1) < 0.01
    with ctables.table(str(ms), readonly=False, ack=False) as tb:
        tb.putcol("CORRECTED_DATA", tb.getcol("CORRECTED_DATA") * 0.9)
    bad = model_agreement(ms)
    assert bad["amplitude_ratio"] == pytest.approx(0.9 * good["amplitude_ratio"], rel=1e-3)
    qa = QaSettings()
    common = dict(flagged={"B": 0.0, "G": 0.0}, scatter=None, max_flagged_fraction=0.2, qa=qa)
    assert judge_calibration(snr={"B": 100.0, "G": 500.0}, agreement=good, **common).status == "pass"
    verdict = judge_calibration(snr={"B": 100.0, "G": 500.0}, agreement=bad, **common)
    assert verdict.status == "fail" and "0.90" in verdict.reasons[0]
    assert judge_calibration(snr={"B": 3.0, "G": 500.0}, agreement=good, **common).status == "fail"
    assert judge_calibration(snr={"B": 12.0, "G": 500.0}, agreement=good, **common).status == "warn"
    assert judge_calibration(snr={"B": 100.0}, agreement=good, **{**common, "scatter": 0.3}).status == "warn"
