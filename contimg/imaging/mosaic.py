"""Primary-beam-weighted linear mosaics of a night's images along the drift, in bounded-memory tiles.

Each input is one product set of :func:`contimg.imaging.image_ms`: the flat-noise image ``I``
(Jy/beam, noise ``sigma`` the same everywhere) and its primary-beam image ``B``. An input's
PB-corrected pixel ``I / B`` has noise ``sigma / B``; weighting every input by its inverse variance
``B**2 / sigma**2`` gives the linear mosaic (Cotton 2017, PASP 129, 094501, eq. 2; the ASKAP and
MeerKAT linear mosaics do the same)::

    S       = sum(w_i B_i I_i) / sum(w_i B_i**2),      w_i = 1 / sigma_i**2
    sigma_S = 1 / sqrt(sum(w_i B_i**2))

``W = sum(w_i B_i**2)`` (Jy**-2) is the weight map; ``sigma_S`` is the noise map the mosaic's
pixels follow when the inputs' noise is independent (different times of a drift scan are). Per
input, pixels with ``B < pb_limit`` are left out (the PB-corrected image is blank there too), and
mosaic pixels with ``W`` below that of one median-noise input at ``B = pb_limit`` are blanked (NaN).

**The grid.** A night's images lie along one declination strip, so the output is one plate carrée
(``CAR``) grid in ICRS: ``CRVAL2 = 0`` (rows are lines of constant declination, columns of constant
RA), ``CDELT2`` the inputs' pixel size and ``CDELT1 = -CDELT2 / cos(dec0)`` with ``dec0`` the strip's
central declination, so pixels are square on the sky there. Away from ``dec0`` a pixel's RA side
is ``cos(dec) / cos(dec0)`` of its Dec side: +-2.6 % at the edges of a 4.3 deg strip at Dec 35 deg,
where the beam response is <~ 0.3. The restoring beam written in the header (``BMAJ``/``BMIN``/``BPA``:
the median of the inputs', which differ little along one declination) is therefore exact at ``dec0``;
a fit with the header's beam at the strip's Dec edges reads a source up to ~1.3 % low (the beam
is wider in pixels than the header says along RA). The grid's RA runs continuously from the first
input to the last in the order given (time order: a whole day's 360 deg and beyond is one strip).

**Tiles.** The strip is cut into tiles of at most ``tile_size**2`` pixels, sub-grids of the one
grid (the same pixels a single-tile mosaic has). A tile reprojects (:func:`reproject.reproject_interp`,
bicubic spline) only the inputs whose footprint overlaps it, and each only onto the part of the
tile it covers, accumulating the numerator and ``W`` in float64; memory is a tile's few arrays plus
one input, whatever the number of inputs. Every tile's three FITS files (image, noise, weight) are
written atomically (a temporary file renamed), then the JSON manifest of the tiles, last.

Every tile is a FITS image with BUNIT ``Jy/beam``, the restoring beam and a FREQ axis at the
inputs' median reference frequency, so :func:`contimg.photometry.forced.forced_photometry` and
:func:`contimg.imaging.qa.fit_point_source` run on it as on an image of one group.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MosaicGrid", "MosaicInput", "MosaicResult", "MosaicTile", "accumulate", "combine", "make_mosaic",
           "plan_grid", "read_input"]

DEFAULT_TILE_SIZE = 4096
"""Pixels on a side of a tile: 16.8 Mpixel, ~0.5 GB of float64 working arrays."""


@dataclass(frozen=True)
class MosaicInput:
    """One product set to combine: the flat-noise image, its primary-beam image and its noise."""

    image: Path
    """Flat-noise image (Jy/beam)."""
    pb: Path
    """Its primary-beam image (``<name>.pb.fits``), on the same pixels."""
    rms_jy: float | None = None
    """Its noise (Jy/beam; the images table's ``rms_jy``); None (or not positive): the robust rms of the image."""
    label: str = ""
    """What the manifest calls it (e.g. the image's database id or group)."""


@dataclass(frozen=True)
class MosaicTile:
    """One tile of the grid: its pixel range and, once written, its files."""

    index: int
    x0: int
    y0: int
    nx: int
    ny: int
    inputs: tuple[int, ...] = ()
    """Indices of the inputs overlapping it."""


@dataclass
class MosaicGrid:
    """The CAR grid of one declination strip (see the module docstring) and the inputs' footprints on it."""

    ra0_deg: float
    """RA at the reference pixel (``CRVAL1``)."""
    dec0_deg: float
    """The strip's central declination, where pixels are square."""
    cell_deg: float
    """Pixel height (``CDELT2``)."""
    crpix1: float
    crpix2: float
    nx: int
    ny: int
    footprints: list[tuple[int, int, int, int]] = field(default_factory=list)
    """Per input: its pixel bounding box on the grid, ``(x_lo, x_hi, y_lo, y_hi)``, half-open."""

    def header(self, *, x0: int = 0, y0: int = 0, nx: int | None = None, ny: int | None = None):
        """A celestial FITS header of the sub-grid starting at pixel ``(x0, y0)`` (0-based) of size ``nx`` x ``ny``.

        Parameters
        ----------
        x0, y0
            Its first pixel on the grid (0-based).
        nx, ny
            Its size; None: the grid's.

        Returns
        -------
        astropy.io.fits.Header
            The same sky at the same pixels as the grid's (only CRPIX and NAXIS differ).
        """
        from astropy.io import fits

        h = fits.Header()
        h["NAXIS"] = 2
        h["NAXIS1"] = self.nx if nx is None else nx
        h["NAXIS2"] = self.ny if ny is None else ny
        h["CTYPE1"], h["CTYPE2"] = "RA---CAR", "DEC--CAR"
        h["CRVAL1"], h["CRVAL2"] = self.ra0_deg % 360.0, 0.0
        h["CDELT1"] = -self.cell_deg / math.cos(math.radians(self.dec0_deg))
        h["CDELT2"] = self.cell_deg
        h["CRPIX1"], h["CRPIX2"] = self.crpix1 - x0, self.crpix2 - y0
        h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
        h["RADESYS"] = "ICRS"
        h["EQUINOX"] = 2000.0
        h["LONPOLE"], h["LATPOLE"] = 0.0, 90.0
        return h

    def tiles(self, tile_size: int = DEFAULT_TILE_SIZE) -> list[MosaicTile]:
        """The grid cut into tiles of at most ``tile_size`` x ``tile_size`` pixels, with the inputs overlapping each."""
        if tile_size < 16:
            raise ValueError(f"tile_size {tile_size} is too small (at least 16 pixels)")
        out: list[MosaicTile] = []
        for y0 in range(0, self.ny, tile_size):
            for x0 in range(0, self.nx, tile_size):
                nx, ny = min(tile_size, self.nx - x0), min(tile_size, self.ny - y0)
                hits = tuple(k for k, (xl, xh, yl, yh) in enumerate(self.footprints)
                             if xl < x0 + nx and xh > x0 and yl < y0 + ny and yh > y0)
                out.append(MosaicTile(len(out), x0, y0, nx, ny, hits))
        return out


@dataclass
class MosaicResult:
    """What :func:`make_mosaic` wrote."""

    manifest: Path
    tiles: list[dict[str, Any]]
    n_inputs: int
    beam: tuple[float, float, float]
    """BMAJ, BMIN (arcsec), BPA (deg) written in the tiles."""
    freq_hz: float
    seconds: float
    grid: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"manifest": str(self.manifest), "n_tiles": len(self.tiles), "n_inputs": self.n_inputs,
                "beam_major_arcsec": self.beam[0], "beam_minor_arcsec": self.beam[1], "beam_pa_deg": self.beam[2],
                "freq_hz": self.freq_hz, "seconds": round(self.seconds, 2), "grid": self.grid, "tiles": self.tiles}


