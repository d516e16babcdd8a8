"""The calibration QA gate: a verdict on every solved calibration set.

Checks (thresholds in ``settings.qa``, :class:`contimg.config.QaSettings`):

* **flagged solutions**: above ``max_flagged_fraction`` the solve already fails
  (:class:`~contimg.calibration.solve.SolveError`); above half of it, a warning.
  Antennas whose data are all flagged are not counted (no solution is expected
  of them); more of them than half of ``max_flagged_fraction`` of the array is
  a warning;
* **SNR** of the solutions (CASA's ``SNR`` column, median over unflagged
  solutions of the B and G tables; CASA leaves it empty for K): below
  ``cal_snr_warn`` a warning, below ``cal_snr_fail`` a failure;
* **the calibrator against its model**: the solved tables applied to the
  time-averaged copy the solve used, its corrected visibilities compared with
  its MODEL_DATA: the median amplitude ratio (|ratio - 1| beyond
  ``cal_model_ratio_warn`` / ``_fail``) and the reduced chi-squared with the
  copy's own weights (a warning above ``cal_chi2_warn``);
* **scatter against the previous set**: the median |amplitude ratio - 1| of the
  new bandpass against the set solved before it (a warning above
  ``cal_scatter_warn``: the instrument changed, or one of the two is wrong).

A failed set is not registered as valid: the group falls back to the
registry's valid set, and no science group gets it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from contimg.verdict import FAIL, WARN, Verdict

__all__ = ["bandpass_scatter", "judge_calibration", "model_agreement", "solution_snr"]

log = logging.getLogger(__name__)


def solution_snr(table_path: str | Path) -> float | None:
    """Median SNR of the unflagged solutions of a CASA calibration table (None if it has no SNR column)."""
    from casacore import tables

    with tables.table(str(table_path), ack=False) as tb:
        if "SNR" not in tb.colnames():
            return None
        snr = np.asarray(tb.getcol("SNR"), float)
        flag = np.asarray(tb.getcol("FLAG"), bool)
    good = snr[~flag & np.isfinite(snr)]
    return float(np.median(good)) if good.size else None


def model_agreement(ms_path: str | Path) -> dict[str, float] | None:
    """CORRECTED_DATA against MODEL_DATA of a (calibrated, time-averaged) MS: amplitude ratio and chi-squared.

    Returns
    -------
    dict or None
        ``{"amplitude_ratio": median |corrected| / |model| over unflagged cross-correlations with a
        model above 1 % of its peak, "chi2_reduced": sum w |corrected - model|^2 / (2 N), "n": N}``;
        None if nothing is unflagged.
    """
    from casacore import tables

    with tables.table(str(ms_path), ack=False) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        cross = a1 != a2
        corr = tb.getcol("CORRECTED_DATA")[cross]
        model = tb.getcol("MODEL_DATA")[cross]
        flag = tb.getcol("FLAG")[cross]
        cols = tb.colnames()
        if "WEIGHT_SPECTRUM" in cols:
            weight = np.asarray(tb.getcol("WEIGHT_SPECTRUM")[cross], float)
        else:
            weight = np.broadcast_to(np.asarray(tb.getcol("WEIGHT")[cross], float)[:, None, :], corr.shape)
    amp_model = np.abs(model)
    use = ~flag & np.isfinite(corr) & (amp_model > 0.01 * (np.max(amp_model) if amp_model.size else 0.0))
    if not use.any():
        return None
    ratio = float(np.median(np.abs(corr[use]) / amp_model[use]))
    good = use & (weight > 0)
    chi2 = float(np.sum(weight[good] * np.abs(corr[good] - model[good]) ** 2) / (2 * max(int(good.sum()), 1)))
    return {"amplitude_ratio": ratio, "chi2_reduced": chi2, "n": int(use.sum())}


def bandpass_scatter(new_table: str | Path, previous_table: str | Path) -> float | None:
    """Median |amplitude ratio - 1| of a bandpass table against another (antennas, channels and feeds in common)."""
    from casacore import tables

    def read(path):
        with tables.table(str(path), ack=False) as tb:
            return tb.getcol("ANTENNA1"), tb.getcol("CPARAM"), tb.getcol("FLAG")

    try:
        ant_n, par_n, flag_n = read(new_table)
        ant_p, par_p, flag_p = read(previous_table)
    except RuntimeError as exc:
        log.warning("cannot compare %s with %s: %s", new_table, previous_table, exc)
        return None
    if par_n.shape[1:] != par_p.shape[1:]:
        return None
    index = {int(a): k for k, a in enumerate(ant_p)}
    diffs = []
    for k, a in enumerate(ant_n):
        j = index.get(int(a))
        if j is None:
            continue
        ok = ~flag_n[k] & ~flag_p[j] & (np.abs(par_p[j]) > 0)
        if ok.any():
            diffs.append(np.abs(np.abs(par_n[k][ok]) / np.abs(par_p[j][ok]) - 1.0))
    if not diffs:
        return None
    return float(np.median(np.concatenate(diffs)))


def judge_calibration(*, flagged: dict[str, float], snr: dict[str, float | None],
                      agreement: dict[str, float] | None, scatter: float | None, max_flagged_fraction: float,
                      qa: Any, dead_antennas: list[str] | None = None, n_antennas: int | None = None) -> Verdict:
    """The verdict on one solved calibration set (see the module docstring).

    Parameters
    ----------
    flagged
        Flagged solution fraction per table type.
    snr
        Median solution SNR per table type.
    agreement
        :func:`model_agreement` of the calibrated averaged copy (None: not judged).
    scatter
        :func:`bandpass_scatter` against the previous set (None: no previous set).
    max_flagged_fraction
        ``settings.calibration.max_flagged_fraction``.
    qa
        ``settings.qa``.
    dead_antennas, n_antennas
        Antennas whose data are all flagged (no solutions expected), of ``n_antennas``: a warning
        beyond ``max_flagged_fraction / 2`` of the array (sensitivity lost, solutions still right).

    Returns
    -------
    Verdict
        ``pass``, ``warn`` or ``fail`` with the reasons; ``figures`` holds ``flagged``, ``snr``, ``model``,
        ``bandpass_scatter`` and ``antennas_without_data``.
    """
    v = Verdict(figures={"flagged": flagged, "snr": snr, "model": agreement, "bandpass_scatter": scatter,
                         "antennas_without_data": list(dead_antennas or [])})
    if dead_antennas and n_antennas and len(dead_antennas) > max_flagged_fraction / 2 * n_antennas:
        v.add(WARN, f"{len(dead_antennas)} of {n_antennas} antennas have no unflagged data")
    for kind, frac in flagged.items():
        if frac > max_flagged_fraction / 2:
            v.add(WARN, f"{kind}: {frac:.1%} of the solutions flagged")
    for kind, value in snr.items():
        if value is None or kind == "K":  # CASA's delay solver leaves its SNR column empty
            continue
        if value < qa.cal_snr_fail:
            v.add(FAIL, f"{kind}: median solution SNR {value:.1f} below {qa.cal_snr_fail:g}")
        elif value < qa.cal_snr_warn:
            v.add(WARN, f"{kind}: median solution SNR {value:.1f} below {qa.cal_snr_warn:g}")
    if agreement is not None:
        v.grade(abs(agreement["amplitude_ratio"] - 1.0), warn=qa.cal_model_ratio_warn, fail=qa.cal_model_ratio_fail,
                message=f"the calibrator's corrected visibilities are {agreement['amplitude_ratio']:.3f} x its "
                        f"model (median of {agreement['n']})")
        if agreement["chi2_reduced"] > qa.cal_chi2_warn:
            v.add(WARN, f"reduced chi-squared of the corrected calibrator against its model "
                        f"{agreement['chi2_reduced']:.2f} (warn above {qa.cal_chi2_warn:g})")
    if scatter is not None and scatter > qa.cal_scatter_warn:
        v.add(WARN, f"bandpass amplitudes differ from the previous set's by {scatter:.1%} (median)")
    return v
