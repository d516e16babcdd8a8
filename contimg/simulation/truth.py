"""The truth written beside simulated data: ``truth.json`` + ``truth.npz`` + ``sources.csv``.

``truth.json`` (human-readable metadata)
    format version, every option (``config``), pointing (apparent and ICRS
    declination), array location, antennas with data, the groups (start,
    nominal time, integration centres, LST, file names per subband),
    per-epoch flux-scale factors, the injected ESEs, the noise level per
    visibility, the calibrator id.
``truth.npz`` (arrays)
    catalogue columns, ``flux_per_epoch`` (Nsrc, Nepochs) intrinsic 1.4 GHz
    fluxes, ``epoch_days``, and the gain model parameters (``gain_*``).
``sources.csv``
    the catalogue in the calibration stage's import format (see
    :mod:`contimg.simulation.sky`).

Read it back with :func:`load_truth`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contimg.errors import InputFileError
from contimg.simulation.config import SimulationConfig
from contimg.simulation.gains import GainModel
from contimg.simulation.sky import SkyCatalog

__all__ = ["GroupTruth", "TRUTH_JSON", "TRUTH_NPZ", "Truth", "load_truth", "write_truth"]

TRUTH_JSON = "truth.json"
TRUTH_NPZ = "truth.npz"
SOURCES_CSV = "sources.csv"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GroupTruth:
    """One simulated group."""

    index: int
    epoch: int
    """Day (epoch) index, 0 ... n_days-1."""
    start_utc: str
    """Nominal start (ISO, UTC, sub-second)."""
    time_jd: list[float]
    """Integration centres (JD UTC)."""
    lst_rad: list[float]
    files: dict[int, str]
    """Subband index -> file name (relative to the output directory)."""

    @property
    def mid_time_jd(self) -> float:
        return float(np.mean(self.time_jd))


@dataclass
class Truth:
    """Everything the simulator put into a data set (see :func:`load_truth`)."""

    path: Path
    """The directory holding the truth files and the data."""
    config: SimulationConfig
    catalog: SkyCatalog
    flux_per_epoch: np.ndarray
    """Intrinsic 1.4 GHz flux per source and epoch, shape (Nsrc, Nepochs)."""
    epoch_days: np.ndarray
    """Days since the first epoch's start, per epoch."""
    flux_scale: np.ndarray
    """Per-epoch factor applied to non-calibrator fluxes in the visibilities."""
    gain_model: GainModel
    groups: list[GroupTruth]
    pointing_dec_rad: float
    """Apparent declination (``phase_center_dec``)."""
    pointing_dec_icrs_rad: list[float]
    """ICRS declination of the meridian at each group's mid time."""
    antenna_numbers: np.ndarray
    """Antennas carrying data."""
    noise_sigma_jy: float
    """Noise rms per real/imaginary part of a cross-correlation (Jy, before gains)."""
    auto_noise_sigma_jy: float
    """Noise rms of the real part of an autocorrelation (Jy, before gains)."""
    events: list[dict[str, Any]]
    """Injected ESEs (source_id, t_center_days, duration_days, depth, caustic_amplitude)."""
    calibrator_id: int | None
    location: dict[str, float] = field(default_factory=dict)
    """Array reference: lat_deg, lon_deg, height_m."""

    # ------------------------------------------------------------ helpers
    def gains(self, antenna_numbers: np.ndarray | list[int] | int, freq_hz: np.ndarray | float, time_jd: np.ndarray | float) -> np.ndarray:
        """Exact complex gains, shape (Nants, 2 feeds (X, Y), Ntimes, Nfreqs).

        Visibility (ant1=i, ant2=j, pol pp) = ``g[i, p] * conj(g[j, p]) * V_true``.
        All ones if the data were simulated with ``gains=False``.

        Parameters
        ----------
        antenna_numbers
            Antenna numbers (one or several); each must be in :attr:`antenna_numbers`.
        freq_hz
            Frequencies (Hz).
        time_jd
            Times (JD, UTC), e.g. a group's ``time_jd``.

        Returns
        -------
        numpy.ndarray
            Complex, shape (Nants, 2, Ntimes, Nfreqs) in the order given.

        Raises
        ------
        KeyError
            An antenna without gains in the model.
        """
        return self.gain_model.evaluate(np.atleast_1d(freq_hz), np.atleast_1d(time_jd),
                                        antenna_numbers=np.atleast_1d(antenna_numbers))

    def flux(self, source_id: int, day: int) -> float:
        """Intrinsic 1.4 GHz flux (Jy) of ``source_id`` on epoch ``day`` (0-based)."""
        return float(self.flux_per_epoch[self.catalog.index_of(source_id), day])

    def observed_flux(self, source_id: int, day: int) -> float:
        """The 1.4 GHz flux put into the visibilities: intrinsic x that epoch's flux-scale error."""
        k = self.catalog.index_of(source_id)
        scale = 1.0 if self.catalog.calibrator[k] else self.flux_scale[day]
        return float(self.flux_per_epoch[k, day] * scale)

    def lightcurve(self, source_id: int) -> np.ndarray:
        """Intrinsic 1.4 GHz flux of ``source_id`` at every epoch."""
        return self.flux_per_epoch[self.catalog.index_of(source_id)].copy()

    def files(self, group: int = 0) -> list[Path]:
        """Absolute paths of a group's files, in subband order."""
        g = self.groups[group]
        return [self.path / g.files[sb] for sb in sorted(g.files)]

    def catalog_for_epoch(self, day: int, *, observed: bool = True) -> SkyCatalog:
        """The catalogue with that epoch's fluxes (observed: including the flux-scale error)."""
        flux = self.flux_per_epoch[:, day].copy()
        if observed:
            flux = np.where(self.catalog.calibrator, flux, flux * self.flux_scale[day])
        return SkyCatalog(self.catalog.source_id, self.catalog.ra_deg, self.catalog.dec_deg, flux,
                          self.catalog.spectral_index, self.catalog.calibrator)

    def apparent_flux(self, source_id: int, freq_hz: np.ndarray, *, group: int = 0, observed: bool = True) -> np.ndarray:
        """What the data hold for one source: ``S(nu) A(nu, t)`` (Jy), shape (Ntimes, Nfreqs).

        The source's flux of the group's epoch (``observed``: including the
        flux-scale error), its spectrum and the Airy beam at its separation
        from the pointing at every integration of ``group``, exactly as the
        simulator computed them (before gains and noise).

        Parameters
        ----------
        source_id
            The source's catalogue id.
        freq_hz
            Frequencies (Hz).
        group
            Index of the simulated group (its epoch gives the flux, its integrations the times).
        observed
            Include the epoch's flux-scale error (calibrators have none); False gives the intrinsic flux.

        Returns
        -------
        numpy.ndarray
            Apparent flux density (Jy), shape (Ntimes, Nfreqs), Ntimes the group's integrations.

        Raises
        ------
        KeyError
            ``source_id`` is not in the catalogue.
        """
        from contimg.simulation.visibilities import apparent_flux
        from contimg.beam import angular_separation
        from contimg.stations import icrs_to_apparent, offline_iers

        g = self.groups[group]
        k = self.catalog.index_of(source_id)
        cat = self.catalog_for_epoch(g.epoch, observed=observed)
        t = np.asarray(g.time_jd)
        with offline_iers():
            app_ra, app_dec = icrs_to_apparent(np.radians(cat.ra_deg[k]), np.radians(cat.dec_deg[k]), t)
        sep = angular_separation(np.asarray(g.lst_rad), self.pointing_dec_rad, app_ra, app_dec)
        return apparent_flux(sep[None, :], cat.flux_jy[k:k + 1], cat.spectral_index[k:k + 1],
                             np.atleast_1d(np.asarray(freq_hz, float)))[0]

    @property
    def transients(self) -> tuple[Any, ...]:
        """The injected transients (:class:`contimg.simulation.config.TransientInjection`; not in :attr:`catalog`)."""
        return self.config.transients

    @property
    def ese_source_ids(self) -> list[int]:
        return sorted({int(ev["source_id"]) for ev in self.events})


