"""Writing DSA-110-like UVH5 subband files with pyuvdata.

One :class:`pyuvdata.UVData` template holds a group's metadata (times,
baselines, uvw, antenna table); each subband only swaps in its frequencies and
data before :meth:`~pyuvdata.UVData.write_uvh5`. Files are written under a
hidden temporary name and renamed into place, so a watcher never sees a
half-written ``*_sbNN.hdf5``.

What the files hold (as the real ones): telescope ``DSA_110`` with all 117
stations in the antenna table (names ``DSA-001`` ..., numbers 0 ... 116,
4.65 m, mount ``alt-az``), data only for the selected antennas, every baseline
with autocorrelations (``ant1 <= ant2``), time-major baseline-time order,
polarizations XX and YY, channels in descending frequency with positive
``channel_width``, flags all False, ``nsample_array`` 1, an unprojected
(drift-scan, zenith) phase centre, ``uvw`` from the antenna positions, and the
extra keywords ``phase_center_dec`` (apparent declination, radians) and
``ha_phase_center`` (0.0: fringe-stopped on the meridian).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contimg.stations import (
    DISH_DIAMETER_M,
    DSA110_LOCATION,
    TELESCOPE_NAME,
    StationTable,
    offline_iers,
)

if TYPE_CHECKING:
    import pyuvdata

log = logging.getLogger(__name__)

__all__ = ["make_group_template", "write_subband"]


def make_group_template(
    *,
    time_jd: np.ndarray,
    antenna_numbers: np.ndarray,
    stations: StationTable,
    pointing_dec_rad: float,
    freq_hz: np.ndarray,
    integration_time_s: float,
    vis_units: str,
    history: str,
    dish_diameter_m: float = DISH_DIAMETER_M,
) -> "pyuvdata.UVData":
    """A metadata-only UVData for one group (all subbands share it).

    Parameters
    ----------
    time_jd
        Integration centres (JD UTC), shape (Ntimes,).
    antenna_numbers
        Antennas carrying data (sorted).
    stations
        The station table (every station goes into the antenna table).
    pointing_dec_rad
        Apparent pointing declination (``phase_center_dec``).
    freq_hz
        Frequencies of one subband (descending); replaced per subband.
    integration_time_s
        Length of each integration.
    vis_units
        ``"uncalib"`` (with gains) or ``"Jy"``.
    history
        History string.
    dish_diameter_m
        Diameter of every antenna in the table (m).

    Returns
    -------
    pyuvdata.UVData
        Metadata only (no data, flag or nsample arrays): every baseline of ``antenna_numbers`` with
        autocorrelations at every time, time-major, polarizations XX and YY, with the extra keywords
        ``phase_center_dec`` and ``ha_phase_center``.
    """
    from pyuvdata import Telescope, UVData

    telescope = Telescope.new(
        name=TELESCOPE_NAME,
        location=DSA110_LOCATION,
        antenna_positions=stations.relative_ecef(DSA110_LOCATION),
        antenna_names=list(stations.antenna_names),
        antenna_numbers=stations.antenna_numbers,
        antenna_diameters=np.full(stations.Nants, float(dish_diameter_m)),
        instrument=TELESCOPE_NAME,
        x_orientation="east",
        feeds=["x", "y"],
        mount_type="alt-az",
        update_from_known=False,
    )
    i, j = np.triu_indices(len(antenna_numbers))
    antpairs = np.stack([np.asarray(antenna_numbers)[i], np.asarray(antenna_numbers)[j]], axis=1)
    freq = np.asarray(freq_hz, float)
    width = abs(float(freq[0] - freq[1])) if freq.size > 1 else None
    with offline_iers():
        uvd = UVData.new(
            freq_array=freq,
            polarization_array=["xx", "yy"],
            times=np.asarray(time_jd, float),
            telescope=telescope,
            antpairs=antpairs,
            do_blt_outer=True,
            time_axis_faster_than_bls=False,
            integration_time=float(integration_time_s),
            channel_width=width if width is not None else 1.0,
            vis_units=vis_units,
            history=history,
            empty=False,
        )
    uvd.extra_keywords = {"phase_center_dec": float(pointing_dec_rad), "ha_phase_center": 0.0}
    return uvd


def write_subband(
    template: "pyuvdata.UVData",
    path: Path,
    *,
    freq_hz: np.ndarray,
    channel_width_hz: float,
    data: np.ndarray,
    run_check: bool = True,
) -> Path:
    """Write one subband file: the template's metadata with these frequencies and data.

    ``data`` has shape (Nblts, Nfreqs, 2) in the template's baseline-time order.
    The file appears atomically (written as ``.<name>.partial``, then renamed).

    The template is modified in place: it keeps these frequencies afterwards, and its data, flag and
    nsample arrays are reset to None.

    Parameters
    ----------
    template
        The group's :func:`make_group_template`.
    path
        The file to write (``<timestamp>_sbNN.hdf5``); an existing file is replaced.
    freq_hz
        The subband's channel frequencies (Hz), descending as the correlator writes them.
    channel_width_hz
        Channel width (Hz), positive.
    data
        Complex visibilities, shape (Nblts, Nfreqs, 2), in ``template.vis_units``; flags are all False and
        ``nsample_array`` all 1.
    run_check
        Let pyuvdata check the object before writing (slower).

    Returns
    -------
    Path
        ``path``.
    """
    uvd = template
    nf = len(freq_hz)
    uvd.freq_array = np.asarray(freq_hz, float)
    uvd.channel_width = np.full(nf, float(channel_width_hz))
    uvd.Nfreqs = nf
    uvd.flex_spw_id_array = np.zeros(nf, dtype=int)
    uvd.data_array = data
    uvd.flag_array = np.zeros(data.shape, dtype=bool)
    uvd.nsample_array = np.ones(data.shape, dtype=np.float32)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        uvd.write_uvh5(str(tmp), clobber=True, run_check=run_check)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        uvd.data_array = None
        uvd.flag_array = None
        uvd.nsample_array = None
    log.debug("wrote %s", path)
    return path