# --------------------------------------------------------------------------- the weighting
def accumulate(num: np.ndarray, den: np.ndarray, image: np.ndarray, pb: np.ndarray, *, rms_jy: float,
               pb_limit: float) -> None:
    """Add one input to the sums ``num += w B I`` and ``den += w B**2`` (``w = 1 / rms_jy**2``), in place.

    Parameters
    ----------
    num, den
        The running sums (float64, the shape of ``image``).
    image
        The flat-noise image on the same pixels (Jy/beam); non-finite pixels are left out.
    pb
        Its primary-beam response; pixels with ``pb < pb_limit`` or non-finite are left out.
    rms_jy
        The image's noise (Jy/beam), > 0.
    pb_limit
        Lowest beam response used.
    """
    if not rms_jy > 0 or not math.isfinite(rms_jy):
        raise ValueError(f"rms_jy must be positive and finite, got {rms_jy}")
    w = 1.0 / rms_jy**2
    use = np.isfinite(image) & np.isfinite(pb) & (pb >= pb_limit)
    b = np.where(use, pb, 0.0)
    num += w * b * np.where(use, image, 0.0)
    den += w * b * b


def combine(num: np.ndarray, den: np.ndarray, *, min_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The mosaic and its noise map from the sums: ``S = num / den``, ``sigma = den**-0.5``; NaN where ``den < min_weight``.

    Parameters
    ----------
    num, den
        The sums of :func:`accumulate`.
    min_weight
        The cut-off of ``den`` (Jy**-2).

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        The mosaic (Jy, PB-corrected) and its noise map (Jy/beam), float32.
    """
    ok = den >= min_weight
    safe = np.where(ok, den, 1.0)
    image = np.where(ok, num / safe, np.nan).astype(np.float32)
    noise = np.where(ok, 1.0 / np.sqrt(safe), np.nan).astype(np.float32)
    return image, noise


# --------------------------------------------------------------------------- inputs and grid
def read_input(inp: MosaicInput) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Read one input: ``(image, pb, celestial WCS, image header)``, 2-D float arrays.

    Raises
    ------
    contimg.errors.InputFileError
        If a file is missing or unreadable, or the two differ in shape.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    from contimg.errors import InputFileError

    try:
        with fits.open(inp.image, memmap=False) as hdul:
            header = hdul[0].header.copy()
            image = _plane(hdul[0].data)
        with fits.open(inp.pb, memmap=False) as hdul:
            pb = _plane(hdul[0].data)
    except (OSError, TypeError, IndexError) as exc:
        raise InputFileError(f"mosaic input {inp.image} / {inp.pb} cannot be read: {exc}") from exc
    if image.shape != pb.shape:
        raise InputFileError(f"mosaic input {inp.image} is {image.shape} but its beam {inp.pb} is {pb.shape}")
    return image, pb, WCS(header).celestial, header


def _plane(data: Any) -> np.ndarray:
    d = np.asarray(data)
    while d.ndim > 2:
        d = d[0]
    return d


def _wrap180(x: np.ndarray | float) -> Any:
    return (np.asarray(x) + 180.0) % 360.0 - 180.0


def _border_world(wcs: Any, nx: int, ny: int, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec of ``n`` points along each edge of an ``nx`` x ``ny`` image."""
    across, up = np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n)
    xs = np.concatenate([np.full(n, -0.5), np.full(n, nx - 0.5), across, across])
    ys = np.concatenate([up, up, np.full(n, -0.5), np.full(n, ny - 0.5)])
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    return np.asarray(ra, float), np.asarray(dec, float)


