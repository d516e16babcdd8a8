"""New sources: blind components with no catalogue counterpart that earlier epochs could not have missed.

The science of the new-source search, without the database
(:mod:`contimg.pipeline.new_sources` reads the components, the catalogue and
the earlier images, and stores the candidates).

Which components are looked at (:func:`select_components`)
    A component of an image (:mod:`contimg.photometry.finder`) with no
    catalogue source within the cross-match radius
    (:mod:`contimg.photometry.crossmatch`) is considered when it is

    * detected at ``min_snr`` or more (peak brightness over the local rms of
      the flat-noise image; the finder seeds islands at 5 sigma, and a 3840 x
      3072 image holds ~10^6 independent beams, so 5-sigma noise peaks are
      expected by the dozen a night while 7-sigma ones are not);
    * fitted cleanly (the finder's flag 0, or only
      :data:`~contimg.photometry.finder.ISLAND_EDGE_FLAG`) and compact
      (integrated over peak flux below ``max_size_ratio`` plus twice its
      error: one beam, as a transient is; at SNR 8 a point source's ratio
      scatters by ~0.2);
    * not confused: no catalogue source brighter than it (at the image's
      frequency) and no brighter component within ``confusion_beams``
      restoring-beam major axes. A bright source fitted with several Gaussians
      leaves the fainter ones without a match, and deconvolution errors around
      a bright source are islands beside it.

What makes it new (:func:`newness`)
    Every *earlier* epoch that covers the position (another pass over the same
    sky, not the same drift) is measured there by forced photometry
    (:func:`contimg.photometry.forced.forced_photometry`): ``F_i +- sigma_i``,
    primary-beam corrected, ``sigma_i`` from that image's local rms. Against
    epoch ``i`` the component's flux ``S`` (its peak brightness, PB-corrected:
    the flux of a point source) stands out by

    .. math:: z_i = (S - F_i) / \\sigma_i,

    and epoch ``i`` would have found a source of flux ``S`` if ``z_i`` reaches
    the detection threshold (the finder's seed clip). The component's
    *significance* is the largest ``z_i``: how far above what the most
    constraining earlier epoch could have missed it is. It is a new-source
    candidate when the significance reaches the threshold and no earlier epoch
    saw something there (``F_i / sigma_i`` below ``seen_sigma``, 4: a chance
    of 3e-5 an epoch for noise, so sixty earlier epochs veto a real transient
    0.2 % of the time). A persistent source below the catalogue's limit, or an
    imaging artefact that repeats with the same uv coverage each day, measures
    ``F_i ~ S`` in the earlier epochs and never qualifies; so does one that an
    earlier image of a different drift geometry missed but another one saw
    (the largest ``z_i`` alone would call it new). A component whose position
    no earlier epoch covered is not judged (there is nothing for it to be new
    against). This is the VAST
    pipeline's "new source high sigma" (Murphy et al. 2021, PASA 38, e054;
    Pintaldi et al. 2022, ASPC 532, 333), with the earlier flux subtracted so
    that a source that was already there is not new because it brightened a
    little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NewSourceCriteria", "Newness", "newness", "select_components", "source_name"]


@dataclass(frozen=True)
class NewSourceCriteria:
    """The thresholds of the new-source search (``new_sources`` settings)."""

    min_snr: float = 7.0
    """A component is considered at this SNR or more in its own image."""
    detection_sigma: float = 5.0
    """An earlier epoch would have found a source ``detection_sigma`` times its local noise above what it measured
    there (the finder's seed clip); a candidate's significance reaches it."""
    seen_sigma: float = 4.0
    """An earlier epoch that measured this many sigma at the position saw something there: not new."""
    max_size_ratio: float = 1.5
    """Integrated / peak flux below this (compact)."""
    confusion_beams: float = 3.0
    """No brighter catalogue source or component within this many beam major axes."""


def select_components(components: dict[str, np.ndarray], match_index: np.ndarray, catalogue: dict[str, np.ndarray],
                      *, beam_major_arcsec: float, freq_hz: float, criteria: NewSourceCriteria) -> np.ndarray:
    """Which of an image's components the new-source search looks at (see the module docstring).

    Parameters
    ----------
    components
        ``ra_deg``, ``dec_deg``, ``peak_flux_jy``, ``int_flux_jy`` (PB-corrected), ``local_rms_jy``,
        ``beam_response`` and ``flags``, equal-length arrays; ``peak_flux_err_jy`` and ``int_flux_err_jy``
        if known.
    match_index
        Per component, the index of its catalogue match, -1 for none (:class:`~contimg.photometry.crossmatch.Crossmatch`).
    catalogue
        ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz) and ``spectral_index`` (NaN: -0.7) of the catalogue
        sources around the image.
    beam_major_arcsec
        The restoring beam's major axis FWHM.
    freq_hz
        The image's reference frequency (the catalogue fluxes are taken there).
    criteria
        The thresholds.

    Returns
    -------
    numpy.ndarray
        Boolean mask over the components.
    """
    from contimg.photometry.crossmatch import DEFAULT_SPECTRAL_INDEX
    from contimg.photometry.finder import ISLAND_EDGE_FLAG

    ra = np.asarray(components["ra_deg"], float)
    n = ra.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    dec = np.asarray(components["dec_deg"], float)
    peak = np.asarray(components["peak_flux_jy"], float)
    integ = np.asarray(components["int_flux_jy"], float)
    nan = np.full(n, np.nan)
    peak_err = np.asarray(components.get("peak_flux_err_jy", nan), float)
    int_err = np.asarray(components.get("int_flux_err_jy", nan), float)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = peak * np.asarray(components["beam_response"], float) / np.asarray(components["local_rms_jy"], float)
        ratio = integ / peak
        # the finder's errors, else a point source's at that SNR (Condon 1997: sqrt(2)/SNR and 1/SNR)
        ratio_err = ratio * np.hypot(int_err / integ, peak_err / peak)
        ratio_err = np.where(np.isfinite(ratio_err), ratio_err, ratio * math.sqrt(3.0) / snr)
        compact = ratio < criteria.max_size_ratio + 2.0 * ratio_err
    flags = np.asarray(components["flags"])
    keep = ((np.asarray(match_index) < 0) & (snr >= criteria.min_snr) & compact
            & ((flags == 0) | (flags == ISLAND_EDGE_FLAG)) & np.isfinite(peak))
    if not keep.any():
        return keep
    radius_deg = criteria.confusion_beams * beam_major_arcsec / 3600.0
    # brighter neighbours: the other components, and the catalogue at the image's frequency
    alpha = np.asarray(catalogue.get("spectral_index", np.zeros(0)), float)
    cat_flux = np.asarray(catalogue.get("flux_jy", np.zeros(0)), float) * (freq_hz / 1.4e9) ** np.where(
        np.isfinite(alpha), alpha, DEFAULT_SPECTRAL_INDEX)
    others_ra = np.concatenate([ra, np.asarray(catalogue.get("ra_deg", np.zeros(0)), float)])
    others_dec = np.concatenate([dec, np.asarray(catalogue.get("dec_deg", np.zeros(0)), float)])
    others_flux = np.concatenate([peak, cat_flux])
    for i in np.flatnonzero(keep):
        sep = _separation_deg(ra[i], dec[i], others_ra, others_dec)
        near = (sep <= radius_deg) & (others_flux > peak[i])
        near[i] = False
        if near.any():
            keep[i] = False
    return keep


@dataclass(frozen=True)
class Newness:
    """How far a component stands above what earlier epochs measured at its position."""

    significance: float
    """max over earlier epochs of (S - F_i) / sigma_i; NaN without earlier epochs."""
    n_prior: int
    """Earlier epochs that measured the position."""
    best: int
    """Index (into the earlier epochs given) of the one giving the significance; -1 without any."""
    limit_jy: float
    """The faintest flux the deepest earlier epoch could have found: threshold x min sigma_i (NaN without any)."""
    prior_sigma: float
    """The most any earlier epoch measured there, in its noise: max F_i / sigma_i (NaN without any)."""

    def is_new(self, threshold: float, seen_sigma: float = math.inf) -> bool:
        """Significant against an earlier epoch (``>= threshold``) and seen by none (``prior_sigma < seen_sigma``)."""
        return self.n_prior > 0 and bool(self.significance >= threshold) and bool(self.prior_sigma < seen_sigma)


def newness(flux_jy: float, prior_flux_jy: np.ndarray, prior_err_jy: np.ndarray, *, threshold: float) -> Newness:
    """The significance of a detection of flux ``flux_jy`` against earlier measurements at its position.

    Parameters
    ----------
    flux_jy
        The component's flux (PB-corrected peak brightness).
    prior_flux_jy, prior_err_jy
        Forced-photometry flux and 1-sigma error at the position in each earlier epoch (PB-corrected); pairs that
        are not finite, or with a non-positive error, are ignored.
    threshold
        The detection threshold (sets :attr:`Newness.limit_jy`).

    Returns
    -------
    Newness
    """
    f = np.asarray(prior_flux_jy, float).reshape(-1)
    e = np.asarray(prior_err_jy, float).reshape(-1)
    ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
    if not ok.any() or not math.isfinite(flux_jy):
        return Newness(math.nan, int(ok.sum()), -1, math.nan, math.nan)
    z = np.where(ok, (flux_jy - np.where(ok, f, 0.0)) / np.where(ok, e, 1.0), -np.inf)
    best = int(np.argmax(z))
    seen = float(np.max(f[ok] / e[ok]))
    return Newness(float(z[best]), int(ok.sum()), best, float(threshold * e[ok].min()), seen)


def source_name(ra_deg: float, dec_deg: float, prefix: str = "CTG") -> str:
    """An IAU-style name from a position: ``CTG Jhhmmss.s+ddmmss`` (truncated, not rounded, as the IAU asks).

    Parameters
    ----------
    ra_deg, dec_deg
        The position (ICRS, deg).
    prefix
        The acronym.

    Returns
    -------
    str
    """
    tenths = int(math.floor((ra_deg % 360.0) / 15.0 * 36000.0 + 1e-6)) % (24 * 36000)  # tenths of a second of time
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    arcsec = int(math.floor(abs(dec_deg) * 3600.0 + 1e-6))
    d, rest_d = divmod(arcsec, 3600)
    dm, ds = divmod(rest_d, 60)
    sign = "+" if dec_deg >= 0 else "-"
    return f"{prefix} J{h:02d}{m:02d}{rest // 10:02d}.{rest % 10}{sign}{d:02d}{dm:02d}{ds:02d}"


def _separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    from contimg.beam import angular_separation

    return np.degrees(angular_separation(math.radians(ra0), math.radians(dec0), np.radians(ra), np.radians(dec)))
