"""Step 1 of a conversion: one UVH5 subband → one phased *part* in the staging directory.

A part is a directory (``<staging>/<group>/sbNN.part``) of ``.npy`` arrays
and a ``meta.json``, holding the subband's visibilities already phased to the group's shared phase center, in
the Measurement Set's sign convention, channel order ascending and
polarizations in CASA order, plus flags, sample counts and the baseline-time
index. Step 2 (:mod:`contimg.conversion.combine`) assembles the parts
channel-wise into the single spectral window of the final MS.

Why not a Measurement Set per part: an MS part would have to be read back
through casacore and its metadata written 16 times for nothing. Why not HDF5:
h5py reports a full disk only while closing, where the error is swallowed
(measured: a part on a full tmpfs was "written" without an exception). Plain
``.npy`` files are written with ordinary file writes (ENOSPC raises) and are
memory-mapped by the combine step, which reads them in row slices at memory
speed.

The write is atomic: the part is written into a temporary directory and
renamed, so a rerun replaces its own part and a crash never leaves a half part
under the final name (``meta.json`` is written last and checked on reading).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from contimg.conversion.geometry import phase_to_ms, phased_uvw
from contimg.conversion.plan import CASA_POL, ConversionPlan, read_header
from contimg.errors import InputFileError, StagingFullError

log = logging.getLogger(__name__)

PART_FORMAT = "contimg-conversion-part-2"

NOMINAL_SEFD_JY = 6500.0
"""DSA-110 system equivalent flux density assumed when the headers do not give one."""


def part_path(plan: ConversionPlan, subband: int, staging_dir: str | os.PathLike) -> Path:
    """Where :func:`write_subband_part` puts ``subband``'s part.

    Parameters
    ----------
    plan
        The group's plan; its ``group_id`` (``:`` dropped, ``/`` as ``_``) names the group's directory.
    subband
        Subband number (0-15; sb00 is the highest frequency).
    staging_dir
        The node's staging directory (``settings.paths.staging``).

    Returns
    -------
    Path
        ``<staging_dir>/<group id>/sbNN.part`` (nothing is created).
    """
    safe = plan.group_id.replace(":", "").replace("/", "_")
    return Path(staging_dir) / safe / f"sb{subband:02d}.part"


def uniform_value(dset: h5py.Dataset) -> np.generic | None:
    """The one value of a chunked, compressed dataset that holds a single value everywhere, else None.

    Cheap: compares the stored (compressed) chunks byte for byte and
    decompresses only one of them. Identical stored chunks under the same
    filters decode to identical contents, so if every chunk is stored alike
    and the first one is constant, the whole dataset is that constant. Flags
    and sample counts of correlator files usually are (all False, all 1);
    decompressing them costs more than reading the visibilities.
    Returns None (read it all) for contiguous or unfiltered datasets, when a
    chunk is missing (fill value) or partial, or when the chunks differ.
    """
    chunks = dset.chunks
    if chunks is None or not dset.compression or dset.size == 0:
        return None
    if any(n % c for n, c in zip(dset.shape, chunks)):
        return None  # partial edge chunks: not worth the bookkeeping
    nchunks = int(np.prod([n // c for n, c in zip(dset.shape, chunks)]))
    dsid = dset.id
    if dsid.get_num_chunks() != nchunks:
        return None
    first = None
    for k in range(nchunks):
        info = dsid.get_chunk_info(k)
        stored = dsid.read_direct_chunk(info.chunk_offset)
        if first is None:
            first = stored
        elif stored != first:
            return None
    block = dset[tuple(slice(0, c) for c in chunks)]
    value = block.flat[0]
    if not np.all(block == value):
        return None
    return value


def _read_visibilities(path: Path, *, Nblts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | float, np.ndarray]:
    """visdata (complex64), flags, nsamples and time_array of one file.

    Flags come as a fresh writable array (zeros without reading them when the
    file's flags are all False); nsamples as a float when it is one value
    everywhere (the usual case), else as a float32 array.
    """
    try:
        with h5py.File(path, "r") as fh:
            dset = fh["Data"]["visdata"]
            if dset.shape[0] != Nblts:
                raise InputFileError(f"{path}: Data/visdata has {dset.shape[0]} rows, header says Nblts = {Nblts}")
            raw = dset[()]
            fdset, ndset = fh["Data"]["flags"], fh["Data"]["nsamples"]
            if fdset.shape != dset.shape or ndset.shape != dset.shape:
                raise InputFileError(f"{path}: flags {fdset.shape} / nsamples {ndset.shape} do not match "
                                     f"visdata {dset.shape}")
            fval = uniform_value(fdset)
            if fval is not None and not bool(fval):
                flags = np.zeros(fdset.shape, dtype=bool)
            else:
                flags = np.asarray(fdset[()], dtype=bool)
            nval = uniform_value(ndset)
            if nval is not None:
                nsamples: np.ndarray | float = float(nval)
            else:
                nsamples = np.asarray(ndset[()], dtype=np.float32)
            times = np.asarray(fh["Header"]["time_array"][()], dtype=np.float64)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read visibilities (corrupt or truncated HDF5): {exc}") from exc
    except KeyError as exc:
        raise InputFileError(f"{path}: not a UVH5 file (missing {exc})") from exc
    if raw.dtype.names:  # compound {r, i} as written by pyuvdata / the correlator
        r, i = raw.dtype.names[:2]
        if raw.dtype[r] == np.float32 and raw.dtype[i] == np.float32 and raw.dtype.itemsize == 8:
            vis = raw.view(np.complex64).reshape(raw.shape)
        else:
            vis = np.empty(raw.shape, dtype=np.complex64)
            vis.real = raw[r]
            vis.imag = raw[i]
    else:
        vis = raw.astype(np.complex64, copy=False)
    if raw.ndim == 4:  # old UVH5 with a spw axis of length 1
        vis, flags = vis[:, 0], flags[:, 0]
        if isinstance(nsamples, np.ndarray):
            nsamples = nsamples[:, 0]
    return vis, flags, nsamples, times


def write_subband_part(
    plan: ConversionPlan | dict,
    subband_file: str | os.PathLike,
    staging_dir: str | os.PathLike,
) -> Path:
    """Phase one subband and write it as a part in the staging directory (step 1).

    Idempotent: a rerun overwrites its own part atomically.

    Parameters
    ----------
    plan
        The group's plan (or its ``to_dict()``).
    subband_file
        One of the plan's files.
    staging_dir
        Staging root (``settings.paths.staging``); the part goes into a
        per-group directory below it.

    Returns
    -------
    Path of the part.

    Raises
    ------
    InputFileError
        If the file is corrupt, changed since it was planned, or not part of the plan.
    StagingFullError
        If the staging file system has no room for the part (transient).
    """
    if isinstance(plan, dict):
        plan = ConversionPlan.from_dict(plan)
    t0 = time.perf_counter()
    path = Path(subband_file).absolute()
    header = read_header(path)
    sb = header.subband
    if plan.files.get(sb) != str(path):
        raise InputFileError(f"{path}: not the sb{sb:02d} file of group {plan.group_id} ({plan.files.get(sb)})")
    if header.size_bytes != plan.file_sizes[sb]:
        raise InputFileError(
            f"{path}: file changed since group {plan.group_id} was planned "
            f"({header.size_bytes} bytes now, {plan.file_sizes[sb]} then)"
        )
    vis, flags, nsamples, times = _read_visibilities(path, Nblts=header.Nblts)
    t_read = time.perf_counter() - t0

    # polarizations in CASA order; channels ascending (done here, in parallel, not in the combine)
    freq = header.freq_array
    if np.max(np.abs(np.sort(freq) - plan.subband_freqs(sb))) > 1.0:
        raise InputFileError(f"{path}: frequencies do not match the plan of group {plan.group_id}")
    if not isinstance(nsamples, np.ndarray) and nsamples != 1.0:
        nsamples = np.full(vis.shape, nsamples, dtype=np.float32)  # one value, but not 1: weights follow it
    # reordering all-False flags or one nsamples value is a no-op; skip the copies
    reorder_flags = bool(flags.any())
    pol_order = np.argsort([CASA_POL[p] for p in header.polarization_array])
    if not np.array_equal(pol_order, np.arange(pol_order.size)):
        vis = np.ascontiguousarray(vis[:, :, pol_order])
        if reorder_flags:
            flags = np.ascontiguousarray(flags[:, :, pol_order])
        if isinstance(nsamples, np.ndarray):
            nsamples = np.ascontiguousarray(nsamples[:, :, pol_order])
    chan: np.ndarray | slice
    chan = np.argsort(freq)
    if np.array_equal(chan, np.arange(freq.size)[::-1]):
        chan = slice(None, None, -1)  # the usual case: a view, no fancy-index copy
    vis, freq = vis[:, chan], freq[chan]
    if reorder_flags:
        flags = np.ascontiguousarray(flags[:, chan])
    if isinstance(nsamples, np.ndarray):
        nsamples = nsamples[:, chan]

    uvw = phased_uvw(plan.ms, times_jd=times, ant_1_array=header.ant_1_array, ant_2_array=header.ant_2_array)
    vis = phase_to_ms(vis, w_m=uvw[:, 2], freq_hz=freq)  # a new, contiguous array
    flags[header.ant_1_array == header.ant_2_array] = True
    bad = ~np.isfinite(vis)
    nonfinite = int(np.count_nonzero(bad))
    if nonfinite:
        log.warning("%s: %d non-finite visibilities flagged", path, nonfinite)
        vis[bad] = 0
        flags |= bad
        nsamples = np.where(bad, np.float32(0), np.float32(nsamples)).astype(np.float32, copy=False)
    del bad
    sigma1 = np.float32(sigma_per_sample(plan))
    arrays: dict[str, np.ndarray] = {"data": vis, "flags": flags}
    if np.all(nsamples == 1):
        # the usual case: one sample everywhere, weight and sigma are constants (no arrays)
        uniform = True
        weight_sum = np.full((vis.shape[0], vis.shape[2]), freq.size / sigma1**2, dtype=np.float64)
        weight_count = np.full((vis.shape[0], vis.shape[2]), freq.size, dtype=np.int32)
    else:
        uniform = False
        weight = np.multiply(nsamples, np.float32(1.0 / sigma1**2), dtype=np.float32)  # contiguous
        sigma = np.full(weight.shape, sigma1, dtype=np.float32)
        np.divide(sigma1, np.sqrt(nsamples), out=sigma, where=nsamples > 0)
        # per-row sums for the row WEIGHT (mean over channels with data)
        wt = weight.transpose(0, 2, 1)
        ones = np.ones(wt.shape[-1], dtype=np.float32)
        weight_sum = np.matmul(wt, ones).astype(np.float64)
        weight_count = np.matmul((wt > 0).astype(np.float32), ones).astype(np.int32)
        arrays.update(weight=weight, sigma=sigma)
    time_index = np.searchsorted(header.unique_times, times).astype(np.int32)
    t_phase = time.perf_counter() - t0 - t_read

    out = part_path(plan, sb, staging_dir)
    _write_part(
        out,
        plan=plan, subband=sb, source=path,
        extra={"nonfinite": nonfinite, "uniform_weight": float(1.0 / sigma1**2) if uniform else None,
               "uniform_sigma": float(sigma1) if uniform else None},
        arrays={
            **arrays,
            "weight_sum": weight_sum,
            "weight_count": weight_count,
            "time_index": time_index,
            "ant_1_array": header.ant_1_array,
            "ant_2_array": header.ant_2_array,
            "freq_array": freq,
        },
    )
    log.info(
        "group %s sb%02d: part written to %s (read %.2f s, phase %.2f s, write %.2f s)",
        plan.group_id, sb, out, t_read, t_phase, time.perf_counter() - t0 - t_read - t_phase,
    )
    return out


def sigma_per_sample(plan: ConversionPlan) -> float:
    """Radiometer noise (Jy) of the real or imaginary part of one visibility sample.

    ``SEFD / sqrt(2 Δν τ)``, with the SEFD from the headers (``sefd_jy``) or
    :data:`NOMINAL_SEFD_JY`; this is how the simulator adds its noise.
    """
    sefd = plan.sefd_jy or NOMINAL_SEFD_JY
    return sefd / math.sqrt(2.0 * plan.ms.channel_width * plan.ms.integration_time)


def _write_part(out: Path, *, plan: ConversionPlan, subband: int, source: Path, arrays: dict[str, np.ndarray],
                extra: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    need = sum(a.nbytes for a in arrays.values()) + (1 << 20)
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise StagingFullError(
            f"staging {out.parent}: {free / 1e6:.0f} MB free, part sb{subband:02d} of group "
            f"{plan.group_id} needs {need / 1e6:.0f} MB"
        )
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    meta = {
        "format": PART_FORMAT,
        "group_id": plan.group_id,
        "subband": subband,
        "source": str(source),
        "phase_center_ra": plan.ms.phase_center_ra,
        "phase_center_dec": plan.ms.phase_center_dec,
        "arrays": {name: [list(a.shape), a.dtype.str] for name, a in arrays.items()},
        **extra,
    }
    try:
        tmp.mkdir()
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta))
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            _remove(old)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise StagingFullError(
                f"staging {out.parent} is full while writing part sb{subband:02d} of group {plan.group_id}"
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    """Remove a part (directory) or whatever debris sits under its name."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_part(path: str | os.PathLike) -> None:
    """Delete a part written by :func:`write_subband_part` (no error if absent)."""
    _remove(Path(path))


def read_part(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and memory-mapped arrays of a part.

    Raises
    ------
    InputFileError
        If ``path`` is not a complete part.
    """
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != PART_FORMAT:
            raise InputFileError(f"{path}: not a conversion part ({PART_FORMAT})")
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in meta["arrays"]}
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(f"{path}: unreadable conversion part: {exc}") from exc
    for name, (shape, dtype) in meta["arrays"].items():
        if list(arrays[name].shape) != shape or arrays[name].dtype.str != dtype:
            raise InputFileError(f"{path}: part array {name} is damaged ({arrays[name].shape}, expected {shape})")
    return meta, arrays
