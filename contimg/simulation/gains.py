"""Per-antenna, per-polarization complex gains: a parametric model that the truth file stores exactly.

For antenna ``a`` and feed ``p`` (X or Y) the gain at frequency ``nu`` and time
``t`` is

.. math::

    g = A\\,[1 + r\\sin(2\\pi(\\nu-\\nu_0)/P + \\psi)]
        \\exp i[\\phi + 2\\pi\\tau(\\nu-\\nu_0) + r_\\phi\\cos(2\\pi(\\nu-\\nu_0)/P + \\psi)
        + D\\sin(2\\pi(t-t_0)/T + \\psi_D)]

an amplitude, a phase, a delay, a smooth bandpass ripple in amplitude and
phase (period ``P`` of 20-60 MHz) and a slow sinusoidal phase drift (period
``T`` of 2-8 h). ``nu_0`` is the band centre and ``t_0`` the start of the first
group. The visibility of baseline (ant1=i, ant2=j) in correlation ``pp`` is
``g_ip g_jp^* V_true`` (the pyuvdata / UVCal convention; CASA's solutions are
the complex conjugates, see NOTES).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["FEEDS", "GainModel", "REFERENCE_GAIN_FREQ_HZ"]

FEEDS = ("X", "Y")
"""Feed order of the gain arrays' second axis (XX uses X, YY uses Y)."""
REFERENCE_GAIN_FREQ_HZ = 1405.0e6
"""Band centre, the reference of delays and ripples."""


