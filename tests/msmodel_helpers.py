"""A small :class:`~contimg.msmodel.MsModel` built by hand, for tests that need no Measurement Set on disk."""

from __future__ import annotations

import numpy as np

from contimg.msmodel import MsModel
from contimg.pointing import Pointing

OVRO_XYZ = (-2409531.898, -4478051.880, 3838961.154)
"""DSA-110's array centre (ITRF, m)."""


def toy_model(*, nants: int = 3, ntimes: int = 4, nfreqs: int = 8, pols=(-5, -6), autos: bool = True,
              uvw: np.ndarray | None = None, **overrides) -> MsModel:
    """A consistent model: ``nants`` antennas on an east-west line 10 m apart, every baseline (autos if
    ``autos``) at each of ``ntimes`` 10 s integrations (time-major), ``nfreqs`` 1 MHz channels from 1.3 GHz.

    ``uvw`` replaces the rows' uvw (default: the baseline vectors); ``overrides`` replace any field afterwards
    (no consistency is enforced: that is what tests of :meth:`MsModel.check` need).
    """
    pairs = [(a, b) for a in range(nants) for b in range(a if autos else a + 1, nants)]
    nbls = len(pairs)
    a1 = np.tile([p[0] for p in pairs], ntimes)
    a2 = np.tile([p[1] for p in pairs], ntimes)
    positions = np.zeros((nants, 3))
    positions[:, 1] = 10.0 * np.arange(nants)
    if uvw is None:
        uvw = positions[a2] - positions[a1]
    times = 2460800.5 + np.arange(ntimes) * 10.0 / 86400.0
    fields = dict(
        path=None, Nants_data=nants, Nants_telescope=nants, Nbls=nbls, Nblts=nbls * ntimes, Nfreqs=nfreqs,
        Npols=len(pols), Ntimes=ntimes, freq_array=1.3e9 + 1e6 * np.arange(nfreqs), channel_width=1e6,
        polarization_array=list(pols), time_array=times, lst_array=np.linspace(1.0, 1.001, ntimes),
        integration_time=10.0, antenna_numbers=np.arange(nants), antenna_names=[f"A{i}" for i in range(nants)],
        antenna_positions=positions, antenna_diameters=np.full(nants, 4.65), telescope_name="TOY",
        telescope_location=np.array(OVRO_XYZ), phase_center_ra=1.0, phase_center_dec=0.6,
        pointing=Pointing("drift", 0.0, 0.6, OVRO_XYZ, "toy"), ant_1_array=a1, ant_2_array=a2, uvw_array=uvw,
        time_index=np.repeat(np.arange(ntimes), nbls),
    )
    fields.update(overrides)
    return MsModel(**fields)
