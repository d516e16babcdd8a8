"""The stage registry: every stage a group goes through, in the order data flows, defined once.

Each :class:`Stage` names its Celery queue, the task that starts it, the tasks
that do its work (they get its hard time limit), the library function that
runs it in one process (the serial path, ``contimg run``), and the settings
section it reads. Everything else is derived from :data:`REGISTRY`:

* the stage list (:data:`STAGES`) used by reprocessing, the run protocol and ``contimg status``;
* the Celery queues (:data:`QUEUES`), routes (:func:`task_routes`) and time limits
  (:func:`step_time_limits`) in ``workers/app.py``;
* the canvas of a run in ``workers/canvas.py`` (one signature per stage's task);
* the allowed values of ``celery.last_stage`` and the time-limit variables of the settings.

A new stage is one entry here, its library function (``contimg/pipeline/<stage>.py``) and its
task in ``workers/tasks.py``. Nothing here imports Celery or the settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contimg.errors import PermanentError

__all__ = ["CONTROL_QUEUE", "QUEUES", "REGISTRY", "STAGES", "Stage", "get_stage", "stages_from", "stages_until",
           "step_time_limits", "task_routes"]


@dataclass(frozen=True)
class Stage:
    """One stage of a group's run."""

    name: str
    queue: str
    """The Celery queue its tasks run on."""
    task: str
    """The Celery task that starts it (the canvas links these in order)."""
    steps: tuple[str, ...]
    """Every Celery task doing its work; each gets the stage's hard time limit."""
    function: str
    """``module:function`` running the whole stage in this process: ``f(settings, group_key, token) -> dict``."""
    settings_section: str
    """The attribute of :class:`contimg.config.Settings` holding its settings (``timeout_s`` among them)."""
    time_limit_factor: float = 1.0
    """The hard time limit of one task is ``settings.<section>.timeout_s`` times this."""

    def load(self) -> Callable[..., dict[str, Any]]:
        """The library function of :attr:`function`, imported."""
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def timeout_variable(self) -> str:
        """The environment variable that sets its time limit (as the settings name it)."""
        var = f"CONTIMG_{self.settings_section.upper()}__TIMEOUT_S"
        return var if self.time_limit_factor == 1.0 else f"{var} x {self.time_limit_factor:g}"


REGISTRY: tuple[Stage, ...] = (
    Stage("convert", queue="convert", task="contimg.convert.plan",
          steps=("contimg.convert.plan", "contimg.convert.write_part", "contimg.convert.combine"),
          function="contimg.pipeline.convert:convert", settings_section="conversion"),
    Stage("calibrate", queue="calibrate", task="contimg.calibrate.run", steps=("contimg.calibrate.run",),
          function="contimg.pipeline.calibrate:calibrate", settings_section="calibration"),
    # the imager's own timeout fires first (it names the MS and the log): PB correction and QA get 25 % more
    Stage("image", queue="image", task="contimg.image.run", steps=("contimg.image.run",),
          function="contimg.pipeline.image:image", settings_section="imaging", time_limit_factor=1.25),
    Stage("photometry", queue="photometry", task="contimg.photometry.run", steps=("contimg.photometry.run",),
          function="contimg.pipeline.photometry:photometry", settings_section="photometry"),
)
"""The stages in processing order."""

STAGES: tuple[str, ...] = tuple(s.name for s in REGISTRY)
"""Pipeline stage names in processing order."""

CONTROL_QUEUE = "housekeeping"
"""Bookkeeping: starting and finishing a run, recording failures, beat jobs. Light and fast."""

QUEUES: tuple[str, ...] = (*dict.fromkeys(s.queue for s in REGISTRY), CONTROL_QUEUE)
"""Every Celery queue: one per stage, in the order data flows, then the control queue."""

CONTROL_TASK_PREFIXES = ("contimg.group", "contimg.housekeeping", "contimg.variability")
"""Task name prefixes routed to :data:`CONTROL_QUEUE`."""

_BY_NAME = {s.name: s for s in REGISTRY}


def get_stage(name: str) -> Stage:
    """The registered stage called ``name``.

    Raises
    ------
    PermanentError
        If there is none, naming the stages that exist.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise PermanentError(f"unknown stage {name!r}; available stages: {', '.join(STAGES)}") from None


def task_routes() -> dict[str, dict[str, str]]:
    """Celery ``task_routes``: control tasks to :data:`CONTROL_QUEUE`, each stage's tasks to its queue.

    A stage's tasks are its :attr:`Stage.steps` and every task named ``contimg.<stage>.*``. The nightly
    mosaic (``contimg.mosaic.*``: minutes of work and a few GB, reading the images) goes to the image
    queue, whose workers see the images and have the memory, not to the light control queue.
    """
    routes = {f"{prefix}.*": {"queue": CONTROL_QUEUE} for prefix in CONTROL_TASK_PREFIXES}
    for s in REGISTRY:
        for task in s.steps:
            routes[task] = {"queue": s.queue}
        routes[f"contimg.{s.name}.*"] = {"queue": s.queue}
    routes["contimg.mosaic.*"] = {"queue": _BY_NAME["image"].queue}
    return routes


def step_time_limits(settings: Any) -> dict[str, float]:
    """Hard time limit (s) of one task of each stage: ``{stage name: seconds}``.

    Parameters
    ----------
    settings
        :class:`contimg.config.Settings` (each stage's ``timeout_s`` is read from its section).
    """
    return {s.name: getattr(settings, s.settings_section).timeout_s * s.time_limit_factor for s in REGISTRY}


def task_time_limits(settings: Any) -> Mapping[str, float]:
    """Hard time limit (s) of every task doing a stage's work: ``{task name: seconds}``."""
    limits = step_time_limits(settings)
    return {task: limits[s.name] for s in REGISTRY for task in s.steps}


def stages_from(stage: str | None = None) -> tuple[str, ...]:
    """The stages to run when (re)processing starts at ``stage`` (None: the first).

    Raises
    ------
    PermanentError
        If ``stage`` is unknown, naming the stages that exist.
    """
    if stage is None:
        return STAGES
    get_stage(stage)
    return STAGES[STAGES.index(stage):]


def stages_until(stages: tuple[str, ...], last_stage: str | None) -> tuple[str, ...]:
    """``stages`` up to and including ``last_stage`` (all of them if None).

    Used by the canvas with ``settings.celery.last_stage``: a run that starts
    after ``last_stage`` still runs its first stage (reprocessing asked for it).

    Raises
    ------
    PermanentError
        If ``last_stage`` is not a stage.
    """
    if last_stage is None:
        return stages
    get_stage(last_stage)
    if last_stage not in stages:
        return stages if STAGES.index(last_stage) > STAGES.index(stages[-1]) else stages[:1]
    return stages[:stages.index(last_stage) + 1]