def write_truth(truth: Truth) -> Path:
    """Write ``truth.json``, ``truth.npz`` and ``sources.csv`` into ``truth.path``; returns the JSON path."""
    out = truth.path
    cat = truth.catalog
    arrays = {
        "source_id": cat.source_id, "ra_deg": cat.ra_deg, "dec_deg": cat.dec_deg, "flux_jy": cat.flux_jy,
        "spectral_index": cat.spectral_index, "calibrator": cat.calibrator,
        "flux_per_epoch": truth.flux_per_epoch, "epoch_days": truth.epoch_days, "flux_scale": truth.flux_scale,
        "antenna_numbers": truth.antenna_numbers,
    }
    arrays.update(truth.gain_model.to_arrays())
    np.savez(out / TRUTH_NPZ, **arrays)  # type: ignore[arg-type]  # stubs: a key might be allow_pickle
    cat.write_csv(out / SOURCES_CSV)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": truth.config.to_dict(),
        "pointing_dec_rad": truth.pointing_dec_rad,
        "pointing_dec_frame": "apparent (topocentric, true equator and equinox of date)",
        "pointing_dec_icrs_rad": truth.pointing_dec_icrs_rad,
        "location": truth.location,
        "antenna_numbers": [int(a) for a in truth.antenna_numbers],
        "noise_sigma_jy": truth.noise_sigma_jy,
        "auto_noise_sigma_jy": truth.auto_noise_sigma_jy,
        "calibrator_id": truth.calibrator_id,
        "events": truth.events,
        "flux_scale": [float(x) for x in truth.flux_scale],
        "groups": [
            {"index": g.index, "epoch": g.epoch, "start_utc": g.start_utc, "time_jd": g.time_jd,
             "lst_rad": g.lst_rad, "files": {str(k): v for k, v in g.files.items()}}
            for g in truth.groups
        ],
        "arrays": TRUTH_NPZ,
        "sources_csv": SOURCES_CSV,
    }
    path = out / TRUTH_JSON
    path.write_text(json.dumps(meta, indent=1))
    return path


