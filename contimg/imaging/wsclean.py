"""The one wrapper around the ``wsclean`` program (WSClean 3.1, Debian).

:func:`wsclean_arguments` builds the argument list from the image geometry and
the tier; :func:`run_wsclean` runs it (an argument list, never a shell, with a
timeout, the command line logged and WSClean's output kept in a log file) and
turns every failure into an :class:`~contimg.errors.ExternalToolError` naming
the MS and the log.

Choices (see ``/work/shared/NOTES.md`` and ``benchmarks/imaging.py``):

* ``-no-update-model-required``: WSClean would otherwise write its model into
  MODEL_DATA and overwrite the calibrator model the calibration stage put
  there.
* ``-use-wgridder``: the w-stacking gridder of Arras et al. (2021, A&A 646,
  A58), accurate to 1e-5 with w-terms (DSA-110 phases to the meridian at
  Dec 35 deg, ~2 deg from zenith: |w| reaches ~100 m, 3 rad at the field edge)
  and several times faster than the default w-stacking gridder.
* ``-parallel-gridding`` and ``-j`` use every thread given.
* ``-beam-fitting-size 1.5``: see :data:`BEAM_FITTING_SIZE`.
* ``-baseline-averaging``: sized per MS by
  :func:`contimg.imaging.smearing.plan_baseline_averaging` so that the peak
  of a source at the field edge drops by at most the tier's budget.
* One spectral window of ascending channels from the conversion stage: no
  ``-reorder`` needed (WSClean reads the single SPW directly).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from contimg.errors import ExternalToolError
from contimg.imaging.geometry import ImageGeometry
from contimg.imaging.tiers import TierParameters

__all__ = ["SPECTRAL_TERMS", "WSCLEAN_PRODUCTS", "DeconvolutionLog", "parse_wsclean_log", "run_wsclean",
           "take_mfs_products", "wsclean_arguments", "wsclean_executable"]

log = logging.getLogger(__name__)

BEAM_FITTING_SIZE = 1.5
"""WSClean fits the restoring beam to the PSF inside a box of this many theoretical beams (lambda/B_max).

