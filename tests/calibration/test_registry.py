"""The registry: validity windows, lookup of the set to apply, refusal outside windows, idempotent re-registration."""

from __future__ import annotations

import pytest

from contimg.calibration.registry import NoValidCalibration, check_window
from contimg.calibration.solve import SolveResult, TableStats
from contimg.db import session_scope
from contimg.db.products import set_calibration_set_active as set_active
from contimg.pipeline.calibrate import find_valid_set, register_solution


def _solution(tmp_path, name, kinds=("B", "G")) -> SolveResult:
    tables = {k: str(tmp_path / f"{name}.{k}") for k in kinds}
    stats = {k: TableStats(k, p, 100, 100, 0.0) for k, p in tables.items()}
    return SolveResult(ms_path=f"{name}.ms", refant="DSA-001", tables=tables, stats=stats)


def _register(url, tmp_path, name, mjd, kinds=("B", "G"), **kw):
    with session_scope(url) as s:
        cs = register_solution(s, name=name, solution=_solution(tmp_path, name, kinds), calibrator_name="CAL",
                               solve_mjd=mjd, bandpass_validity_h=kw.get("b", 24.0), gain_validity_h=kw.get("g", 6.0),
                               qa={"plots": {"B": "x.png"}})
        return cs.id


def test_windows_and_apply_order(db_url, tmp_path):
    _register(db_url, tmp_path, "a", 60000.5, kinds=("K", "B", "G"))
    with session_scope(db_url, readonly=True) as s:
        v = find_valid_set(s, start_mjd=60000.5, end_mjd=60000.51)
    assert [k for k, *_ in v.tables] == ["K", "B", "G"]
    windows = {k: (lo, hi) for k, _, lo, hi in v.tables}
    assert windows["B"] == pytest.approx((59999.5, 60001.5))
    assert windows["K"] == windows["B"]
    assert windows["G"] == pytest.approx((60000.25, 60000.75))


def test_lookup_closest_valid_set_and_refusal(db_url, tmp_path):
    _register(db_url, tmp_path, "early", 60000.0)
    _register(db_url, tmp_path, "late", 60000.2)
    with session_scope(db_url, readonly=True) as s:
        assert find_valid_set(s, start_mjd=60000.15, end_mjd=60000.16).name == "late"
        assert find_valid_set(s, start_mjd=60000.05, end_mjd=60000.06).name == "early"
        # 7 h after 'late': its G (+-6 h) has expired although its B (+-24 h) has not
        assert find_valid_set(s, start_mjd=60000.2 + 7 / 24, end_mjd=60000.2 + 7.1 / 24) is None
        # a span straddling the end of the only window is refused too
        assert find_valid_set(s, start_mjd=60000.2 + 5.99 / 24, end_mjd=60000.2 + 6.01 / 24) is None
        v = find_valid_set(s, start_mjd=60000.15, end_mjd=60000.16)
    with pytest.raises(NoValidCalibration, match="G table .* not for the data"):
        check_window(v, start_mjd=60001.0, end_mjd=60001.01, ms_path="x.ms")
    with session_scope(db_url) as s:
        set_active(s, "late", False)
    with session_scope(db_url, readonly=True) as s:
        assert find_valid_set(s, start_mjd=60000.15, end_mjd=60000.16).name == "early"


def test_set_without_gain_table_is_not_applicable(db_url, tmp_path):
    _register(db_url, tmp_path, "bonly", 60000.0, kinds=("B",))
    with session_scope(db_url, readonly=True) as s:
        assert find_valid_set(s, start_mjd=60000.0, end_mjd=60000.01) is None


def test_reregistering_updates_in_place(db_url, tmp_path):
    first = _register(db_url, tmp_path, "a", 60000.0, kinds=("K", "B", "G"))
    second = _register(db_url, tmp_path, "a", 60000.0, kinds=("B", "G"), g=3.0)
    assert first == second
    with session_scope(db_url, readonly=True) as s:
        v = find_valid_set(s, start_mjd=60000.0, end_mjd=60000.01)
        from contimg.db.models import CalibrationSet

        assert s.get(CalibrationSet, first).qa == {"plots": {"B": "x.png"}}
    assert [k for k, *_ in v.tables] == ["B", "G"]
    assert dict((k, hi - lo) for k, _, lo, hi in v.tables)["G"] == pytest.approx(6.0 / 24)
