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

from contimg.errors import ConfigError, TransientError
from contimg.db import groups
from contimg.pipeline.alerts import fail_group
from workers.app import app

log = logging.getLogger(__name__)

def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (OperationalError, RedisConnectionError, RedisTimeoutError)


BROKER_ERRORS = _broker_errors()
"""The broker (or result backend) could not be reached: a transient failure of the cluster, not of the group."""

RETRY_FOR = (TransientError, ConnectionError, TimeoutError, *BROKER_ERRORS)


def _settings():
    return app.conf.contimg_settings


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _short(task_name: str) -> str:
    """``contimg.calibrate.run`` → ``calibrate.run`` (the stage and step, for error messages)."""
    return task_name.removeprefix("contimg.")


def _is_broker_error(exc: BaseException) -> bool:
    return isinstance(exc, BROKER_ERRORS) or isinstance(getattr(exc, "__cause__", None), BROKER_ERRORS)


def record_outcome_of_failure(key: str, token: str | None, task_name: str, exc: BaseException) -> None:
    """A task of run ``token`` failed: fail the group, or hand the run back if the broker was the cause.

    A broker outage longer than the publish retries (``celery.publish_retry_s``)
    is not the group's fault: its run goes back to ``pending`` and is published
    again when the broker answers (:func:`contimg.db.groups.hand_back`). A failed group is notified
    (:func:`contimg.pipeline.alerts.fail_group`).

    Parameters
    ----------
    key
        The group's key.
    token
        The failed task's run token; a superseded run changes nothing. None: fail the group whatever its run.
    task_name
        The Celery name of the failed task (named in the error message without its ``contimg.`` prefix).
    exc
        The exception; a broker error (or one caused by it) hands the run back instead of failing the group.
    """
    settings = _settings()
    if token is not None and _is_broker_error(exc):
        groups.hand_back(settings, key, token, f"{_short(task_name)}: {_describe(exc)}")
        return
    fail_group(settings, key, f"{_short(task_name)}: {_describe(exc)}", token=token)


class GroupTask(Task):
    """Base of every task that works for one group's run.

    Before its body runs, a task records that this worker holds the run
    (:func:`contimg.db.groups.hold`); after it returns, and after Celery
    has published the chain's next step, that it no longer does
    (:func:`~contimg.db.groups.unhold`). So the sweep can tell a run whose
    worker died from one whose next task waits in a queue.
    """

    autoretry_for = RETRY_FOR
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 6
    acks_late = True
    reject_on_worker_lost = True
    holds_run = True
    leaves_node = False
    """True for the task after which the run's conversion no longer needs its node (the combine)."""

    def _held_run(self, kwargs: dict[str, Any]) -> tuple[str, str, str] | None:
        """(worker id, group key, run token) when this task holds a run in a cluster worker, else None."""
        worker = getattr(self.app.conf, "contimg_worker_id", None)
        key, token = kwargs.get("group_key"), kwargs.get("token")
        if not self.holds_run or worker is None or key is None or token is None:
            return None
        return worker, key, token

    def before_start(self, task_id, args, kwargs):  # noqa: D102 - Celery hook
        """Celery hook: record that this worker holds the run (:func:`contimg.db.groups.hold`) before the body.

        Only in a cluster worker, for a task with ``holds_run``; a superseded run is ignored.

        Parameters
        ----------
        task_id
            The Celery id of this task.
        args
            Its positional arguments.
        kwargs
            Its keyword arguments (``group_key``, ``token`` ...).
        """
        held = self._held_run(kwargs)
        if held is not None:
            worker, key, token = held
            _guard(groups.hold, _settings(), key, token, worker=worker)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):  # noqa: D102 - Celery hook
        """Celery hook: this worker no longer holds the run (:func:`contimg.db.groups.unhold`); never raises.

        Parameters
        ----------
        status
            The task's Celery state (``SUCCESS``, ``FAILURE``, ``RETRY`` ...); a task with ``leaves_node``
            releases the run's node only on ``SUCCESS``.
        retval
            The task's return value, or its exception.
        task_id
            The Celery id of this task.
        args
            Its positional arguments.
        kwargs
            Its keyword arguments (``group_key``, ``token`` ...).
        einfo
            The exception info of a failure, else None.
        """
        # after the chain's next step was published: its worker adds itself before this one leaves
        held = self._held_run(kwargs)
        if held is None:
            return
        worker, key, token = held
        try:
            groups.unhold(_settings(), key, token, worker=worker, node=self.leaves_node and status == "SUCCESS")
        except Exception:  # noqa: BLE001 - the sweep's heartbeat rule covers a holder left behind
            log.warning("group %s: could not record that %s no longer holds run %s", key, worker, token,
                        exc_info=True)

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D102 - Celery hook
        """Celery hook: the task failed for good: :func:`record_outcome_of_failure` (errors are only logged).

        Parameters
        ----------
        exc
            The exception that failed the task.
        task_id
            The Celery id of this task.
        args
            Its positional arguments.
        kwargs
            Its keyword arguments; without ``group_key`` nothing is recorded.
        einfo
            The exception info.
        """
        key, token = kwargs.get("group_key"), kwargs.get("token")
        if key is None:
            return
        try:
            record_outcome_of_failure(key, token, self.name, exc)
        except Exception:  # noqa: BLE001 - never mask the task's own failure
            log.exception("group %s: could not record the failure of %s", key, task_id)


