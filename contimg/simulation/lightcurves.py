"""Light-curve models for simulated sources: quiescent flux, red noise, ESEs.

The simulator gives every source a flux per day from these models, and the
variability tests score the same curves, so both sides share one definition of
"the truth".

* :func:`ese_profile` -- the multiplicative modulation of an extreme scattering
  event (ESE), defined with the detector's template in
  :mod:`contimg.variability.esemodel` (imported here: the simulator injects
  the model the search looks for).
* :func:`red_noise` -- intrinsic variability as a multiplicative, log-normal
  Ornstein-Uhlenbeck process (a damped random walk; Kelly, Bechtold & Siemiginowska
  2009, ApJ 698, 895), with unit mean.
* :class:`LightCurveSpec` / :func:`make_lightcurve` -- quiescent flux x red
  noise x optional ESE, evaluated at arbitrary (gappy) epochs.

Example
-------
>>> import numpy as np
>>> from contimg.simulation.lightcurves import EseSpec, LightCurveSpec, make_lightcurve
>>> t = np.arange(365.0)
>>> spec = LightCurveSpec(flux_jy=0.2, ese=EseSpec(t_center=180, duration_days=60, depth=0.3))
>>> flux = make_lightcurve(t, spec, rng=np.random.default_rng(1))
>>> round(float(flux[180] / 0.2), 2)
0.7
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contimg.variability.esemodel import DEFAULT_EDGE_FRAC, ese_profile, ese_shape

__all__ = [
    "DEFAULT_EDGE_FRAC",
    "EseSpec",
    "LightCurveSpec",
    "SimulatedPopulation",
    "ese_profile",
    "ese_shape",
    "make_lightcurve",
    "red_noise",
    "red_noise_at",
    "simulate_population",
]

def red_noise_at(
    t_days: np.ndarray,
    *,
    rng: np.random.Generator,
    amplitude: float,
    timescale_days: float,
) -> np.ndarray:
    """Unit-mean log-normal Ornstein-Uhlenbeck modulation at arbitrary epochs.

    ``log(factor) = x - amplitude**2 / 2`` where ``x`` is a stationary
    Ornstein-Uhlenbeck process (damped random walk; Kelly et al. 2009) of rms
    ``amplitude`` and correlation time ``timescale_days``, sampled exactly at
    the (sorted or unsorted) epochs. For small amplitudes the fractional rms
    of the factor is ~``amplitude``.

    Parameters
    ----------
    t_days
        Epochs (days).
    rng
        Random generator (seed it for reproducible curves).
    amplitude
        Rms of the log-flux modulation (e.g. 0.02 for 2 % variability).
    timescale_days
        Correlation time of the process (days).

    Returns
    -------
    numpy.ndarray
        Multiplicative factors, shape of ``t_days``, mean 1.
    """
    t = np.asarray(t_days, dtype=float)
    if amplitude < 0 or not timescale_days > 0:
        raise ValueError("red noise needs amplitude >= 0 and timescale_days > 0")
    if t.size == 0 or amplitude == 0:
        return np.ones_like(t)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    decay = np.exp(-np.diff(ts) / timescale_days)
    innov = rng.standard_normal(t.size)
    x = np.empty(t.size)
    x[0] = amplitude * innov[0]
    scale = amplitude * np.sqrt(1.0 - decay**2)
    for i in range(1, t.size):  # a linear recursion; n is a few hundred epochs
        x[i] = decay[i - 1] * x[i - 1] + scale[i - 1] * innov[i]
    out = np.empty(t.size)
    out[order] = np.exp(x - 0.5 * amplitude**2)
    return out


def red_noise(
    n: int,
    *,
    rng: np.random.Generator,
    amplitude: float,
    timescale_days: float,
    cadence_days: float = 1.0,
) -> np.ndarray:
    """Unit-mean red-noise modulation at ``n`` regularly spaced epochs.

    See :func:`red_noise_at`; this samples it every ``cadence_days``.

    Parameters
    ----------
    n
        Number of epochs.
    rng
        Random generator.
    amplitude
        Rms of the log-flux modulation.
    timescale_days
        Correlation time (days).
    cadence_days
        Spacing of the epochs (days).

    Returns
    -------
    numpy.ndarray
        ``n`` multiplicative factors.
    """
    return red_noise_at(np.arange(n) * cadence_days, rng=rng, amplitude=amplitude, timescale_days=timescale_days)


@dataclass(frozen=True)
class EseSpec:
    """Parameters of one ESE (see :func:`ese_profile`)."""

    t_center: float
    duration_days: float
    depth: float
    caustic_amplitude: float = 0.3
    caustic_width_frac: float = 0.08


@dataclass(frozen=True)
class LightCurveSpec:
    """A simulated source's light curve: quiescent flux x red noise x optional ESE.

    Attributes
    ----------
    flux_jy
        Quiescent (mean) flux density.
    red_noise_amplitude
        Rms of the intrinsic log-flux modulation (0: a steady source).
    red_noise_timescale_days
        Correlation time of the intrinsic variability.
    ese
        An extreme scattering event, or None.
    """

    flux_jy: float
    red_noise_amplitude: float = 0.0
    red_noise_timescale_days: float = 30.0
    ese: EseSpec | None = None


def make_lightcurve(t_days: np.ndarray, spec: LightCurveSpec, *, rng: np.random.Generator) -> np.ndarray:
    """True flux density (Jy) of a source at the given epochs, without measurement noise.

    Parameters
    ----------
    t_days
        Epochs (days), may be irregular.
    spec
        The source's light-curve model.
    rng
        Random generator for the red noise.

    Returns
    -------
    numpy.ndarray
        Flux densities, shape of ``t_days``.
    """
    t = np.asarray(t_days, dtype=float)
    flux = np.full(t.shape, float(spec.flux_jy))
    if spec.red_noise_amplitude > 0:
        flux *= red_noise_at(t, rng=rng, amplitude=spec.red_noise_amplitude, timescale_days=spec.red_noise_timescale_days)
    if spec.ese is not None:
        e = spec.ese
        flux *= ese_profile(
            t,
            t_center=e.t_center,
            duration_days=e.duration_days,
            depth=e.depth,
            caustic_amplitude=e.caustic_amplitude,
            caustic_width_frac=e.caustic_width_frac,
        )
    return flux


@dataclass(frozen=True)
class SimulatedPopulation:
    """Long-format light curves of a simulated source population, with the truth.

    Rows are grouped by source and time-ordered (``source_idx``, ``t_days``,
    ``flux``, ``flux_err``); the ``true_*`` arrays have one entry per source
    (``true_depth`` etc. are NaN for sources without an ESE).
    """

    source_idx: np.ndarray
    t_days: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    true_flux_jy: np.ndarray
    true_has_ese: np.ndarray
    true_depth: np.ndarray
    true_duration_days: np.ndarray
    true_t_center: np.ndarray
    true_red_noise_amplitude: np.ndarray
    true_red_noise_timescale_days: np.ndarray


def simulate_population(
    n_sources: int,
    *,
    rng: np.random.Generator,
    n_days: int = 365,
    t0_mjd: float = 61000.0,
    ese_fraction: float = 0.05,
    depth_range: tuple[float, float] = (0.1, 0.5),
    duration_range_days: tuple[float, float] = (14.0, 180.0),
    red_noise_amplitude_range: tuple[float, float] = (0.003, 0.06),
    red_noise_timescale_range_days: tuple[float, float] = (3.0, 300.0),
    image_rms_jy: float = 0.001,
    flux_range_jy: tuple[float, float] = (0.02, 2.0),
    calibration_floor: float = 0.01,
    missing_fraction: float = 0.05,
    weather_fraction: float = 0.03,
    maintenance_blocks_days: tuple[int, ...] = (14, 5),
    outlier_fraction: float = 0.002,
) -> SimulatedPopulation:
    """Simulate a year of daily forced photometry for a population of compact sources.

    Every source is measured once a day at its transit (the transit time drifts
    by ~3.9 min a day). Fluxes follow ``N(>S) ~ S**-1.5`` in ``flux_range_jy``;
    the per-epoch error is ``hypot(image_rms_jy, calibration_floor * S)``
    (1-5 % for the defaults). Non-ESE sources vary as log-normal OU red noise
    with log-uniform amplitude and timescale; ESE sources get a weaker red
    noise (up to a third of the range) and one ESE, fully inside the observed
    span, with depth and log-duration uniform in their ranges and random
    caustic strength. Gaps: maintenance blocks and bad-weather days (shared by
    all sources), randomly missing measurements per source, and a few outliers
    (bad nights, +-10-40 %).

    Parameters
    ----------
    n_sources
        Number of sources.
    rng
        Random generator (seeded for reproducibility).
    n_days
        Length of the campaign (days).
    t0_mjd
        First day.
    ese_fraction
        Fraction of sources with an ESE (at least one if > 0).
    depth_range, duration_range_days
        Ranges of the injected ESE depths and durations.
    red_noise_amplitude_range, red_noise_timescale_range_days
        Log-uniform ranges of the intrinsic variability.
    image_rms_jy, flux_range_jy, calibration_floor
        Noise model and flux distribution.
    missing_fraction, weather_fraction, maintenance_blocks_days, outlier_fraction
        Gap and outlier model.

    Returns
    -------
    SimulatedPopulation
    """
    day = np.arange(n_days)
    down = rng.random(n_days) < weather_fraction
    for block in maintenance_blocks_days:
        start = int(rng.integers(0, max(n_days - block, 1)))
        down[start : start + block] = True
    lo, hi = flux_range_jy
    u = rng.random(n_sources)
    flux0 = (lo**-1.5 - u * (lo**-1.5 - hi**-1.5)) ** (-1 / 1.5)
    n_ese = int(round(ese_fraction * n_sources))
    n_ese = max(n_ese, 1) if ese_fraction > 0 else 0
    has_ese = np.zeros(n_sources, dtype=bool)
    has_ese[rng.choice(n_sources, n_ese, replace=False)] = True
    log_uniform = lambda lim, n: np.exp(rng.uniform(np.log(lim[0]), np.log(lim[1]), n))  # noqa: E731
    red_amp = log_uniform(red_noise_amplitude_range, n_sources)
    red_amp[has_ese] = log_uniform((red_noise_amplitude_range[0], max(red_noise_amplitude_range[0], red_noise_amplitude_range[1] / 3)), n_ese)
    red_tau = log_uniform(red_noise_timescale_range_days, n_sources)
    depth = np.full(n_sources, np.nan)
    duration = np.full(n_sources, np.nan)
    center = np.full(n_sources, np.nan)
    depth[has_ese] = rng.uniform(*depth_range, n_ese)
    duration[has_ese] = log_uniform(duration_range_days, n_ese)
    center[has_ese] = rng.uniform(duration[has_ese] / 2, n_days - duration[has_ese] / 2)
    caustic = rng.uniform(0.0, 0.6, n_sources)
    caustic_w = rng.uniform(0.04, 0.12, n_sources)
    transit = rng.random(n_sources)  # RA / 360 deg: fraction of a day
    cols: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(n_sources):
        seen = ~down & (rng.random(n_days) >= missing_fraction)
        d = day[seen]
        t = t0_mjd + d + (transit[i] - d / 365.2422) % 1.0
        ese = None
        if has_ese[i]:
            ese = EseSpec(t_center=t0_mjd + center[i], duration_days=duration[i], depth=depth[i],
                          caustic_amplitude=caustic[i], caustic_width_frac=caustic_w[i])
        spec = LightCurveSpec(flux_jy=flux0[i], red_noise_amplitude=red_amp[i], red_noise_timescale_days=red_tau[i], ese=ese)
        true = make_lightcurve(t, spec, rng=rng)
        err = np.hypot(image_rms_jy, calibration_floor * true)
        meas = true + err * rng.standard_normal(t.size)
        bad = rng.random(t.size) < outlier_fraction
        meas[bad] *= 1.0 + rng.choice([-1.0, 1.0], bad.sum()) * rng.uniform(0.1, 0.4, bad.sum())
        cols[0].append(np.full(t.size, i))
        cols[1].append(t)
        cols[2].append(meas)
        cols[3].append(err)
    src, t, f, e = (np.concatenate(c) for c in cols)
    return SimulatedPopulation(
        source_idx=src, t_days=t, flux=f, flux_err=e, true_flux_jy=flux0, true_has_ese=has_ese,
        true_depth=depth, true_duration_days=duration, true_t_center=t0_mjd + center,
        true_red_noise_amplitude=red_amp, true_red_noise_timescale_days=red_tau,
    )
