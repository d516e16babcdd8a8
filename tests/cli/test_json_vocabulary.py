"""One JSON vocabulary across the commands (docs/json.md): the commands' JSON builders share key names."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

from contimg.cli._vocabulary import vocabulary_problems

KEY = "2025-10-02T10:02:45"


def test_the_checker_sees_the_old_names():
    old = {"group": "k", "nsubbands": 16, "photometry": [{"mjd": 1.0}], "ms_path": "rel.ms", "counts": {"failed": 1}}
    problems = vocabulary_problems(old)
    assert any(".group:" in p for p in problems) and any("nsubbands" in p for p in problems)
    assert any("[0].mjd" in p for p in problems) and any("not absolute" in p for p in problems)
    assert len(problems) == 4  # a map of states to counts is not a count's name


def test_status_run_and_reprocess_documents_share_the_vocabulary(db_settings, tmp_path):
    from contimg.cli.reprocess import reprocess_document
    from contimg.cluster.status import format_status, group_summary
    from contimg.db import GroupState, groups, session_scope
    from contimg.db.models import MeasurementSet, ObservationGroup
    from contimg.pipeline.serial import GroupOutcome, SerialReport

    ms = tmp_path / "data" / "ms" / f"{KEY}.ms"
    with session_scope(db_settings) as s:
        g = ObservationGroup(group_key=KEY, timestamp=datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc),
                             state=GroupState.COMPLETED, nsubbands=16, attempt=1, retry_count=0)
        s.add(g)
        s.flush()
        s.add(MeasurementSet(group_id=g.id, path=str(ms), start_mjd=60950.4, end_mjd=60950.41))
    with session_scope(db_settings, readonly=True) as s:
        summary = group_summary(groups.get_group(s, KEY))
    status = {"counts": {"completed": 1}, "groups": [summary], "queues": {}, "nodes": [], "broker": None}
    assert vocabulary_problems(json.loads(json.dumps(status, default=str))) == []
    assert summary["group_key"] == KEY and summary["n_subbands"] == 16 and summary["ms_path"] == str(ms)
    assert KEY in format_status(status)

    report = SerialReport(registered=["a", "b"], groups=[GroupOutcome(KEY, "completed", ms_path=str(ms)),
                                                         GroupOutcome("2025-10-02T10:07:45", "failed", "why")])
    doc = report.to_dict()
    assert vocabulary_problems(doc) == []
    assert (doc["n_registered"], doc["n_completed"], doc["n_failed"]) == (2, 1, 1)
    assert doc["groups"][0]["group_key"] == KEY and doc["groups"][0]["ms_path"] == str(ms)

    handles = [SimpleNamespace(group_key=KEY, token="t1", state="completed", error=None),
               SimpleNamespace(group_key="2025-10-02T10:07:45", token="t2", state="in_progress", error=None)]
    doc = reprocess_document(handles, waited=True)
    assert vocabulary_problems(doc) == []
    assert (doc["n_groups"], doc["n_completed"], doc["n_failed"], doc["n_unfinished"]) == (2, 1, 0, 1)


def test_stage_result_documents_share_the_vocabulary(tmp_path):
    """The convert, calibrate and image documents (their dataclasses' to_dict) use the same names."""
    from contimg.calibration.calibrate import CalibrationOutcome
    from contimg.conversion.combine import ConversionResult

    ms = str(tmp_path / "x.ms")
    conv = ConversionResult(group_id=KEY, ms_path=ms, subbands=[0], missing_subbands=[], Nrows=1, Nfreqs=48,
                            phase_center_ra_deg=1.0, phase_center_dec_deg=2.0, validation={})
    cal = CalibrationOutcome(ms_path=ms, mode="applied", calibration_set="s", calibration_set_id=1, tables=[])
    for doc in (conv.to_dict(), cal.to_dict()):
        assert vocabulary_problems(doc) == [] and doc["ms_path"] == ms
