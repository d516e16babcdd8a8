"""The simulator's driver: groups of 16 DSA-110 subband files plus their truth.

Every random choice comes from one seed through independent streams
(:class:`numpy.random.SeedSequence`): the sky, the gains, the light curves, the
flux-scale errors, the file-name jitter, and the noise of each (group,
subband), so the same options always give the same files, serially or in
parallel.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy.time import Time

from contimg.errors import ConfigError
from contimg.naming import format_subband_filename
from contimg.simulation.config import EseInjection, SimulationConfig, subband_frequencies
from contimg.simulation.gains import GainModel
from contimg.simulation.lightcurves import EseSpec, LightCurveSpec, make_lightcurve
from contimg.simulation.sky import SkyCatalog, random_field
from contimg.simulation.truth import GroupTruth, Truth, write_truth
from contimg.simulation.uvh5 import make_group_template, write_subband
from contimg.simulation.visibilities import SkyGeometry, baseline_pairs, model_visibilities, sky_geometry
from contimg.stations import DSA110_LOCATION, apparent_to_icrs, load_stations, lst_rad, offline_iers

log = logging.getLogger(__name__)

__all__ = ["SimulatedGroup", "SimulationResult", "simulate"]

_STREAMS = ("sky", "gains", "lightcurves", "ese", "flux_scale", "jitter")


@dataclass(frozen=True)
class SimulatedGroup:
    """One written group."""

    index: int
    epoch: int
    start: datetime
    """Nominal start (UTC)."""
    paths: list[Path]
    """The 16 (or fewer) subband files, in subband order."""


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` wrote."""

    outdir: Path
    truth_path: Path
    groups: list[SimulatedGroup] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [p for g in self.groups for p in g.paths]


@dataclass
class _GroupJob:
    """State shared (by fork) with the subband workers of one group."""

    config: SimulationConfig
    template: Any
    geometry: SkyGeometry
    flux: np.ndarray
    spectral_index: np.ndarray
    gain_model: GainModel
    noise_sigma: float
    auto_noise_sigma: float
    group_index: int
    paths: dict[int, Path]


_JOB: _GroupJob | None = None


def _group_times(config: SimulationConfig) -> list[tuple[int, int, datetime]]:
    """(group index, epoch, nominal start) of every group."""
    from contimg.simulation.config import SIDEREAL_DAY_S

    out = []
    k = 0
    for day in range(config.n_days):
        for g in range(config.n_groups):
            start = config.start + timedelta(seconds=day * SIDEREAL_DAY_S + g * config.group_duration_s)
            out.append((k, day, start))
            k += 1
    return out


def _integration_centres(config: SimulationConfig, start: datetime) -> np.ndarray:
    t0 = Time(start.astimezone(timezone.utc).replace(tzinfo=None), scale="utc").jd
    offsets = (np.arange(config.n_integrations) + 0.5) * config.integration_time_s / 86400.0
    return t0 + offsets


def _make_catalog(config: SimulationConfig, rng: np.random.Generator, first_times: np.ndarray,
                  day0_times: np.ndarray, dec_app: float) -> tuple[SkyCatalog, int | None]:
    """Random field along the day-0 meridian track, plus the calibrator (if asked)."""
    t_edges = np.array([day0_times[0], day0_times[-1]])
    lst_edges = lst_rad(t_edges)
    ra_icrs, dec_icrs = apparent_to_icrs(lst_edges, np.full(2, dec_app), t_edges)
    catalog = random_field(
        config.n_sources,
        rng=rng,
        ra_range_deg=(float(np.degrees(ra_icrs[0])), float(np.degrees(ra_icrs[1]))),
        dec_deg=float(np.degrees(np.mean(dec_icrs))),
        radius_deg=config.field_radius_deg,
        s_min=config.flux_min_jy,
        s_max=config.flux_max_jy,
        slope=config.count_slope,
        alpha_mean=config.spectral_index_mean,
        alpha_rms=config.spectral_index_rms,
    )
    cal_id = None
    if config.calibrator_flux_jy is not None:
        t_mid = np.array([np.mean(first_times)])
        cra, cdec = apparent_to_icrs(lst_rad(t_mid), np.array([dec_app]), t_mid)
        cal_id = config.n_sources
        cal = SkyCatalog.from_sources(
            np.degrees(cra), np.degrees(cdec), config.calibrator_flux_jy,
            spectral_index=config.calibrator_spectral_index, calibrator=True, source_id=[cal_id],
        )
        catalog = catalog.concat(cal)
    return catalog, cal_id


