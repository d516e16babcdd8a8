"""The bandpass solve split over processes by channel range (CASA's solver is channel by channel).

CASA ``bandpass`` spends its time in the least-squares solver, one channel
after the other (~30 ms of CPU per channel for 96 antennas on the averaged
copy, whatever the starting point), so the channels are independent work:
:func:`solve_bandpass` gives contiguous channel ranges to several processes
(``spw='0:a~b'``, ``solnorm=False``), merges the parts
(:func:`merge_bandpass_parts`) and normalises the result as CASA's
``solnorm=True`` does (:func:`normalize_bandpass`). Worker processes are
fresh interpreters (never forks of a process that imported casatools), started
early (:func:`start_bandpass_workers`) so that their casatasks import overlaps
the caller's work. See ``docs/calibration.md`` for the measurements.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from contimg.calibration.casatask import run_task
from contimg.errors import ExternalToolError
from contimg.tools import ToolTimedOut, classify

log = logging.getLogger(__name__)

__all__ = ["BANDPASS_PROCESSES", "merge_bandpass_parts", "normalize_bandpass", "solve_bandpass",
           "start_bandpass_workers", "stop_bandpass_workers"]

BANDPASS_PROCESSES = 2
"""Processes sharing the bandpass solve (disjoint channel ranges); 1 solves in-process only."""

PART_TIMEOUT_S = 1800.0
"""A worker's part may finish this long after the caller's own part (they are the same size); the whole
calibration step is further bounded by the task's hard time limit (``calibration.timeout_s``)."""

MIN_CHANNELS_PER_PROCESS = 64
"""Fewer channels per part than this are not worth a process (start-up costs ~1.5 s CPU)."""

_BANDPASS_WORKER = (
    "import json, sys\n"
    "from contimg import casa_env\n"
    "tasks = casa_env.casatasks()\n"
    "line = sys.stdin.readline()\n"
    "if not line.strip():\n"
    "    sys.exit(0)\n"
    "result = tasks.bandpass(**json.loads(line))\n"
    "sys.exit(3 if result is False else 0)\n"
)
"""A fresh interpreter (never a fork of a process that imported casatools): imports casatasks, then
solves one channel range whose ``bandpass`` arguments arrive as one JSON line on stdin (none: exits)."""


