"""Thin Celery tasks over :mod:`contimg.pipeline`.

Every task takes ``group_key`` and ``token`` (the run token) as keyword
arguments, re-reads what it needs, and:

* retries :class:`~contimg.errors.TransientError` and connection errors with
  exponential backoff;
* stops quietly (``Ignore``) when its run is no longer the group's current one;
* on any other failure marks the group ``failed`` with the error (also done by
  the canvas's ``link_error`` callback; both are idempotent).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from contimg.errors import TransientError
from contimg.pipeline import state
from workers.app import app

log = logging.getLogger(__name__)

RETRY_FOR = (TransientError, ConnectionError, TimeoutError)


def _settings():
    return app.conf.contimg_settings


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _short(task_name: str) -> str:
    """``contimg.calibrate.run`` → ``calibrate.run`` (the stage and step, for error messages)."""
    return task_name.removeprefix("contimg.")


class GroupTask(Task):
    """Base of every task that works for one group's run."""

    autoretry_for = RETRY_FOR
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 6
    acks_late = True
    reject_on_worker_lost = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D102 - Celery hook
        key, token = kwargs.get("group_key"), kwargs.get("token")
        if key is None:
            return
        try:
            state.fail(_settings(), key, f"{_short(self.name)}: {_describe(exc)}", token=token)
        except Exception:  # noqa: BLE001 - never mask the task's own failure
            log.exception("group %s: could not record the failure of %s", key, task_id)


def _guard(fn, *args: Any) -> Any:
    try:
        return fn(*args)
    except state.StaleRunError as exc:
        log.warning("%s", exc)
        raise Ignore() from exc


@app.task(name="contimg.group.start", base=GroupTask, bind=True)
def start_group(self, *, group_key: str, token: str) -> str:
    """Claim the group for this run (``pending → in_progress``); stops a duplicate run."""
    if not state.claim(_settings(), group_key, token):
        raise Ignore()
    return group_key


@app.task(name="contimg.convert.plan", base=GroupTask, bind=True)
def convert_plan(self, *, group_key: str, token: str) -> None:
    """Plan the conversion, then replace this task by the chord of subband writes."""
    from contimg.pipeline.convert import plan
    from workers.canvas import conversion_chord

    planned = _guard(plan, _settings(), group_key, token)
    raise self.replace(conversion_chord(group_key, token, planned["plan"], planned["files"]))


@app.task(name="contimg.convert.write_part", base=GroupTask, bind=True)
def convert_write_part(self, *, group_key: str, token: str, plan: dict[str, Any], subband_file: str) -> str:
    """Chord header: write one subband's part (idempotent)."""
    from contimg.pipeline.convert import write_part

    return _guard(write_part, _settings(), group_key, token, plan, subband_file)


@app.task(name="contimg.convert.combine", base=GroupTask, bind=True)
def convert_combine(self, part_paths: list[str], *, group_key: str, token: str, plan: dict[str, Any]) -> dict:
    """Chord body: combine the parts into the Measurement Set and end the stage."""
    from contimg.pipeline.convert import combine

    return _guard(combine, _settings(), group_key, token, plan, part_paths)


@app.task(name="contimg.calibrate.run", base=GroupTask, bind=True)
def calibrate_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Calibrate the group's MS; a science group waits (retrying) for a valid calibration set.

    :class:`~contimg.calibration.NoValidCalibration` is retried with a
    growing delay until ``settings.calibration.wait_for_solution_s`` has
    passed since the stage started; then the group fails with the reason.
    """
    from contimg.calibration import NoValidCalibration
    from contimg.pipeline.calibrate import calibrate, retry_delay_s, waited_s

    settings = _settings()
    try:
        return _guard(calibrate, settings, group_key, token)
    except NoValidCalibration as exc:
        waited = _guard(waited_s, settings, group_key, token)
        limit = settings.calibration.wait_for_solution_s
        delay = retry_delay_s(waited, limit_s=limit, stale_s=settings.ingest.stale_in_progress_s)
        if delay is None:
            raise NoValidCalibration(f"group {group_key}: still no valid calibration set after waiting "
                                     f"{waited:.0f} s (calibration.wait_for_solution_s = {limit:.0f}): {exc}") from exc
        log.info("group %s: no valid calibration set yet (waited %.0f s of %.0f); asking again in %.0f s",
                 group_key, waited, limit, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=None) from exc


@app.task(name="contimg.image.run", base=GroupTask, bind=True)
def image_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Image the group's calibrated MS and record the images with their QA."""
    from contimg.pipeline.image import image

    return _guard(image, _settings(), group_key, token)


@app.task(name="contimg.photometry.run", base=GroupTask, bind=True)
def photometry_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Forced photometry of the group's images, stored and normalised."""
    from contimg.pipeline.photometry import photometry

    return _guard(photometry, _settings(), group_key, token)


@app.task(name="contimg.group.finish", base=GroupTask, bind=True)
def finish_group(self, *_: Any, group_key: str, token: str) -> str:
    """Mark the run completed (idempotent)."""
    _guard(state.complete, _settings(), group_key, token)
    return group_key


@app.task(name="contimg.group.record_failure", acks_late=True)
def record_failure(request, exc, traceback, *, group_key: str, token: str) -> None:
    """``link_error`` callback of a run: mark the group failed with the error (idempotent).

    Not a bound task: Celery calls unbound errbacks taking ``(request, exc,
    traceback)`` directly in the failing worker, with the exception itself.
    """
    if isinstance(exc, (Ignore, state.StaleRunError)):
        return
    failed_task = getattr(request, "task", None) or "task"
    state.fail(_settings(), group_key, f"{_short(failed_task)}: {_describe(exc)}", token=token)
