"""Time-averaging smearing: how much WSClean's baseline-dependent averaging costs, computed from the MS.

WSClean's ``-baseline-averaging L`` averages consecutive integrations of a
baseline while its uv point moves by less than ``L`` wavelengths. It assumes
the fastest possible motion, Earth rotation times the baseline length at the
highest frequency: baseline ``b`` gets

    k_b = floor(L / (omega_E * dt * |b|_uv,max * nu_max / c)),   1 <= k_b <= Ntimes

integrations per averaged row (:func:`averaging_factors`; the fraction of
rows left agrees with the figure WSClean prints to 0.1 % on a full-scale
DSA-110 group).

Averaging ``k`` visibilities of a source at (l, m) whose fringe phase
``phi_t = 2 pi nu (u_t l + v_t m + w_t (n - 1)) / c`` changes during the
interval, gridded at the mean uvw, keeps ``mean_t cos(phi_t - mean(phi))``
of that baseline's contribution to the source's peak. The image's peak is
the imaging-weighted mean over all visibilities, so the loss is

    loss(l, m) = 1 - sum_i W_i r_i(l, m) / sum_i W_i

with ``W`` the Briggs weights (:func:`briggs_weights`, computed on the
image's own uv cell at the mean frequency) and ``r_i = 1`` for visibilities
that are not averaged (:func:`averaging_loss`). This is much smaller than
the worst baseline's loss: only short baselines are averaged and Briggs
weighting gives them little weight. :func:`plan_baseline_averaging` picks the
largest ``L`` whose loss stays within the tier's budget at every position
angle on the field's edge.

The loss is what *our* averaging adds; the instrument's own channel width
and integration smear too (:func:`native_smearing_loss`: on a full-scale
group at 2.6 deg, 0.26 % for the 244 kHz channels and 3.2 % for the 12.9 s
integrations). The simulator samples every
visibility at its channel and integration centre, so benchmarks on simulated
data see only the averaging loss.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from contimg.beam import SPEED_OF_LIGHT
from contimg.msmodel import MsModel, read_ms

__all__ = ["AveragingPlan", "averaging_factors", "averaging_loss", "baseline_length_max_m", "briggs_weights",
           "briggs_weights_uv", "cross_rows", "native_smearing_loss", "plan_baseline_averaging", "row_fraction",
           "sample_freqs"]

log = logging.getLogger(__name__)

OMEGA_EARTH = 7.2921150e-5
"""Earth's rotation rate (rad/s), as WSClean uses it."""
POSITION_ANGLES_DEG = tuple(range(0, 180, 15))
"""Directions on the edge circle at which the loss is evaluated (the loss is symmetric under (l, m) -> (-l, -m))."""
BAND_SAMPLES = 8
"""Frequencies across the band at which the loss is evaluated and averaged (MFS weights channels equally)."""
CANDIDATE_WAVELENGTHS = tuple(float(x) for x in np.round(np.geomspace(0.5, 128.0, 49), 3))
"""``-baseline-averaging`` sizes tried (wavelengths, ~12 % steps)."""