def plan_grid(headers: Sequence[Any], *, cell_deg: float | None = None, margin_pix: int = 2) -> MosaicGrid:
    """The CAR grid covering every input (in the order given: time order along the drift) and their footprints.

    Parameters
    ----------
    headers
        The inputs' FITS headers (celestial WCS, NAXIS1/2).
    cell_deg
        Pixel height; None: the inputs' median ``|CDELT2|``.
    margin_pix
        Pixels added around the inputs' extent.

    Returns
    -------
    MosaicGrid
    """
    from astropy.wcs import WCS

    if not headers:
        raise ValueError("no inputs to plan a mosaic grid for")
    wcss = [WCS(h).celestial for h in headers]
    sizes = [(int(h["NAXIS1"]), int(h["NAXIS2"])) for h in headers]
    if cell_deg is None:
        cell_deg = float(np.median([abs(float(w.pixel_scale_matrix[1, 1])) for w in wcss]))
    centres = [w.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2) for w, (nx, ny) in zip(wcss, sizes)]
    ra_c = np.unwrap(np.radians([float(c[0]) for c in centres]))
    ra_c = np.degrees(ra_c)  # continuous along the drift
    spans = []  # per input: unwrapped RA range and Dec range
    for w, (nx, ny), rc in zip(wcss, sizes, ra_c):
        ra, dec = _border_world(w, nx, ny)
        ra_u = rc + _wrap180(ra - rc)
        spans.append((float(ra_u.min()), float(ra_u.max()), float(np.nanmin(dec)), float(np.nanmax(dec))))
    ra_lo, ra_hi = min(s[0] for s in spans), max(s[1] for s in spans)
    dec_lo, dec_hi = min(s[2] for s in spans), max(s[3] for s in spans)
    dec0 = 0.5 * (dec_lo + dec_hi)
    ra0 = 0.5 * (ra_lo + ra_hi)
    dx = cell_deg / math.cos(math.radians(dec0))  # RA degrees per pixel
    nx = int(math.ceil((ra_hi - ra_lo) / dx)) + 2 * margin_pix
    ny = int(math.ceil((dec_hi - dec_lo) / cell_deg)) + 2 * margin_pix
    # 0-based pixel x has RA = ra0 - (x - (crpix1 - 1)) * dx: x = 0 at ra_hi + margin (RA grows to the left)
    crpix1 = 1.0 + (ra_hi - ra0) / dx + margin_pix
    crpix2 = 1.0 + (0.0 - dec_lo) / cell_deg + margin_pix
    grid = MosaicGrid(ra0_deg=float(ra0), dec0_deg=float(dec0), cell_deg=float(cell_deg), crpix1=float(crpix1),
                      crpix2=float(crpix2), nx=nx, ny=ny)
    for r_lo, r_hi, d_lo, d_hi in spans:
        x_lo = (crpix1 - 1) - (r_hi - ra0) / dx
        x_hi = (crpix1 - 1) - (r_lo - ra0) / dx
        y_lo = (crpix2 - 1) + d_lo / cell_deg
        y_hi = (crpix2 - 1) + d_hi / cell_deg
        grid.footprints.append((max(0, int(math.floor(x_lo)) - 1), min(nx, int(math.ceil(x_hi)) + 2),
                                max(0, int(math.floor(y_lo)) - 1), min(ny, int(math.ceil(y_hi)) + 2)))
    return grid


