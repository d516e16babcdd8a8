"""Cross-match an image's blind components with the catalogue: matches, astrometric offset, flux ratio.

Each component is matched to its nearest catalogue source
(:meth:`astropy.coordinates.SkyCoord.match_to_catalog_sky`) within a radius
(a fraction of the restoring beam's major axis). The image's astrometry is the
median offset (component minus catalogue; RA offset on the sky, i.e. times
cos Dec) of the *clean* matches: components detected at ``min_snr`` or more,
compact (integrated / peak flux below ``max_size_ratio``), one component per
catalogue source and no other catalogue source within ``isolation_beams``
beam majors (unconfused), and catalogue sources neither resolved nor confused.
The flux ratio is the median of component integrated flux (PB-corrected) over
the catalogue flux at the image frequency, ``S_1.4 (nu / 1.4 GHz)^alpha``, of
the same matches.

Medians of tens of matches are robust to the few wrong ones (a component that
is really a sidelobe, a variable source). For a positional uncertainty of
sigma per match the median's error is about 1.25 sigma / sqrt(n); the
components' own errors are of order (beam / 2) / SNR (Condon 1997, PASP 109, 166).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Crossmatch", "crossmatch"]

DEFAULT_SPECTRAL_INDEX = -0.7


@dataclass(frozen=True)
class Crossmatch:
    """The matches of one image's components and the image's astrometry and flux-scale figures."""

    index: np.ndarray
    """Per component: index into the catalogue arrays of its match, -1 when none within the radius."""
    separation_arcsec: np.ndarray
    """Per component: distance to that match (NaN when none)."""
    clean: np.ndarray
    """Per component: used for the offsets and the flux ratio."""
    ra_offset_arcsec: float | None
    """Median component - catalogue RA offset on the sky (arcsec); None without clean matches."""
    dec_offset_arcsec: float | None
    n_matches: int
    """Components with a catalogue match."""
    n_clean: int
    flux_ratio: float | None
    """Median integrated component / catalogue flux at the image frequency of the clean matches."""

    def summary(self) -> dict[str, Any]:
        """The scalar figures (JSON-able)."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        off = (None if self.ra_offset_arcsec is None or self.dec_offset_arcsec is None
               else float(np.hypot(self.ra_offset_arcsec, self.dec_offset_arcsec)))
        return out | {"offset_arcsec": off}


def crossmatch(components: dict[str, np.ndarray], catalogue: dict[str, np.ndarray], *, beam_major_arcsec: float,
               freq_hz: float, radius_beams: float = 1.0, min_snr: float = 20.0, max_size_ratio: float = 1.3,
               isolation_beams: float = 2.0) -> Crossmatch:
    """Match components to the catalogue and measure the image's astrometric offset and flux ratio.

    Parameters
    ----------
    components
        ``ra_deg``, ``dec_deg``, ``peak_flux_jy``, ``int_flux_jy`` (PB-corrected) and ``local_rms_jy`` and
        ``beam_response`` (the SNR is peak x response / rms), equal-length arrays.
    catalogue
        ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz), ``spectral_index`` (NaN: -0.7) and ``stable``
        (neither resolved nor confused), equal-length arrays.
    beam_major_arcsec
        The restoring beam's major axis FWHM (sets the match and isolation radii).
    freq_hz
        The image's reference frequency.
    radius_beams
        Match radius in beam majors.
    min_snr
        Clean matches are detected at this SNR or more.
    max_size_ratio
        Clean matches have integrated / peak flux below this (compact).
    isolation_beams
        Clean matches have no other catalogue source within this many beam majors.

    Returns
    -------
    Crossmatch
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    n = len(components["ra_deg"])
    index = np.full(n, -1, dtype=int)
    sep_arcsec = np.full(n, np.nan)
    clean = np.zeros(n, dtype=bool)
    empty = Crossmatch(index, sep_arcsec, clean, None, None, 0, 0, None)
    ncat = len(catalogue["ra_deg"])
    if n == 0 or ncat == 0:
        return empty
    comp = SkyCoord(np.asarray(components["ra_deg"], float) * u.deg, np.asarray(components["dec_deg"], float) * u.deg)
    cat = SkyCoord(np.asarray(catalogue["ra_deg"], float) * u.deg, np.asarray(catalogue["dec_deg"], float) * u.deg)
    idx, sep, _ = comp.match_to_catalog_sky(cat)
    radius = radius_beams * beam_major_arcsec
    matched = sep.arcsec <= radius
    index[matched] = idx[matched]
    sep_arcsec[matched] = sep.arcsec[matched]
    if not matched.any():
        return empty

    # isolation: the matched catalogue source's nearest other catalogue source
    if ncat > 1:
        _, sep2, _ = cat.match_to_catalog_sky(cat, nthneighbor=2)
        isolated = sep2.arcsec > isolation_beams * beam_major_arcsec
    else:
        isolated = np.ones(1, dtype=bool)
    counts = np.bincount(index[matched], minlength=ncat)
    peak = np.asarray(components["peak_flux_jy"], float)
    integ = np.asarray(components["int_flux_jy"], float)
    snr = peak * np.asarray(components["beam_response"], float) / np.asarray(components["local_rms_jy"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        compact = integ / peak < max_size_ratio
    stable = np.asarray(catalogue["stable"], bool)
    safe = np.where(matched, index, 0)
    clean = (matched & (snr >= min_snr) & compact & isolated[safe] & (counts[safe] == 1) & stable[safe]
             & np.isfinite(integ))
    ra_off = dec_off = ratio = None
    if clean.any():
        c, k = comp[clean], cat[safe[clean]]
        dra, ddec = k.spherical_offsets_to(c)
        ra_off, dec_off = float(np.median(dra.arcsec)), float(np.median(ddec.arcsec))
        alpha = np.asarray(catalogue["spectral_index"], float)[safe[clean]]
        alpha = np.where(np.isfinite(alpha), alpha, DEFAULT_SPECTRAL_INDEX)
        expected = np.asarray(catalogue["flux_jy"], float)[safe[clean]] * (freq_hz / 1.4e9) ** alpha
        ratios = integ[clean] / expected
        ratios = ratios[np.isfinite(ratios)]
        ratio = float(np.median(ratios)) if ratios.size else None
    return Crossmatch(index, sep_arcsec, clean, ra_off, dec_off, int(matched.sum()), int(clean.sum()), ratio)
