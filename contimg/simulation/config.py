"""Options of the simulator and the fixed DSA-110 frequency and time layout.

Frequency layout
    The band runs from 1311.25 to 1498.75 MHz in 16 subbands of 11.71875 MHz;
    ``sb00`` is the highest. Inside a file channels are in *descending*
    frequency, 48 of 244.140625 kHz by default (centres 1498.628 ... 1311.372
    MHz over the whole band). With fewer channels per subband the subband edges
    stay and the channels get wider.

Time layout
    A group is 24 integrations of 12.884902 s (309.24 s). Integration ``k`` of
    a group starting at ``t0`` is centred on ``t0 + (k + 0.5) * 12.884902 s``.
    Consecutive groups follow without gaps; ``n_days`` repeats the block one
    sidereal day later (same LST) for light curves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np

from contimg.errors import ConfigError
from contimg.naming import NSUBBANDS

__all__ = [
    "BAND_BOTTOM_HZ",
    "BAND_TOP_HZ",
    "CHANNEL_WIDTH_HZ",
    "EseInjection",
    "TransientInjection",
    "INTEGRATION_TIME_S",
    "NCHANNELS_PER_SUBBAND",
    "NINTEGRATIONS",
    "SIDEREAL_DAY_S",
    "SUBBAND_WIDTH_HZ",
    "SimulationConfig",
    "subband_frequencies",
]

NCHANNELS_PER_SUBBAND = 48
CHANNEL_WIDTH_HZ = 244_140.625
SUBBAND_WIDTH_HZ = NCHANNELS_PER_SUBBAND * CHANNEL_WIDTH_HZ
"""11.71875 MHz."""
BAND_TOP_HZ = 1498.75e6
"""Upper edge of sb00."""
BAND_BOTTOM_HZ = BAND_TOP_HZ - NSUBBANDS * SUBBAND_WIDTH_HZ
"""Lower edge of sb15 (1311.25 MHz)."""
NINTEGRATIONS = 24
INTEGRATION_TIME_S = 12.884902
SIDEREAL_DAY_S = 86164.0905
"""Mean sidereal day (s of UTC, to ~1 ms): groups on consecutive days repeat the LST."""

DEFAULT_START = datetime(2025, 6, 1, 10, 0, 0, tzinfo=timezone.utc)
"""Default start: inside the Earth-orientation tables shipped offline with astropy and CASA."""


def subband_frequencies(subband: int, channels_per_subband: int = NCHANNELS_PER_SUBBAND) -> np.ndarray:
    """Channel centres (Hz) of ``subband``, in descending order as in the files.

    Parameters
    ----------
    subband
        0 (highest) ... 15.
    channels_per_subband
        Channels in the subband; the subband's edges do not depend on it.
    """
    if not 0 <= subband < NSUBBANDS:
        raise ValueError(f"subband index {subband} is out of range 0..{NSUBBANDS - 1}")
    width = SUBBAND_WIDTH_HZ / channels_per_subband
    top = BAND_TOP_HZ - subband * SUBBAND_WIDTH_HZ
    return top - (np.arange(channels_per_subband) + 0.5) * width


@dataclass(frozen=True)
class EseInjection:
    """An extreme scattering event injected into one catalogue source.

    Times are in days since the first epoch (``truth.epoch_days``). See
    :func:`contimg.simulation.lightcurves.ese_profile` for the shape.
    """

    source_id: int
    t_center_days: float
    duration_days: float
    depth: float
    caustic_amplitude: float = 0.3


@dataclass(frozen=True)
class TransientInjection:
    """A transient: a point source that is *not* in the catalogue and shines only on some days.

    It is in the visibilities on days ``first_day`` ... ``last_day`` (epoch
    indices, inclusive; ``last_day`` None: to the last day) with the 1.4 GHz
    flux ``flux_jy`` and the power-law ``spectral_index``, and absent on the
    others. It is never written to ``sources.csv``: it is what the new-source
    search (:mod:`contimg.photometry.newsource`) must find. Positions are ICRS.
    """

    ra_deg: float
    dec_deg: float
    flux_jy: float
    first_day: int = 0
    last_day: int | None = None
    spectral_index: float = -0.7

    def active(self, day: int) -> bool:
        """Whether the transient shines on epoch ``day``."""
        return self.first_day <= day and (self.last_day is None or day <= self.last_day)


@dataclass(frozen=True)
class SimulationConfig:
    """Every option of the simulator (all recorded in the truth file).

    Attributes
    ----------
    start
        UTC start of the first group (timezone-aware or naive UTC).
    n_groups
        Consecutive groups per day.
    n_days
        Days (epochs); day ``d`` starts ``d`` sidereal days after ``start``.
    dec_deg
        Pointing declination, *apparent* (of date), degrees; written as the
        ``phase_center_dec`` header keyword in radians.
    n_antennas
        Antennas carrying data, chosen by :func:`contimg.stations.select_antennas`.
    antenna_numbers
        Explicit antenna numbers (0 ... 116), overriding ``n_antennas``.
    channels_per_subband
        Channels in each of the 16 subbands (48 in the real files).
    subbands
        Subbands to write (default all 16; fewer only for tests).
    n_integrations, integration_time_s
        Integrations per group and their length.
    seed
        Seed of every random choice (sky, gains, light curves, noise, jitter).
    noise, sefd_jy
        Thermal noise on or off, and the system equivalent flux density.
    gains
        Per-antenna complex gains on or off (off: all gains are 1).
    gain_amplitude_rms, gain_delay_rms_ns, gain_ripple_amplitude, gain_phase_drift_deg
        Scales of the random gain model (see :mod:`contimg.simulation.gains`).
    jitter_s
        File-name timestamps of a group's 16 files are the group start plus a
        uniform random 0 ... ``jitter_s`` seconds (truncated to whole seconds).
    n_sources, flux_min_jy, flux_max_jy, count_slope, field_radius_deg
        The random catalogue: ``n_sources`` sources with dN/dS ~ S^-count_slope
        between the flux limits (1.4 GHz), uniform on the sphere within
        ``field_radius_deg`` of the pointing track.
    spectral_index_mean, spectral_index_rms
        Spectral indices (S ~ nu^alpha) are normal with these parameters.
    calibrator_flux_jy, calibrator_spectral_index
        If set, a calibrator of this 1.4 GHz flux transits the meridian at the
        pointing declination in the middle of the first group.
    ese_fraction
        Fraction of catalogue sources that get a random ESE.
    ese_depth_range, ese_duration_range_days
        Ranges for random ESEs (durations default to a fraction of the span).
    events
        Specific ESEs to inject (in addition to random ones).
    transients
        Sources not in the catalogue that shine on some days only
        (:class:`TransientInjection`).
    red_noise_amplitude, red_noise_timescale_days
        Intrinsic log-normal variability of every non-calibrator source.
    flux_scale_error
        Rms of a per-epoch multiplicative flux-scale error applied to every
        non-calibrator source's flux in the visibilities (the calibrator
        keeps its catalogue flux, so calibrating on it does not remove it).
    processes
        Worker processes across subbands (1: serial).
    blas_threads
        BLAS threads per process during the run (1 was 2x cheaper in CPU on
        a busy 2-core machine than OpenBLAS's default of one per core).
    """

    start: datetime = DEFAULT_START
    n_groups: int = 1
    n_days: int = 1
    dec_deg: float = 35.0
    n_antennas: int = 96
    antenna_numbers: tuple[int, ...] | None = None
    channels_per_subband: int = NCHANNELS_PER_SUBBAND
    subbands: tuple[int, ...] = tuple(range(NSUBBANDS))
    n_integrations: int = NINTEGRATIONS
    integration_time_s: float = INTEGRATION_TIME_S
    seed: int = 0
    noise: bool = True
    sefd_jy: float = 6500.0
    dish_diameter_m: float = 4.65
    """Dish diameter written to the antenna table and used for the simulated primary beam (DSA-110: 4.65 m)."""
    gains: bool = True
    gain_amplitude_rms: float = 0.1
    gain_delay_rms_ns: float = 2.0
    gain_ripple_amplitude: float = 0.03
    gain_phase_drift_deg: float = 10.0
    jitter_s: float = 3.0
    n_sources: int = 100
    flux_min_jy: float = 0.01
    flux_max_jy: float = 3.0
    count_slope: float = 1.8
    field_radius_deg: float = 5.0
    spectral_index_mean: float = -0.7
    spectral_index_rms: float = 0.2
    calibrator_flux_jy: float | None = None
    calibrator_spectral_index: float = -0.7
    ese_fraction: float = 0.0
    ese_depth_range: tuple[float, float] = (0.2, 0.5)
    ese_duration_range_days: tuple[float, float] | None = None
    events: tuple[EseInjection, ...] = ()
    transients: tuple[TransientInjection, ...] = ()
    red_noise_amplitude: float = 0.0
    red_noise_timescale_days: float = 30.0
    flux_scale_error: float = 0.0
    processes: int = 1
    blas_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded in the truth file."""

    def __post_init__(self) -> None:
        start = self.start
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        object.__setattr__(self, "start", start.astimezone(timezone.utc))
        object.__setattr__(self, "subbands", tuple(int(s) for s in self.subbands))
        if self.antenna_numbers is not None:
            object.__setattr__(self, "antenna_numbers", tuple(int(a) for a in self.antenna_numbers))
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "transients", tuple(self.transients))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid option."""
        problems = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                problems.append(msg)

        need(self.dish_diameter_m > 0, f"dish_diameter_m must be positive, got {self.dish_diameter_m}")
        need(self.n_groups >= 1, f"n_groups must be >= 1, got {self.n_groups}")
        need(self.n_days >= 1, f"n_days must be >= 1, got {self.n_days}")
        need(-90 < self.dec_deg < 90, f"dec_deg must be in (-90, 90), got {self.dec_deg}")
        need(1 <= self.n_antennas <= 117, f"n_antennas must be in 1..117, got {self.n_antennas}")
        if self.antenna_numbers is not None:
            nums = self.antenna_numbers
            need(len(nums) >= 1 and len(set(nums)) == len(nums), "antenna_numbers must be unique and non-empty")
            need(all(0 <= a < 117 for a in nums), "antenna_numbers must be in 0..116")
        need(self.channels_per_subband >= 1, f"channels_per_subband must be >= 1, got {self.channels_per_subband}")
        need(
            len(self.subbands) >= 1 and len(set(self.subbands)) == len(self.subbands)
            and all(0 <= s < NSUBBANDS for s in self.subbands),
            f"subbands must be distinct values in 0..{NSUBBANDS - 1}, got {self.subbands}",
        )
        need(self.n_integrations >= 1, "n_integrations must be >= 1")
        need(self.integration_time_s > 0, "integration_time_s must be > 0")
        need(self.sefd_jy > 0, "sefd_jy must be > 0")
        need(self.jitter_s >= 0, "jitter_s must be >= 0")
        need(self.n_sources >= 0, "n_sources must be >= 0")
        need(0 < self.flux_min_jy < self.flux_max_jy, "need 0 < flux_min_jy < flux_max_jy")
        need(self.count_slope > 0, "count_slope must be > 0")
        need(0 < self.field_radius_deg < 90, "field_radius_deg must be in (0, 90)")
        need(self.calibrator_flux_jy is None or self.calibrator_flux_jy > 0, "calibrator_flux_jy must be > 0")
        need(0 <= self.ese_fraction <= 1, f"ese_fraction must be in [0, 1], got {self.ese_fraction}")
        lo, hi = self.ese_depth_range
        need(0 <= lo <= hi < 1, "ese_depth_range must satisfy 0 <= lo <= hi < 1")
        if self.ese_duration_range_days is not None:
            dlo, dhi = self.ese_duration_range_days
            need(0 < dlo <= dhi, "ese_duration_range_days must satisfy 0 < lo <= hi")
        for ev in self.events:
            need(0 <= ev.depth < 1 and ev.duration_days > 0, f"bad ESE injection {ev}")
            need(ev.source_id >= 0, f"ESE injection source_id must be >= 0, got {ev.source_id}")
        for tr in self.transients:
            need(tr.flux_jy > 0 and -90 <= tr.dec_deg <= 90 and tr.first_day >= 0
                 and (tr.last_day is None or tr.last_day >= tr.first_day), f"bad transient injection {tr}")
        need(self.red_noise_amplitude >= 0 and self.red_noise_timescale_days > 0, "bad red-noise parameters")
        need(0 <= self.flux_scale_error < 0.5, "flux_scale_error must be in [0, 0.5)")
        need(self.processes >= 1, "processes must be >= 1")
        need(self.blas_threads >= 1, "blas_threads must be >= 1")
        for name in ("gain_amplitude_rms", "gain_delay_rms_ns", "gain_ripple_amplitude", "gain_phase_drift_deg"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0")
        if problems:
            raise ConfigError("invalid simulation options: " + "; ".join(problems))

    @property
    def Nfreqs(self) -> int:  # noqa: N802 - pyuvdata naming
        return self.channels_per_subband

    @property
    def channel_width_hz(self) -> float:
        return SUBBAND_WIDTH_HZ / self.channels_per_subband

    @property
    def group_duration_s(self) -> float:
        return self.n_integrations * self.integration_time_s

    def selected_antennas(self) -> np.ndarray:
        """Antenna numbers that carry data (sorted)."""
        from contimg.stations import select_antennas

        if self.antenna_numbers is not None:
            return np.array(sorted(self.antenna_numbers), dtype=int)
        return select_antennas(self.n_antennas)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of every option."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif f.name in ("events", "transients"):
                value = [asdict(ev) for ev in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SimulationConfig":
        """Inverse of :meth:`to_dict`."""
        kw = dict(data)
        kw["start"] = datetime.fromisoformat(kw["start"])
        kw["events"] = tuple(EseInjection(**ev) for ev in kw.get("events", ()))
        kw["transients"] = tuple(TransientInjection(**tr) for tr in kw.get("transients", ()))
        for name in ("subbands", "antenna_numbers", "ese_depth_range", "ese_duration_range_days"):
            if kw.get(name) is not None:
                kw[name] = tuple(kw[name])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})