def cross_rows(ms: MsModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cross-correlation rows of ``ms``, as the smearing and weighting code uses them.

    Returns
    -------
    uvw, baseline, time_index
        (Ncross, 3) uvw (m), (Ncross,) baseline index (0 ... ``ms.Nbls``-1, as ``ms.baseline_index``) and
        (Ncross,) integration index of every cross-correlation row.
    """
    if ms.uvw_array is None or ms.time_index is None:
        raise ValueError(f"{ms.label}: the model has no rows (uvw)")
    c = ms.cross_mask
    return ms.uvw_array[c], ms.baseline_index[c], ms.time_index[c]


def sample_freqs(freq_hz: np.ndarray, n: int = BAND_SAMPLES) -> np.ndarray:
    """``n`` of the channel frequencies ``freq_hz``, spread evenly over the band (all of them if fewer)."""
    f = np.sort(np.asarray(freq_hz, float))
    if f.size <= n:
        return f
    return f[np.round(np.linspace(0, f.size - 1, n)).astype(int)]


def baseline_length_max_m(ms: MsModel) -> np.ndarray:
    """(Nbls,) the longest projected uv length each baseline reaches (m); 0 for autocorrelations."""
    uvw, baseline, _ = cross_rows(ms)
    out = np.zeros(ms.Nbls)
    np.maximum.at(out, baseline, np.hypot(uvw[:, 0], uvw[:, 1]))
    return out


@dataclass(frozen=True)
class AveragingPlan:
    """What :func:`plan_baseline_averaging` chose."""

    wavelengths: float | None
    """``-baseline-averaging`` size; None when no size keeps the loss within the budget (no averaging)."""
    loss: float
    """Largest predicted peak loss on the edge circle with this size."""
    row_fraction: float
    """Rows left after averaging (WSClean prints the same figure)."""
    radius_deg: float
    max_loss: float

    def to_dict(self) -> dict:
        return asdict(self)


def averaging_factors(ms: MsModel, wavelengths: float) -> np.ndarray:
    """(Nbls,) integrations WSClean averages per row of each baseline for ``-baseline-averaging wavelengths``."""
    speed = OMEGA_EARTH * ms.integration_time * baseline_length_max_m(ms) * ms.freq_max / SPEED_OF_LIGHT
    with np.errstate(divide="ignore"):
        k = np.floor(wavelengths / speed)
    return np.clip(np.nan_to_num(k, posinf=ms.Ntimes), 1, ms.Ntimes).astype(np.int64)


def row_fraction(ms: MsModel, wavelengths: float) -> float:
    """Fraction of the rows left after WSClean averages with ``-baseline-averaging wavelengths``.

    Each baseline's rows are averaged in runs of its factor, the last run
    possibly shorter; WSClean prints the same figure ("reduced the number of
    rows to ...").
    """
    k = averaging_factors(ms, wavelengths)
    _, baseline, _ = cross_rows(ms)
    per_baseline = np.bincount(baseline, minlength=ms.Nbls)
    return float(np.sum(np.ceil(per_baseline / k)) / baseline.size)


def briggs_weights(ms: MsModel, *, robust: float, fov_rad: tuple[float, float]) -> np.ndarray:
    """(Ncross,) Briggs weights at the mean frequency on the uv cell of an image ``fov_rad`` = (width, height).

    Natural weights are equal (one per row: every row has the same channels
    and integration time); the density counts each row and its Hermitian
    conjugate, as the imager's gridded weights do.

    Parameters
    ----------
    ms
        The MS's model (:func:`contimg.msmodel.read_ms`): its cross-correlation rows' u, v at ``ms.freq_mean``.
    robust
        Briggs robust parameter (-2 near uniform, +2 near natural).
    fov_rad
        Image width and height (rad): the uv cell is 1 / fov wavelengths.

    Returns
    -------
    numpy.ndarray
        Relative imaging weight of each cross-correlation row (:func:`cross_rows`), shape (Ncross,), in (0, 1].
    """
    lam = SPEED_OF_LIGHT / ms.freq_mean
    uvw, _, _ = cross_rows(ms)
    return briggs_weights_uv(uvw[:, 0] / lam, uvw[:, 1] / lam, robust=robust, fov_rad=fov_rad)


def briggs_weights_uv(u: np.ndarray, v: np.ndarray, *, robust: float, fov_rad: tuple[float, float]) -> np.ndarray:
    """Briggs weights of equally weighted samples at ``(u, v)`` (wavelengths) on the uv cell of ``fov_rad``.

    The weight of a sample is ``1 / (1 + D f^2)``, ``D`` the number of samples
    (and Hermitian conjugates) in its uv cell and
    ``f^2 = (5 * 10^-robust)^2 / (sum D^2 / sum 1)`` (Briggs 1995, as WSClean
    and CASA grid it). A regular subsample of the channels gives the same
    weights: ``D f^2`` does not depend on how many samples there are.

    Parameters
    ----------
    u
        Sample u coordinates (wavelengths), shape (Nsamples,).
    v
        Sample v coordinates (wavelengths), same shape as ``u``.
    robust
        Briggs robust parameter (-2 near uniform, +2 near natural).
    fov_rad
        Image width and height (rad): the uv cell is 1 / fov wavelengths.

    Returns
    -------
    numpy.ndarray
        Weight of each sample, shape (Nsamples,), in (0, 1].
    """
    iu = np.round(np.asarray(u) * fov_rad[0]).astype(np.int64)
    iv = np.round(np.asarray(v) * fov_rad[1]).astype(np.int64)
    keys = np.concatenate([iu * 2_000_003 + iv, -iu * 2_000_003 - iv])
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    density = counts[inverse.ravel()[: iu.size]].astype(float)
    f2 = (5.0 * 10.0 ** (-robust)) ** 2 / (np.sum(counts.astype(float) ** 2) / keys.size)
    return 1.0 / (1.0 + density * f2)


def _fringe_phase(uvw: np.ndarray, radius_rad: float, pa_rad: np.ndarray, freq_hz: float) -> np.ndarray:
    """(Npa, Nrows) fringe phase at ``freq_hz`` of a source at ``radius_rad``, position angles ``pa_rad``, for rows
    of ``uvw`` (m)."""
    s = math.sin(radius_rad)
    lm = np.stack([s * np.sin(pa_rad), s * np.cos(pa_rad)], axis=1)  # (Npa, 2): l east, m north
    n1 = math.sqrt(1.0 - s * s) - 1.0
    path = lm @ uvw[:, :2].T + n1 * uvw[:, 2]
    return 2 * math.pi * freq_hz / SPEED_OF_LIGHT * path


def averaging_loss(
    ms: MsModel,
    wavelengths: float,
    *,
    radius_rad: float,
    weights: np.ndarray | None = None,
    position_angles_deg: tuple[float, ...] = POSITION_ANGLES_DEG,
) -> np.ndarray:
    """Peak loss of a point source at ``radius_rad`` caused by averaging (one value per position angle).

    The loss is averaged over :data:`BAND_SAMPLES` frequencies across the band
    (the fringe phase, and so the loss, grows with frequency; an MFS image
    weights the channels equally).

    Parameters
    ----------
    ms
        The MS's model (:func:`contimg.msmodel.read_ms`).
    wavelengths
        ``-baseline-averaging`` size.
    radius_rad
        Distance of the source from the phase center.
    weights
        Imaging weights per cross-correlation row (default natural).
    position_angles_deg
        Directions (east of north) at which to evaluate.

    Returns
    -------
    numpy.ndarray
        Fractional peak loss (0: none) at each of ``position_angles_deg``, shape (Npa,).
    """
    uvw, baseline, time_index = cross_rows(ms)
    k = averaging_factors(ms, wavelengths)[baseline]
    w = np.ones(baseline.size) if weights is None else np.asarray(weights, float)
    fmax = ms.freq_max
    phase = _fringe_phase(uvw, radius_rad, np.radians(position_angles_deg), fmax)
    # averaged row of each visibility: baseline, k, and which run of k integrations it falls in
    group = (baseline.astype(np.int64) * (ms.Ntimes + 1) + time_index // k)
    _, gid = np.unique(group, return_inverse=True)
    gid = gid.ravel()
    ngroups = int(gid.max()) + 1
    size = np.bincount(gid, minlength=ngroups).astype(float)
    scales = sample_freqs(ms.freq_array) / fmax  # the fringe phase is proportional to frequency
    losses = []
    for ph in phase:
        dphi = ph - (np.bincount(gid, weights=ph, minlength=ngroups) / size)[gid]
        response = np.mean([np.sum(w * np.cos(s_ * dphi)) for s_ in scales]) / np.sum(w)
        losses.append(1.0 - float(response))
    return np.array(losses)


def native_smearing_loss(
    ms: MsModel,
    *,
    radius_rad: float,
    weights: np.ndarray | None = None,
    position_angles_deg: tuple[float, ...] = POSITION_ANGLES_DEG,
) -> dict[str, float]:
    """Largest peak loss at ``radius_rad`` from the instrument's own channel width and integration time.

    Bandwidth: each channel is a box of ``channel_width``, a sinc of the
    fringe's delay. Time: the fringe phase moves linearly during one
    integration at the rate between neighbouring integrations of the baseline.

    Parameters
    ----------
    ms
        The MS's model (:func:`contimg.msmodel.read_ms`): cross-correlation rows, channel width and integration.
    radius_rad
        Distance (rad) of the source from the phase center.
    weights
        Imaging weights per cross-correlation row, shape (Ncross,) (default natural).
    position_angles_deg
        Directions (deg, east of north) at which to evaluate; the largest loss is returned.

    Returns
    -------
    dict[str, float]
        ``{'bandwidth': loss, 'integration': loss}``, fractional peak losses at the highest channel frequency.
    """
    uvw, baseline, time_index = cross_rows(ms)
    w = np.ones(baseline.size) if weights is None else np.asarray(weights, float)
    pa = np.radians(position_angles_deg)
    phase = _fringe_phase(uvw, radius_rad, pa, ms.freq_max)
    delay_turns = phase / (2 * math.pi) * ms.channel_width / ms.freq_max
    bandwidth = 1.0 - (np.sinc(delay_turns) * w).sum(axis=1) / w.sum()
    order = np.lexsort((time_index, baseline))
    ph = phase[:, order]
    same = np.diff(baseline[order]) == 0
    step = np.where(same, np.abs(np.diff(ph, axis=1)), np.nan)
    step = np.concatenate([step, np.full((len(pa), 1), np.nan)], axis=1)
    step = np.where(np.isnan(step), np.roll(step, 1, axis=1), step)  # a baseline's last row takes the rate before it
    time = 1.0 - (np.nan_to_num(np.sinc(step / (2 * math.pi)), nan=1.0) * w[order]).sum(axis=1) / w.sum()
    return {"bandwidth": float(bandwidth.max()), "integration": float(time.max())}


def plan_baseline_averaging(
    ms: MsModel | str | os.PathLike,
    *,
    radius_rad: float,
    max_loss: float,
    robust: float,
    fov_rad: tuple[float, float],
) -> AveragingPlan:
    """The largest ``-baseline-averaging`` size whose averaging loss at ``radius_rad`` is at most ``max_loss``.

    Sizes are tried in ~12 % steps from 0.5 wavelengths up; the first one
    over budget ends the search (the loss grows with the size).

    Parameters
    ----------
    ms
        The MS to image: its model (:func:`contimg.msmodel.read_ms`, read once by the caller) or its path.
    radius_rad
        The edge of the field that matters (the pb_limit radius plus half the drift).
    max_loss
        The tier's budget (``TierParameters.max_smearing_loss``).
    robust
        Briggs robust parameter of the image.
    fov_rad
        Image width and height (radians): sets the uv cell of the weights.

    Returns
    -------
    AveragingPlan
        The size chosen (wavelengths; None: no averaging), its worst loss on the edge circle, the fraction of
        rows left, ``radius_rad`` in degrees and ``max_loss``.

    Raises
    ------
    ValueError
        Unless ``radius_rad > 0`` and ``0 < max_loss < 0.5``.
    """
    if radius_rad <= 0 or not 0 < max_loss < 0.5:
        raise ValueError(f"need radius > 0 and 0 < max_loss < 0.5, got {radius_rad}, {max_loss}")
    ms = ms if isinstance(ms, MsModel) else read_ms(ms)
    weights = briggs_weights(ms, robust=robust, fov_rad=fov_rad)
    chosen, chosen_loss = None, 0.0
    for size in CANDIDATE_WAVELENGTHS:
        loss = float(averaging_loss(ms, size, radius_rad=radius_rad, weights=weights).max())
        if loss > max_loss:
            break
        chosen, chosen_loss = size, loss
        if np.all(averaging_factors(ms, size) >= ms.Ntimes):
            break  # every baseline already averaged over the whole group
    rows = row_fraction(ms, chosen) if chosen is not None else 1.0
    plan = AveragingPlan(wavelengths=chosen, loss=chosen_loss, row_fraction=rows, radius_deg=math.degrees(radius_rad),
                         max_loss=max_loss)
    log.info("%s: baseline-dependent averaging %s wavelengths: peak loss %.2f %% at %.2f deg (budget %.1f %%), "
             "%.1f %% of the rows left", ms.label, chosen, 100 * chosen_loss, plan.radius_deg, 100 * max_loss,
             100 * rows)
    return plan