def load_truth(path: str | Path) -> Truth:
    """Read the truth of a simulated data set.

    Parameters
    ----------
    path
        The output directory of :func:`contimg.simulation.simulate` or its
        ``truth.json``.

    Raises
    ------
    InputFileError
        If the files are missing or unreadable.
    """
    path = Path(path)
    json_path = path if path.suffix == ".json" else path / TRUTH_JSON
    out = json_path.parent
    try:
        meta = json.loads(json_path.read_text())
        arrays = dict(np.load(out / meta.get("arrays", TRUTH_NPZ)))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{json_path}: cannot read simulation truth: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputFileError(f"{json_path}: truth format {meta.get('format_version')} is not {FORMAT_VERSION}")
    catalog = SkyCatalog(
        source_id=arrays["source_id"].astype(int), ra_deg=arrays["ra_deg"], dec_deg=arrays["dec_deg"],
        flux_jy=arrays["flux_jy"], spectral_index=arrays["spectral_index"], calibrator=arrays["calibrator"].astype(bool),
    )
    groups = [
        GroupTruth(index=g["index"], epoch=g["epoch"], start_utc=g["start_utc"], time_jd=g["time_jd"],
                   lst_rad=g["lst_rad"], files={int(k): v for k, v in g["files"].items()})
        for g in meta["groups"]
    ]
    return Truth(
        path=out,
        config=SimulationConfig.from_dict(meta["config"]),
        catalog=catalog,
        flux_per_epoch=arrays["flux_per_epoch"],
        epoch_days=arrays["epoch_days"],
        flux_scale=arrays["flux_scale"],
        gain_model=GainModel.from_arrays(arrays),
        groups=groups,
        pointing_dec_rad=meta["pointing_dec_rad"],
        pointing_dec_icrs_rad=meta["pointing_dec_icrs_rad"],
        antenna_numbers=np.asarray(meta["antenna_numbers"], int),
        noise_sigma_jy=meta["noise_sigma_jy"],
        auto_noise_sigma_jy=meta["auto_noise_sigma_jy"],
        events=meta["events"],
        calibrator_id=meta["calibrator_id"],
        location=meta["location"],
    )
