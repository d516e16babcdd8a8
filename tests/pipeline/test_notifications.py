"""The pipeline's events reach the webhook: a failed group (serial path, Celery task, too few subbands) and QA."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from collections.abc import Iterator

import pytest

from contimg.db import GroupState, session_scope
from contimg.db import groups
from contimg.db.models import ObservationGroup
from notify_helpers import WebhookReceiver

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
KEY = "2025-10-02T10:02:45"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    h = WebhookReceiver()
    yield h
    h.close()


@pytest.fixture
def settings(db_settings, hook):
    """Migrated database (SQLite, and PostgreSQL when configured) with the webhook and no rate limit."""
    from contimg.config import NotifySettings

    return db_settings.model_copy(update={"notify": NotifySettings(webhook_url=hook.url, rate_limit_s=0)})


def _pending_group(settings, key=KEY) -> str:
    with session_scope(settings) as s:
        g = ObservationGroup(group_key=key, timestamp=T0, state=GroupState.COLLECTING, nsubbands=16)
        s.add(g)
        s.flush()
        return groups.make_pending(g)


def _kinds(hook) -> list[str]:
    return [b["kind"] for b in hook.bodies]


def test_a_group_failed_by_the_serial_path_is_notified(settings, hook):
    from contimg.pipeline.serial import run_group

    token = _pending_group(settings)  # 16 subbands recorded, no files: the conversion fails
    outcome = run_group(settings, KEY, token)
    assert outcome.state == "failed"
    (body,) = hook.bodies
    assert body["kind"] == "group_failed" and KEY in body["subject"]
    assert body["data"] == {"group_key": KEY, "error": outcome.error}
    # failing it again (a duplicate report) changes nothing and sends nothing
    from contimg.pipeline.alerts import fail_group

    assert not fail_group(settings, KEY, "again", token=token)
    assert len(hook.bodies) == 1


def test_a_group_with_too_few_subbands_in_a_serial_run_is_notified(settings, hook, tmp_path, monkeypatch):
    import contimg.ingest.files
    from contimg.naming import format_subband_filename
    from contimg.pipeline.serial import run_serial

    monkeypatch.setattr(contimg.ingest.files, "content_problem", lambda path: None)  # empty files pass as complete
    night = tmp_path / "night"
    night.mkdir()
    for sb in range(8):
        (night / format_subband_filename(T0, sb)).write_bytes(b"x" * 10)
    report = run_serial(settings, [night])
    (outcome,) = report.groups
    assert outcome.state == "failed" and "only 8 of 16 subbands" in outcome.error
    assert _kinds(hook) == ["group_failed"]
    assert hook.bodies[0]["data"]["group_key"] == outcome.group_key
    assert "only 8 of 16 subbands" in hook.bodies[0]["text"]


def test_a_failed_celery_task_is_notified(settings, hook, monkeypatch):
    import workers.tasks
    from contimg.errors import InputFileError

    monkeypatch.setattr(workers.tasks, "_settings", lambda: settings)
    token = _pending_group(settings)
    groups.claim(settings, KEY, token)
    workers.tasks.record_outcome_of_failure(KEY, token, "contimg.image.run", InputFileError("no MS"))
    (body,) = hook.bodies
    assert body["kind"] == "group_failed"
    assert body["data"]["error"] == "image.run: InputFileError: no MS"


def test_the_sweep_notifies_timed_out_and_lost_groups(settings, hook, monkeypatch):
    from contimg.pipeline import housekeeping

    monkeypatch.setattr(housekeeping, "liveness", lambda settings: (None, None))  # no Redis: heartbeats only
    token = _pending_group(settings)
    groups.claim(settings, KEY, token)
    groups.hold(settings, KEY, token, worker="w1@host#1")
    lonely = "2025-10-02T11:00:00"
    with session_scope(settings) as s:
        g = s.query(ObservationGroup).filter_by(group_key=KEY).one()
        g.retry_count, g.heartbeat_at = settings.ingest.max_retries, T0  # lost, out of retries
        s.add(ObservationGroup(group_key=lonely, timestamp=T0 + timedelta(hours=1), state=GroupState.COLLECTING,
                               nsubbands=0, created_at=T0))  # collected nothing within the group timeout
    report = housekeeping.sweep(settings, enqueue=lambda *a: None)
    assert report["failed"] == [KEY] and report["timed_out"] == [lonely]
    bodies = {b["data"]["group_key"]: b for b in hook.bodies}
    assert set(bodies) == {KEY, lonely} and _kinds(hook) == ["group_failed"] * 2
    assert "re-enqueues" in bodies[KEY]["data"]["error"]
    assert "only 0 of 16 subbands" in bodies[lonely]["data"]["error"]


def test_a_photometry_normalisation_that_fails_qa_is_notified(settings, hook):
    from contimg.db.models import Image
    from contimg.pipeline.photometry import record_verdict

    with session_scope(settings) as s:
        image = Image(path="/x/g.image.pbcor.fits", pb_corrected=True, mid_mjd=60000.5, qa_verdict="pass")
        s.add(image)
        s.flush()
        image_id = image.id
    ok = {"correction": 1.01, "correction_err": 0.004, "references": 5}
    assert record_verdict(settings, {"image_id": image_id, "path": "/x/g.image.pbcor.fits", "normalization": ok}
                          ).status == "pass"
    assert hook.bodies == []
    bad = {"correction": 0.5, "correction_err": 0.004, "references": 5}
    assert record_verdict(settings, {"image_id": image_id, "path": "/x/g.image.pbcor.fits", "normalization": bad}
                          ).failed
    (body,) = hook.bodies
    assert body["kind"] == "qa_failed"
    assert body["data"]["product"] == "photometry" and body["data"]["image_id"] == image_id
    assert body["data"]["name"] == "/x/g.image.pbcor.fits" and body["data"]["reasons"]


def test_a_calibration_set_that_fails_qa_is_notified(settings, hook, monkeypatch, tmp_path):
    """The calibration stage's gate path, with the MS, the selection and the solve replaced (CASA-free)."""
    from types import SimpleNamespace

    import contimg.calibration.select
    import contimg.conversion.msio
    import contimg.msmodel
    from contimg.calibration import CalibrationQaFailed, NoValidCalibration
    from contimg.pipeline import calibrate as stage
    from contimg.verdict import Verdict

    ms = SimpleNamespace(start_mjd=60000.0, end_mjd=60000.01, mid_mjd=60000.005, Nants_data=63)
    choice = SimpleNamespace(name="3C286", beam_response=0.99)
    verdict = Verdict("fail", ["G: median SNR 3.1 < 5"], {"snr_G": 3.1})

    def failing_solve(*args, **kwargs):
        raise CalibrationQaFailed("x.ms: calibration QA failed: G: median SNR 3.1 < 5", verdict)

    monkeypatch.setattr(contimg.msmodel, "read_ms", lambda path: ms)
    monkeypatch.setattr(contimg.conversion.msio, "ensure_imaging_columns", lambda path: None)
    monkeypatch.setattr(contimg.calibration.select, "choose_calibrator", lambda *a, **k: choice)
    monkeypatch.setattr(stage, "catalogue_near_track", lambda *a, **k: [])
    monkeypatch.setattr(stage, "_record_ms", lambda *a, **k: 1)
    monkeypatch.setattr(stage, "transit_elsewhere", lambda *a: None)
    monkeypatch.setattr(stage, "_previous_bandpass", lambda *a, **k: None)
    monkeypatch.setattr(stage, "solve_and_judge", failing_solve)
    with pytest.raises(NoValidCalibration, match="calibration QA failed"):
        stage.calibrate_ms(tmp_path / "2025-10-02T10:02:45.ms", database=settings, calibration=settings.calibration,
                           caltable_dir=tmp_path, scratch_dir=tmp_path, qa=settings.qa)
    (body,) = hook.bodies
    assert body["kind"] == "qa_failed" and body["data"]["product"] == "calibration"
    assert body["data"]["name"] == "2025-10-02T10:02:45" and body["data"]["calibrator"] == "3C286"
    assert body["data"]["reasons"] == ["G: median SNR 3.1 < 5"]


def test_an_image_that_fails_qa_is_notified(settings, hook, monkeypatch):
    """The image gate's record path (the image stage and ``contimg image``), with the judged products faked."""
    from types import SimpleNamespace

    from contimg.pipeline import image as stage
    from contimg.verdict import Verdict

    products = SimpleNamespace(image="/x/g.image.fits", ms_path="/x/g.ms")
    monkeypatch.setattr(stage, "judge_products", lambda settings, products: Verdict("fail", ["rms 40 x predicted"]))
    monkeypatch.setattr(stage, "record_images", lambda session, products, ms=None: [])
    monkeypatch.setattr(stage, "_searchable", lambda products: False)  # no image to search: the finder is not the point
    verdict, _ = stage.judge_and_record(settings, products, ms_id=None)
    assert verdict.failed
    (body,) = hook.bodies
    assert body["kind"] == "qa_failed" and body["subject"] == "image QA failed: /x/g.image.fits"
    assert body["data"]["product"] == "image" and body["data"]["ms"] == "/x/g.ms"
    assert body["data"]["reasons"] == ["rms 40 x predicted"]
