"""One Measurement Set to its image products: :func:`image_ms`.

Steps: read the MS once (:func:`contimg.msmodel.read_ms`, with its flags) and
check it (:func:`~contimg.imaging.geometry.check_imageable`), derive the
geometry, optionally build a catalogue mask, run the backend
(WSClean or tclean) in a private temporary directory inside ``out_dir``,
primary-beam correct, measure QA, draw the thumbnail, and only then move the
finished files to their final names. A failure at any step removes the
temporary directory, so no partial FITS is ever left under a product's name.

Products (``<name>`` defaults to the MS name without ``.ms``)::

    <name>.image.fits         restored, flat noise (Jy/beam)      -- QA measured here
    <name>.image.pbcor.fits   primary-beam corrected (NaN below pb_limit)
    <name>.pb.fits            the time/band-averaged Airy beam
    <name>.residual.fits, <name>.model.fits, <name>.psf.fits
    <name>.png                thumbnail of the flat-noise image
    <name>.<backend>.log      the imager's own log (WSClean's output)
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from contimg.config import ImagingSettings
from contimg.errors import ConfigError, ExternalToolError
from contimg.imaging.geometry import ImageGeometry, check_imageable, derive_geometry
from contimg.imaging.qa import ImageQA, image_qa, write_thumbnail
from contimg.imaging.gate import negative_peak_jy, predicted_noise_jy
from contimg.imaging.subtract import Subtraction, remove_subtracted_column, restore_sources
from contimg.imaging.tiers import TierParameters, tier_parameters
from contimg.imaging.wsclean import DeconvolutionLog, parse_wsclean_log, take_mfs_products
from contimg.msmodel import MsModel, read_ms

CatalogueCone = Callable[[float, float, float], "Mapping[str, np.ndarray]"]
"""``(ra_deg, dec_deg, radius_deg) -> {"ra_deg", "dec_deg", "flux_jy", "spectral_index": arrays}``: the
catalogue sources in a cone (fluxes at 1.4 GHz, spectral index NaN when unknown)."""
DEFAULT_SPECTRAL_INDEX = -0.7
"""Spectral index assumed for catalogue sources without one (optically thin synchrotron)."""

__all__ = ["ImageProducts", "image_ms"]

log = logging.getLogger(__name__)

_AUX = ("residual", "model", "psf")
DEFAULT_MASK_RADIUS_ARCSEC = 60.0


@dataclass
class ImageProducts:
    """What :func:`image_ms` made (all paths absolute and complete)."""

    ms_path: str
    backend: str
    tier: str
    image: str
    """Flat-noise restored image."""
    pbcor: str
    """Primary-beam corrected image."""
    pb: str
    residual: str
    model: str
    psf: str
    thumbnail: str
    log: str | None
    qa: ImageQA
    geometry: ImageGeometry
    ref_freq_hz: float
    mid_mjd: float
    ra_deg: float
    """Phase center (ICRS)."""
    dec_deg: float
    imager_s: float
    """Wall time of the imager alone."""
    imager_cpu_s: float
    """CPU time (user + system, all threads) of the imager: comparable on a shared machine."""
    total_s: float
    arguments: list[str] = field(default_factory=list)
    """The WSClean argument list (empty for tclean)."""
    averaging: dict | None = None
    """WSClean's baseline-dependent averaging: the chosen size, its predicted peak loss at the field edge and the
    rows left (:class:`~contimg.imaging.smearing.AveragingPlan`); None when the tier does not average."""
    deconvolution: dict | None = None
    """How WSClean's deconvolution stopped (:meth:`~contimg.imaging.wsclean.DeconvolutionLog.to_dict`), with
    ``retried_with_mgain`` and ``first_run`` when a diverged run was repeated; None for tclean."""
    negative_jy: float = float("nan")
    """The most negative pixel of the flat-noise image (Jy/beam)."""
    predicted_rms_jy: float | None = None
    """Thermal noise predicted from the MS's weights, flags and the imaging weights (:mod:`contimg.imaging.gate`)."""
    spectral_fit: dict | None = None
    """Whether the band was deconvolved with a spectral fit and why (:func:`spectral_fit_decision`):
    ``channels_out``, the brightest catalogue source's apparent flux (Jy) and its ratio to the predicted noise (of the
    sources left in the visibilities: the subtracted ones leave no sidelobes to fit)."""
    subtracted: dict | None = None
    """The bright catalogue sources subtracted from the visibilities before deconvolution and restored in the
    image (:class:`~contimg.imaging.subtract.Subtraction`); None when none was."""

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        out = asdict(self)
        out["epoch_mjd"] = out.pop("mid_mjd")  # the JSON vocabulary's name of an observation's epoch
        out["qa"] = self.qa.to_dict()
        out["geometry"] = self.geometry.to_dict()
        return out