def _channel_ranges(nchan: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, nearly equal (first, last) channel ranges covering ``nchan`` channels."""
    edges = np.linspace(0, nchan, parts + 1).round().astype(int)
    return [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def normalize_bandpass(table_path: str | Path) -> None:
    """Normalise a B table in place the way CASA's ``solnorm=True`` (``solnormtype='mean'``) does.

    For each antenna and feed with unflagged solutions, every channel is
    divided by (mean amplitude of the unflagged channels) x (phase of the sum
    of their unit phasors). Measured against CASA's own ``solnorm=True`` on a
    full-scale group: equal within the solver's convergence (6e-4 at most).
    """
    from casacore import tables

    with tables.table(str(table_path), readonly=False, ack=False) as tb:
        cparam = tb.getcol("CPARAM")  # (Nrows, Nchan, Npol)
        ok = ~tb.getcol("FLAG") & (np.abs(cparam) > 0)
        amp = np.abs(cparam)
        n_ok = ok.sum(axis=1, keepdims=True)
        mean_amp = np.divide(np.where(ok, amp, 0).sum(axis=1, keepdims=True), n_ok,
                             out=np.ones(n_ok.shape), where=n_ok > 0)
        unit = np.divide(cparam, amp, out=np.zeros_like(cparam), where=ok)
        phasor = unit.sum(axis=1, keepdims=True)
        phasor = np.divide(phasor, np.abs(phasor), out=np.ones_like(phasor), where=np.abs(phasor) > 0)
        tb.putcol("CPARAM", (cparam / (mean_amp * phasor)).astype(cparam.dtype))


def merge_bandpass_parts(parts: list[Path], out_path: Path, *, vis: str | Path, ms_path: Path) -> None:
    """Join B tables solved on consecutive channel ranges of ``vis`` into one table of all channels.

    The first part is copied (keywords, subtables) and its per-row channel
    columns and SPECTRAL_WINDOW row replaced by the concatenation of all parts
    (reference frequency and bandwidth from ``vis``); the parts must have
    identical rows (antennas, times). ``ms_path`` names the group in errors.
    Replaces ``out_path``.

    Parameters
    ----------
    parts
        The B tables of the channel ranges, in channel order (the first gives keywords and subtables).
    out_path
        The merged B table to write; an existing table there is removed first.
    vis
        The MS the parts were solved on; its SPECTRAL_WINDOW gives REF_FREQUENCY and TOTAL_BANDWIDTH.
    ms_path
        The group's MS, named in error messages.

    Raises
    ------
    contimg.errors.ExternalToolError
        If the parts hold different solution rows (antenna, spectral window, time).
    """
    from casacore import tables

    cols = ("CPARAM", "PARAMERR", "FLAG", "SNR", "WEIGHT")
    merged: dict[str, list[np.ndarray]] = {}
    spw_cols = ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION")
    spw: dict[str, list[np.ndarray]] = {c: [] for c in spw_cols}
    keys = None
    for part in parts:
        with tables.table(str(part), ack=False) as tb:
            k = np.stack([tb.getcol("ANTENNA1"), tb.getcol("SPECTRAL_WINDOW_ID")]), tb.getcol("TIME")
            if keys is None:
                keys = k
            elif not (np.array_equal(keys[0], k[0]) and np.allclose(keys[1], k[1])):
                raise ExternalToolError(f"{ms_path}: bandpass parts {parts[0]} and {part} hold different solutions rows")
            for c in cols:
                if c in tb.colnames() and tb.nrows() and tb.iscelldefined(c, 0):  # WEIGHT is often empty
                    merged.setdefault(c, [])
                    merged[c].append(tb.getcol(c))
        with tables.table(str(part / "SPECTRAL_WINDOW"), ack=False) as sw:
            for c in spw_cols:
                spw[c].append(sw.getcol(c))
    shutil.rmtree(out_path, ignore_errors=True)
    with tables.table(str(parts[0]), ack=False) as tb:
        tb.copy(str(out_path), deep=True, valuecopy=True).close()
    with tables.table(str(out_path), readonly=False, ack=False) as tb:
        for c, arrays in merged.items():
            full = np.concatenate(arrays, axis=1)
            for row in range(tb.nrows()):  # variable-shaped cells: replaced row by row
                tb.putcell(c, row, full[row])
    with tables.table(str(out_path / "SPECTRAL_WINDOW"), readonly=False, ack=False) as sw:
        freq = np.concatenate(spw["CHAN_FREQ"], axis=1)
        for c in spw_cols:
            full = np.concatenate(spw[c], axis=1)
            for row in range(sw.nrows()):
                sw.putcell(c, row, full[row])
        sw.putcol("NUM_CHAN", np.full(sw.nrows(), freq.shape[1], np.int32))
        with tables.table(str(Path(vis) / "SPECTRAL_WINDOW"), ack=False) as src:  # as a single solve has them
            if src.nrows() == sw.nrows():
                for c in ("REF_FREQUENCY", "TOTAL_BANDWIDTH"):
                    sw.putcol(c, src.getcol(c))


def start_bandpass_workers(n: int) -> list[subprocess.Popen]:
    """Start ``n`` bandpass worker interpreters; they import casatasks (~3 s) while the caller works.

    Hand them to :func:`solve_bandpass` (``workers=``); always end them with
    :func:`stop_bandpass_workers`. They inherit this process's environment and
    working directory, so their CASA logs go where this process's go.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # the solver is serial; idle OpenMP threads only spin
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    workers = []
    for _ in range(n):
        err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty CASA never blocks on it
        proc = subprocess.Popen([sys.executable, "-c", _BANDPASS_WORKER], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        proc.err_file = err  # type: ignore[attr-defined]
        workers.append(proc)
    return workers


def stop_bandpass_workers(workers: list[subprocess.Popen]) -> None:
    """Kill workers still running (unused or abandoned) and release their files."""
    for proc in workers:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.err_file.close()  # type: ignore[attr-defined]


def solve_bandpass(path: Path, *, ms_path: Path, channels_with_data: np.ndarray,
                   processes: int = BANDPASS_PROCESSES, workers: list[subprocess.Popen] | None = None,
                   **kwargs) -> None:
    """``casatasks.bandpass`` (``bandtype='B'``, ``solnorm=True``) into ``path``, over several processes.

    CASA solves a B table channel by channel (~30 ms of CPU per channel for 96
    antennas, whatever the starting point), so the channels are split into
    ``processes`` contiguous ranges: the first is solved in this process, the
    others each in a fresh interpreter at the same time (``spw='0:a~b'``);
    all with ``solnorm=False``, then merged (:func:`merge_bandpass_parts`)
    and normalised as CASA's ``solnorm=True`` does (:func:`normalize_bandpass`),
    because a per-part normalisation would differ between parts. The solutions
    equal a single solve's within CASA's convergence tolerance (a channel's
    solve starts from its neighbour's solution). ``kwargs`` are the common
    bandpass arguments (``vis``, ``refant``, ``solint``, ``gaintable``...);
    ``channels_with_data`` (Nfreqs[, Npols] booleans) keeps a part without
    any data from being split off (then one solve does it all). ``workers``
    (:func:`start_bandpass_workers`, started earlier so that their casatasks
    import overlaps the caller's work) are used instead of new processes; the
    caller stops them.

    Parameters
    ----------
    path
        The B table to write (parts are written beside it as ``<name>.part<k>`` and removed).
    ms_path
        The group's MS, named in error messages (the solve itself runs on ``kwargs['vis']``).
    channels_with_data
        Booleans, shape (Nfreqs,) or (Nfreqs, Npols): channels holding unflagged data.
    processes
        Most processes to split the channels over (at least ``MIN_CHANNELS_PER_PROCESS`` channels each);
        1 solves in this process only.
    workers
        Pre-started worker interpreters (:func:`start_bandpass_workers`), at least ``parts - 1`` of them;
        None starts (and stops) fresh ones as needed.
    kwargs
        Common ``casatasks.bandpass`` arguments; must include ``vis``.

    Raises
    ------
    ValueError
        Fewer ``workers`` than the parts beyond the first need.
    contimg.tools.ToolTimedOut
        A worker's part did not finish within ``PART_TIMEOUT_S`` after this process's part.
    contimg.errors.ExternalToolError
        A part failed or was not written (or a transient error classified from the worker's stderr).
    """
    has_data = np.any(np.asarray(channels_with_data).reshape(len(channels_with_data), -1), axis=1)
    nchan = has_data.size
    n_parts = min(processes, max(1, nchan // MIN_CHANNELS_PER_PROCESS))
    if workers is not None:
        n_parts = min(n_parts, len(workers) + 1)
    ranges = _channel_ranges(nchan, n_parts)
    if len(ranges) > 1 and not all(has_data[a:b + 1].any() for a, b in ranges):
        ranges = [(0, nchan - 1)]  # a part without data would fail in CASA: one solve flags those channels
    if len(ranges) == 1:
        run_task("bandpass", ms_path, caltable=str(path), bandtype="B", solnorm=True, **kwargs)
        return
    parts = [path.with_name(f"{path.name}.part{k}") for k in range(len(ranges))]
    own = workers is None
    if workers is None:
        workers = start_bandpass_workers(len(ranges) - 1)
    if len(workers) < len(ranges) - 1:
        raise ValueError(f"{len(ranges) - 1} bandpass workers needed, {len(workers)} given")
    used = workers[:len(ranges) - 1]
    try:
        for proc, part, (a, b) in zip(used, parts[1:], ranges[1:]):
            shutil.rmtree(part, ignore_errors=True)
            args = dict(kwargs, caltable=str(part), bandtype="B", solnorm=False, spw=f"0:{a}~{b}")
            log.debug("bandpass worker %d: %s", proc.pid, args)
            assert proc.stdin is not None  # start_bandpass_workers opens stdin=PIPE
            try:
                proc.stdin.write(json.dumps(args) + "\n")
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the worker died during start-up: reported below with its exit code
        shutil.rmtree(parts[0], ignore_errors=True)
        a, b = ranges[0]
        run_task("bandpass", ms_path, caltable=str(parts[0]), bandtype="B", solnorm=False, spw=f"0:{a}~{b}",
                  **kwargs)
        for proc, part in zip(used, parts[1:]):
            try:
                proc.wait(timeout=PART_TIMEOUT_S)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                raise ToolTimedOut(f"{ms_path}: casatasks.bandpass on {part.name} did not finish in "
                                        f"{PART_TIMEOUT_S:.0f} s after this process's part; killed") from exc
            if proc.returncode != 0:
                proc.err_file.seek(0)  # type: ignore[attr-defined]
                tail = " | ".join(proc.err_file.read().strip().splitlines()[-3:])  # type: ignore[attr-defined]
                kind = classify(tail, returncode=proc.returncode)  # killed, out of space, a lock: transient
                raise kind(f"{ms_path}: casatasks.bandpass on {part.name} failed (exit {proc.returncode}): {tail}")
        for part in parts:
            if not part.exists():
                raise ExternalToolError(f"{ms_path}: CASA wrote no bandpass part {part}")
        merge_bandpass_parts(parts, path, vis=kwargs["vis"], ms_path=ms_path)
        normalize_bandpass(path)
    finally:
        if own:
            stop_bandpass_workers(workers)
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
