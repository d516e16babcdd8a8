"""Blind source finding on one image: Aegean with a BANE background and noise map.

:func:`find_components` runs BANE (a background and noise map on a grid,
Hancock et al. 2018, PASA 35, e011) and Aegean (islands seeded at
``seed_clip`` sigma, flooded to ``flood_clip`` sigma, each fitted with as many
elliptical Gaussians as it has summits; Hancock et al. 2012, MNRAS 422, 1812)
on the *flat-noise* image, where the noise is uniform and the fit weights are
right, then divides each component's fluxes and errors by the primary beam at
its position, read off the product set's averaged beam (``<name>.pb.fits``,
:func:`contimg.photometry.measure.beam_response_at`). Components below
``min_beam_response`` are dropped (the PB-corrected image is NaN there too).

Why Aegean and not PyBDSF: ``benchmarks/source_finding.py`` and
``docs/source_finding.md`` (same completeness and flux accuracy on our
images; the choice and its figures are there).

Robustness: both tools run in this process on one core (``cores=1``: the
Celery worker's process must not fork after importing casatools, and the
finder must not take the node's other cores); Aegean's global
``np.seterr`` is confined to the call; its log goes to our logging at
WARNING and above. Any exception of the finder (it raises ``AssertionError``,
``IndexError``, ``ValueError`` on odd inputs) becomes a
:class:`contimg.errors.SourceFindingError` naming the image; ``MemoryError``
is not caught.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contimg.errors import InputFileError, SourceFindingError

__all__ = ["COMPONENT_COLUMNS", "Components", "find_components"]

log = logging.getLogger(__name__)

COMPONENT_COLUMNS = ("ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "peak_flux_jy", "peak_flux_err_jy",
                     "int_flux_jy", "int_flux_err_jy", "major_arcsec", "minor_arcsec", "pa_deg", "local_rms_jy",
                     "beam_response", "flags")
"""The per-component arrays of :class:`Components` (the ``components`` table's measured columns)."""


@dataclass
class Components:
    """The components found in one image (PB-corrected fluxes) and what it cost."""

    image: Path
    columns: dict[str, np.ndarray]
    """:data:`COMPONENT_COLUMNS` -> equal-length arrays. Errors the finder could not fit are NaN."""
    seconds: dict[str, float] = field(default_factory=dict)
    """``background`` (BANE) and ``fit`` (Aegean) wall time."""

    def __len__(self) -> int:
        return int(self.columns["ra_deg"].size)

    def rows(self) -> list[dict[str, float | int | None]]:
        """One dict per component (for :func:`contimg.db.science.replace_components`)."""
        keys = list(self.columns)
        return [{k: (int(v) if k == "flags" else float(v)) for k, v in zip(keys, vals)}
                for vals in zip(*(self.columns[k] for k in keys))]


def find_components(image: str | Path, *, pb: str | Path | None, seed_clip: float = 5.0, flood_clip: float = 4.0,
                    min_beam_response: float = 0.2) -> Components:
    """Find the components of a flat-noise image and correct their fluxes by the primary beam.

    Parameters
    ----------
    image
        The flat-noise restored image (Jy/beam; FITS with a celestial WCS and BMAJ/BMIN/BPA).
    pb
        The product set's averaged primary beam (``<name>.pb.fits``) on the same grid; None: no correction
        (response 1, e.g. an image that is already PB-corrected).
    seed_clip
        Islands are seeded at pixels this many sigma above the background.
    flood_clip
        ... and grown over pixels above this many sigma.
    min_beam_response
        Components where the beam is below this are dropped.

    Returns
    -------
    Components
        Positions (deg) and their errors (arcsec), peak (Jy/beam) and integrated (Jy) fluxes with errors
        divided by the beam response, fitted FWHM axes (arcsec) and position angle (deg), the local rms of the
        flat-noise image (Jy/beam), the beam response, the fit flags.

    Raises
    ------
    InputFileError
        If the image is missing or has no restoring beam.
    SourceFindingError
        If BANE or Aegean failed on the image.
    """
    image = Path(image)
    _check_image(image)
    filter_image, SourceFinder = _import_aegean()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bane_") as tmp, np.errstate(all="ignore"):
        base = str(Path(tmp) / "img")
        try:
            t0 = time.perf_counter()
            filter_image(str(image), out_base=base, cores=1, nslice=1)
            timings["background"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = SourceFinder().find_sources_in_image(
                str(image), rmsin=base + "_rms.fits", bkgin=base + "_bkg.fits", cores=1, innerclip=seed_clip,
                outerclip=flood_clip, cube_index=0, progress=False)
            timings["fit"] = time.perf_counter() - t0
        except MemoryError:
            raise
        except Exception as exc:  # the finder's failure modes are not a documented set
            raise SourceFindingError(f"{image}: source finding (BANE/Aegean) failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
    # np.errstate restored the error state Aegean changes globally (np.seterr(invalid="ignore"))
    comps = [c for c in found if np.isfinite(c.peak_flux) and c.peak_flux > 0 and np.isfinite(c.ra)]
    cols = _columns(comps)
    response: np.ndarray | None = np.ones(len(comps))
    if pb is not None and comps:
        from contimg.photometry.measure import ImageSet, beam_response_at

        images = ImageSet(image_id=0, path=str(image), epoch_mjd=math.nan, flat=image, pbcor=None, pb=Path(pb),
                          ms_path=None)
        response = beam_response_at(cols["ra_deg"], cols["dec_deg"], images=images)
    if response is None:  # cannot happen with a pb image; keeps the types honest
        response = np.ones(len(comps))
    keep = response >= min_beam_response
    with np.errstate(divide="ignore", invalid="ignore"):
        for key in ("peak_flux_jy", "peak_flux_err_jy", "int_flux_jy", "int_flux_err_jy"):
            cols[key] = cols[key] / response
    cols["beam_response"] = response
    cols = {k: v[keep] for k, v in cols.items()}
    log.info("%s: %d components (%d below beam response %.2f dropped); background %.1f s, fit %.1f s", image,
             int(keep.sum()), int((~keep).sum()), min_beam_response, timings.get("background", 0.0),
             timings.get("fit", 0.0))
    return Components(image=image, columns=cols, seconds=timings)


def _check_image(image: Path) -> None:
    from astropy.io import fits

    try:
        header = fits.getheader(image)
    except (OSError, TypeError, ValueError) as exc:
        raise InputFileError(f"{image}: unreadable FITS image: {exc}") from exc
    if not float(header.get("BMAJ", 0) or 0) > 0:
        raise InputFileError(f"{image}: no restoring beam (BMAJ) in the header; cannot find sources")


def _err(values: list[float]) -> np.ndarray:
    arr = np.asarray(values, float)
    return np.where(arr >= 0, arr, np.nan)  # Aegean writes -1 for errors it could not fit


def _columns(comps: list) -> dict[str, np.ndarray]:
    def get(name: str) -> list[float]:
        return [float(getattr(c, name)) for c in comps]

    return {
        "ra_deg": np.asarray(get("ra"), float) % 360.0,
        "dec_deg": np.asarray(get("dec"), float),
        "ra_err_arcsec": _err(get("err_ra")) * 3600,
        "dec_err_arcsec": _err(get("err_dec")) * 3600,
        "peak_flux_jy": np.asarray(get("peak_flux"), float),
        "peak_flux_err_jy": _err(get("err_peak_flux")),
        "int_flux_jy": np.asarray(get("int_flux"), float),
        "int_flux_err_jy": _err(get("err_int_flux")),
        "major_arcsec": np.asarray(get("a"), float),
        "minor_arcsec": np.asarray(get("b"), float),
        "pa_deg": np.asarray(get("pa"), float),
        "local_rms_jy": np.asarray(get("local_rms"), float),
        "flags": np.asarray([int(c.flags) for c in comps], int),
    }


def _import_aegean():
    """Import BANE and Aegean without their side effects on the process's logging.

    Importing AegeanTools turns on ``logging.captureWarnings`` for the whole process and logs INFO to a
    stderr handler of its own: capture is put back as it was, and its log goes through ours at WARNING.
    """
    capturing = getattr(logging, "_warnings_showwarning", None) is not None  # the stdlib's own record of it
    from AegeanTools.BANE import filter_image
    from AegeanTools.source_finder import SourceFinder

    if not capturing:
        logging.captureWarnings(False)
    aegean = logging.getLogger("AegeanTools")
    aegean.setLevel(logging.WARNING)
    for handler in list(aegean.handlers):
        aegean.removeHandler(handler)
    aegean.propagate = True
    return filter_image, SourceFinder
