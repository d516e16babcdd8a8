"""The extreme-scattering-event (ESE) model: one shape for the detector and the simulator.

* :func:`ese_profile` -- the multiplicative modulation of an ESE: a smooth,
  flat-bottomed dip with brightenings at ingress and egress. Fiedler et al.
  (1987, Nature 326, 675; 1994, ApJ 430, 581) found such events in 0954+658
  and others at 2.7 and 8.1 GHz: dips of 10-50 % lasting weeks to months,
  bracketed by caustic spikes. The shape follows the Gaussian plasma-lens
  model of Clegg, Fey & Lazio (1998, ApJ 496, 253): a diverging lens
  de-magnifies the source while it is behind the lens, and the rays it pushes
  out pile up in caustics at its edges.
* :func:`ese_shape` -- the same at unit depth: the matched-filter template of
  the nightly search (:mod:`contimg.variability.ese`, its closed form in
  :mod:`contimg.variability.kalman`).

The simulator (:mod:`contimg.simulation.lightcurves`) injects events with
:func:`ese_profile`, so what is injected and what is searched for are one model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_EDGE_FRAC", "ese_profile", "ese_shape"]

DEFAULT_EDGE_FRAC = 0.15
"""Width of each cosine-tapered dip edge, as a fraction of the event duration."""


def ese_profile(
    t_days: np.ndarray,
    *,
    t_center: float,
    duration_days: float,
    depth: float,
    caustic_amplitude: float = 0.3,
    caustic_width_frac: float = 0.08,
    edge_frac: float = DEFAULT_EDGE_FRAC,
) -> np.ndarray:
    """Multiplicative flux factor of an extreme scattering event.

    The factor is exactly 1 outside the event and ``1 - depth`` on the flat
    bottom of the dip. The dip edges are cosine tapers of width
    ``edge_frac * duration_days`` centred on ``t_center +- duration_days/2``,
    so ``duration_days`` is the full width at half depth. A raised-cosine
    brightening of peak ``caustic_amplitude * depth`` and half-width
    ``caustic_width_frac * duration_days`` sits just outside each edge (centred
    where the taper reaches zero), as the caustics of a diverging plasma lens
    do (Fiedler et al. 1987, 1994; Clegg, Fey & Lazio 1998).

    Parameters
    ----------
    t_days
        Epochs (days, any origin).
    t_center
        Middle of the event (same origin as ``t_days``).
    duration_days
        Full width of the dip at half depth (days); ESEs last ~14-180 days.
    depth
        Fractional flux decrement at the bottom of the dip, in [0, 1).
    caustic_amplitude
        Peak brightening at ingress and egress as a fraction of ``depth``
        (0 for a plain dip).
    caustic_width_frac
        Half-width of each caustic brightening as a fraction of the duration.
    edge_frac
        Width of each dip edge taper as a fraction of the duration (< 1).

    Returns
    -------
    numpy.ndarray
        Factor by which the quiescent flux is multiplied, shape of ``t_days``.

    Raises
    ------
    ValueError
        For a non-positive duration, a depth outside [0, 1), negative caustic
        parameters or an edge fraction outside (0, 1).
    """
    if not 0 <= depth < 1:
        raise ValueError(f"ESE depth must be in [0, 1), got {depth}")
    shape = ese_shape(
        np.asarray(t_days, dtype=float) - t_center,
        duration_days=duration_days,
        caustic_amplitude=caustic_amplitude,
        caustic_width_frac=caustic_width_frac,
        edge_frac=edge_frac,
    )
    return 1.0 + depth * shape


def ese_shape(
    dt_days: np.ndarray,
    *,
    duration_days: float | np.ndarray,
    caustic_amplitude: float | np.ndarray = 0.3,
    caustic_width_frac: float | np.ndarray = 0.08,
    edge_frac: float = DEFAULT_EDGE_FRAC,
) -> np.ndarray:
    """Unit-depth ESE template: ``ese_profile == 1 + depth * ese_shape``.

    -1 on the flat bottom of the dip, 0 outside the event, up to
    ``+caustic_amplitude`` on the caustic brightenings. Used by the detector
    (:mod:`contimg.variability.ese`) as a matched-filter template, so the
    simulation and the search share one shape. Arguments broadcast, so a bank
    of templates can be evaluated at once.

    Parameters
    ----------
    dt_days
        Time from the middle of the event (days).
    duration_days
        Full width of the dip at half depth (days).
    caustic_amplitude
        Peak brightening at ingress and egress, as a fraction of the depth.
    caustic_width_frac
        Half-width of each caustic brightening as a fraction of the duration.
    edge_frac
        Width of each dip edge taper as a fraction of the duration (< 1).

    Returns
    -------
    numpy.ndarray
        The template, broadcast shape of the inputs.
    """
    if np.any(np.asarray(duration_days) <= 0):
        raise ValueError(f"ESE duration_days must be positive, got {duration_days}")
    if np.any(np.asarray(caustic_amplitude) < 0) or np.any(np.asarray(caustic_width_frac) < 0):
        raise ValueError("ESE caustic_amplitude and caustic_width_frac must be >= 0")
    if not 0 < edge_frac < 1:
        raise ValueError(f"ESE edge_frac must be in (0, 1), got {edge_frac}")
    dt = np.abs(dt_days)
    duration = np.asarray(duration_days, dtype=float)
    edge = edge_frac * duration
    inner = 0.5 * duration - 0.5 * edge
    outer = inner + edge
    dip = 0.5 * (1.0 + np.cos(np.pi * np.clip((dt - inner) / edge, 0.0, 1.0)))
    cw = np.asarray(caustic_width_frac, dtype=float) * duration
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.clip(np.abs(dt - outer) / cw, 0.0, 1.0)
    bump = np.where(cw > 0, 0.5 * (1.0 + np.cos(np.pi * x)), 0.0)
    shape = np.asarray(caustic_amplitude) * bump - dip
    return shape