def _threads(settings: ImagingSettings) -> int:
    return settings.threads or os.cpu_count() or 1


def image_ms(
    ms_path: str | os.PathLike,
    *,
    settings: ImagingSettings,
    out_dir: str | os.PathLike,
    name: str | None = None,
    backend: str | None = None,
    tier: str | None = None,
    data_column: str = "CORRECTED_DATA",
    mask_positions_deg: Sequence[tuple[float, float]] | None = None,
    mask_radius_arcsec: float | None = None,
    cell_arcsec: float | None = None,
    size: tuple[int, int] | None = None,
    extra_wsclean_args: Sequence[str] = (),
    before_publish: Callable[[], None] | None = None,
    catalogue: CatalogueCone | None = None,
) -> ImageProducts:
    """Image a calibrated Measurement Set, primary-beam correct it and measure QA.

    Parameters
    ----------
    ms_path
        The MS (one field, one spectral window; ``data_column`` calibrated).
    settings
        ``settings.imaging``: backend, tier, pb_limit, robust, threads, timeout.
    out_dir
        Directory of the products (created).
    name
        Product base name (default: the MS name without ``.ms``).
    backend, tier
        Override ``settings.backend`` / ``settings.tier``.
    data_column
        Column to image.
    mask_positions_deg
        Catalogue positions ``(ra, dec)`` in degrees: clean only within
        ``mask_radius_arcsec`` (default 60, two beam major axes of the full
        array) of those in the field, instead of auto-masking.
    cell_arcsec, size
        Override the derived cell and ``(nx, ny)``.
    extra_wsclean_args
        Extra WSClean arguments (benchmarks, experiments).
    before_publish
        Called after imaging and QA, before the products are moved into
        ``out_dir``; raising there leaves ``out_dir`` untouched (the cluster
        checks that its run is still current, so a superseded run never
        replaces a live run's products).
    catalogue
        The catalogue sources in a cone: called as ``catalogue(ra_deg, dec_deg, radius_deg)``, it returns arrays
        ``ra_deg``, ``dec_deg``, ``flux_jy`` (1.4 GHz) and ``spectral_index`` (NaN when unknown). With it,
        WSClean deconvolves with a spectral fit when a source in the field is bright enough to need one
        (:func:`spectral_fit_decision`); without it, never. The thumbnail circles the sources expected above
        the noise (:func:`thumbnail_sources`).

    Returns
    -------
    ImageProducts
        Absolute paths of the published files (``<name>.image.fits``, ``.image.pbcor.fits``, ``.pb.fits``,
        ``.residual.fits``, ``.model.fits``, ``.psf.fits``, ``.png`` and the WSClean log), the image QA, the
        geometry, reference frequency (Hz), mid-time (MJD), phase centre (deg), timings (s), the WSClean
        arguments, averaging plan, deconvolution summary, most negative pixel and predicted noise (Jy/beam).

    Raises
    ------
    InputFileError
        The MS is missing, lacks ``data_column``, or is entirely flagged.
    ExternalToolError
        The imager failed or timed out.
    ConfigError
        Unknown backend or tier.
    """
    t0 = time.perf_counter()
    backend = backend or settings.backend
    tier_name = tier or settings.tier
    if backend not in ("wsclean", "tclean"):
        raise ConfigError(f"unknown imaging backend {backend!r}; known: wsclean, tclean")
    params = tier_parameters(tier_name)
    ms = Path(ms_path).absolute()
    ms_model = read_ms(ms, data_column=data_column, flags=True)  # read once: every step below is given it
    check_imageable(ms_model)
    geometry = derive_geometry(ms_model, pb_limit=settings.pb_limit, cell_arcsec=cell_arcsec)
    if cell_arcsec is None:
        lobe = _main_lobe(ms_model, geometry, robust=settings.robust)
        if lobe is not None:
            geometry = derive_geometry(ms_model, pb_limit=settings.pb_limit, psf_minor_arcsec=lobe.minor_arcsec)
    if size is not None:
        geometry = ImageGeometry(geometry.cell_arcsec, int(size[0]), int(size[1]), geometry.pb_limit,
                                 geometry.pb_radius_deg, geometry.drift_deg)
    predicted_rms_jy = _predicted_noise(ms_model, geometry, robust=settings.robust)
    in_field = field_sources(catalogue, ms_model, geometry)  # one cone query: the fit's decision and the thumbnail
    bright = (sources_to_subtract(in_field, noise_jy=predicted_rms_jy, settings=settings)
              if backend == "wsclean" else None)
    # the subtracted sources leave no sidelobes to fit: the decision is taken on the rest of the field
    left = in_field.select(~bright) if in_field is not None and bright is not None else in_field
    spectral_fit = spectral_fit_decision(left, noise_jy=predicted_rms_jy, settings=settings)
    # the runaway check's yardstick: the field's brightest source (a subtracted one is restored into the image)
    brightest_jy = (float(in_field.apparent_jy.max()) if in_field is not None and (spectral_fit or bright is not None)
                    else None)
    channels_out = spectral_fit["channels_out"] if spectral_fit else 1
    log.info("imaging %s with %s (%s): %dx%d pixels of %.1f arcsec, pb_limit %.2f (radius %.2f deg, drift %.2f deg)",
             ms, backend, tier_name, geometry.nx, geometry.ny, geometry.cell_arcsec, geometry.pb_limit,
             geometry.pb_radius_deg, geometry.drift_deg)
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    name = name or (ms.name[:-3] if ms.name.endswith(".ms") else ms.name)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out))
    subtraction = None
    try:
        prefix = work / "img"
        arguments: list[str] = []
        averaging = None
        mask_file = None
        if mask_positions_deg is not None:
            mask_file = _write_mask(work, backend, mask_positions_deg, ms=ms_model, geometry=geometry,
                                    radius_arcsec=mask_radius_arcsec)
        log_file = work / f"{backend}.log"
        beam: np.ndarray | None = None  # the averaged beam on the image's grid, once computed
        if backend == "wsclean":
            from contimg.imaging.pbcor import image_beam

            from contimg.imaging.wsclean import run_wsclean, wsclean_arguments

            bda = None
            if params.max_smearing_loss is not None:
                averaging = _plan_averaging(ms_model, geometry, params.max_smearing_loss, robust=settings.robust)
                bda = averaging.wavelengths
            image_column = data_column
            if bright is not None and in_field is not None:
                subtraction = _subtract(ms_model, in_field.select(bright), data_column=data_column,
                                        robust=settings.robust, geometry=geometry)
                if subtraction is not None:
                    image_column = subtraction.column

            def _run(tier, parts: int) -> tuple[list[str], float, float, DeconvolutionLog]:
                args = wsclean_arguments(ms, prefix=prefix, geometry=geometry, tier=tier, robust=settings.robust,
                                         threads=_threads(settings), data_column=image_column, fits_mask=mask_file,
                                         temp_dir=work, baseline_averaging=bda, channels_out=parts,
                                         extra=extra_wsclean_args)
                wall, cpu = run_wsclean(args, ms_path=ms, timeout_s=settings.timeout_s, log_path=log_file, cwd=work)
                if parts > 1:
                    take_mfs_products(prefix)
                if subtraction is not None:
                    restore_sources(work / "img-image.fits", work / "img-model.fits", subtraction)
                return args, wall, cpu, parse_wsclean_log(log_file)

            arguments, imager_s, imager_cpu_s, decon = _run(params, channels_out)
            deconvolution = decon.to_dict()
            # the averaged beam on the image's grid (the same for a rerun), computed once: the science region
            # the runaway check judges, then the primary-beam correction
            beam = image_beam(work / "img-image.fits", ms_model)
            runaway = ran_away(work / "img-image.fits", noise_jy=predicted_rms_jy,
                               brightest_jy=brightest_jy,
                               region=beam >= settings.pb_limit)
            if runaway:
                deconvolution["ran_away"] = runaway
            if decon.diverged or runaway:
                # the safe run: shallower major cycles and one term (the configuration that converges on every
                # array state; a joint spectral fit diverged on the core-only array's sidelobes)
                safe = safe_tier(params)
                log.warning("%s: the deconvolution diverged (%s); imaging again once with mgain %.2f%s", ms,
                            runaway or f"stopped on {decon.stops[-1][0]:.4g} Jy, {decon.final_reason}", safe.mgain,
                            " and no spectral fit" if channels_out > 1 else "")
                os.replace(log_file, work / "wsclean-diverged.log")
                arguments, again_s, again_cpu_s, decon = _run(safe, 1)
                imager_s, imager_cpu_s = imager_s + again_s, imager_cpu_s + again_cpu_s
                deconvolution = {**decon.to_dict(), "retried_with_mgain": safe.mgain, "first_run": deconvolution}
                if spectral_fit:
                    spectral_fit = {**spectral_fit, "dropped_after_divergence": True}
        else:
            from contimg.imaging.tclean import run_tclean

            if channels_out > 1:
                log.warning("%s: a source %.0f times the noise asks for a spectral fit; tclean images with one term",
                            ms, spectral_fit["dynamic_range"] if spectral_fit else float("nan"))
            deconvolution = None
            imager_s, imager_cpu_s = run_tclean(ms, prefix=prefix, geometry=geometry, tier=params, robust=settings.robust,
                                  data_column=data_column, mask_region=mask_file)
        files = {k: work / f"img-{k}.fits" for k in ("image", *_AUX)}
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            raise ExternalToolError(f"{ms}: {backend} finished but did not write {', '.join(missing)}")
        _check_header(files["image"], ms)
        for path in files.values():
            _finish_header(path, backend=backend, tier=tier_name, ms=ms)
        from contimg.imaging.pbcor import pb_correct_fits

        pbcor_tmp, pb_tmp = work / "img-image.pbcor.fits", work / "img-pb.fits"
        beam = pb_correct_fits(files["image"], ms=ms_model, pbcor_fits=pbcor_tmp, pb_fits=pb_tmp,
                               pb_limit=settings.pb_limit, beam=beam)
        qa = image_qa(files["image"], residual_fits=files["residual"])
        negative_jy = negative_peak_jy(files["image"], region=beam >= settings.pb_limit)
        png_tmp = work / "img.png"
        marked = thumbnail_sources(in_field, rms_jy=qa.rms_jy)
        write_thumbnail(files["image"], png_tmp, rms=qa.rms_jy,
                        title=f"{name} {backend}/{tier_name} rms {qa.rms_jy * 1e3:.2f} mJy/beam DR {qa.dynamic_range:.0f}",
                        catalog_ra_deg=marked[0], catalog_dec_deg=marked[1],
                        catalog_label=f"catalogue, apparent > {THUMBNAIL_MARK_SNR:g} rms")
        final = {
            "residual": out / f"{name}.residual.fits", "model": out / f"{name}.model.fits",
            "psf": out / f"{name}.psf.fits", "pb": out / f"{name}.pb.fits", "thumbnail": out / f"{name}.png",
            "pbcor": out / f"{name}.image.pbcor.fits", "image": out / f"{name}.image.fits",
        }
        sources = {**{k: files[k] for k in _AUX}, "pb": pb_tmp, "thumbnail": png_tmp, "pbcor": pbcor_tmp,
                   "image": files["image"]}
        if before_publish is not None:
            before_publish()
        final_log = None
        if backend == "wsclean" and log_file.exists():  # only WSClean's own log is kept
            final_log = out / f"{name}.{backend}.log"
            os.replace(log_file, final_log)
        for key, dest in final.items():  # the flat-noise image last: its presence means the set is complete
            os.replace(sources[key], dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if subtraction is not None:
            remove_subtracted_column(ms, subtraction.column)
    shutil.rmtree(work, ignore_errors=True)
    products = ImageProducts(
        ms_path=str(Path(ms).absolute()), backend=backend, tier=tier_name,
        image=str(final["image"]), pbcor=str(final["pbcor"]), pb=str(final["pb"]),
        residual=str(final["residual"]), model=str(final["model"]), psf=str(final["psf"]),
        thumbnail=str(final["thumbnail"]), log=str(final_log) if final_log else None,
        qa=qa, geometry=geometry, ref_freq_hz=qa.ref_freq_hz, mid_mjd=ms_model.mid_mjd,
        ra_deg=math.degrees(ms_model.phase_center_ra), dec_deg=math.degrees(ms_model.phase_center_dec),
        imager_s=round(imager_s, 2), imager_cpu_s=round(imager_cpu_s, 2), total_s=round(time.perf_counter() - t0, 2), arguments=arguments,
        averaging=averaging.to_dict() if averaging is not None else None,
        deconvolution=deconvolution, negative_jy=negative_jy, predicted_rms_jy=predicted_rms_jy,
        spectral_fit=spectral_fit, subtracted=subtraction.to_dict() if subtraction is not None else None,
    )
    log.info("imaged %s in %.1f s (imager %.1f s): rms %.3g Jy/beam, peak %.3g Jy/beam, beam %.1fx%.1f arcsec",
             ms, products.total_s, imager_s, qa.rms_jy, qa.peak_jy, qa.beam_major_arcsec, qa.beam_minor_arcsec)
    return products


@dataclass(frozen=True)
class FieldSources:
    """The catalogue sources in an image's field with their apparent flux, computed once per image
    (:func:`field_sources`) for the spectral-fit decision and the thumbnail's marks."""

    ra_deg: np.ndarray
    dec_deg: np.ndarray
    apparent_jy: np.ndarray
    """Catalogue flux at the MS's mean frequency (:data:`DEFAULT_SPECTRAL_INDEX` when unknown) times the time-
    and band-averaged primary beam."""
    ms_path: str
    flux_jy: np.ndarray
    """Catalogue flux at 1.4 GHz."""
    spectral_index: np.ndarray
    """Catalogue spectral index (:data:`DEFAULT_SPECTRAL_INDEX` where unknown)."""

    def select(self, keep: np.ndarray) -> "FieldSources":
        """The sources where ``keep`` (boolean) is true."""
        return FieldSources(self.ra_deg[keep], self.dec_deg[keep], self.apparent_jy[keep], self.ms_path,
                            self.flux_jy[keep], self.spectral_index[keep])


def field_sources(catalogue: CatalogueCone | None, ms: MsModel, geometry: ImageGeometry) -> FieldSources | None:
    """The catalogue sources within the image's half diagonal of the phase centre, with their apparent flux.

    Parameters
    ----------
    catalogue
        The catalogue cone lookup (see :func:`image_ms`); None: no sources known (None is returned).
    ms
        The MS model (phase centre, mean frequency, time-averaged beam).
    geometry
        The image geometry (its half diagonal is the cone's radius).

    Returns
    -------
    FieldSources or None
        The sources (possibly none), or None without a catalogue.
    """
    from contimg.imaging.pbcor import beam_at_positions

    if catalogue is None:
        return None
    ra0, dec0 = math.degrees(ms.phase_center_ra), math.degrees(ms.phase_center_dec)
    cat = catalogue(ra0, dec0, math.hypot(geometry.width_deg, geometry.height_deg) / 2)
    ra, dec = np.asarray(cat["ra_deg"], float), np.asarray(cat["dec_deg"], float)
    apparent = np.zeros(ra.size)
    flux, alpha = np.asarray(cat["flux_jy"], float), np.asarray(cat["spectral_index"], float)
    alpha = np.where(np.isfinite(alpha), alpha, DEFAULT_SPECTRAL_INDEX)
    if ra.size:
        apparent = np.nan_to_num(flux * (ms.freq_mean / 1.4e9) ** alpha
                                 * beam_at_positions(np.radians(ra), np.radians(dec), ms))
    return FieldSources(ra, dec, apparent, str(ms.path), flux, alpha)


def spectral_fit_decision(field: FieldSources | None, *, noise_jy: float | None,
                          settings: ImagingSettings) -> dict | None:
    """Whether to deconvolve with a spectral fit: None (no), or ``{"channels_out", "brightest_jy", "dynamic_range"}``.

    CLEAN of the band-averaged image models every source with one flux at the
    mean frequency. A source's spectrum, its own (a power law) and the
    primary beam's (steep on the beam's flank, and changing as the source
    drifts through it), leaves the rest of its visibilities as sidelobes
    that single-term CLEAN cannot remove. Measured on a full-scale DSA-110
    group (``benchmarks/night.py --seed 1``): a 10 Jy calibrator (spectral
    index -0.7) at the phase centre put +6.5 % on a 21 mJy source 0.65 deg
    away (1.4e-4 of the calibrator's flux); deconvolved in two parts of the
    band with a linear spectrum per component, +2.7 %. The fit costs one
    image per part and a longer minor cycle, so it is used only where the
    sidelobes matter: when the brightest catalogue source's apparent flux
    (catalogue flux at the mean frequency times the time- and band-averaged
    beam) exceeds ``settings.spectral_fit_dynamic_range`` (7000) times the
    predicted noise, i.e. where 1.4e-4 of it reaches the noise (1/1.4e-4 =
    7100). At 3000 (half the noise) the benchmark night also fitted a third
    group (1.7 Jy apparent, 6500 x the noise) for 90 CPU s more, whose
    sources had met the flux targets without the fit; the night's realtime
    factor was 2.99.

    Parameters
    ----------
    field
        The catalogue sources in the field (:func:`field_sources`); None: no fit.
    noise_jy
        The predicted thermal noise (Jy/beam); None: no fit (nothing to compare with).
    settings
        ``spectral_fit_dynamic_range`` and ``spectral_fit_channels``.

    Returns
    -------
    dict or None
        The decision with its figures when the fit is on; None when it is off.
    """
    if field is None or field.apparent_jy.size == 0 or not noise_jy or not np.isfinite(noise_jy):
        return None
    brightest = float(field.apparent_jy.max())
    ratio = brightest / noise_jy
    if ratio < settings.spectral_fit_dynamic_range:
        return None
    log.info("%s: the brightest catalogue source is %.3g Jy apparent, %.0f times the predicted noise: "
             "deconvolving %d parts of the band with a spectral fit", field.ms_path, brightest, ratio,
             settings.spectral_fit_channels)
    return {"channels_out": settings.spectral_fit_channels, "brightest_jy": round(brightest, 6),
            "dynamic_range": round(ratio, 1)}


def sources_to_subtract(field: FieldSources | None, *, noise_jy: float | None,
                        settings: ImagingSettings) -> np.ndarray | None:
    """Which catalogue sources of the field to subtract before deconvolution (:mod:`contimg.imaging.subtract`).

    Those whose apparent flux reaches ``settings.subtract_dynamic_range`` times the predicted noise: ~0.1 % of
    a source's flux stays in a band-averaged residual as sidelobes (its apparent flux changes along the
    drift and across the band), above the auto-mask level (5 sigma) from ~5000 times the noise; at 2000
    they are at 2 sigma.

    Parameters
    ----------
    field
        The catalogue sources in the field (:func:`field_sources`), with their catalogue fluxes.
    noise_jy
        The predicted thermal noise (Jy/beam).
    settings
        ``subtract_dynamic_range`` (0: never).

    Returns
    -------
    numpy.ndarray or None
        A boolean mask over ``field``'s sources, or None when nothing is subtracted (no catalogue, no predicted
        noise, the setting at 0, or no source bright enough).
    """
    if (field is None or field.apparent_jy.size == 0 or not noise_jy or not np.isfinite(noise_jy)
            or settings.subtract_dynamic_range <= 0):
        return None
    bright = field.apparent_jy >= settings.subtract_dynamic_range * noise_jy
    if not bright.any():
        return None
    log.info("%s: %d catalogue source(s) above %.0f times the predicted noise (brightest %.3g Jy apparent) are "
             "subtracted before deconvolution", field.ms_path, int(bright.sum()), settings.subtract_dynamic_range,
             float(field.apparent_jy[bright].max()))
    return bright


def _subtract(ms: MsModel, bright: FieldSources, *, data_column: str, robust: float,
              geometry: ImageGeometry) -> Subtraction | None:
    """Subtract ``bright`` into the scratch column; None (logged) when the MS cannot take the column."""
    from contimg.calibration.model import PointSources
    from contimg.errors import InputFileError
    from contimg.imaging.subtract import subtract_sources

    names = [f"J{ra:.4f}{dec:+.4f}" for ra, dec in zip(bright.ra_deg, bright.dec_deg)]
    sources = PointSources(names, bright.ra_deg, bright.dec_deg, bright.flux_jy, bright.spectral_index)
    try:
        return subtract_sources(ms, sources, data_column=data_column, robust=robust, fov_rad=_fov_rad(geometry))
    except InputFileError as exc:
        log.warning("%s: imaging without subtracting the bright sources: %s", ms.path, exc)
        if ms.path is not None:
            remove_subtracted_column(ms.path)
        return None


RUNAWAY_NEGATIVE_FRACTION = 0.5
"""A restored image whose most negative pixel is deeper than this fraction of its peak ran away, whatever
WSClean's log says (a healthy image of a 10 Jy source has its deepest pixel near -0.3 %)."""


THUMBNAIL_MARK_SNR = 5.0
"""Catalogue sources circled on the thumbnail: apparent flux (catalogue x primary beam) above this many rms."""
THUMBNAIL_MAX_MARKS = 200
"""At most this many (the brightest) are circled."""


def thumbnail_sources(field: FieldSources | None, *, rms_jy: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Positions of the catalogue sources to circle on the thumbnail: those expected above the noise.

    Parameters
    ----------
    field
        The catalogue sources in the field (:func:`field_sources`); None: nothing is marked.
    rms_jy
        The image noise (Jy/beam).

    Returns
    -------
    tuple
        ICRS RA and Dec (deg) of the sources whose apparent flux exceeds :data:`THUMBNAIL_MARK_SNR` x
        ``rms_jy`` (the brightest :data:`THUMBNAIL_MAX_MARKS`), or ``(None, None)`` without a catalogue.
    """
    if field is None or not np.isfinite(rms_jy) or rms_jy <= 0:
        return None, None
    keep = np.flatnonzero(field.apparent_jy > THUMBNAIL_MARK_SNR * rms_jy)
    keep = keep[np.argsort(-field.apparent_jy[keep], kind="stable")][:THUMBNAIL_MAX_MARKS]
    return field.ra_deg[keep], field.dec_deg[keep]


RUNAWAY_NOISE_FACTOR = 1000.0
"""... or whose robust rms exceeds the predicted thermal noise this many times (a healthy image next to a 10 Jy
calibrator: 1.3 times; a joint spectral fit that ran away on the core-only array: 3.6e8 times, its negatives
only 48 % of its peak) ..."""
RUNAWAY_PEAK_FACTOR = 100.0
"""... or whose peak exceeds the brightest catalogue source's apparent flux this many times."""


def ran_away(image_fits: Path, *, noise_jy: float | None = None, brightest_jy: float | None = None,
             region: np.ndarray | None = None) -> str | None:
    """Why the restored image shows a runaway deconvolution, or None.

    Non-finite pixels, negatives as deep as the peak (:data:`RUNAWAY_NEGATIVE_FRACTION`), a robust rms far
    above the predicted noise (:data:`RUNAWAY_NOISE_FACTOR`) or a peak far above the brightest catalogue
    source (:data:`RUNAWAY_PEAK_FACTOR`). Reads the image once (~0.2 s for 3840 x 3072 pixels).

    Parameters
    ----------
    image_fits
        The restored (flat-noise) image.
    noise_jy
        The predicted thermal noise (Jy/beam); None: not compared.
    brightest_jy
        The brightest catalogue source's apparent flux (Jy); None: not compared.
    region
        The science region (the averaged beam, :func:`contimg.imaging.pbcor.image_beam`, at or above the
        imaging ``pb_limit``: the pixels the PB-corrected image keeps), boolean (ny, nx);
        peak, negatives and rms are judged there (None: the whole image). Outside it, at the image's edge, a
        bright source beyond the field leaves its sidelobes and aliases, which no deconvolution of the field
        removes and no science uses.

    Returns
    -------
    str or None
        The reason, or None for an image that did not run away.
    """
    import numpy as np
    from astropy.io import fits

    if not Path(image_fits).exists():
        return None
    with fits.open(image_fits, memmap=False) as hd:
        data = np.asarray(hd[0].data, np.float32)
    if not np.isfinite(data).all():
        return "non-finite pixels in the image"
    while data.ndim > 2:
        data = data[0]
    if region is not None and region.shape == data.shape and region.any():
        data = data[region]
    peak, low = float(data.max()), float(data.min())
    if peak > 0 and -low > RUNAWAY_NEGATIVE_FRACTION * peak:
        return f"most negative pixel {low:.4g} Jy/beam against a peak of {peak:.4g} Jy/beam"
    if noise_jy and noise_jy > 0:
        sample = data.ravel()[:: max(1, data.size // 2_000_000)]
        rms = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
        if rms > RUNAWAY_NOISE_FACTOR * noise_jy:
            return f"robust rms {rms:.4g} Jy/beam is {rms / noise_jy:.3g} times the predicted noise"
    if brightest_jy and brightest_jy > 0 and peak > RUNAWAY_PEAK_FACTOR * brightest_jy:
        return f"peak {peak:.4g} Jy/beam is {peak / brightest_jy:.3g} times the brightest catalogue source"
    return None


SAFE_MGAIN_STEP = 0.15
"""A diverged WSClean run is repeated once with ``mgain`` lowered by this much (at most 0.8): shallower major
cycles recompute the residuals from the visibilities before the minor loop can run away on the PSF's
sidelobes (0.95 diverged on the core-only array, 0.8 converged on the same MS; shared/NOTES.md)."""


SAFE_GAIN = 0.1
"""The minor-loop gain of the safe run (at most): CLEAN's customary one, whatever a tier asks (0.2 diverged on a
full-scale group with a bright source on the beam's flank; :mod:`contimg.imaging.tiers`)."""


def safe_tier(params: TierParameters) -> TierParameters:
    """The tier's parameters made safe against divergence (:data:`SAFE_MGAIN_STEP`, :data:`SAFE_GAIN`)."""
    return replace(params, mgain=round(min(0.8, params.mgain - SAFE_MGAIN_STEP), 3),
                   gain=min(params.gain, SAFE_GAIN))


def _fov_rad(geometry: ImageGeometry) -> tuple[float, float]:
    """Image width and height (radians): the uv cell of the imaging weights."""
    return math.radians(geometry.width_deg), math.radians(geometry.height_deg)


def _main_lobe(ms: MsModel, geometry: ImageGeometry, *, robust: float):
    """The PSF's predicted main lobe on ``geometry``'s field (None, logged, if it cannot be predicted)."""
    from contimg.imaging.psf import main_lobe_fwhm

    try:
        lobe = main_lobe_fwhm(ms, robust=robust, fov_rad=_fov_rad(geometry))
    except (ValueError, MemoryError) as exc:
        log.warning("%s: cannot predict the PSF main lobe (%s); the cell follows the longest baseline only", ms.path,
                    exc)
        return None
    log.info("%s: predicted PSF main lobe %.1f x %.1f arcsec (half power; narrowest at uv position angle %.0f deg)",
             ms.path, lobe.major_arcsec, lobe.minor_arcsec, lobe.minor_pa_deg)
    return lobe


def _predicted_noise(ms: MsModel, geometry: ImageGeometry, *, robust: float) -> float | None:
    """Thermal noise of the image from the MS's weights and the Briggs weights of the image's uv cell."""
    from contimg.errors import InputFileError
    from contimg.imaging.smearing import briggs_weights

    try:
        weights = briggs_weights(ms, robust=robust, fov_rad=_fov_rad(geometry))
        return predicted_noise_jy(ms.label, imaging_weights=weights)
    except (InputFileError, RuntimeError, ValueError) as exc:
        log.warning("%s: cannot predict the thermal noise: %s", ms.path, exc)
        return None


def _plan_averaging(ms: MsModel, geometry: ImageGeometry, max_loss: float, *, robust: float):
    """Baseline-dependent averaging within ``max_loss`` at the farthest point that matters.

    That point is the pb_limit edge of the swept field (radius plus half the
    drift), or the image corner if the image is smaller.
    """
    from contimg.imaging.smearing import plan_baseline_averaging

    half_diagonal = math.hypot(geometry.width_deg, geometry.height_deg) / 2
    edge = math.radians(min(geometry.pb_radius_deg + geometry.drift_deg / 2, half_diagonal))
    return plan_baseline_averaging(ms, radius_rad=edge, max_loss=max_loss, robust=robust, fov_rad=_fov_rad(geometry))


def _write_mask(work: Path, backend: str, positions: Sequence[tuple[float, float]], *, ms: MsModel, geometry,
                radius_arcsec: float | None) -> Path:
    import numpy as np

    from contimg.imaging.mask import sources_in_field, write_fits_mask
    from contimg.imaging.tclean import catalog_region

    if radius_arcsec is None:
        radius_arcsec = DEFAULT_MASK_RADIUS_ARCSEC
    pos = np.asarray(positions, float).reshape(-1, 2)
    keep = sources_in_field(pos[:, 0], pos[:, 1], ms=ms, geometry=geometry)
    pos = pos[keep]
    log.info("%s: catalogue mask of %d sources (radius %.0f arcsec)", ms.path, len(pos), radius_arcsec)
    if backend == "wsclean":
        return write_fits_mask(work / "mask.fits", pos[:, 0], pos[:, 1], ms=ms, geometry=geometry,
                               radius_arcsec=radius_arcsec)
    path = work / "mask.crtf"
    path.write_text(catalog_region([tuple(p) for p in pos], radius_arcsec))
    return path


def _check_header(path: Path, ms: Path) -> None:
    """The restored image must carry a restoring beam and Jy/beam units."""
    from astropy.io import fits

    try:
        header = fits.getheader(path)
    except OSError as exc:
        raise ExternalToolError(f"{ms}: imager wrote an unreadable {path.name}: {exc}") from exc
    missing = [k for k in ("BMAJ", "BMIN", "BPA", "BUNIT") if k not in header]
    if missing:
        raise ExternalToolError(f"{ms}: image {path.name} lacks header keywords {', '.join(missing)}")
    if float(header["BMAJ"]) <= 0:
        raise ExternalToolError(f"{ms}: image {path.name} has no restoring beam (BMAJ={header['BMAJ']})")



def _finish_header(path: Path, *, backend: str, tier: str, ms: Path) -> None:
    """Normalise what the imagers write differently: RA in [0, 360), the frame, the observing date, provenance.

    WSClean writes CRVAL1 in (-180, 180] and EQUINOX 2000 without RADESYS:
    it converts our ICRS phase center to FK5 J2000 through casacore (the
    ~20 mas frame bias is visible in CRVAL), so we say FK5 explicitly; CASA
    writes the MS frame (ICRS) itself.
    """
    import warnings

    from astropy.io import fits
    from astropy.time import Time

    with fits.open(path, mode="update") as hdul:
        h = hdul[0].header
        h["CRVAL1"] = float(h["CRVAL1"]) % 360.0
        if "RADESYS" not in h:
            h["RADESYS"] = "FK5" if float(h.get("EQUINOX", 2000.0)) == 2000.0 else "FK4"
        if "DATE-OBS" in h and "MJD-OBS" not in h:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ERFA "dubious year" beyond the leap-second table
                h["MJD-OBS"] = (Time(h["DATE-OBS"], scale="utc").mjd, "start of the observation")
        h["CIMGBACK"] = (backend, "contimg imaging backend")
        h["CIMGTIER"] = (tier, "contimg imaging tier")
        h["CIMGMS"] = (ms.name[-68:], "Measurement Set imaged")
