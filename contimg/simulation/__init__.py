"""Simulated DSA-110 data: groups of 16 UVH5 subband files with a known truth.

The foundation of every science test: a sky of point sources (NVSS-like
counts, spectral indices, an optional transiting calibrator) with light curves
(ESEs, red noise, per-epoch flux-scale errors), seen through the Airy primary
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
    from contimg.simulation.config import EseInjection, SimulationConfig, subband_frequencies
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
    "Truth",
    "baseline_pairs",
    "load_truth",
    "model_visibilities",
    "predict_uvdata",
    "simulate",
    "sky_geometry",
    "subband_frequencies",
]