def _lightcurves(
    config: SimulationConfig, catalog: SkyCatalog, epoch_days: np.ndarray,
    rng_lc: np.random.Generator, rng_ese: np.random.Generator,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Flux per source and epoch, and the ESEs injected."""
    span = float(max(epoch_days[-1] - epoch_days[0], 1.0))
    events: dict[int, EseInjection] = {}
    candidates = catalog.source_id[~catalog.calibrator]
    n_random = int(round(config.ese_fraction * candidates.size))
    if n_random:
        chosen = rng_ese.choice(candidates, size=n_random, replace=False)
        dlo, dhi = config.ese_duration_range_days or (0.15 * span, 0.4 * span)
        for sid in sorted(int(s) for s in chosen):
            events[sid] = EseInjection(
                source_id=sid,
                t_center_days=float(epoch_days[0] + rng_ese.uniform(0.25, 0.75) * span),
                duration_days=float(rng_ese.uniform(dlo, dhi)),
                depth=float(rng_ese.uniform(*config.ese_depth_range)),
            )
    for given in config.events:
        if given.source_id not in set(catalog.source_id.tolist()):
            raise ConfigError(f"ESE injection for source {given.source_id}, which is not in the catalogue")
        events[given.source_id] = given
    flux = np.empty((catalog.Nsrc, epoch_days.size))
    for k in range(catalog.Nsrc):
        sid = int(catalog.source_id[k])
        if catalog.calibrator[k]:
            flux[k] = catalog.flux_jy[k]
            continue
        ev = events.get(sid)
        spec = LightCurveSpec(
            flux_jy=float(catalog.flux_jy[k]),
            red_noise_amplitude=config.red_noise_amplitude,
            red_noise_timescale_days=config.red_noise_timescale_days,
            ese=None if ev is None else EseSpec(
                t_center=ev.t_center_days, duration_days=ev.duration_days, depth=ev.depth,
                caustic_amplitude=ev.caustic_amplitude,
            ),
        )
        flux[k] = make_lightcurve(epoch_days, spec, rng=rng_lc)
    return flux, [asdict(ev) for ev in events.values()]


def _subband_data(job: _GroupJob, subband: int) -> np.ndarray:
    """Visibilities of one subband, shape (Nblts, Nfreqs, 2), complex64."""
    cfg = job.config
    freq = subband_frequencies(subband, cfg.channels_per_subband)
    vis = model_visibilities(job.geometry, job.flux, job.spectral_index, freq,
                             diameter_m=cfg.dish_diameter_m)  # (Nt, Nbls, Nf)
    ant = job.geometry.antenna_numbers
    i, j = baseline_pairs(ant)
    autos = np.flatnonzero(i == j)
    nt, nbl, nf = vis.shape
    data = np.repeat(vis[..., None], 2, axis=3)  # (Nt, Nbls, Nf, 2)
    data[:, autos] += cfg.sefd_jy  # system power in the autocorrelations
    if cfg.noise:
        ss = np.random.SeedSequence([cfg.seed, 1729, job.group_index, subband])
        rng = np.random.default_rng(ss)
        # (re, im) pairs of float32 viewed as complex64: no complex temporaries
        noise = rng.standard_normal((nt, nbl, nf, 2, 2), dtype=np.float32).view(np.complex64)[..., 0]
        noise *= np.float32(job.noise_sigma)
        # autocorrelations: real, rms SEFD / sqrt(dnu tau) (= sqrt(2) x the cross-correlation's per part)
        noise[:, autos] = noise[:, autos].real * np.float32(job.auto_noise_sigma / job.noise_sigma)
        data += noise
        del noise
    if cfg.gains:
        g = job.gain_model.evaluate(freq, job.geometry.time_jd, antenna_numbers=ant)  # (Na, 2, Nt, Nf)
        g = np.transpose(g, (2, 0, 3, 1)).astype(np.complex64)  # (Nt, Na, Nf, 2)
        data *= g[:, i] * np.conj(g[:, j])
    data[:, autos] = data[:, autos].real  # exactly real, as pyuvdata's check demands
    return data.reshape(nt * nbl, nf, 2)


def _write_one(subband: int) -> Path:
    from threadpoolctl import threadpool_limits

    job = _JOB
    assert job is not None  # noqa: S101 - set before the pool forks
    cfg = job.config
    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"):
        data = _subband_data(job, subband)
    return write_subband(
        job.template, job.paths[subband],
        freq_hz=subband_frequencies(subband, cfg.channels_per_subband),
        channel_width_hz=cfg.channel_width_hz, data=data,
        run_check=True,
    )


def simulate(
    outdir: str | Path,
    config: SimulationConfig | None = None,
    *,
    catalog: SkyCatalog | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Write simulated DSA-110 groups and their truth into ``outdir``.

    Parameters
    ----------
    outdir
        Output directory (created). Files: ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``,
        ``truth.json``, ``truth.npz``, ``sources.csv``.
    config
        All options (defaults: one full-scale group with noise and gains).
    catalog
        Use this sky instead of a random one (``n_sources`` and
        ``calibrator_flux_jy`` are then ignored; a source flagged calibrator
        keeps a constant flux).
    progress
        Called with a short message after each file.

    Returns
    -------
    SimulationResult
        The groups with their paths, and the truth path.

    Notes
    -----
    With ``processes > 1`` the subband workers are forked from this process
    (serially instead if this process has imported casatools, which is not
    fork-safe) and share a
    module-level job, so one process runs one :func:`simulate` at a time
    (not thread-safe). Peak memory at full scale: ~0.7 GB serial, ~0.6 GB a
    worker.
    """
    from threadpoolctl import threadpool_limits

    config = config or SimulationConfig()
    with offline_iers(), threadpool_limits(limits=config.blas_threads, user_api="blas"):
        return _simulate(Path(outdir), config, catalog=catalog, progress=progress)


def _simulate(
    outdir: Path,
    config: SimulationConfig,
    *,
    catalog: SkyCatalog | None,
    progress: Callable[[str], None] | None,
) -> SimulationResult:
    global _JOB
    outdir.mkdir(parents=True, exist_ok=True)
    stale = sorted(outdir.glob("*_sb[0-9][0-9].hdf5"))
    if stale:
        log.warning("%s already holds %d subband file(s) (e.g. %s); they are kept, and files of the same "
                    "name are overwritten", outdir, len(stale), stale[0].name)
    seeds = dict(zip(_STREAMS, np.random.SeedSequence(config.seed).spawn(len(_STREAMS))))
    rngs = {k: np.random.default_rng(v) for k, v in seeds.items()}

    stations = load_stations()
    ant = config.selected_antennas()
    positions = stations.relative_ecef(DSA110_LOCATION)[stations.index(ant)]
    dec_app = float(np.radians(config.dec_deg))

    plan = _group_times(config)
    times = {k: _integration_centres(config, start) for k, _, start in plan}
    lsts = {k: lst_rad(t) for k, t in times.items()}
    day0 = np.concatenate([times[k] for k, day, _ in plan if day == 0])

    if catalog is None:
        catalog, cal_id = _make_catalog(config, rngs["sky"], times[0], day0, dec_app)
    else:
        cal = np.flatnonzero(catalog.calibrator)
        cal_id = int(catalog.source_id[cal[0]]) if cal.size else None

    epoch_days = np.array([day * 86164.0905 / 86400.0 for day in range(config.n_days)])
    flux_per_epoch, events = _lightcurves(config, catalog, epoch_days, rngs["lightcurves"], rngs["ese"])
    if config.flux_scale_error > 0:
        flux_scale = np.clip(1.0 + config.flux_scale_error * rngs["flux_scale"].standard_normal(config.n_days), 0.5, 1.5)
    else:
        flux_scale = np.ones(config.n_days)

    # the sky in the visibilities: the catalogue, then the transients (never in the catalogue), zero off their days
    sky, sky_flux = catalog, flux_per_epoch
    if config.transients:
        first_id = int(catalog.source_id.max()) + 1 if catalog.Nsrc else 0
        trs = config.transients
        sky = catalog.concat(SkyCatalog.from_sources(
            [t.ra_deg for t in trs], [t.dec_deg for t in trs], [t.flux_jy for t in trs],
            spectral_index=[t.spectral_index for t in trs], source_id=first_id + np.arange(len(trs))))
        sky_flux = np.vstack([flux_per_epoch, [[t.flux_jy if t.active(d) else 0.0 for d in range(config.n_days)]
                                               for t in trs]])

    t_ref = float(times[0][0] - 0.5 * config.integration_time_s / 86400.0)
    if config.gains:
        gain_model = GainModel.random(
            ant, rng=rngs["gains"], amplitude_rms=config.gain_amplitude_rms, delay_rms_ns=config.gain_delay_rms_ns,
            ripple_amplitude=config.gain_ripple_amplitude, drift_amplitude_deg=config.gain_phase_drift_deg,
            reference_time_jd=t_ref,
        )
    else:
        gain_model = GainModel.unity(ant, reference_time_jd=t_ref)

    dnu_tau = config.channel_width_hz * config.integration_time_s
    noise_sigma = config.sefd_jy / np.sqrt(2.0 * dnu_tau)
    auto_noise_sigma = config.sefd_jy / np.sqrt(dnu_tau)

    groups: list[SimulatedGroup] = []
    group_truths: list[GroupTruth] = []
    dec_icrs: list[float] = []
    history = f"Simulated DSA-110 drift scan by contimg.simulation (seed {config.seed})."
    for k, day, start in plan:
        t = times[k]
        jitter = rngs["jitter"].uniform(0.0, config.jitter_s, len(config.subbands))
        paths = {
            sb: outdir / format_subband_filename(
                (start + timedelta(seconds=float(jit))).replace(microsecond=0), sb)
            for sb, jit in zip(config.subbands, jitter)
        }
        geometry = sky_geometry(
            sky, t, lst_rad=lsts[k], antenna_numbers=ant, antenna_positions=positions,
            pointing_dec_rad=dec_app, location=DSA110_LOCATION,
        )
        scale = np.where(sky.calibrator, 1.0, flux_scale[day])
        template = make_group_template(
            time_jd=t, antenna_numbers=ant, stations=stations, pointing_dec_rad=dec_app,
            freq_hz=subband_frequencies(config.subbands[0], config.channels_per_subband),
            integration_time_s=config.integration_time_s,
            vis_units="uncalib" if config.gains else "Jy", history=history,
            dish_diameter_m=config.dish_diameter_m,
        )
        _JOB = _GroupJob(
            config=config, template=template, geometry=geometry, flux=sky_flux[:, day] * scale,
            spectral_index=sky.spectral_index, gain_model=gain_model, noise_sigma=noise_sigma,
            auto_noise_sigma=auto_noise_sigma, group_index=k, paths=paths,
        )
        try:
            written = _run_subbands(config, progress)
        finally:
            _JOB = None
        mid = np.array([np.mean(t)])
        dec_icrs.append(float(apparent_to_icrs(lst_rad(mid), np.array([dec_app]), mid)[1][0]))
        groups.append(SimulatedGroup(index=k, epoch=day, start=start, paths=[written[sb] for sb in sorted(written)]))
        group_truths.append(GroupTruth(
            index=k, epoch=day, start_utc=start.isoformat(), time_jd=[float(x) for x in t],
            lst_rad=[float(x) for x in lsts[k]], files={sb: p.name for sb, p in paths.items()},
        ))
        log.info("group %d (epoch %d) at %s: %d files", k, day, start.isoformat(), len(written))

    loc = DSA110_LOCATION
    truth = Truth(
        path=outdir, config=config, catalog=catalog, flux_per_epoch=flux_per_epoch, epoch_days=epoch_days,
        flux_scale=flux_scale, gain_model=gain_model, groups=group_truths, pointing_dec_rad=dec_app,
        pointing_dec_icrs_rad=dec_icrs, antenna_numbers=ant, noise_sigma_jy=float(noise_sigma) if config.noise else 0.0,
        auto_noise_sigma_jy=float(auto_noise_sigma) if config.noise else 0.0, events=events, calibrator_id=cal_id,
        location={"lat_deg": float(loc.lat.deg), "lon_deg": float(loc.lon.deg), "height_m": float(loc.height.value)},
    )
    truth_path = write_truth(truth)
    return SimulationResult(outdir=outdir, truth_path=truth_path, groups=groups)


def _run_subbands(config: SimulationConfig, progress: Callable[[str], None] | None) -> dict[int, Path]:
    written: dict[int, Path] = {}
    parallel = config.processes > 1 and len(config.subbands) > 1
    if parallel and "casatools" in sys.modules:
        log.warning("casatools is imported in this process and forking it is unsafe; writing subbands serially")
        parallel = False
    if parallel:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(config.processes, len(config.subbands)), mp_context=ctx) as pool:
            for sb, path in zip(config.subbands, pool.map(_write_one, config.subbands)):
                written[sb] = path
                if progress:
                    progress(f"wrote {path.name}")
    else:
        for sb in config.subbands:
            written[sb] = _write_one(sb)
            if progress:
                progress(f"wrote {written[sb].name}")
    return written