def _guard(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except groups.StaleRunError as exc:
        log.warning("%s", exc)
        raise Ignore() from exc


@app.task(name="contimg.group.start", base=GroupTask, bind=True, holds_run=False)
def start_group(self, *, group_key: str, token: str) -> str:
    """Claim the group for this run (``pending → in_progress``); stops a duplicate run.

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (this task's own id).

    Returns
    -------
    str
        The group key. A refused claim (duplicate or superseded run) raises ``Ignore``: the chain stops.
    """
    if not groups.claim(_settings(), group_key, token):
        raise Ignore()
    return group_key


@app.task(name="contimg.convert.plan", base=GroupTask, bind=True)
def convert_plan(self, *, group_key: str, token: str) -> None:
    """Plan the conversion, then replace this task by the chord of subband writes.

    Runs only on a worker with a node (``contimg_node``); the chord goes to that node's queue.

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.
    """
    from contimg.pipeline.convert import plan
    from workers.canvas import conversion_chord

    node = self.app.conf.contimg_node
    if node is None:
        raise ConfigError(f"group {group_key}: worker {self.request.hostname} took a conversion but has no node "
                          "(it must consume the convert queue)")
    settings = _settings()
    worker = self.app.conf.contimg_worker_id
    planned = _guard(plan, settings, group_key, token, node=node)
    _guard(groups.hold, settings, group_key, token, worker=worker, node=node)
    try:
        raise self.replace(conversion_chord(group_key, token, planned["plan"], planned["files"], node=node))
    finally:  # replaced (its after_return never runs): the chord is on the node's queue, the node holds the run
        groups.unhold(settings, group_key, token, worker=worker)


@app.task(name="contimg.convert.write_part", base=GroupTask, bind=True)
def convert_write_part(self, *, group_key: str, token: str, plan: dict[str, Any], subband_file: str) -> str:
    """Chord header: write one subband's part (idempotent).

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.
    plan
        The conversion plan (``ConversionPlan.to_dict()``) made by :func:`convert_plan`.
    subband_file
        The subband file whose part is written.

    Returns
    -------
    str
        Path of the part, in the node's staging directory.
    """
    from contimg.pipeline.convert import write_part

    part = _guard(write_part, _settings(), group_key, token, plan, subband_file)
    log.info("group %s: part %s written on node %s", group_key, part, self.app.conf.contimg_node)
    return part


@app.task(name="contimg.convert.combine", base=GroupTask, bind=True, leaves_node=True)
def convert_combine(self, part_paths: list[str], *, group_key: str, token: str, plan: dict[str, Any]) -> dict:
    """Chord body: combine the parts into the Measurement Set and end the stage.

    Parameters
    ----------
    part_paths
        The parts' paths: the results of the chord's header.
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.
    plan
        The conversion plan (``ConversionPlan.to_dict()``) made by :func:`convert_plan`.

    Returns
    -------
    dict
        ``{"ms": path, "seconds": stage duration, ...}`` (:func:`contimg.pipeline.convert.combine`).
    """
    from contimg.pipeline.convert import combine

    return _guard(combine, _settings(), group_key, token, plan, part_paths)


@app.task(name="contimg.calibrate.run", base=GroupTask, bind=True)
def calibrate_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Calibrate the group's MS; a science group waits (retrying) for a valid calibration set.

    :class:`~contimg.calibration.NoValidCalibration` is retried with a
    growing delay (up to ``settings.calibration.wait_poll_s``) until ``settings.calibration.wait_for_solution_s`` has
    passed since the stage started; then the group fails with the reason.

    Parameters
    ----------
    *_
        Ignored positional arguments (a previous task's result; the stage signatures are immutable).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.

    Returns
    -------
    dict
        The calibration outcome (``CalibrationOutcome.to_dict()``) plus ``seconds``, the stage's duration
        (:func:`contimg.pipeline.calibrate.calibrate`).
    """
    from contimg.calibration import NoValidCalibration
    from contimg.pipeline.calibrate import calibrate, retry_delay_s, waited_s

    settings = _settings()
    try:
        return _guard(calibrate, settings, group_key, token)
    except NoValidCalibration as exc:
        waited = _guard(waited_s, settings, group_key, token)
        limit = settings.calibration.wait_for_solution_s
        delay = retry_delay_s(waited, limit_s=limit, stale_s=settings.ingest.stale_in_progress_s,
                              poll_s=settings.calibration.wait_poll_s)
        if delay is None:
            try:  # the wait is over: a group past the calibrator's transit solves it itself
                return _guard(calibrate, settings, group_key, token, fallback_solve=True)
            except NoValidCalibration:
                pass
            raise NoValidCalibration(f"group {group_key}: still no valid calibration set after waiting "
                                     f"{waited:.0f} s (calibration.wait_for_solution_s = {limit:.0f}): {exc}") from exc
        log.info("group %s: no valid calibration set yet (waited %.0f s of %.0f); asking again in %.0f s",
                 group_key, waited, limit, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=None) from exc


@app.task(name="contimg.image.run", base=GroupTask, bind=True)
def image_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Image the group's calibrated MS and record the images with their QA.

    Parameters
    ----------
    *_
        Ignored positional arguments (a previous task's result; the stage signatures are immutable).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.

    Returns
    -------
    dict
        Image ids and paths, QA verdict and reasons, ``rms_jy``, ``peak_jy``, ``beam_arcsec``, ``imager_s`` and
        ``seconds`` (:func:`contimg.pipeline.image.image`).
    """
    from contimg.pipeline.image import image

    return _guard(image, _settings(), group_key, token)


@app.task(name="contimg.photometry.run", base=GroupTask, bind=True)
def photometry_run(self, *_: Any, group_key: str, token: str) -> dict:
    """Forced photometry of the group's images, stored and normalised.

    Parameters
    ----------
    *_
        Ignored positional arguments (a previous task's result; the stage signatures are immutable).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.

    Returns
    -------
    dict
        ``{"images": [per-image summary, ...], "n_measured": rows measured, "seconds": stage duration}``
        (:func:`contimg.pipeline.photometry.photometry`).
    """
    from contimg.pipeline.photometry import photometry

    return _guard(photometry, _settings(), group_key, token)


@app.task(name="contimg.group.finish", base=GroupTask, bind=True)
def finish_group(self, *_: Any, group_key: str, token: str) -> str:
    """Mark the run completed (idempotent).

    Parameters
    ----------
    *_
        Ignored positional arguments (a previous task's result; the stage signatures are immutable).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (the group's ``task_id``), checked against the database before any work.

    Returns
    -------
    str
        The group key.
    """
    _guard(groups.complete, _settings(), group_key, token)
    return group_key


@app.task(name="contimg.group.record_failure", acks_late=True)
def record_failure(request, exc, traceback, *, group_key: str, token: str) -> None:
    """``link_error`` callback of a run: mark the group failed with the error (idempotent).

    Not a bound task: Celery calls unbound errbacks taking ``(request, exc,
    traceback)`` directly in the failing worker, with the exception itself.

    Parameters
    ----------
    request
        The failed task's request (its ``task`` name goes into the error message).
    exc
        The exception; ``Ignore`` and :class:`~contimg.db.groups.StaleRunError` change nothing.
    traceback
        The traceback (unused).
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; a superseded run changes nothing.
    """
    if isinstance(exc, (Ignore, groups.StaleRunError)):
        return
    record_outcome_of_failure(group_key, token, getattr(request, "task", None) or "task", exc)
