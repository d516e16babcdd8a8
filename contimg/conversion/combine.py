"""Step 2 of a conversion: assemble the subband parts into one Measurement Set.

The parts (:mod:`contimg.conversion.subband`) are placed channel-wise into the
single 768-channel spectral window of the final MS, in large row chunks,
writing every column exactly once. Why one window rather than sixteen: CASA
bandpass, gaincal and applycal run 2-3× faster on one window of 768 channels
than on 16 windows (NOTES), WSClean needs no ``-reorder`` for it, and a
calibration table's frequency axis is the same for every group.

Column contents
---------------
``DATA``
    phased visibilities in Jy (MS convention); zero and flagged in missing subbands.
``CORRECTED_DATA``
    a copy of DATA (what an uncalibrated MS is defined to hold).
``MODEL_DATA``
    zero: there is no model yet. A calibration that forgets to set one then
    fails loudly instead of calibrating against an implicit 1 Jy source. The
    zeros are stored as a sparse file
    (:func:`~contimg.conversion.msio.sparsify_zero_column`): no disk space
    until a model is written.
``WEIGHT_SPECTRUM`` / ``SIGMA_SPECTRUM``
    ``sigma = SEFD / sqrt(2 Δν τ n)`` per visibility (the radiometer noise of
    each real and imaginary part, ``n`` the file's sample count) and
    ``weight = 1 / sigma²``; the SEFD comes from the header keyword ``sefd_jy``
    if present, else :data:`~contimg.conversion.subband.NOMINAL_SEFD_JY`.
    ``WEIGHT``/``SIGMA`` per row are the mean over the channels with data.
    SIGMA_SPECTRUM is optional in the MS definition (CASA and WSClean weight by
    WEIGHT_SPECTRUM) and costs 0.7 GB and ~0.5 CPU s per full group. It is kept:
    in CASA's weight convention SIGMA describes DATA and WEIGHT describes
    CORRECTED_DATA, so once calibration rescales the weights SIGMA_SPECTRUM
    is what still states the raw noise of each visibility.
``FLAG``
    the files' flags, plus autocorrelations, missing subbands and non-finite
    values (counted in the result).

The MS is written under a hidden temporary name next to ``out_ms``, validated,
then renamed; an existing MS at ``out_ms`` is replaced only by a valid one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import mmap
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from contimg.conversion import msio
from contimg.conversion.geometry import phased_uvw
from contimg.conversion.plan import ConversionPlan
from contimg.conversion.subband import read_part, remove_part, sigma_per_sample
from contimg.conversion.validate import ValidationReport, validate_ms
from contimg.errors import InputFileError, TransientError

log = logging.getLogger(__name__)

ROWS_PER_CHUNK_BYTES = 64 << 20
"""Target size of the DATA block assembled per write (bounds the memory of step 2)."""


@dataclass
class ConversionResult:
    """What a conversion produced; JSON-serialisable through :meth:`to_dict`."""

    group_id: str
    ms_path: str
    subbands: list[int]
    missing_subbands: list[int]
    Nrows: int
    Nfreqs: int
    phase_center_ra_deg: float
    phase_center_dec_deg: float
    validation: dict[str, Any]
    Nflagged_nonfinite: int = 0
    """Visibilities that were NaN or infinite in the files (flagged and zeroed)."""
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConversionResult":
        return cls(**d)


class _Parts:
    """The parts of a group, checked against the plan and against each other.

    Small arrays are read at once; the big ones (data, flags, weight, sigma)
    are memory-mapped and copied per row chunk, their pages dropped after each
    chunk, so the combine's memory stays at one chunk whatever the group size.
    """

    BIG = ("data", "flags", "weight", "sigma")

    def __init__(self, plan: ConversionPlan, part_paths: Sequence[str | os.PathLike]):
        self.plan = plan
        self.meta: dict[int, dict] = {}
        self.paths: dict[int, Path] = {}
        self.small: dict[int, dict[str, np.ndarray]] = {}
        for p in part_paths:
            meta, arrays = read_part(p)
            sb = int(meta["subband"])
            if meta["group_id"] != plan.group_id:
                raise InputFileError(f"{p}: part of group {meta['group_id']}, not {plan.group_id}")
            if (abs(float(meta["phase_center_ra"]) - plan.ms.phase_center_ra) > 1e-12
                    or abs(float(meta["phase_center_dec"]) - plan.ms.phase_center_dec) > 1e-12):
                raise InputFileError(f"{p}: part was phased to another phase center than group {plan.group_id}'s plan")
            if sb in self.meta:
                raise InputFileError(f"{p}: second part for sb{sb:02d} of group {plan.group_id}")
            if arrays["data"].shape != (plan.ms.Nblts, plan.Nfreqs_subband, plan.ms.Npols):
                raise InputFileError(f"{p}: data shape {arrays['data'].shape} does not match the plan")
            self.meta[sb] = meta
            self.paths[sb] = Path(p)
            self.small[sb] = {k: np.array(v) for k, v in arrays.items() if k not in self.BIG}
            del arrays
        if not self.meta:
            raise InputFileError(f"group {plan.group_id}: no parts to combine")
        first = self.small[min(self.small)]
        self.ant_1_array = first["ant_1_array"]
        self.ant_2_array = first["ant_2_array"]
        self.time_index = first["time_index"]
        for sb, arrays in self.small.items():
            if not (np.array_equal(arrays["ant_1_array"], self.ant_1_array)
                    and np.array_equal(arrays["ant_2_array"], self.ant_2_array)
                    and np.array_equal(arrays["time_index"], self.time_index)):
                raise InputFileError(f"part sb{sb:02d} of group {plan.group_id}: baseline-time order differs from the other parts")
        self.nonfinite = sum(int(m.get("nonfinite", 0)) for m in self.meta.values())
        self._files: dict[tuple[int, str], tuple[mmap.mmap, np.ndarray, int]] = {}

    @property
    def subbands(self) -> list[int]:
        return sorted(self.meta)

    def channels(self, sb: int) -> slice:
        """Where ``sb``'s channels (stored ascending in its part) go in the window."""
        c0 = self.plan.channel_offset(sb)
        return slice(c0, c0 + self.plan.Nfreqs_subband)

    def rows(self, sb: int, name: str, r0: int, n: int) -> np.ndarray:
        """Rows ``r0 : r0 + n`` of a part's big array (a view into a private memory map).

        Call :meth:`release` after copying them: the pages are then dropped
        from this process, so its resident memory stays at one chunk.
        """
        key = (sb, name)
        if key not in self._files:
            path = self.paths[sb] / f"{name}.npy"
            header = np.load(path, mmap_mode="r")  # only for the layout of the .npy file
            shape, dtype, offset = header.shape, header.dtype, header.offset
            del header
            with open(path, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            arr = np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
            self._files[key] = (mm, arr, offset)
        mm, arr, offset = self._files[key]
        return arr[r0:r0 + n]

    def release(self) -> None:
        """Drop the mapped pages read so far (they stay in the staging file system)."""
        for mm, _, _ in self._files.values():
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        self._files.clear()  # the maps close when their arrays are gone


def _is_enospc(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)


def combine_parts(
    plan: ConversionPlan | dict,
    part_paths: Sequence[str | os.PathLike],
    out_ms: str | os.PathLike,
    *,
    before_publish: Callable[[], None] | None = None,
) -> ConversionResult:
    """Assemble the parts into the final MS, validate it, publish it, clean the parts (step 2).

    Idempotent: rerunning replaces ``out_ms`` with a fresh, valid MS; if the
    parts are gone because an earlier run finished, the existing ``out_ms`` is
    validated against the plan and its result returned.

    Parameters
    ----------
    plan
        The group's plan (or its ``to_dict()``).
    part_paths
        The parts written by :func:`~contimg.conversion.subband.write_subband_part`
        (any subset of the plan's subbands; missing ones are flagged).
    out_ms
        Path of the final Measurement Set.
    before_publish
        Called after validation, before ``out_ms`` is replaced; raising there
        publishes nothing (the cluster checks that its run is still current).

    Returns
    -------
    ConversionResult
        The MS path, present and missing subbands, rows and channels, phase centre (deg), the validation
        report (``to_dict()``), ``Nflagged_nonfinite`` and ``timings_s`` (``write``, ``validate``; empty when
        an already combined MS was only revalidated, which also leaves ``Nflagged_nonfinite`` at 0).

    Raises
    ------
    InputFileError
        A part is unreadable or does not belong to the plan.
    ValidationError
        The assembled MS failed validation (nothing is published).
    TransientError
        The output file system is full.
    """
    if isinstance(plan, dict):
        plan = ConversionPlan.from_dict(plan)
    out_ms = Path(out_ms).absolute()
    paths = [Path(p) for p in part_paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        if out_ms.exists() and len(missing) == len(paths):
            log.info("group %s: parts already combined into %s; revalidating", plan.group_id, out_ms)
            report = validate_ms(out_ms, plan=plan, present_subbands=None)
            return _result(plan, out_ms, report, {}, present=report.present_subbands)
        raise InputFileError(f"group {plan.group_id}: missing part(s) {', '.join(str(p) for p in missing)}")

    t0 = time.perf_counter()
    out_ms.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_ms.with_name(f".{out_ms.name}.tmp-{uuid.uuid4().hex[:8]}")
    parts = _Parts(plan, paths)
    present = parts.subbands
    try:
        try:
            nonfinite = _write_ms(tmp, plan, parts)
        except (OSError, RuntimeError) as exc:
            if _is_enospc(exc):
                raise TransientError(f"group {plan.group_id}: no space left writing {tmp}") from exc
            raise
        t_write = time.perf_counter() - t0
        report = validate_ms(tmp, plan=plan, present_subbands=present)
        t_valid = time.perf_counter() - t0 - t_write
        if before_publish is not None:
            before_publish()  # e.g. the cluster's check that this run is still current
        _publish(tmp, out_ms)
        report.ms_path = str(Path(out_ms).absolute())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        parts.close()
    for p in paths:
        remove_part(p)
    # debris of step-1 attempts killed mid-write (hidden .sbNN.part.tmp-PID / .old-PID)
    for debris in paths[0].parent.glob(".sb??.part.*"):
        remove_part(debris)
    with contextlib.suppress(OSError):
        paths[0].parent.rmdir()
    if nonfinite:
        log.warning("group %s: flagged %d non-finite visibilities", plan.group_id, nonfinite)
    timings = {"write": round(t_write, 3), "validate": round(t_valid, 3)}
    log.info("group %s: wrote %s (%d rows x %d channels) in %.1f s, validated in %.1f s; %s",
             plan.group_id, out_ms, plan.ms.Nblts, plan.ms.Nfreqs, t_write, t_valid, report.summary())
    result = _result(plan, out_ms, report, timings, present=present)
    result.Nflagged_nonfinite = nonfinite
    return result


def _result(plan: ConversionPlan, out_ms: Path, report: ValidationReport, timings: dict, *, present: list[int]) -> ConversionResult:
    return ConversionResult(
        group_id=plan.group_id,
        ms_path=str(Path(out_ms).absolute()),
        subbands=list(present),
        missing_subbands=[sb for sb in range(16) if sb not in present],
        Nrows=plan.ms.Nblts,
        Nfreqs=plan.ms.Nfreqs,
        phase_center_ra_deg=math.degrees(plan.ms.phase_center_ra),
        phase_center_dec_deg=math.degrees(plan.ms.phase_center_dec),
        validation=report.to_dict(),
        timings_s=timings,
    )


def _publish(tmp: Path, out_ms: Path) -> None:
    """Rename ``tmp`` to ``out_ms``, replacing an existing MS only after the new one is in place."""
    old = None
    if out_ms.exists():
        old = out_ms.with_name(f".{out_ms.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out_ms, old)
    try:
        os.replace(tmp, out_ms)
    except OSError:
        if old is not None:
            os.replace(old, out_ms)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_ms(path: Path, plan: ConversionPlan, parts: _Parts) -> int:
    """Write the MS; return the number of non-finite visibilities that were flagged."""
    ms = plan.ms
    nrows, nf, npol = ms.Nblts, ms.Nfreqs, ms.Npols
    times_jd = ms.time_array[parts.time_index]
    uvw_ms = -phased_uvw(ms, times_jd=times_jd, ant_1_array=parts.ant_1_array, ant_2_array=parts.ant_2_array)
    time_s = msio.jd_to_mjd_seconds(times_jd)
    sigma1 = np.float32(sigma_per_sample(plan))

    # row WEIGHT: mean of WEIGHT_SPECTRUM over the channels with data (sums come with the parts)
    wsum = sum(parts.small[sb]["weight_sum"] for sb in parts.subbands)
    assert isinstance(wsum, np.ndarray)  # _Parts holds at least one part
    wcount = sum(parts.small[sb]["weight_count"] for sb in parts.subbands)
    row_weight = np.zeros(wsum.shape, dtype=np.float32)
    np.divide(wsum, wcount, out=row_weight, where=wcount > 0, casting="unsafe")
    row_sigma = np.full(row_weight.shape, sigma1, dtype=np.float32)
    np.divide(1.0, np.sqrt(row_weight), out=row_sigma, where=row_weight > 0)

    tb = msio.create_main_table(path, nrows=nrows, Nfreqs=nf, Npols=npol)
    early = msio.EarlyWriteback(path, tb, ("DATA", "CORRECTED_DATA", "FLAG", "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM"))
    try:
        tb.putcol("UVW", uvw_ms)
        tb.putcol("ANTENNA1", parts.ant_1_array)
        tb.putcol("ANTENNA2", parts.ant_2_array)
        tb.putcol("TIME", time_s)
        tb.putcol("TIME_CENTROID", time_s)
        tb.putcol("INTERVAL", np.full(nrows, ms.integration_time))
        tb.putcol("EXPOSURE", np.full(nrows, ms.integration_time))
        tb.putcol("SCAN_NUMBER", np.ones(nrows, dtype=np.int32))
        for col in ("FIELD_ID", "DATA_DESC_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID",
                    "STATE_ID", "FEED1", "FEED2"):
            tb.putcol(col, np.zeros(nrows, dtype=np.int32))
        tb.putcol("FLAG_ROW", parts.ant_1_array == parts.ant_2_array)
        tb.putcol("WEIGHT", row_weight)
        tb.putcol("SIGMA", row_sigma)

        chunk = max(1, min(nrows, ROWS_PER_CHUNK_BYTES // (nf * npol * 8)))
        data = np.zeros((chunk, nf, npol), dtype=np.complex64)
        flags = np.ones((chunk, nf, npol), dtype=bool)
        weight = np.zeros((chunk, nf, npol), dtype=np.float32)
        sigma = np.full((chunk, nf, npol), sigma1, dtype=np.float32)
        # missing subbands keep the initial values: zero data and weight, flagged, nominal sigma;
        # parts with one sample everywhere carry constants instead of weight/sigma arrays
        for sb in parts.subbands:
            if parts.meta[sb].get("uniform_weight") is not None:
                weight[:, parts.channels(sb)] = parts.meta[sb]["uniform_weight"]
                sigma[:, parts.channels(sb)] = parts.meta[sb]["uniform_sigma"]
        for r0 in range(0, nrows, chunk):
            n = min(chunk, nrows - r0)
            d, f, w, sg = data[:n], flags[:n], weight[:n], sigma[:n]
            for sb in parts.subbands:
                dst = parts.channels(sb)
                d[:, dst] = parts.rows(sb, "data", r0, n)
                f[:, dst] = parts.rows(sb, "flags", r0, n)
                if parts.meta[sb].get("uniform_weight") is None:
                    w[:, dst] = parts.rows(sb, "weight", r0, n)
                    sg[:, dst] = parts.rows(sb, "sigma", r0, n)
            parts.release()
            tb.putcol("DATA", d, r0, n)
            tb.putcol("CORRECTED_DATA", d, r0, n)
            tb.putcol("FLAG", f, r0, n)
            tb.putcol("WEIGHT_SPECTRUM", w, r0, n)
            tb.putcol("SIGMA_SPECTRUM", sg, r0, n)
            early.kick()  # keep the disk busy from the first chunk (msio.EarlyWriteback)
    finally:
        early.close()
        # MODEL_DATA is never put: casacore fills unwritten tiles with zeros when it
        # closes the table (cheaper than putting zeros), then they are made sparse
        tb.close()
    freed = msio.sparsify_zero_column(path, "MODEL_DATA")
    log.debug("MODEL_DATA of %s made sparse (%.2f GB freed)", path, freed / 1e9)
    history = (
        f"contimg conversion of group {plan.group_id}\n"
        f"subbands present: {' '.join(f'sb{s:02d}' for s in parts.subbands)}\n"
        f"source files: {' '.join(Path(plan.files[s]).name for s in parts.subbands)}\n"
        f"phase center ICRS RA {math.degrees(ms.phase_center_ra):.6f} deg "
        f"Dec {math.degrees(ms.phase_center_dec):.6f} deg (apparent LST at "
        f"MJD {ms.mid_mjd:.6f}, apparent pointing Dec {math.degrees(ms.pointing.lat_rad):.6f} deg)"
    )
    half = 0.5 * ms.integration_time
    msio.write_subtables(path, plan, time_range_mjd_s=(float(time_s.min() - half), float(time_s.max() + half)),
                         history=history)
    return parts.nonfinite
