"""The canvas of one group's run, built in one place.

::

    start ─→ convert.plan ═(replaced by)═> chord([write_part × Nsubbands], combine)
          ─→ calibrate.run ─→ image.run ─→ photometry.run ─→ finish
      │
      └── link_error: record_failure (every task)

The first task's id is the run token, so a second publication of the same run
is recognisable (and refused by the claim). The stages and their tasks come from the
stage registry (:data:`contimg.pipeline.stages.REGISTRY`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, chain, chord
from celery.canvas import Signature

from contimg.config import Settings
from contimg.pipeline.stages import REGISTRY, stages_from, stages_until
from workers.app import app, create_app

_apps: dict[str, Celery] = {}


def app_for(settings: Settings | None) -> Celery:
    """The Celery app publishing to ``settings``' broker (the module app when it is the same)."""
    if settings is None or (settings.broker_url == app.conf.broker_url
                            and settings.result_backend_url == app.conf.result_backend):
        return app
    key = f"{settings.broker_url} {settings.result_backend_url}"
    if key not in _apps:
        _apps[key] = create_app(settings)
    return _apps[key]


def _stage_task(name: str) -> Callable[..., Signature]:
    def build(group_key: str, token: str, *, app: Celery = app) -> Signature:
        return app.signature(name, kwargs={"group_key": group_key, "token": token}, immutable=True)

    build.__name__ = f"_{name.split('.')[1]}"
    return build


STAGE_SIGNATURES: dict[str, Callable[..., Signature]] = {stage.name: _stage_task(stage.task) for stage in REGISTRY}
"""Stage name → builder of the stage's (immutable) signature for one run."""


def run_canvas(group_key: str, token: str, *, from_stage: str | None = None, app: Celery = app) -> Signature:
    """The whole run of a group: claim, the stages from ``from_stage`` on, finish.

    The run ends after ``settings.celery.last_stage`` of the app's settings when that is set.

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token; also the Celery task id of the run's first task (``contimg.group.start``).
    from_stage
        The first stage to run (None: the first, ``convert``).
    app
        The Celery app the signatures are built for (its ``contimg_settings`` give ``last_stage``).

    Returns
    -------
    Signature
        The chain (not yet published), with ``contimg.group.record_failure`` as its ``link_error``.
    """
    kw = {"group_key": group_key, "token": token}
    steps = [app.signature("contimg.group.start", kwargs=kw, immutable=True).set(task_id=token)]
    last = getattr(app.conf, "contimg_settings", None)
    stages = stages_until(stages_from(from_stage), last.celery.last_stage if last is not None else None)
    steps += [STAGE_SIGNATURES[stage](group_key, token, app=app) for stage in stages]
    steps.append(app.signature("contimg.group.finish", kwargs=kw, immutable=True))
    canvas = chain(*steps, app=app)
    canvas.link_error(app.signature("contimg.group.record_failure", kwargs=kw))
    return canvas


def conversion_chord(group_key: str, token: str, plan: dict[str, Any], files: list[str], *,
                     node: str) -> Signature:
    """Header: one part write per subband; body: combine them; all on ``node``'s own queue.

    The parts live in the node's staging, so the writes and the combine must
    run there (every convert worker consumes its node's queue besides
    ``convert``; see :mod:`workers.presence`).

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token, passed to every task.
    plan
        The conversion plan (``ConversionPlan.to_dict()``, from :func:`contimg.pipeline.convert.plan`).
    files
        The subband files, one part write each.
    node
        The node whose queue (:func:`contimg.cluster.nodes.node_queue_name`) runs the writes and the combine.

    Returns
    -------
    Signature
        The chord; the combine receives the list of part paths.
    """
    from contimg.cluster.nodes import node_queue_name

    queue = node_queue_name(node)
    route = {"queue": queue, "exchange": queue, "routing_key": queue}
    kw = {"group_key": group_key, "token": token, "plan": plan}
    header = [app.signature("contimg.convert.write_part", kwargs={**kw, "subband_file": f}, immutable=True,
                            **route) for f in files]
    body = app.signature("contimg.convert.combine", kwargs=kw, **route)
    return chord(header, body, app=app)


def enqueue_group(group_key: str, token: str, from_stage: str, *, settings: Settings | None = None) -> str:
    """Publish a group's run (the producer's and reprocessing's ``enqueue`` callable).

    Parameters
    ----------
    group_key
        The group's key (its timestamp, ``YYYY-MM-DDTHH:MM:SS``).
    token
        The run token (from :func:`contimg.db.groups.make_pending`); the first task's Celery id.
    from_stage
        The first stage to run.
    settings
        Publish to these settings' broker (default: the app's, from the environment).

    Returns
    -------
    str
        The run token, which is the first task's Celery id.
    """
    run_canvas(group_key, token, from_stage=from_stage, app=app_for(settings)).apply_async(
        retry=True, retry_policy={"max_retries": 10, "interval_start": 0.5, "interval_step": 1.0,
                                  "interval_max": 5.0})
    return token
