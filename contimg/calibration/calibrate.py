"""The science of the calibration stage, without the database: :func:`solve_and_judge` and :func:`transit_elsewhere`.

For one converted group (one MS) the stage (:func:`contimg.pipeline.calibrate.calibrate_ms`):

1. reads the MS's metadata once (:func:`contimg.msmodel.read_ms`; every step
   below is given that model) and chooses the calibrator in the beam
   (:mod:`.select`) from the catalogue near its pointing track;
2. *calibrator group*: :func:`solve_and_judge` writes MODEL_DATA from every
   catalogue source near the track (:mod:`.model`), solves K (optional), B and
   G on a time-averaged copy (:mod:`.solve`), judges the solutions
   (:mod:`.gate`) and plots them (:mod:`.qa`); the stage registers the tables
   as the calibration set ``<MS name>`` with validity windows (:mod:`.registry`);
   *science group* (or a calibrator group whose solve failed its checks, the
   reason kept in ``solve_error``; or one that sees the calibrator past its
   transit, :func:`transit_elsewhere`): the stage looks up the valid set
   closest in time (none: :class:`~contimg.calibration.registry.NoValidCalibration`);
3. applies the set (:mod:`.apply`): CORRECTED_DATA.

Nothing here reads or writes the database; the stage does, in short
transactions that never span CASA work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contimg.calibration.model import PointSources, brighter_than, write_model_data
from contimg.calibration.qa import plot_solutions
from contimg.calibration.select import CalibratorChoice
from contimg.calibration.solve import SolveError, SolveResult, solve_calibrator
from contimg.msmodel import MsModel

log = logging.getLogger(__name__)

__all__ = ["CalibrationOutcome", "CalibrationQaFailed", "SolvedSet", "solve_and_judge", "transit_elsewhere"]


class CalibrationQaFailed(SolveError):
    """The calibration gate failed a solved set: no table is registered (``verdict`` says why)."""

    def __init__(self, message: str, verdict: Any):
        super().__init__(message)
        self.verdict = verdict


@dataclass
class CalibrationOutcome:
    """What :func:`calibrate_ms` did; JSON-serialisable through :meth:`to_dict`."""

    ms_path: str
    mode: str
    """``solved`` (calibrator group: solved and applied its own tables) or ``applied`` (science group)."""
    calibration_set: str
    calibration_set_id: int
    tables: list[str]
    calibrator_name: str | None = None
    calibrator_beam_response: float | None = None
    refant: str | None = None
    n_model_sources: int = 0
    flagged_fraction: dict[str, float] = field(default_factory=dict)
    """Flagged solution fraction per solved table type."""
    data_flagged_fraction: float = 0.0
    """Fraction of cross-correlations flagged after the apply."""
    plots: dict[str, str] = field(default_factory=dict)
    solve_error: str | None = None
    """Why a calibrator group's solve failed (the registry's valid set was applied instead)."""
    qa_verdict: str | None = None
    """The calibration gate's verdict on the set this group solved (None: it solved none)."""
    qa_reasons: list[str] = field(default_factory=list)
    solve_skipped: str | None = None
    """Why a group with a usable calibrator applied another group's set (its transit is solved there)."""
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SolvedSet:
    """A calibrator group's solve that passed the calibration gate, ready to be registered."""

    solution: SolveResult
    verdict: Any
    """The calibration gate's :class:`contimg.verdict.Verdict` (``pass`` or ``warn``)."""
    qa_record: dict[str, Any]
    """JSON-ready record of the set's QA (statistics, plots, timings, verdict, reasons, figures)."""
    outcome_fields: dict[str, Any]
    """The :class:`CalibrationOutcome` fields the solve sets (refant, model sources, plots, verdict, flags)."""


def transit_elsewhere(choice: CalibratorChoice | None, calibration: Any) -> str | None:
    """Why this group should apply another group's set instead of solving its calibrator, or None.

    A calibrator transit is solved once, on the group that holds it: a group
    whose best response is below ``calibration.transit_fraction`` of the
    response at transit sees the calibrator past its transit (unless
    ``calibration.resolve_low_response``).

    Parameters
    ----------
    choice
        The group's calibrator (None: no usable calibrator).
    calibration
        ``settings.calibration``: ``transit_fraction``, ``resolve_low_response``.

    Returns
    -------
    str or None
        The reason, for logs and errors; None when the group should solve (or has no calibrator).
    """
    if choice is None or calibration.resolve_low_response or choice.transit_fraction >= calibration.transit_fraction:
        return None
    return (f"calibrator {choice.name} is past its transit here (response {choice.beam_response:.2f}, "
            f"{choice.transit_response:.2f} at transit): the group holding its transit solves it")


