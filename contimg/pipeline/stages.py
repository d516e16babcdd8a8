"""The stages a group goes through, in the order data flows: defined in one place.

Only stages that really exist are listed. Calibration, imaging and photometry
append here (and their task in ``workers/canvas.py``) when they are built; the
canvas, reprocessing and ``contimg status`` follow this list.
"""

from __future__ import annotations

from contimg.errors import PermanentError

STAGES: tuple[str, ...] = ("convert",)
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
