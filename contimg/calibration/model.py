"""MODEL_DATA from catalogue point sources, computed by our own code for the MS's phase center.

Why not CASA ``ft()``/``setjy``: a drift-scan group's sky moves through a
fixed-elevation beam, so each source's primary-beam attenuation changes with
time and frequency; CASA's component-list prediction knows neither the Airy
beam of the DSA-110 dishes nor the drift. The virtual model of ``ft`` also made
CASA drop solutions silently (NOTES), so we always write a real column.

Measurement equation (MS convention, as written by :mod:`contimg.conversion`)
----------------------------------------------------------------------------
For baseline (ANTENNA1 = i, ANTENNA2 = j), channel frequency :math:`\\nu` and
integration time :math:`t`

.. math::

    M_{ij}(\\nu, t) = \\sum_s S_s (\\nu/\\nu_0)^{\\alpha_s} A(\\theta_s(t), \\nu)\\,
        q_{s j}(\\nu, t)\\, q_{s i}^*(\\nu, t),
    \\qquad q_{s a} = \\exp\\left(-2\\pi i \\frac{\\nu}{c}\\,
        \\mathbf{x}_a \\cdot [\\hat{\\mathbf{s}}_s(t) - \\hat{\\mathbf{s}}_0(t)]\\right)

with :math:`\\mathbf{x}_a` the antenna's ECEF offset from the array centre,
:math:`\\hat{\\mathbf{s}}` unit vectors (Earth-fixed axes) toward the
topocentric apparent positions of source :math:`s` and of the phase center,
:math:`\\nu_0` = 1.4 GHz and :math:`A` the Airy power pattern
(:mod:`contimg.beam`) at the source's separation :math:`\\theta_s(t)` from the
pointing (apparent RA = LST(t), apparent Dec = the pointing declination).
The sources are unpolarised: the parallel hands (XX, YY or RR, LL) and Stokes I
receive the model, the cross hands (XY, YX or RL, LR) and Stokes Q, U, V zero
(by the MS's ``polarization_array``: :attr:`contimg.msmodel.MsModel.unpolarized_response`).

This is the complex conjugate of pyuvdata's ``exp(+2 pi i b.s nu/c)`` phased
visibility with ``b = x_ant2 - x_ant1``, because the conversion writes
``DATA = conj(V_pyuvdata)`` and ``UVW = -uvw_pyuvdata`` (CASA's convention).
``tests/calibration/test_model.py`` proves it twice: MODEL_DATA equals the
simulator's noise-free, gain-free DATA, and CASA's own ``ft`` of a point
component agrees with our model of the same source (beam off).

Vectorisation
-------------
The phase factorises per antenna, so for each integration and channel the
visibility matrix of all baselines is ``conj(Q)^T diag(S A) Q`` with ``Q`` the
(Nsrc x Nants) phasor matrix: one batched complex matrix product per
integration (Nsrc x Nants x Nants x Nfreqs multiply-adds), then a gather of
the MS's baselines. Rows are processed in contiguous chunks of whole
integrations, so memory stays bounded for any MS size. BLAS runs single-threaded
here: for matrices this small, OpenBLAS threads mostly spin (5-10x the CPU time
on a loaded machine, measured).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from contimg.beam import SPEED_OF_LIGHT, airy_power, angular_separation
from contimg.errors import InputFileError
from contimg.msmodel import MsModel, as_model, open_rows
from contimg.stations import icrs_to_apparent

log = logging.getLogger(__name__)

__all__ = ["PointSources", "REFERENCE_FREQ_HZ", "ModelReport", "antenna_delay_m", "apparent_flux", "brighter_than",
           "model_chunks", "predict_matrices", "write_model_data"]

REFERENCE_FREQ_HZ = 1.4e9
"""Frequency of catalogue fluxes."""

ROWS_PER_CHUNK = 20000
"""MODEL_DATA rows written per call (about 120 MB at 768 channels x 2 correlations)."""


@dataclass(frozen=True)
class PointSources:
    """Point sources of a sky model (ICRS positions, 1.4 GHz fluxes, spectral indices)."""

    name: list[str]
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    flux_jy: np.ndarray
    spectral_index: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.name)
        for attr in ("ra_deg", "dec_deg", "flux_jy", "spectral_index"):
            if np.shape(getattr(self, attr)) != (n,):
                raise ValueError(f"PointSources.{attr} must have shape ({n},)")
        if np.any(~np.isfinite(self.flux_jy)):
            raise ValueError("PointSources: every source needs a finite flux")

    @property
    def Nsrc(self) -> int:  # noqa: N802
        return len(self.name)

    def select(self, keep: np.ndarray) -> "PointSources":
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return PointSources([self.name[k] for k in idx], self.ra_deg[idx], self.dec_deg[idx],
                            self.flux_jy[idx], self.spectral_index[idx])

    @classmethod
    def empty(cls) -> "PointSources":
        z = np.zeros(0)
        return cls([], z, z, z, z)


@dataclass
class ModelReport:
    """What :func:`write_model_data` did."""

    ms_path: str
    n_sources: int
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0
    total_apparent_flux_jy: float = 0.0
    """Sum over sources of their largest apparent (beam-attenuated) flux over times and channels."""


def _unit_vectors(app_ra: np.ndarray, app_dec: np.ndarray, lst: np.ndarray, lon: float) -> np.ndarray:
    """Earth-fixed unit vectors toward apparent positions, shape ``app_ra.shape + (3,)``.

    In ITRF axes (polar motion neglected, as pyuvdata does) a direction of
    apparent RA ``a`` and Dec ``d`` at local sidereal time LST is
    ``(cos d cos(lon - H), cos d sin(lon - H), sin d)`` with hour angle ``H = LST - a``.
    """
    h = lst - app_ra
    cd = np.cos(app_dec)
    return np.stack([cd * np.cos(lon - h), cd * np.sin(lon - h), np.sin(app_dec)], axis=-1)


def antenna_delay_m(sources: PointSources, ms: MsModel) -> np.ndarray:
    """Geometric delay (m) of each antenna with data toward each source relative to the phase center.

    Returns ``x_a . (s_src(t) - s_0(t))``, shape (Nsrc, Ntimes, Nants_data), antennas in ``ms.ant_array`` order.
    """
    loc = ms.location
    lon = float(loc.lon.rad)
    t = ms.time_array[None, :]
    app_ra, app_dec = icrs_to_apparent(np.radians(sources.ra_deg)[:, None], np.radians(sources.dec_deg)[:, None],
                                       t, loc)
    ra0, dec0 = icrs_to_apparent(np.array([[ms.phase_center_ra]]), np.array([[ms.phase_center_dec]]), t, loc)
    lst = ms.lst_array[None, :]
    ds = _unit_vectors(app_ra, app_dec, lst, lon) - _unit_vectors(ra0, dec0, lst, lon)  # (Nsrc, Nt, 3)
    return np.einsum("stk,ak->sta", ds, ms.data_antenna_positions)


def apparent_flux(sources: PointSources, ms: MsModel, *, freq_hz: np.ndarray | None = None,
                  diameter_m: float | None | Literal["ms"] = "ms") -> np.ndarray:
    """Beam-attenuated flux ``S(nu) A(theta(t), nu)`` (Jy), shape (Nsrc, Ntimes, Nfreqs).

    The beam is the Airy pattern of the MS's own dishes (``ms.dish_diameter``, from its ANTENNA
    table) unless ``diameter_m`` gives another diameter; ``diameter_m=None`` switches the beam off.

    Parameters
    ----------
    sources
        The point sources (ICRS positions, 1.4 GHz fluxes, spectral indices).
    ms
        The MS's model: integration times, location and pointing (the beam centre).
    freq_hz
        Frequencies (Hz) to evaluate, shape (Nfreqs,); None: the MS's channels (``ms.freq_array``).
    diameter_m
        Dish diameter (m) of the Airy beam; ``"ms"`` (default) uses ``ms.dish_diameter``, None no beam.

    Returns
    -------
    numpy.ndarray
        Apparent flux (Jy), shape (Nsrc, Ntimes, Nfreqs), times those of ``ms.time_array``.
    """
    if diameter_m == "ms":
        diameter_m = ms.dish_diameter
    freq = ms.freq_array if freq_hz is None else np.atleast_1d(np.asarray(freq_hz, float))
    spec = sources.flux_jy[:, None] * (freq[None, :] / REFERENCE_FREQ_HZ) ** sources.spectral_index[:, None]
    if diameter_m is None:
        return np.broadcast_to(spec[:, None, :], (sources.Nsrc, ms.Ntimes, freq.size)).copy()
    app_ra, app_dec = icrs_to_apparent(np.radians(sources.ra_deg)[:, None], np.radians(sources.dec_deg)[:, None],
                                       ms.time_array[None, :], ms.location)
    p_ra, p_dec = ms.pointing.apparent(ms.time_array)
    sep = angular_separation(p_ra[None, :], p_dec[None, :], app_ra, app_dec)
    return spec[:, None, :] * airy_power(sep[:, :, None], freq[None, None, :], diameter_m)


def brighter_than(sources: PointSources, ms: MsModel, min_flux_jy: float, *,
                  keep: tuple[str, ...] = ()) -> PointSources:
    """The sources whose apparent flux reaches ``min_flux_jy`` at some time and band edge, plus ``keep``.

    Faint sources cost as much to predict as bright ones; one of 5 mJy beside a
    10 Jy calibrator changes the gains by less than 0.05%.

    Parameters
    ----------
    sources
        Candidate point sources (e.g. the catalogue near the track).
    ms
        The MS's model (times, band edges, pointing, dish diameter for the beam).
    min_flux_jy
        Apparent (beam-attenuated) flux threshold (Jy), at the lowest or highest channel, at any integration;
        0 or less keeps all sources.
    keep
        Names of sources kept whatever their flux (the calibrator).

    Returns
    -------
    PointSources
        The selected subset, in the original order (``sources`` itself if empty or ``min_flux_jy <= 0``).
    """
    if sources.Nsrc == 0 or min_flux_jy <= 0:
        return sources
    edges = np.array([ms.freq_min, ms.freq_max])
    peak = apparent_flux(sources, ms, freq_hz=edges).max(axis=(1, 2))
    mask = (peak >= min_flux_jy) | np.isin(np.asarray(sources.name, dtype=object), list(keep))
    if not mask.all():
        log.info("%s: %d of %d catalogue sources near the track are below %.3g Jy apparent (%.3f Jy in total) "
                 "and left out of the model", ms.label, int((~mask).sum()), sources.Nsrc, min_flux_jy,
                 float(peak[~mask].sum()))
    return sources.select(mask)


def predict_matrices(delay_m: np.ndarray, flux: np.ndarray, freq_hz: np.ndarray,
                     dtype: type = np.complex64) -> np.ndarray:
    """Model visibilities of all antenna pairs at one integration, shape (Nfreqs, Nants, Nants).

    Parameters
    ----------
    delay_m
        ``x_a . (s - s0)`` of each source and antenna at this time, shape (Nsrc, Nants).
    flux
        Apparent flux of each source per channel, shape (Nsrc, Nfreqs).
    freq_hz
        Channel frequencies, shape (Nfreqs,).

    Returns
    -------
    numpy.ndarray
        Element ``[f, i, j]`` is baseline (ANTENNA1 = i, ANTENNA2 = j) in the MS convention.
    """
    nsrc, na = delay_m.shape
    freq = np.asarray(freq_hz, float)
    if nsrc == 0:
        return np.zeros((freq.size, na, na), dtype)
    turns = (freq[:, None, None] / SPEED_OF_LIGHT) * delay_m[None, :, :]  # (Nf, Nsrc, Na), float64
    turns -= np.round(turns)  # the fraction of a turn is exact in float64; float32 keeps 1e-7 turn after this
    angle = turns.astype(np.float32 if dtype == np.complex64 else np.float64)
    angle *= -2.0 * np.pi
    q = np.empty(angle.shape, dtype)
    np.cos(angle, out=q.real)
    np.sin(angle, out=q.imag)
    left = np.conj(q)
    left *= flux.T[:, :, None]  # (Nf, Nsrc, Na)
    # (Na x Nsrc) @ (Nsrc x Na) per channel; a transposed first operand keeps BLAS on its fast path
    return np.matmul(left.transpose(0, 2, 1), q)


def model_chunks(ms: MsModel, sources: PointSources, flux: np.ndarray, *,
                 rows_per_chunk: int = ROWS_PER_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """The model visibilities of ``sources`` for the MS's rows, in chunks of whole rows: ``(first row, model)``.

    ``model`` has shape (rows, Nfreqs, Npols), complex64; unpolarised (the parallel hands and Stokes I get the
    model, the cross hands and Stokes Q, U, V zero). Call inside ``threadpool_limits(1, "blas")``: the matrices are
    small (Nants x Nsrc), and BLAS threads only spin on them (5-10x the CPU time, measured).

    Parameters
    ----------
    ms
        The MS's model with its rows (antennas, integration index).
    sources
        The point sources.
    flux
        Their apparent flux (:func:`apparent_flux`), shape (Nsrc, Ntimes, Nfreqs).
    rows_per_chunk
        Rows per chunk.

    Returns
    -------
    Iterator of (int, numpy.ndarray)
        The first row of each chunk and the chunk's model visibilities, in row order, covering every row.
    """
    assert ms.ant_1_array is not None and ms.ant_2_array is not None and ms.time_index is not None
    delay = antenna_delay_m(sources, ms)  # (Nsrc, Nt, Na)
    ant_index = np.full(int(ms.ant_array.max()) + 1, -1, dtype=int)
    ant_index[ms.ant_array] = np.arange(ms.Nants_data)
    a1, a2, tidx = ant_index[ms.ant_1_array], ant_index[ms.ant_2_array], ms.time_index
    pol = ms.unpolarized_response.astype(np.float32)  # (Npols,): 1 in the parallel hands, 0 in the cross hands
    cache: dict[int, np.ndarray] = {}
    for r0 in range(0, ms.Nblts, rows_per_chunk):
        n = min(rows_per_chunk, ms.Nblts - r0)
        ti = tidx[r0:r0 + n]
        out = np.empty((n, ms.Nfreqs, ms.Npols), np.complex64)
        for t in np.unique(ti):
            if t not in cache:
                cache = {k: v for k, v in cache.items() if k > t - 2}
                cache[t] = predict_matrices(delay[:, t, :], flux[:, t, :], ms.freq_array)
            sel = np.flatnonzero(ti == t)
            out[sel] = cache[t][:, a1[r0 + sel], a2[r0 + sel]].T[:, :, None] * pol
        yield r0, out


def write_model_data(
    ms: MsModel | str | os.PathLike,
    sources: PointSources,
    *,
    diameter_m: float | None | Literal["ms"] = "ms",
    column: str = "MODEL_DATA",
) -> ModelReport:
    """Compute the model of ``sources`` for every row of the MS and write it to ``column``.

    Unpolarised: the parallel hands (XX, YY or RR, LL) and Stokes I get the model, the cross hands
    (XY, YX or RL, LR) and Stokes Q, U, V zero.

    Parameters
    ----------
    ms
        A one-field, one-window MS (as the conversion writes): its model
        (:func:`contimg.msmodel.read_ms`, read once by the caller) or its path (read here).
    sources
        Catalogue point sources (an empty model writes zeros).
    diameter_m
        Dish diameter of the Airy beam: ``"ms"`` (default) the MS's own (its ANTENNA table); None
        switches the beam off (for tests).
    column
        The column to write; MODEL_DATA is added (shaped like DATA) if the MS has none, any other
        column must exist.

    Returns
    -------
    ModelReport
        The MS, number and names of the sources, wall time (s) and the sum of the sources' peak apparent
        flux (Jy) over times and channels.

    Raises
    ------
    InputFileError
        If the MS cannot be read, lacks ``column``, or no longer has the rows of its model.
    """
    t0 = time.perf_counter()
    ms = as_model(ms)
    ms_path = ms.path
    flux = apparent_flux(sources, ms, diameter_m=diameter_m)  # (Nsrc, Nt, Nf)
    with open_rows(ms, "writing the model", readonly=False) as tb:
        if column not in tb.colnames():
            if column != "MODEL_DATA" or "DATA" not in tb.colnames():
                raise InputFileError(f"{ms_path}: no {column} column to write the model into")
            from contimg.conversion.msio import add_data_column

            log.info("%s: has no MODEL_DATA column; adding one", ms_path)
            add_data_column(tb, "MODEL_DATA", "model visibilities (Jy), added by contimg")
        # the matrices are small (Nants x Nsrc): BLAS threads only spin (5-10x the CPU time, measured)
        with threadpool_limits(limits=1, user_api="blas"):  # restored however the loop ends
            for r0, out in model_chunks(ms, sources, flux):
                tb.putcol(column, out, r0, out.shape[0])
    peak = flux.max(axis=(1, 2)) if sources.Nsrc else np.zeros(0)
    report = ModelReport(ms_path=str(ms_path), n_sources=sources.Nsrc, sources=list(sources.name),
                         seconds=round(time.perf_counter() - t0, 3), total_apparent_flux_jy=float(peak.sum()))
    log.info("%s: %s from %d sources (%.2f Jy apparent) in %.1f s", ms_path, column, sources.Nsrc,
             report.total_apparent_flux_jy, report.seconds)
    return report