def solve_and_judge(ms: MsModel, *, choice: CalibratorChoice, sources: PointSources,
                    calibration: Any, qa: Any, caltable_dir: str | Path, scratch_dir: str | Path, name: str,
                    previous_bandpass: str | None, timings: dict[str, float]) -> SolvedSet:
    """Model, solve, judge and plot a calibrator group's solutions (nothing is registered).

    Parameters
    ----------
    ms
        The calibrator group's MS as read by :func:`contimg.msmodel.read_ms` (MODEL_DATA is rewritten).
    choice
        The calibrator in the beam.
    sources
        Catalogue sources near the pointing track (the sky model; those fainter than
        ``calibration.model_min_flux_jy`` are left out, never the calibrator).
    calibration
        ``settings.calibration``: ``do_k``, ``refant``, ``max_flagged_fraction``, ``model_min_flux_jy``.
    qa
        ``settings.qa``, the calibration gate's thresholds.
    caltable_dir
        Where the tables (``<name>.K/.B/.G``) and the plots are written.
    scratch_dir
        Fast scratch space for the time-averaged copy.
    name
        The calibration set's name (the tables' prefix).
    previous_bandpass
        The B table of the set solved last before this one, for the scatter check (None: no check).
    timings
        Filled with the seconds of ``model``, ``solve`` and ``qa``.

    Returns
    -------
    SolvedSet

    Raises
    ------
    SolveError
        If the solve fails; :class:`CalibrationQaFailed` if the calibration gate (:mod:`.gate`) does.
    """
    from contimg.calibration.gate import bandpass_scatter, judge_calibration

    ms_path = ms.path
    t1 = time.perf_counter()
    sources = brighter_than(sources, ms, calibration.model_min_flux_jy, keep=(choice.name,))
    model = write_model_data(ms, sources)
    timings["model"] = round(time.perf_counter() - t1, 3)
    t1 = time.perf_counter()
    solution = solve_calibrator(
        ms, out_dir=caltable_dir, prefix=name, scratch_dir=scratch_dir, do_k=calibration.do_k,
        refant=calibration.refant, max_flagged_fraction=calibration.max_flagged_fraction,
    )
    timings["solve"] = round(time.perf_counter() - t1, 3)
    verdict = judge_calibration(
        flagged={k: v.flagged_fraction for k, v in solution.stats.items()}, snr=solution.snr,
        agreement=solution.model_agreement,
        scatter=(bandpass_scatter(solution.tables["B"], previous_bandpass)
                 if previous_bandpass and "B" in solution.tables else None),
        max_flagged_fraction=calibration.max_flagged_fraction, qa=qa,
        dead_antennas=solution.stats["G"].antennas_without_data if "G" in solution.stats else None,
        n_antennas=ms.Nants_data)
    if verdict.failed:
        raise CalibrationQaFailed(f"{ms_path}: calibration QA failed: {'; '.join(verdict.reasons)}", verdict)
    if verdict.reasons:
        log.warning("%s: calibration QA %s", ms_path, verdict.summary())
    t1 = time.perf_counter()
    plots = plot_solutions(solution.tables, refant=solution.refant, freq_hz=ms.freq_array)
    timings["qa"] = round(time.perf_counter() - t1, 3)
    qa_record = {
        "ms": str(ms_path), "refant": solution.refant, "calibrator": choice.name,
        "calibrator_flux_jy": choice.flux_jy, "beam_response": choice.beam_response,
        "model_sources": model.n_sources, "model_apparent_flux_jy": model.total_apparent_flux_jy,
        "stats": {k: asdict(v) for k, v in solution.stats.items()}, "plots": plots,
        "timings_s": solution.timings_s, "verdict": verdict.status, "reasons": verdict.reasons,
        "figures": verdict.figures,
    }
    fields = dict(refant=solution.refant, n_model_sources=model.n_sources, plots=plots, qa_verdict=verdict.status,
                  qa_reasons=verdict.reasons, flagged_fraction={k: v.flagged_fraction for k, v in solution.stats.items()})
    return SolvedSet(solution=solution, verdict=verdict, qa_record=qa_record, outcome_fields=fields)