# --------------------------------------------------------------------------- the mosaic
def _beam_and_freq(headers: Sequence[Any]) -> tuple[tuple[float, float, float], float, float | None]:
    def values(key: str) -> list[float]:
        return [float(h[key]) for h in headers if key in h]

    bmaj, bmin, bpa = values("BMAJ"), values("BMIN"), values("BPA")
    if not bmaj or not bmin:
        raise ValueError("the mosaic's inputs carry no restoring beam (BMAJ/BMIN)")
    beam = (float(np.median(bmaj)) * 3600, float(np.median(bmin)) * 3600, float(np.median(bpa)) if bpa else 0.0)
    freqs = [float(h["CRVAL3"]) for h in headers if str(h.get("CTYPE3", "")).upper().startswith("FREQ")]
    mjds = values("MJD-OBS")
    return beam, float(np.median(freqs)) if freqs else float("nan"), float(np.mean(mjds)) if mjds else None


def _tile_header(grid: MosaicGrid, tile: MosaicTile, *, beam: tuple[float, float, float], freq_hz: float,
                 mjd: float | None, bunit: str, kind: str, n_inputs: int):
    h = grid.header(x0=tile.x0, y0=tile.y0, nx=tile.nx, ny=tile.ny)
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"], h["CUNIT3"] = "FREQ", freq_hz, 1.0, 1.0, "Hz"
    h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    h["BUNIT"] = bunit
    h["BMAJ"], h["BMIN"], h["BPA"] = beam[0] / 3600, beam[1] / 3600, beam[2]
    if mjd is not None:
        h["MJD-OBS"] = mjd
    h["CIMGMOS"] = (kind, "contimg mosaic product: image, noise or weight")
    h["CIMGNIN"] = (n_inputs, "inputs overlapping this tile")
    h["CIMGTILE"] = (tile.index, "tile index in the mosaic manifest")
    h.add_history("contimg: primary-beam-weighted linear mosaic S = sum(w B I) / sum(w B^2), w = 1/rms^2")
    h.add_history("contimg: BMAJ/BMIN/BPA are the median of the inputs' restoring beams")
    return h


