"""A QA verdict: ``pass``, ``warn`` or ``fail``, with the reasons and the figures judged.

Every product gets one where it is made (the image gate, :mod:`contimg.imaging.gate`; the calibration
gate, :mod:`contimg.calibration.gate`); a product whose verdict is ``fail`` never feeds the science.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FAIL", "PASS", "WARN", "Verdict", "jsonable", "worst"]

PASS, WARN, FAIL = "pass", "warn", "fail"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}
"""Statuses from best to worst."""


@dataclass
class Verdict:
    """A QA verdict: the worst status of its checks, the reasons, and the figures judged."""

    status: str = PASS
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, status: str, reason: str) -> None:
        """Record a check that did not pass."""
        self.reasons.append(f"{status}: {reason}")
        if _ORDER[status] > _ORDER[self.status]:
            self.status = status

    def grade(self, value: float, *, warn: float, fail: float, message: str, percent: bool = True) -> None:
        """Warn if ``value`` exceeds ``warn``, fail if it exceeds ``fail`` or is not finite; ``message`` says what.

        The threshold crossed is appended to the message (as a percentage with ``percent``).

        Parameters
        ----------
        value
            The figure judged (e.g. a flagged fraction); NaN or infinity fails.
        warn
            Threshold above which the verdict is at least ``warn`` (same units as ``value``).
        fail
            Threshold above which the verdict is ``fail``.
        message
            What was judged, recorded as the reason (``"<status>: <message> (... beyond <threshold>)"``).
        percent
            Show the threshold as a percentage (``value`` is a fraction), else with ``:g``.
        """
        import math

        def shown(x: float) -> str:
            return f"{x:.0%}" if percent else f"{x:g}"

        if not math.isfinite(value) or value > fail:
            self.add(FAIL, f"{message} (fail beyond {shown(fail)})")
        elif value > warn:
            self.add(WARN, f"{message} (warn beyond {shown(warn)})")

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def summary(self) -> str:
        return self.status + (f" ({'; '.join(self.reasons)})" if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses) -> str | None:
    """The worst of some statuses (None if there is none)."""
    seen = [s for s in statuses if s in _ORDER]
    return max(seen, key=_ORDER.__getitem__) if seen else None


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data for the database: non-finite floats become None (PostgreSQL's JSON has no NaN)."""
    import json
    import math

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(json.dumps(value, default=float)))
