"""The stage list, the end of a run, and the calibration stage's wait for a solution (no Celery)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from contimg.db import GroupState, session_scope
from contimg.db.models import ObservationGroup
from contimg.errors import InputFileError, PermanentError
from contimg.db import groups
from contimg.pipeline import calibrate
from contimg.pipeline.stages import QUEUES, REGISTRY, STAGES, get_stage, stages_from, stages_until

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)


def test_stages_are_built_in_the_order_of_the_design():
    assert STAGES == ("convert", "calibrate", "image", "photometry")
    assert stages_from("calibrate") == STAGES[1:]
    with pytest.raises(PermanentError, match="unknown stage 'flag'; available stages: convert, calibrate"):
        stages_from("flag")


def test_everything_follows_the_registry():
    """Queues, routes, time limits, the settings' last_stage and every stage's library function come from it."""
    from contimg.config import load_settings
    from contimg.errors import ConfigError
    import workers.tasks  # noqa: F401 - registers the tasks
    from workers import app as celery_app

    assert QUEUES == (*STAGES, "housekeeping") == celery_app.ALL_QUEUES
    settings = load_settings()
    conf = celery_app.celery_config(settings)
    assert [q.name for q in conf["task_queues"]] == list(QUEUES)
    for stage in REGISTRY:
        assert callable(stage.load())  # the serial path's entry exists
        for task in stage.steps:
            assert task in celery_app.app.tasks, task
            assert conf["task_routes"][task] == {"queue": stage.queue}
            assert conf["task_annotations"][task]["time_limit"] == settings.step_time_limits()[stage.name]
    assert settings.step_time_limits()["image"] == settings.imaging.timeout_s * 1.25
    assert get_stage("image").timeout_variable == "CONTIMG_IMAGING__TIMEOUT_S x 1.25"
    with pytest.raises(ConfigError, match="unknown stage 'flag'"):
        load_settings(celery={"last_stage": "flag"})


def test_the_library_does_not_import_the_celery_app():
    """Nothing in contimg/ outside the CLI imports workers/ (the publisher is injected)."""
    import ast
    from pathlib import Path

    import contimg

    offenders = []
    for path in Path(contimg.__file__).parent.rglob("*.py"):
        if "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "workers" or n.startswith("workers.")]
    assert not offenders


SCIENCE_PACKAGES = ("calibration", "conversion", "imaging", "photometry", "plots", "simulation", "variability")


def test_the_stage_libraries_do_not_touch_the_database():
    """The science takes inputs and returns results; contimg/pipeline does every database read and write."""
    import ast
    from pathlib import Path

    import contimg

    root = Path(contimg.__file__).parent
    offenders = []
    for package in SCIENCE_PACKAGES:
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(root)}: {n}" for n in names
                              if n.split(".")[0] == "sqlalchemy" or n == "contimg.db" or n.startswith("contimg.db.")]
    assert not offenders, offenders


def test_a_run_ends_after_the_last_stage():
    assert stages_until(STAGES, None) == STAGES
    assert stages_until(STAGES, "convert") == ("convert",)
    assert stages_until(STAGES, "calibrate") == ("convert", "calibrate")
    assert stages_until(stages_from("image"), "convert") == ("image",)  # reprocessing asked for it
    assert stages_until(STAGES, "photometry") == STAGES
    assert stages_until(STAGES[:3], "photometry") == STAGES[:3]
    with pytest.raises(PermanentError, match="unknown stage 'flag'"):
        stages_until(STAGES, "flag")


def test_canvas_follows_the_stages_and_the_last_stage():
    from contimg.config import load_settings
    from workers.canvas import STAGE_SIGNATURES, run_canvas

    assert tuple(STAGE_SIGNATURES) == STAGES
    for last, expected in ((None, ["contimg.convert.plan", "contimg.calibrate.run", "contimg.image.run",
                                   "contimg.photometry.run"]),
                           ("convert", ["contimg.convert.plan"])):
        from workers.app import create_app

        app = create_app(load_settings(broker_url="redis://127.0.0.1:1/0", celery={"last_stage": last}))
        canvas = run_canvas("2025-07-01T10:00:00", "tok", app=app)
        names = [t.task for t in canvas.tasks]
        assert names == ["contimg.group.start", *expected, "contimg.group.finish"]
        assert all(t.kwargs == {"group_key": "2025-07-01T10:00:00", "token": "tok"} for t in canvas.tasks)
        assert canvas.tasks[0].options["task_id"] == "tok"


def test_retry_delay_grows_to_the_poll_interval_and_stops_at_the_limit():
    delays = []
    waited = 0.0
    while (d := calibrate.retry_delay_s(waited, limit_s=600, stale_s=3600, poll_s=10)) is not None:
        delays.append(d)
        waited += d
    assert delays[0] == 5.0 and delays == sorted(delays[:-1]) + delays[-1:]
    assert sum(delays) == pytest.approx(600)
    # a set registered while the group waits is asked for within the poll interval, however long it waited
    # (the delay had grown to the time waited: a transit group solved 90 s in left its neighbours ~40 s idle)
    assert max(delays) == 10
    assert calibrate.retry_delay_s(1000, limit_s=1800, stale_s=3600, poll_s=60) == 60
    # never longer than a third of the stale-run threshold: the sweep must not take a waiting group for lost
    assert calibrate.retry_delay_s(1000, limit_s=1800, stale_s=600, poll_s=1000) == 200
    assert calibrate.retry_delay_s(0, limit_s=0, stale_s=600) is None


def test_waited_counts_from_the_stage_start_and_is_fenced(db_settings):
    key = "2025-10-02T10:02:45"
    with session_scope(db_settings) as s:
        g = ObservationGroup(group_key=key, timestamp=T0, state=GroupState.COLLECTING, nsubbands=16)
        s.add(g)
        s.flush()
        token = groups.make_pending(g)
    assert groups.claim(db_settings, key, token)
    assert calibrate.waited_s(db_settings, key, token) == 0.0
    groups.stage_started(db_settings, key, token, "calibrate")
    from contimg.db.states import utcnow

    later = utcnow() + timedelta(seconds=100)
    groups.stage_started(db_settings, key, token, "calibrate")  # a retry does not restart the clock
    assert 99 <= calibrate.waited_s(db_settings, key, token, now=later) <= 101
    with pytest.raises(groups.StaleRunError):
        calibrate.waited_s(db_settings, key, "another-run")
    with pytest.raises(InputFileError, match="no Measurement Set recorded"):
        calibrate.group_ms(db_settings, key)


PUBLISHED: list[tuple] = []


def recording_publisher(group_key: str, token: str, from_stage: str, *, settings) -> str:
    PUBLISHED.append((group_key, token, from_stage))
    return token


def test_reprocessing_uses_the_configured_publisher(db_settings):
    from contimg.api import configured_publisher, reprocess
    from contimg.errors import ConfigError

    PUBLISHED.clear()
    key = "2025-10-02T10:02:45"
    with session_scope(db_settings) as s:
        s.add(ObservationGroup(group_key=key, timestamp=T0, state=GroupState.COMPLETED, nsubbands=16))
    settings = db_settings.model_copy(update={"celery": db_settings.celery.model_copy(
        update={"publisher": f"{__name__}:recording_publisher"})})
    (handle,) = reprocess(key, from_stage="image", settings=settings)
    assert PUBLISHED == [(key, handle.token, "image")]
    bad = settings.model_copy(update={"celery": settings.celery.model_copy(update={"publisher": "nowhere:enqueue"})})
    with pytest.raises(ConfigError, match="CONTIMG_CELERY__PUBLISHER='nowhere:enqueue' does not name a publisher"):
        configured_publisher(bad)