@dataclass(frozen=True)
class GainModel:
    """Gain parameters, arrays of shape (Nants, 2) over ``antenna_numbers`` x (X, Y)."""

    antenna_numbers: np.ndarray
    amplitude: np.ndarray
    phase_rad: np.ndarray
    delay_s: np.ndarray
    ripple_amplitude: np.ndarray
    ripple_phase_amplitude_rad: np.ndarray
    ripple_period_hz: np.ndarray
    ripple_phase0_rad: np.ndarray
    drift_amplitude_rad: np.ndarray
    drift_period_s: np.ndarray
    drift_phase0_rad: np.ndarray
    reference_freq_hz: float = REFERENCE_GAIN_FREQ_HZ
    reference_time_jd: float = 0.0

    ARRAY_FIELDS = (
        "amplitude", "phase_rad", "delay_s", "ripple_amplitude", "ripple_phase_amplitude_rad",
        "ripple_period_hz", "ripple_phase0_rad", "drift_amplitude_rad", "drift_period_s", "drift_phase0_rad",
    )

    @classmethod
    def unity(cls, antenna_numbers: np.ndarray, *, reference_time_jd: float = 0.0) -> "GainModel":
        """All gains exactly 1."""
        shape = (len(antenna_numbers), len(FEEDS))
        z = np.zeros(shape)
        return cls(
            antenna_numbers=np.asarray(antenna_numbers, int), amplitude=np.ones(shape), phase_rad=z, delay_s=z,
            ripple_amplitude=z, ripple_phase_amplitude_rad=z, ripple_period_hz=np.full(shape, 40e6),
            ripple_phase0_rad=z, drift_amplitude_rad=z, drift_period_s=np.full(shape, 4 * 3600.0),
            drift_phase0_rad=z, reference_time_jd=reference_time_jd,
        )

    @classmethod
    def random(
        cls,
        antenna_numbers: np.ndarray,
        *,
        rng: np.random.Generator,
        amplitude_rms: float,
        delay_rms_ns: float,
        ripple_amplitude: float,
        drift_amplitude_deg: float,
        reference_time_jd: float,
    ) -> "GainModel":
        """Random gains with the given scales (see the module docstring).

        Phases are uniform in (-pi, pi); ripple periods uniform in 20-60 MHz; drift periods uniform in 2-8 h;
        ripple and drift amplitudes are the given scales times a uniform factor in 0.5-1.5.

        Parameters
        ----------
        antenna_numbers
            Antennas to draw gains for (the model's first axis, in this order).
        rng
            The random generator (seeded by the caller for reproducible simulations).
        amplitude_rms
            Fractional rms of the amplitudes about 1 (amplitudes are clipped at 0.3 from below).
        delay_rms_ns
            Rms of the delays (ns), about 0.
        ripple_amplitude
            Scale of the bandpass ripple: fractional in amplitude, and the same number in radians of phase.
        drift_amplitude_deg
            Scale of the slow phase drift (deg).
        reference_time_jd
            ``t_0`` of the drift (JD), usually the start of the first group.

        Returns
        -------
        GainModel
            Arrays of shape (Nants, 2), feeds in :data:`FEEDS` order.
        """
        shape = (len(antenna_numbers), len(FEEDS))
        amp = np.clip(1.0 + amplitude_rms * rng.standard_normal(shape), 0.3, None)
        return cls(
            antenna_numbers=np.asarray(antenna_numbers, int),
            amplitude=amp,
            phase_rad=rng.uniform(-np.pi, np.pi, shape),
            delay_s=delay_rms_ns * 1e-9 * rng.standard_normal(shape),
            ripple_amplitude=ripple_amplitude * rng.uniform(0.5, 1.5, shape),
            ripple_phase_amplitude_rad=ripple_amplitude * rng.uniform(0.5, 1.5, shape),
            ripple_period_hz=rng.uniform(20e6, 60e6, shape),
            ripple_phase0_rad=rng.uniform(0, 2 * np.pi, shape),
            drift_amplitude_rad=np.radians(drift_amplitude_deg) * rng.uniform(0.5, 1.5, shape),
            drift_period_s=rng.uniform(2 * 3600.0, 8 * 3600.0, shape),
            drift_phase0_rad=rng.uniform(0, 2 * np.pi, shape),
            reference_time_jd=reference_time_jd,
        )

    def evaluate(
        self,
        freq_hz: np.ndarray,
        time_jd: np.ndarray,
        *,
        antenna_numbers: np.ndarray | None = None,
    ) -> np.ndarray:
        """Complex gains, shape (Nants, 2, Ntimes, Nfreqs), feeds in :data:`FEEDS` order.

        Parameters
        ----------
        freq_hz
            Frequencies (Hz), any order.
        time_jd
            Times (JD, UTC).
        antenna_numbers
            Antennas to evaluate (default all of the model's, in its order).

        Returns
        -------
        numpy.ndarray
            Complex gains, shape (Nants, 2, Ntimes, Nfreqs), in the order of ``antenna_numbers``, ``time_jd``
            and ``freq_hz`` (scalars count as length 1).

        Raises
        ------
        KeyError
            If an antenna number is not in the model.
        """
        idx = self._rows(antenna_numbers)
        nu = np.atleast_1d(np.asarray(freq_hz, float)) - self.reference_freq_hz
        dt = (np.atleast_1d(np.asarray(time_jd, float)) - self.reference_time_jd) * 86400.0
        p = {name: getattr(self, name)[idx][:, :, None, None] for name in self.ARRAY_FIELDS}
        nu = nu[None, None, None, :]
        dt = dt[None, None, :, None]
        arg = 2 * np.pi * nu / p["ripple_period_hz"] + p["ripple_phase0_rad"]
        amp = p["amplitude"] * (1.0 + p["ripple_amplitude"] * np.sin(arg))
        phase = (
            p["phase_rad"]
            + 2 * np.pi * p["delay_s"] * nu
            + p["ripple_phase_amplitude_rad"] * np.cos(arg)
            + p["drift_amplitude_rad"] * np.sin(2 * np.pi * dt / p["drift_period_s"] + p["drift_phase0_rad"])
        )
        return amp * np.exp(1j * phase)

    def _rows(self, antenna_numbers: np.ndarray | None) -> np.ndarray:
        if antenna_numbers is None:
            return np.arange(len(self.antenna_numbers))
        lookup = {int(a): k for k, a in enumerate(self.antenna_numbers)}
        try:
            return np.array([lookup[int(a)] for a in np.atleast_1d(antenna_numbers)], dtype=int)
        except KeyError as exc:
            raise KeyError(f"antenna {exc.args[0]} has no gains in this model") from None

    def to_arrays(self, prefix: str = "gain_") -> dict[str, np.ndarray]:
        """Arrays for an ``.npz`` file (see :meth:`from_arrays`)."""
        out = {f"{prefix}{f.name}": np.asarray(getattr(self, f.name)) for f in fields(self)}
        return out

    @classmethod
    def from_arrays(cls, arrays: "dict[str, np.ndarray]", prefix: str = "gain_") -> "GainModel":
        kw: dict[str, Any] = {}
        for f in fields(cls):
            value = arrays[f"{prefix}{f.name}"]
            kw[f.name] = float(value) if np.ndim(value) == 0 else np.asarray(value)
        kw["antenna_numbers"] = np.asarray(kw["antenna_numbers"], int)
        return cls(**kw)
