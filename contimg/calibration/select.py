"""Which catalogue sources a group sees, and which calibrator (if any) it can be calibrated on.

A drift-scan group sees the strip of sky that transits the fixed-elevation
beam during its ~309 s (a pointed observation of another array: the circle
around its fixed pointing, :mod:`contimg.pointing`). For every catalogue calibrator near that strip we
compute the Airy primary-beam response (of the MS's own dishes, from its ANTENNA
table: 4.65 m for DSA-110; at 1.4 GHz) at each integration; a calibrator is *usable* when its best response during the group
reaches ``min_beam_response`` and its apparent flux (catalogue flux x that
response) reaches ``min_calibrator_flux_jy``. Among usable calibrators the one
with the highest apparent flux (beam response x flux) is chosen. A group
without a usable calibrator is a science group.

Nothing here reads the database: :func:`search_box` says which part of the
catalogue to read, :func:`contimg.db.science.catalogue_in_box` reads it,
:func:`sources_near_track` and :func:`choose_calibrator` work on what was read
(:func:`contimg.pipeline.calibrate.catalogue_near_track` does all three).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from collections.abc import Sequence

import numpy as np

from contimg.calibration.model import REFERENCE_FREQ_HZ, PointSources, apparent_flux
from contimg.msmodel import MsModel

log = logging.getLogger(__name__)

__all__ = ["CalibratorChoice", "CatalogueRow", "MODEL_RADIUS_DEG", "SkyBox", "choose_calibrator", "search_box",
           "sources_near_track"]

MODEL_RADIUS_DEG = 6.0
"""Sources within this distance of the pointing track enter the sky model: beyond the Airy
pattern's second null (5.6 deg at 1.31 GHz) the response is below 0.5%."""


@dataclass(frozen=True)
class CalibratorChoice:
    """The calibrator chosen for a group."""

    name: str
    flux_jy: float
    """Catalogue flux at 1.4 GHz."""
    beam_response: float
    """Best primary-beam response at 1.4 GHz during the group."""
    apparent_flux_jy: float
    """``flux_jy * beam_response``."""
    peak_mjd: float
    """Time (MJD) of the best response (the transit, if it happens during the group)."""
    transits_in_group: bool
    """True if the best response is not at the first or last integration."""
    transit_response: float = 1.0
    """Response at the calibrator's transit (its closest approach to the pointing track), wherever it falls."""

    @property
    def transit_fraction(self) -> float:
        """This group's best response as a fraction of the response at transit (1: the transit is here)."""
        return self.beam_response / self.transit_response if self.transit_response > 0 else 0.0


def _track_icrs(ms: MsModel) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (RA, Dec) of the pointing at each integration (RA unwrapped)."""
    ra, dec = ms.pointing.icrs(ms.time_array)
    return np.unwrap(ra), dec


@dataclass(frozen=True)
class SkyBox:
    """A declination band and a right-ascension range (deg) holding every source a group may see."""

    dec_lo: float
    dec_hi: float
    ra_lo: float
    """Start of the RA range in [0, 360); the range wraps through 0 when ``ra_lo > ra_hi``."""
    ra_hi: float
    all_ra: bool = False
    """The band is wide enough in RA to take every right ascension."""
    radius_deg: float = 0.0
    """The distance from the pointing track the box was drawn for."""


@dataclass(frozen=True)
class CatalogueRow:
    """One catalogue source as :func:`contimg.db.science.catalogue_in_box` reads it."""

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float | None
    """1.4 GHz flux; None when the catalogue gives none."""
    spectral_index: float | None


def _default_radius_deg(ms: MsModel) -> float:
    """:data:`MODEL_RADIUS_DEG` scaled to the MS's dishes and lowest frequency (at most 90 deg)."""
    from contimg.beam import DISH_DIAMETER_M

    radius = MODEL_RADIUS_DEG * (DISH_DIAMETER_M / ms.dish_diameter) * (1.311e9 / ms.freq_min)
    return min(radius, 90.0)


