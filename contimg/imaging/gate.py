"""The image QA gate: a verdict (``pass``, ``warn``, ``fail``) with reasons beside every image's figures.

An image is judged where it is made, on figures measured from the image, the
imager's log and the Measurement Set itself:

* **noise**: the residual rms against the thermal noise predicted from the
  MS's own weights, flags and the imaging weights (:func:`predicted_noise_jy`),
  or, near a bright source, against that source's flux over an achievable
  dynamic range (``qa.image_dynamic_range_floor``); a diverged deconvolution
  leaves residuals orders of magnitude above it;
* **negative pixels**: the most negative pixel of the restored image against
  its peak, once it is far below the noise (a runaway CLEAN digs holes as
  deep as the sources);
* **how the deconvolution stopped** (:func:`contimg.imaging.wsclean.parse_wsclean_log`):
  diverged is a failure, the iteration limit a warning;
* **dynamic range** (a warning below the setting);
* **restoring beam** against WSClean's theoretical beam (a warning outside a
  factor of ``beam_tolerance``);
* **flux scale**: the median ratio of the measured to the catalogue flux of
  bright catalogue sources in the field (computed by the pipeline, which has
  the catalogue; :func:`judge_image` takes it);
* **astrometry**: the median offset of the blind source finder's components
  from their catalogue matches (bright, compact, isolated;
  :func:`contimg.photometry.crossmatch.crossmatch`), in fractions of the
  restoring beam's minor axis. The blind components' median flux ratio is
  recorded beside it (``blind_flux_ratio``) but not judged: the flux scale is
  judged once, on the forced photometry above.

Thresholds come from ``settings.qa`` (:class:`contimg.config.QaSettings`).
A ``fail`` image never feeds the science: the image stage records it with its
verdict and fails the group with the reasons.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from contimg.verdict import FAIL, PASS, WARN, Verdict

__all__ = ["PASS", "WARN", "FAIL", "Verdict", "judge_astrometry", "judge_image", "negative_peak_jy",
           "predicted_noise_jy"]

log = logging.getLogger(__name__)

def negative_peak_jy(image_fits: str | os.PathLike, *, region: np.ndarray | None = None) -> float:
    """The most negative finite pixel of an image (Jy/beam), in ``region`` (boolean (ny, nx): the science region,
    where the primary beam is above the limit; None: the whole image).

    A bright source just beyond the field leaves negatives at the image's edge that nothing imaged can clean
    and no science uses: on a core-only array a 1.5 Jy source 2.8 deg from the pointing put -17 mJy/beam on the
    edge of an image whose peak was 16 mJy/beam, and the whole-image rule failed nine of thirty images of a
    season (``benchmarks/new_sources.py --seed 1``)."""
    from astropy.io import fits

    with fits.open(image_fits) as hdul:
        data = np.asarray(hdul[0].data, np.float32)
    while data.ndim > 2:
        data = data[0]
    if region is not None and region.shape == data.shape and region.any():
        data = data[region]
    return float(np.nanmin(data))


def predicted_noise_jy(ms_path: str | os.PathLike, *, imaging_weights: np.ndarray | None = None,
                       sample_rows: int = 4000) -> float:
    """Thermal noise (Jy/beam) of a Stokes-I image of the MS, from its own weights and flags.

    The per-visibility noise comes from ``WEIGHT_SPECTRUM`` (1/sigma^2 per
    polarisation; Stokes I = (XX + YY)/2), the unflagged fraction from
    ``FLAG``, both read on an even subsample of the cross-correlation rows. With
    per-row ``imaging_weights`` W (e.g. Briggs,
    :func:`contimg.imaging.smearing.briggs_weights`) the noise is
    sigma_I sqrt(sum W^2) / (sum W sqrt(f Nchan)); without them, natural weighting.

    Parameters
    ----------
    ms_path
        The MS to be imaged (WEIGHT_SPECTRUM, or WEIGHT when it has none, and FLAG).
    imaging_weights
        Imaging weight of each cross-correlation row, shape (Nrows_cross,), e.g.
        :func:`contimg.imaging.smearing.briggs_weights`; None: natural weighting over all cross rows.
    sample_rows
        About how many rows are read (every ``nrows // sample_rows``-th row) for the weights and flags.

    Returns
    -------
    float
        Predicted rms (Jy/beam) of the Stokes-I MFS image, assuming the weights are 1/sigma^2 in Jy^-2.

    Raises
    ------
    contimg.errors.InputFileError
        If the MS has no unflagged cross-correlation data.
    """
    from casacore.tables import table

    from contimg.errors import InputFileError

    with table(str(ms_path), ack=False) as t:
        nrows = t.nrows()
        step = max(1, nrows // sample_rows)
        a1 = t.getcol("ANTENNA1", 0, -1, step)
        a2 = t.getcol("ANTENNA2", 0, -1, step)
        column = "WEIGHT_SPECTRUM" if "WEIGHT_SPECTRUM" in t.colnames() else "WEIGHT"
        weight = np.asarray(t.getcol(column, 0, -1, step), float)
        flag = np.asarray(t.getcol("FLAG", 0, -1, step), bool)
        n_cross = int(np.sum(t.getcol("ANTENNA1") != t.getcol("ANTENNA2"))) if imaging_weights is None else None
    cross = a1 != a2
    weight, flag = weight[cross], flag[cross]
    if weight.ndim == 2:  # WEIGHT: (rows, pols), one value for all channels
        weight = np.repeat(weight[:, None, :], flag.shape[1], axis=1)
    good = ~flag[..., 0] & ~flag[..., -1] & (weight[..., 0] > 0) & (weight[..., -1] > 0)
    if not good.any():
        raise InputFileError(f"{ms_path}: no unflagged cross-correlation data to predict the noise from")
    sigma_i = 0.5 * np.sqrt(1.0 / weight[..., 0][good] + 1.0 / weight[..., -1][good])
    sigma_vis = float(np.sqrt(np.mean(sigma_i ** 2)))
    nchan_good = float(good.sum()) / max(1, good.shape[0])  # unflagged channels per row, on average
    if imaging_weights is None:
        n = n_cross * nchan_good
        return sigma_vis / math.sqrt(max(n, 1.0))
    w = np.asarray(imaging_weights, float)
    return sigma_vis * math.sqrt(float(np.sum(w ** 2))) / (float(np.sum(w)) * math.sqrt(max(nchan_good, 1e-9)))


def judge_image(*, rms_jy: float, peak_jy: float, negative_jy: float, dynamic_range: float,
                predicted_rms_jy: float | None, deconvolution: dict[str, Any] | None,
                expected_peak_jy: float | None = None,
                beam_arcsec: tuple[float, float] | None, flux_ratio: float | None, flux_sources: int,
                qa: Any, astrometry: dict[str, Any] | None = None) -> Verdict:
    """The verdict on one image.

    Parameters
    ----------
    rms_jy, peak_jy, negative_jy, dynamic_range
        The image's residual rms, brightest and most negative pixels, and peak/rms.
    predicted_rms_jy
        Thermal noise predicted from the MS (:func:`predicted_noise_jy`); None: not judged.
    expected_peak_jy
        The brightest apparent catalogue flux in the field (None: the image's own peak). The noise
        is judged against the thermal noise or this over ``qa.image_dynamic_range_floor``, whichever
        is larger: near a bright source the residuals are limited by calibration and deconvolution
        errors, not by the thermal noise.
    deconvolution
        :meth:`contimg.imaging.wsclean.DeconvolutionLog.to_dict` (None for tclean).
    beam_arcsec
        Fitted restoring beam (major, minor).
    flux_ratio, flux_sources
        Median measured/catalogue flux of the bright catalogue sources and how many there were
        (``flux_sources`` 0: not judged).
    qa
        ``settings.qa`` (:class:`contimg.config.QaSettings`).
    astrometry
        The cross-match of the blind components (:meth:`contimg.photometry.crossmatch.Crossmatch.summary`:
        ``ra_offset_arcsec``, ``dec_offset_arcsec``, ``n_clean``, ``flux_ratio``, ...); None: not judged.
        The offset is judged against ``beam_arcsec``'s minor axis when at least ``qa.astrometry_min_matches``
        clean matches gave it.

    Returns
    -------
    Verdict
    """
    v = Verdict(figures={"rms_jy": rms_jy, "peak_jy": peak_jy, "negative_jy": negative_jy,
                         "dynamic_range": dynamic_range, "predicted_rms_jy": predicted_rms_jy,
                         "flux_ratio": flux_ratio, "flux_sources": flux_sources, "deconvolution": deconvolution})
    finite = math.isfinite(rms_jy) and math.isfinite(peak_jy) and rms_jy > 0
    if not finite:
        v.add(FAIL, f"the image has no finite noise or peak (rms {rms_jy}, peak {peak_jy})")
    _judge_deconvolution(v, deconvolution, beam_arcsec, qa)
    if finite:
        _judge_pixels(v, rms_jy=rms_jy, peak_jy=peak_jy, negative_jy=negative_jy, dynamic_range=dynamic_range,
                      predicted_rms_jy=predicted_rms_jy, expected_peak_jy=expected_peak_jy, qa=qa)
    if flux_sources and flux_ratio is not None:
        v.grade(abs(flux_ratio - 1.0), warn=qa.flux_scale_warn, fail=qa.flux_scale_fail,
                message=f"bright catalogue sources measure {flux_ratio:.3f} x their catalogue flux "
                        f"(median of {flux_sources})")
    if astrometry is not None:
        judge_astrometry(v, astrometry, beam_arcsec=beam_arcsec, qa=qa)
    return v


def judge_astrometry(v: Verdict, astrometry: dict[str, Any], *, beam_arcsec: tuple[float, float] | None,
                     qa: Any) -> None:
    """Add the astrometry check to a verdict (the image stage runs the finder only on images not failed already).

    Parameters
    ----------
    v
        The image's verdict, amended in place.
    astrometry
        As :func:`judge_image` takes it.
    beam_arcsec
        Fitted restoring beam (major, minor).
    qa
        ``settings.qa``.
    """
    v.figures["astrometry"] = astrometry
    if astrometry.get("error"):
        v.add(WARN, f"blind source finding failed, astrometry not judged: {astrometry['error']}")
        return
    v.figures["blind_flux_ratio"] = astrometry.get("flux_ratio")  # recorded, not judged (see the module doc)
    dra, ddec = astrometry.get("ra_offset_arcsec"), astrometry.get("dec_offset_arcsec")
    n = int(astrometry.get("n_clean") or 0)
    if dra is None or ddec is None or n < qa.astrometry_min_matches or not beam_arcsec:
        return
    minor = float(beam_arcsec[1])
    if not (math.isfinite(minor) and minor > 0):
        return
    offset = math.hypot(dra, ddec)
    v.figures["astrometric_offset_beams"] = offset / minor
    v.grade(offset / minor, warn=qa.astrometry_warn, fail=qa.astrometry_fail,
            message=f"components are offset from their catalogue matches by {offset:.2f} arcsec "
                    f"(RA {dra:+.2f}, Dec {ddec:+.2f}; median of {n}), {offset / minor:.2f} of the beam's "
                    f"minor axis {minor:.1f} arcsec")


def _judge_pixels(v: Verdict, *, rms_jy: float, peak_jy: float, negative_jy: float, dynamic_range: float,
                  predicted_rms_jy: float | None, expected_peak_jy: float | None, qa: Any) -> None:
    if predicted_rms_jy and predicted_rms_jy > 0:
        bright = expected_peak_jy if expected_peak_jy is not None else peak_jy
        floor = max(predicted_rms_jy, max(bright, 0.0) / qa.image_dynamic_range_floor)
        excess = rms_jy / floor
        v.figures["rms_excess"] = excess
        v.figures["noise_floor_jy"] = floor
        what = ("the thermal noise predicted from the MS" if floor == predicted_rms_jy else
                f"the floor set by a {bright:.3g} Jy source at dynamic range {qa.image_dynamic_range_floor:g}")
        msg = f"residual rms {rms_jy * 1e3:.3g} mJy/beam is {excess:.1f} x {what} ({floor * 1e3:.3g} mJy/beam)"
        if excess > qa.image_rms_fail:
            v.add(FAIL, msg + f" (fail above {qa.image_rms_fail:g})")
        elif excess > qa.image_rms_warn:
            v.add(WARN, msg + f" (warn above {qa.image_rms_warn:g})")
    depth = -negative_jy / peak_jy if peak_jy > 0 else float("inf")
    v.figures["negative_fraction"] = depth
    noise = max(rms_jy, predicted_rms_jy or 0.0)
    if negative_jy < -qa.image_negative_min_sigma * noise:
        msg = (f"most negative pixel {negative_jy:.4g} Jy/beam is {depth:.0%} of the peak {peak_jy:.4g} Jy/beam")
        if depth > qa.image_negative_fail:
            v.add(FAIL, msg + f" (fail above {qa.image_negative_fail:.0%})")
        elif depth > qa.image_negative_warn:
            v.add(WARN, msg + f" (warn above {qa.image_negative_warn:.0%})")
    if math.isfinite(dynamic_range) and dynamic_range < qa.image_min_dynamic_range:
        v.add(WARN, f"dynamic range {dynamic_range:.1f} below {qa.image_min_dynamic_range:g}")


def _judge_deconvolution(v: Verdict, deconvolution: dict[str, Any] | None, beam_arcsec: tuple[float, float] | None,
                         qa: Any) -> None:
    if deconvolution:
        if deconvolution.get("diverged"):
            last = (deconvolution.get("stops") or [[None]])[-1][0]
            last = float("nan") if last is None else last
            v.add(FAIL, f"the deconvolution diverged (stopped on a residual peak of {last:.4g} Jy, "
                        f"{deconvolution.get('final_reason')})")
        elif deconvolution.get("final_reason") == "iterations":
            v.add(WARN, "the deconvolution stopped at its iteration limit, not at its threshold")
        theo = deconvolution.get("theoretical_beam_arcsec")
        if beam_arcsec and theo and all(math.isfinite(b) for b in beam_arcsec):
            size = math.sqrt(beam_arcsec[0] * beam_arcsec[1])
            v.figures["beam_over_theoretical"] = size / theo
            if not (1 / qa.beam_tolerance <= size / theo <= qa.beam_tolerance):
                v.add(WARN, f"restoring beam {beam_arcsec[0]:.1f} x {beam_arcsec[1]:.1f} arcsec is "
                            f"{size / theo:.2f} x the theoretical {theo:.1f} arcsec")
