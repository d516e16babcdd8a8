"""Simulated DSA-110 data: groups of 16 UVH5 subband files with a known truth.

The foundation of every science test: a sky of point sources (NVSS-like
counts, spectral indices, an optional transiting calibrator) with light curves
(ESEs, red noise, per-epoch flux-scale errors) and transients that are not in
the catalogue, seen through the Airy primary
beam of 4.65 m dishes, with per-antenna complex gains and thermal noise, written
as the real array writes its files. The truth (catalogue, light curves, gains,
noise, times, file lists, options) is written beside the data.

Example
-------
>>> from contimg.simulation import SimulationConfig, simulate, load_truth
>>> cfg = SimulationConfig(n_antennas=8, channels_per_subband=4, seed=1)
>>> result = simulate("/tmp/sim", cfg)                          # doctest: +SKIP
>>> truth = load_truth(result.truth_path)                        # doctest: +SKIP
>>> truth.gains([0, 20], freq_hz=1.4e9, time_jd=truth.groups[0].time_jd).shape  # doctest: +SKIP
(2, 2, 24, 1)

Conventions (each proved by a test in ``tests/simulation``)
------------------------------------------------------------
* Visibilities of baseline (ant1 = i, ant2 = j), unprojected drift scan with
  ``uvw = x_j - x_i``: ``V = g_i g_j^* [sum_s S_s(nu) A_s(nu, t)
  exp(+2 pi i (u l + v m + w n) nu / c) + noise]`` with no ``w(n-1)`` term;
  after ``UVData.phase()`` to a lone source its visibilities are real and equal
  ``S A`` (``test_conventions.py``).
* ``phase_center_dec`` (header, radians) is the *apparent* declination of the
  meridian pointing; ``ha_phase_center`` is 0. The ICRS equivalent at each
  group's midpoint is in the truth (``pointing_dec_icrs_rad``);
  :func:`contimg.stations.meridian_icrs` converts with pyuvdata's ERFA path
  (topocentric; it differs from astropy's geocentric TETE by ~0.3'').
* Sources are unpolarized: XX = YY = I (before gains). Autocorrelations hold
  ``|g|^2 (SEFD + sky)``, real, with noise rms ``SEFD / sqrt(dnu tau)``;
  cross-correlations get complex noise of rms ``SEFD / sqrt(2 dnu tau)`` per
  part, both *before* the gains (calibrated noise follows the radiometer
  equation).
* Gains follow pyuvdata/UVCal's convention; CASA's solutions are their
  complex conjugates. ``vis_units`` is ``uncalib`` with gains, ``Jy`` without.
* Transients (``SimulationConfig.transients``) are in the visibilities on
  their days only and never in ``sources.csv``; their flux-scale error is the
  catalogue sources'.
* Light curves are evaluated once per epoch (day); ``flux_scale_error``
  multiplies every non-calibrator flux of an epoch (the calibrator keeps its
  catalogue flux, so calibration does not remove the error).
* All 16 files of a group share their ``time_array``; only the file-name
  timestamps jitter. Sort a group's files by subband, not by name.

Modules: :mod:`.config` (options, frequency/time layout), :mod:`.sky`
(catalogues, CSV), :mod:`.lightcurves` (ESE profile, red noise), :mod:`.gains`,
:mod:`.visibilities` (the measurement equation, :func:`predict_uvdata`),
:mod:`.uvh5` (file writing), :mod:`.truth`, :mod:`.run` (:func:`simulate`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported lazily (PEP 562) so that ``import contimg.simulation.lightcurves``
# or the CLI's argument parser do not pull in pyuvdata, astropy and scipy.
_EXPORTS = {
    "EseInjection": "config",
    "SimulationConfig": "config",
    "TransientInjection": "config",
    "subband_frequencies": "config",
    "GainModel": "gains",
    "SimulatedGroup": "run",
    "SimulationResult": "run",
    "simulate": "run",
    "SkyCatalog": "sky",
    "Truth": "truth",
    "load_truth": "truth",
    "baseline_pairs": "visibilities",
    "model_visibilities": "visibilities",
    "predict_uvdata": "visibilities",
    "sky_geometry": "visibilities",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from contimg.simulation.config import EseInjection, SimulationConfig, TransientInjection, subband_frequencies
    from contimg.simulation.gains import GainModel
    from contimg.simulation.run import SimulatedGroup, SimulationResult, simulate
    from contimg.simulation.sky import SkyCatalog
    from contimg.simulation.truth import Truth, load_truth
    from contimg.simulation.visibilities import baseline_pairs, model_visibilities, predict_uvdata, sky_geometry

__all__ = [
    "EseInjection",
    "GainModel",
    "SimulatedGroup",
    "SimulationConfig",
    "SimulationResult",
    "SkyCatalog",
    "TransientInjection",
    "Truth",
    "baseline_pairs",
    "load_truth",
    "model_visibilities",
    "predict_uvdata",
    "simulate",
    "sky_geometry",
    "subband_frequencies",
]