def search_box(ms: MsModel, *, radius_deg: float | None = None) -> SkyBox:
    """The catalogue box holding every source within ``radius_deg`` of the group's pointing track.

    Parameters
    ----------
    ms
        The group's MS model: its pointing (the track is the pointing's ICRS position at each
        integration), lowest frequency and dish diameter.
    radius_deg
        Largest great-circle distance (deg) from any point of the track; None: :data:`MODEL_RADIUS_DEG`
        scaled to the MS's dishes and lowest frequency (the beam's size goes as wavelength / diameter),
        at most 90.

    Returns
    -------
    SkyBox
        The declination band and RA range to read (a superset: :func:`sources_near_track` cuts the circle).
    """
    radius_deg = _default_radius_deg(ms) if radius_deg is None else radius_deg
    ra_track, dec_track = _track_icrs(ms)
    dec0 = float(np.mean(dec_track))
    rad = math.radians(radius_deg)
    cosd = max(math.cos(min(abs(dec0) + rad, math.pi / 2 - 1e-6)), 1e-6)
    pad = min(180.0, math.degrees(rad / cosd))
    span = math.degrees(float(ra_track.max() - ra_track.min()))
    return SkyBox(dec_lo=math.degrees(dec0 - rad), dec_hi=math.degrees(dec0 + rad),
                  ra_lo=(math.degrees(ra_track.min()) - pad) % 360.0, ra_hi=(math.degrees(ra_track.max()) + pad) % 360.0,
                  all_ra=span + 2.0 * pad >= 360.0, radius_deg=radius_deg)


def sources_near_track(rows: Sequence[CatalogueRow], ms: MsModel, *, radius_deg: float | None = None) -> PointSources:
    """The catalogue sources with a flux within ``radius_deg`` of the group's pointing track.

    Sources without a flux cannot be modelled and are left out (with a log
    line). A missing spectral index is taken as flat.

    Parameters
    ----------
    rows
        Catalogue sources, e.g. those in :func:`search_box` (read by :func:`contimg.db.science.catalogue_in_box`).
    ms
        The group's MS model (pointing track, lowest frequency, dish diameter).
    radius_deg
        Largest great-circle distance (deg) from any point of the track; None: as :func:`search_box`.

    Returns
    -------
    PointSources
        The sources, in the order given, with ICRS positions (deg), 1.4 GHz fluxes (Jy) and spectral indices;
        empty if none is near.
    """
    from contimg.beam import angular_separation

    if not rows:
        return PointSources.empty()
    radius_deg = _default_radius_deg(ms) if radius_deg is None else radius_deg
    rad = math.radians(radius_deg)
    ra_track, dec_track = _track_icrs(ms)
    ra = np.radians([r.ra_deg for r in rows])
    dec = np.radians([r.dec_deg for r in rows])
    sep = angular_separation(ra_track[None, :], dec_track[None, :], ra[:, None], dec[:, None]).min(axis=1)
    keep = [k for k, r in enumerate(rows) if sep[k] <= rad]
    no_flux = [rows[k].name for k in keep if rows[k].flux_jy is None]
    if no_flux:
        log.info("%s: %d catalogue sources near the track have no flux and are not modelled (e.g. %s)",
                 ms.label, len(no_flux), ", ".join(no_flux[:3]))
    keep = [k for k in keep if rows[k].flux_jy is not None]
    return PointSources(
        name=[rows[k].name for k in keep],
        ra_deg=np.array([rows[k].ra_deg for k in keep], float),
        dec_deg=np.array([rows[k].dec_deg for k in keep], float),
        flux_jy=np.array([rows[k].flux_jy for k in keep], float),
        spectral_index=np.array([rows[k].spectral_index if rows[k].spectral_index is not None else 0.0
                                 for k in keep], float),
    )