def _write_atomic(path: Path, data: np.ndarray, header: Any) -> None:
    from astropy.io import fits

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fits.PrimaryHDU(data=data[np.newaxis, np.newaxis], header=header).writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_mosaic(
    inputs: Sequence[MosaicInput],
    out_dir: str | os.PathLike,
    *,
    name: str,
    pb_limit: float = 0.2,
    tile_size: int = DEFAULT_TILE_SIZE,
    cell_deg: float | None = None,
    order: str = "bicubic",
) -> MosaicResult:
    """Combine ``inputs`` (time order along the drift) into a tiled primary-beam-weighted linear mosaic.

    Parameters
    ----------
    inputs
        The product sets (QA-passed; the caller chooses them).
    out_dir
        Where the tiles and the manifest go (created).
    name
        Stem of the files: ``<name>_t<NNN>.image.fits``, ``.noise.fits``, ``.weight.fits`` and ``<name>.mosaic.json``.
    pb_limit
        Per input, pixels below this beam response are left out; mosaic pixels whose weight is below one
        median-noise input's at this response are blanked.
    tile_size
        Tiles are at most ``tile_size`` x ``tile_size`` pixels (memory: a few float64 arrays of a tile).
    cell_deg
        Pixel size; None: the inputs' median.
    order
        Interpolation of :func:`reproject.reproject_interp` (``bicubic``: a spline that keeps a sampled
        beam's shape; ``bilinear`` broadens it).

    Returns
    -------
    MosaicResult
        The manifest's path and its content.

    Raises
    ------
    ValueError
        If there are no inputs or they carry no restoring beam.
    contimg.errors.InputFileError
        If an input cannot be read.
    """
    from astropy.io import fits
    from reproject import reproject_interp

    from contimg.imaging.qa import robust_rms

    t_start = time.perf_counter()
    if not inputs:
        raise ValueError("a mosaic needs at least one input")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    headers = []
    for inp in inputs:
        try:
            headers.append(fits.getheader(inp.image))
        except OSError as exc:
            from contimg.errors import InputFileError

            raise InputFileError(f"mosaic input {inp.image} cannot be read: {exc}") from exc
    beam, freq_hz, mjd = _beam_and_freq(headers)
    grid = plan_grid(headers, cell_deg=cell_deg)
    rms = [float(inp.rms_jy) if inp.rms_jy is not None and 0 < inp.rms_jy < math.inf else
           robust_rms(read_input(inp)[0]) for inp in inputs]
    min_weight = pb_limit**2 / float(np.median(rms)) ** 2
    tiles = grid.tiles(tile_size)
    log.info("mosaic %s: %d inputs onto %d x %d pixels (%.2f deg x %.2f deg) in %d tiles", name, len(inputs),
             grid.nx, grid.ny, grid.nx * grid.cell_deg / math.cos(math.radians(grid.dec0_deg)),
             grid.ny * grid.cell_deg, len(tiles))
    written: list[dict[str, Any]] = []
    for tile in tiles:
        if not tile.inputs:
            continue
        num = np.zeros((tile.ny, tile.nx))
        den = np.zeros((tile.ny, tile.nx))
        for k in tile.inputs:
            image, pb, wcs, _ = read_input(inputs[k])
            xl, xh, yl, yh = grid.footprints[k]
            xl, xh = max(xl, tile.x0), min(xh, tile.x0 + tile.nx)
            yl, yh = max(yl, tile.y0), min(yh, tile.y0 + tile.ny)
            sub = grid.header(x0=xl, y0=yl, nx=xh - xl, ny=yh - yl)
            stack = np.stack([image, pb], dtype=np.float64)
            del image, pb
            np.nan_to_num(stack, copy=False, nan=0.0)
            # both planes through one coordinate transform; no round-trip check (SIN and CAR invert exactly
            # on the sky an image covers), which would double the transform's cost
            planes, _ = reproject_interp((stack, wcs), sub, shape_out=(2, yh - yl, xh - xl), order=order,
                                         roundtrip_coords=False)
            del stack
            s = (slice(yl - tile.y0, yh - tile.y0), slice(xl - tile.x0, xh - tile.x0))
            accumulate(num[s], den[s], planes[0], planes[1], rms_jy=rms[k], pb_limit=pb_limit)
            del planes
        mosaic, noise = combine(num, den, min_weight=min_weight)
        weight = np.where(den >= min_weight, den, 0.0).astype(np.float32)
        del num, den
        if not np.isfinite(mosaic).any():
            continue
        files = {}
        for kind, data, bunit in (("image", mosaic, "Jy/beam"), ("noise", noise, "Jy/beam"),
                                  ("weight", weight, "Jy-2")):
            path = out / f"{name}_t{tile.index:03d}.{kind}.fits"
            _write_atomic(path, data, _tile_header(grid, tile, beam=beam, freq_hz=freq_hz, mjd=mjd, bunit=bunit,
                                                    kind=kind, n_inputs=len(tile.inputs)))
            files[kind] = str(path)
        sub = grid.header(x0=tile.x0, y0=tile.y0, nx=tile.nx, ny=tile.ny)
        corners = _corners(sub, tile.nx, tile.ny)
        written.append({"index": tile.index, "x0": tile.x0, "y0": tile.y0, "nx": tile.nx, "ny": tile.ny,
                        "inputs": [inputs[k].label or str(inputs[k].image) for k in tile.inputs],
                        "files": files, **corners,
                        "median_noise_jy": float(np.nanmedian(noise)), "min_noise_jy": float(np.nanmin(noise)),
                        "finite_fraction": float(np.isfinite(mosaic).mean())})
        log.info("mosaic %s tile %d: %d inputs, min noise %.3g Jy/beam", name, tile.index, len(tile.inputs),
                 written[-1]["min_noise_jy"])
    grid_info = {**{k: v for k, v in asdict(grid).items() if k != "footprints"},
                 **_corners(grid.header(), grid.nx, grid.ny)}
    result = MosaicResult(manifest=out / f"{name}.mosaic.json", tiles=written, n_inputs=len(inputs), beam=beam,
                          freq_hz=freq_hz, seconds=time.perf_counter() - t_start, grid=grid_info)
    manifest = {"name": name, "pb_limit": pb_limit, "tile_size": tile_size, "min_weight": min_weight,
                "inputs": [{"label": i.label, "image": str(i.image), "pb": str(i.pb), "rms_jy": r}
                           for i, r in zip(inputs, rms)],
                **result.as_dict()}
    manifest.pop("manifest", None)
    _write_json_atomic(result.manifest, manifest)
    current = {f for t in written for f in t["files"].values()}
    for stale in out.glob(f"{name}_t*.fits"):  # tiles of an earlier run that this one did not write
        if str(stale) not in current:
            stale.unlink(missing_ok=True)
    return result


def _corners(header: Any, nx: int, ny: int) -> dict[str, float]:
    """The sky bounds of a (sub-)grid: RA of its east (x = 0) and west edges, its Dec range."""
    from astropy.wcs import WCS

    ra, dec = WCS(header).pixel_to_world_values([-0.5, nx - 0.5], [-0.5, ny - 0.5])
    return {"ra_east_deg": float(ra[0]) % 360.0, "ra_west_deg": float(ra[1]) % 360.0,
            "dec_min_deg": float(min(dec)), "dec_max_deg": float(max(dec))}