Its default (3) takes in the near sidelobes of the DSA-110 snapshot PSF and
fits a beam twice too long (53 x 12 arcsec on a full-scale group whose PSF
has a 26 x 13 arcsec main lobe, which CASA's fit and the half-power contour
agree on); 1.5 gives 25.6 x 12.1 arcsec.
"""

WSCLEAN_PRODUCTS = ("image", "residual", "model", "psf")
"""Suffixes of the FITS files WSClean writes as ``<prefix>-<suffix>.fits`` (dirty image off)."""

SPECTRAL_TERMS = 2
"""Terms of the spectral fit with ``channels_out`` > 1 (``-fit-spectral-pol``): a linear spectrum per
component, enough over DSA-110's 14 % band (a power law's curvature there is < 0.3 %)."""


def take_mfs_products(prefix: str | os.PathLike) -> list[Path]:
    """After a run with ``-channels-out``: rename ``<prefix>-MFS-<suffix>.fits`` to ``<prefix>-<suffix>.fits``
    and remove the per-part images (``<prefix>-NNNN-<suffix>.fits``); returns the renamed files."""
    prefix = Path(prefix)
    out = []
    for suffix in WSCLEAN_PRODUCTS:
        mfs = prefix.parent / f"{prefix.name}-MFS-{suffix}.fits"
        if mfs.exists():
            dest = prefix.parent / f"{prefix.name}-{suffix}.fits"
            os.replace(mfs, dest)
            out.append(dest)
    for part in prefix.parent.glob(f"{prefix.name}-[0-9][0-9][0-9][0-9]-*.fits"):
        part.unlink()
    return out


def wsclean_executable() -> str:
    """Path of ``wsclean`` (``CONTIMG_WSCLEAN`` overrides), or raise if it is not installed."""
    exe = os.environ.get("CONTIMG_WSCLEAN") or shutil.which("wsclean")
    if not exe:
        raise ExternalToolError("wsclean is not installed (apt-get install wsclean) or not on PATH")
    return exe


def wsclean_arguments(
    ms_path: str | os.PathLike,
    *,
    prefix: str | os.PathLike,
    geometry: ImageGeometry,
    tier: TierParameters,
    robust: float = 0.0,
    threads: int = 1,
    data_column: str = "CORRECTED_DATA",
    fits_mask: str | os.PathLike | None = None,
    temp_dir: str | os.PathLike | None = None,
    baseline_averaging: float | None = None,
    channels_out: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The WSClean argument list (without the executable) for one MFS Stokes-I image.

    Parameters
    ----------
    ms_path
        The Measurement Set (last argument).
    prefix
        Output name prefix (``-name``); WSClean writes ``<prefix>-image.fits`` ...
    geometry
        Cell and size.
    tier
        Deconvolution parameters.
    robust
        Briggs robust parameter.
    threads
        Threads for gridding and deconvolution.
    data_column
        Column to image.
    fits_mask
        Optional clean mask on the image grid (catalogue mask); replaces auto-masking.
    temp_dir
        Where WSClean keeps temporary files.
    baseline_averaging
        ``-baseline-averaging`` size in wavelengths
        (:func:`contimg.imaging.smearing.plan_baseline_averaging`); None: no averaging.
    channels_out
        More than 1: image that many equal parts of the band and deconvolve them jointly with a
        linear spectral fit (``-channels-out N -join-channels -fit-spectral-pol 2``); the products are the
        band-averaged ``<prefix>-MFS-<suffix>.fits`` (:func:`take_mfs_products` renames them).
    extra
        Further arguments, appended before the MS (for experiments and benchmarks).

    Returns
    -------
    list[str]
        The arguments, the MS last; pass them to :func:`run_wsclean`.
    """
    args = [
        "-name", str(prefix),
        "-data-column", data_column,
        "-no-update-model-required",
        "-pol", "I",
        "-weight", "briggs", f"{robust:g}",
        "-size", str(geometry.nx), str(geometry.ny),
        "-scale", f"{geometry.cell_arcsec:g}asec",
        "-use-wgridder",
        "-wgridder-accuracy", f"{tier.wgridder_accuracy:g}",
        "-niter", str(tier.niter),
        "-nmiter", str(tier.major_cycles),
        "-mgain", f"{tier.mgain:g}",
        "-gain", f"{tier.gain:g}",
        "-auto-threshold", f"{tier.auto_threshold_sigma:g}",
        "-j", str(max(1, threads)),
        "-parallel-gridding", str(max(1, threads)),
        "-beam-fitting-size", f"{BEAM_FITTING_SIZE:g}",
        "-no-dirty",
        "-log-time",
    ]
    if fits_mask is not None:
        args += ["-fits-mask", str(fits_mask)]
    elif tier.auto_mask_sigma is not None:
        args += ["-auto-mask", f"{tier.auto_mask_sigma:g}"]
    if temp_dir is not None:
        args += ["-temp-dir", str(temp_dir)]
    if baseline_averaging is not None:
        args += ["-baseline-averaging", f"{baseline_averaging:.4g}"]
    if channels_out > 1:
        args += ["-channels-out", str(channels_out), "-join-channels", "-fit-spectral-pol", str(SPECTRAL_TERMS)]
    args += list(extra)
    args.append(str(ms_path))
    return args


def run_wsclean(
    args: Sequence[str],
    *,
    ms_path: str | os.PathLike,
    timeout_s: float,
    log_path: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
) -> tuple[float, float]:
    """Run ``wsclean`` with ``args``; return its wall time and CPU time (user + system, s).

    Parameters
    ----------
    args
        From :func:`wsclean_arguments`.
    ms_path
        The MS, for messages.
    timeout_s
        Kill WSClean after this many seconds.
    log_path
        WSClean's stdout and stderr go here.
    cwd
        Working directory of the process.

    Returns
    -------
    tuple[float, float]
        Wall-clock time and CPU time (user + system, all threads) of WSClean (s).

    Raises
    ------
    ExternalToolError
        If WSClean is missing, exits non-zero or times out; the message names
        the MS, the exit status and the last lines of the log. Killed, out of
        space or a locked table are transient (:mod:`contimg.tools`).
    """
    from contimg.tools import run_program

    run = run_program([wsclean_executable(), *args], subject=ms_path, timeout_s=timeout_s, log_path=log_path, cwd=cwd)
    return run.wall_s, run.cpu_s


_PEAK = r"(?P<{v}>[-+]?(?:nan|inf|[0-9.eE+-]+)) (?P<{u}>[mµu]?Jy)"
_LOOP_RE = re.compile(  # "Initial peak: X Jy" opens a minor loop, "Stopped on peak X Jy, because ..." closes it
    "Initial peak: " + _PEAK.format(v="value", u="unit")
    + "|Stopped on peak " + _PEAK.format(v="svalue", u="sunit") + r", because (?P<reason>[^.]+)", re.IGNORECASE)
