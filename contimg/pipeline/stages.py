"""The stages a group goes through, in the order data flows: defined in one place.

Only stages that really exist are listed; a new stage appends here (and its
task in ``workers/canvas.py``). The canvas, reprocessing and ``contimg status``
follow this list.
"""

from __future__ import annotations

from contimg.errors import PermanentError

STAGES: tuple[str, ...] = ("convert", "calibrate", "image", "photometry")
"""Pipeline stages in processing order."""

PLANNED_STAGES: tuple[str, ...] = ("convert", "calibrate", "image", "photometry")
"""All stages of the design; those not in :data:`STAGES` are not built yet."""


def stages_from(stage: str | None = None) -> tuple[str, ...]:
    """The stages to run when (re)processing starts at ``stage`` (None: the first).

    Raises
    ------
    PermanentError
        If ``stage`` is unknown or not built yet, naming the stages that exist.
    """
    if stage is None:
        return STAGES
    if stage not in STAGES:
        if stage in PLANNED_STAGES:
            raise PermanentError(f"stage {stage!r} is not implemented yet; available stages: {', '.join(STAGES)}")
        raise PermanentError(f"unknown stage {stage!r}; available stages: {', '.join(STAGES)}")
    return STAGES[STAGES.index(stage):]


def stages_until(stages: tuple[str, ...], last_stage: str | None) -> tuple[str, ...]:
    """``stages`` up to and including ``last_stage`` (all of them if None or not among them).

    Used by the canvas with ``settings.celery.last_stage``: a run that starts
    after ``last_stage`` still runs its first stage (reprocessing asked for it).

    Raises
    ------
    PermanentError
        If ``last_stage`` is not a stage of the design.
    """
    if last_stage is None:
        return stages
    if last_stage not in PLANNED_STAGES:
        raise PermanentError(f"unknown stage {last_stage!r}; stages: {', '.join(PLANNED_STAGES)}")
    if last_stage not in stages:
        return stages if PLANNED_STAGES.index(last_stage) > PLANNED_STAGES.index(stages[-1]) else stages[:1]
    return stages[:stages.index(last_stage) + 1]