def _transit_response(ra_deg: float, dec_deg: float, ms: MsModel) -> float:
    """Primary-beam response (1.4 GHz) at a source's transit (its closest approach to the pointing).

    Drift: the source crosses the pointing's hour angle, where the separation is the difference of
    apparent declinations. Fixed pointing: the separation never changes (0 when there is no pointing).
    """
    from contimg.beam import airy_power, angular_separation
    from contimg.stations import icrs_to_apparent

    t_mid = np.array([[ms.time_array[ms.Ntimes // 2]]])
    p_ra, p_dec = ms.pointing.apparent(t_mid)
    app_ra, app_dec = icrs_to_apparent(np.radians([[ra_deg]]), np.radians([[dec_deg]]), t_mid, ms.location)
    if ms.pointing.kind == "drift":
        sep = abs(float(app_dec[0, 0]) - float(p_dec[0, 0]))
    else:
        sep = float(angular_separation(p_ra, p_dec, app_ra, app_dec)[0, 0])
    return float(airy_power(np.array([sep]), np.array([REFERENCE_FREQ_HZ]), ms.dish_diameter)[0])


def choose_calibrator(
    cals: PointSources,
    ms: MsModel,
    *,
    min_beam_response: float,
    min_calibrator_flux_jy: float,
) -> CalibratorChoice | None:
    """The best usable calibrator for the group of ``ms``, or None for a science group.

    Parameters
    ----------
    cals
        The catalogue's calibrators near the group's track (:func:`sources_near_track` of the rows
        flagged ``is_calibrator``).
    ms
        The group's MS model.
    min_beam_response, min_calibrator_flux_jy
        ``settings.calibration`` thresholds (see the module docstring).

    Returns
    -------
    CalibratorChoice or None
        The calibrator with the highest apparent flux (1.4 GHz) among the usable ones: its name, catalogue
        flux (Jy), best beam response, apparent flux (Jy), MJD of the best response, whether that falls
        inside the group, and the response at its transit; None if no calibrator near the track is usable.
    """
    if cals.Nsrc == 0:
        log.info("%s: no catalogue calibrator near the pointing track", ms.label)
        return None
    unit = PointSources(cals.name, cals.ra_deg, cals.dec_deg, np.ones(cals.Nsrc), np.zeros(cals.Nsrc))
    response = apparent_flux(unit, ms, freq_hz=np.array([REFERENCE_FREQ_HZ]))[:, :, 0]  # (Ncal, Ntimes)
    best_t = response.argmax(axis=1)
    best = response[np.arange(cals.Nsrc), best_t]
    app = best * cals.flux_jy
    ok = (best >= min_beam_response) & (app >= min_calibrator_flux_jy)
    for k in range(cals.Nsrc):
        log.debug("%s: calibrator %s response %.3f apparent %.2f Jy%s", ms.label, cals.name[k], best[k], app[k],
                  "" if ok[k] else " (not usable)")
    if not ok.any():
        log.info("%s: no usable calibrator (best: %s at response %.3f, %.2f Jy apparent)", ms.label,
                 cals.name[int(app.argmax())], best[int(app.argmax())], app.max())
        return None
    k = int(np.flatnonzero(ok)[np.argmax(app[ok])])
    t = int(best_t[k])
    transit = _transit_response(cals.ra_deg[k], cals.dec_deg[k], ms)
    choice = CalibratorChoice(
        name=cals.name[k], flux_jy=float(cals.flux_jy[k]), beam_response=float(best[k]),
        apparent_flux_jy=float(app[k]), peak_mjd=float(ms.time_array[t] - 2400000.5),
        transits_in_group=0 < t < ms.Ntimes - 1, transit_response=max(transit, float(best[k])),
    )
    log.info("%s: calibrator %s (%.2f Jy, beam response %.3f)", ms.label, choice.name, choice.flux_jy,
             choice.beam_response)
    return choice