_MAJOR_RE = re.compile(r"(?P<n>\d+) major iterations? (?:was|were) performed")
_THEORETICAL_RE = re.compile(r"theoretical=(?P<arcsec>[0-9.]+)''")
_UNIT = {"Jy": 1.0, "mJy": 1e-3, "µJy": 1e-6, "uJy": 1e-6}


@dataclass(frozen=True)
class DeconvolutionLog:
    """How WSClean's deconvolution went, read from its log."""

    stops: tuple[tuple[float, str], ...]
    """Each minor-loop stop: (residual peak it stopped on, Jy; why), in order."""
    major_iterations: int | None
    theoretical_beam_arcsec: float | None
    """WSClean's theoretical beam (lambda / longest baseline)."""
    starts: tuple[float | None, ...] = ()
    """The residual peak each minor loop of ``stops`` started from ("Initial peak", Jy; None if not logged)."""

    @property
    def final_reason(self) -> str:
        """``threshold``, ``iterations`` (the iteration limit), ``minor-loop`` or ``unknown``."""
        if not self.stops:
            return "unknown"
        reason = self.stops[-1][1]
        if "maximum number of iterations" in reason:
            return "iterations"
        if "minor-loop threshold" in reason:
            return "minor-loop"
        if "threshold" in reason:
            return "threshold"
        return "unknown"

    @property
    def diverged(self) -> bool:
        """True if cleaning ran away: a residual peak it stopped on is not finite, grew past twice the first one,
        or a minor loop ended on a larger residual peak than it started from (a divergent Hogbom loop on a PSF
        with strong sidelobes: the core-only array's "stopped on -264 Jy" after a start at 23 mJy).

        A loop that runs out of iterations while its residual still falls is not divergence (cleaning the
        artefacts of a bright source can use up ``niter``): :attr:`final_reason` says ``iterations``.
        Without "Initial peak" lines (older logs), a loop that hit the iteration limit ending further from
        zero than where the previous loop stopped counts as growing."""
        if not self.stops:
            return False
        if not all(math.isfinite(peak) for peak, _ in self.stops):
            return True  # WSClean went numerically wrong ("Stopped on peak -nan Jy")
        first, last = abs(self.stops[0][0]), self.stops[-1][0]
        if len(self.stops) > 1 and abs(last) > 2.0 * first:
            return True
        for k, (peak, _reason) in enumerate(self.stops):
            start = self.starts[k] if k < len(self.starts) else None
            if start is None and k > 0 and "maximum number of iterations" in _reason:
                start = self.stops[k - 1][0]
            if start is not None and math.isfinite(start) and abs(peak) > 1.05 * abs(start):
                return True
        return False

    def to_dict(self) -> dict:
        return {"stops": [list(s) for s in self.stops], "starts": list(self.starts),
                "major_iterations": self.major_iterations,
                "theoretical_beam_arcsec": self.theoretical_beam_arcsec, "final_reason": self.final_reason,
                "diverged": self.diverged}


def parse_wsclean_log(path: str | os.PathLike) -> DeconvolutionLog:
    """Read the minor-loop stops, the major iteration count and the theoretical beam from a WSClean log.

    WSClean 3.1 writes, after each minor loop, "Stopped on peak 24.74 mJy,
    because the threshold was reached." (or "... because maximum number of
    iterations was reached.") and at the end "3 major iterations were performed."
    """
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return DeconvolutionLog((), None, None)
    stops: list[tuple[float, str]] = []
    starts: list[float | None] = []
    pending: float | None = None
    for m in _LOOP_RE.finditer(text):  # "Initial peak" opens a minor loop, "Stopped on peak" closes it
        if m["value"] is not None:
            pending = float(m["value"]) * _UNIT.get(m["unit"], 1.0)
        else:
            stops.append((float(m["svalue"]) * _UNIT.get(m["sunit"], 1.0), m["reason"].strip()))
            starts.append(pending)
            pending = None
    major = _MAJOR_RE.search(text)
    theo = _THEORETICAL_RE.search(text)
    return DeconvolutionLog(tuple(stops), int(major["n"]) if major else None,
                            float(theo["arcsec"]) if theo else None, tuple(starts))
