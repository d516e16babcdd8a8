"""What the imager needs to know about a Measurement Set, and the image geometry derived from it.

:func:`read_ms_info` reads (with python-casacore, no CASA session) the phase
center, times, frequencies, longest baseline, the data column's presence and
the flagged fraction, and refuses an MS that cannot be imaged with a
:class:`~contimg.errors.InputFileError` naming it.

:func:`derive_geometry` turns that into a cell and an image size:

* cell = ``lambda_min / B_max / pixels_per_beam`` (``B_max`` the longest
  projected baseline in the uv plane), rounded down to 0.1 arcsec: the
  synthesized beam's narrowest fringe is sampled by at least
  ``pixels_per_beam`` (3 ... 5) pixels; and, given the PSF's predicted main
  lobe (:mod:`contimg.imaging.psf`), no more than its narrowest half-power
  width / ``pixels_per_beam``: where the Briggs weights leave the main lobe
  narrower than the longest baseline says (DSA-110's core-only array: 57
  arcsec for an 85 arcsec fringe), the lobe sets the cell;
* the field reaches the primary-beam response ``pb_limit`` of the
  *time-averaged* Airy beam at the lowest frequency (the widest beam): a
  circle of radius ``theta(pb_limit, nu_min)`` swept along the pointing's RA
  track during the group, so the image is wider in RA than in Dec;
* sizes are rounded up to even 5-smooth numbers (fast FFTs in WSClean and CASA).

:func:`pointing_track` gives the ICRS pointing of every integration, read
from the MS by :mod:`contimg.pointing`: for DSA-110 the meridian (apparent RA
= apparent LST) at the apparent declination of the phase center, which the
conversion stage phased to the meridian at the group midpoint; for a pointed
observation its fixed position. A drift scan's beam is fixed in HA/Dec while
the sky drifts, so primary-beam correction uses this track (see
:mod:`contimg.imaging.pbcor`); the array's position is the MS's too.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from contimg.beam import SPEED_OF_LIGHT, airy_power, dish_diameter_from_antennas
from contimg.errors import InputFileError
from contimg.pointing import Pointing, read_pointing, read_telescope_xyz

__all__ = ["ImageGeometry", "MsInfo", "derive_geometry", "pb_radius_rad", "pointing_track", "read_ms_info"]

log = logging.getLogger(__name__)

ARCSEC = math.pi / (180 * 3600)
_FLAG_CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class MsInfo:
    """The facts about a Measurement Set that imaging depends on.

    Attributes
    ----------
    path
        The MS.
    phase_center_ra_rad, phase_center_dec_rad
        ICRS phase center of the (single) field.
    time_jd
        Unique integration centres (JD UTC), ascending.
    integration_s
        Integration time (s).
    freq_array
        Channel centres (Hz) of the single spectral window, ascending.
    channel_width_hz
        Channel width (Hz).
    max_baseline_m
        Longest projected baseline in the uv plane, sqrt(u^2 + v^2) (m).
    max_w_m
        Largest |w| (m).
    Nrows, Nants
        Rows and antennas (in the ANTENNA table).
    flagged_fraction
        Fraction of flagged cross-correlation visibilities.
    telescope_name
        OBSERVATION::TELESCOPE_NAME.
    """

    path: str
    phase_center_ra_rad: float
    phase_center_dec_rad: float
    time_jd: tuple[float, ...]
    integration_s: float
    freq_array: tuple[float, ...]
    channel_width_hz: float
    max_baseline_m: float
    max_w_m: float
    Nrows: int
    Nants: int
    flagged_fraction: float
    telescope_name: str
    dish_diameter_m: float = 4.65
    """The antennas' dish diameter from the ANTENNA table: the primary beam of the field and of PB correction."""
    pointing: Pointing | None = None
    """Where the dishes point (:func:`contimg.pointing.read_pointing`); None: DSA-110's meridian drift at the
    phase centre's declination."""

    @property
    def Nfreqs(self) -> int:  # noqa: N802 - pyuvdata naming
        return len(self.freq_array)

    @property
    def Ntimes(self) -> int:  # noqa: N802 - pyuvdata naming
        return len(self.time_jd)

    @property
    def mid_time_jd(self) -> float:
        return float(np.mean(self.time_jd))

    @property
    def mean_freq_hz(self) -> float:
        """Mean channel frequency: the reference frequency of our MFS images."""
        return float(np.mean(self.freq_array))

    @property
    def min_freq_hz(self) -> float:
        return float(np.min(self.freq_array) - self.channel_width_hz / 2)

    @property
    def max_freq_hz(self) -> float:
        return float(np.max(self.freq_array) + self.channel_width_hz / 2)


@dataclass(frozen=True)
class ImageGeometry:
    """Pixel grid of an image centred on the phase center (SIN projection)."""

    cell_arcsec: float
    nx: int
    """Pixels along RA."""
    ny: int
    """Pixels along Dec."""
    pb_limit: float
    pb_radius_deg: float
    """Radius at which the time-averaged beam at the lowest frequency falls to ``pb_limit``."""
    drift_deg: float
    """Great-circle length of the pointing track during the group."""

    @property
    def width_deg(self) -> float:
        return self.nx * self.cell_arcsec / 3600

    @property
    def height_deg(self) -> float:
        return self.ny * self.cell_arcsec / 3600

    def to_dict(self) -> dict:
        return asdict(self)


def _data_columns(ms: Path) -> list[str]:
    from casacore.tables import table

    with table(str(ms), ack=False) as t:
        return t.colnames()


def read_ms_info(ms_path: str | os.PathLike, *, data_column: str = "CORRECTED_DATA") -> MsInfo:
    """Read what imaging needs from ``ms_path`` and check that it can be imaged.

    Parameters
    ----------
    ms_path
        The Measurement Set (one field, one spectral window).
    data_column
        The column that will be imaged; it must exist.

    Raises
    ------
    InputFileError
        If the MS is missing or unreadable, lacks ``data_column``, has more
        than one field or spectral window, or has every visibility flagged.
    """
    from casacore.tables import table

    ms = Path(ms_path)
    if not (ms / "table.dat").exists():
        raise InputFileError(f"{ms}: not a Measurement Set (no table.dat)")
    try:
        with table(str(ms), ack=False) as t:
            cols = t.colnames()
            if data_column not in cols:
                raise InputFileError(
                    f"{ms}: has no {data_column} column (columns: {', '.join(c for c in cols if c.endswith('DATA'))}); "
                    "calibrate it (or apply the calibration) before imaging"
                )
            nrows = t.nrows()
            if nrows == 0:
                raise InputFileError(f"{ms}: has no rows")
            times = np.unique(t.getcol("TIME"))
            interval = float(np.median(t.getcol("INTERVAL", 0, min(nrows, 1000))))
            uvw = t.getcol("UVW")
            a1 = t.getcol("ANTENNA1")
            a2 = t.getcol("ANTENNA2")
            ddid = np.unique(t.getcol("DATA_DESC_ID"))
            field = np.unique(t.getcol("FIELD_ID"))
            cross = a1 != a2
            nflag = 0
            nvis = 0
            for start in range(0, nrows, _FLAG_CHUNK_ROWS):
                n = min(_FLAG_CHUNK_ROWS, nrows - start)
                flag = t.getcol("FLAG", start, n)
                frow = t.getcol("FLAG_ROW", start, n)
                c = cross[start:start + n]
                f = flag[c] | frow[c][:, None, None]
                nflag += int(f.sum())
                nvis += int(f.size)
        with table(str(ms / "FIELD"), ack=False) as t:
            phase_dir = t.getcol("PHASE_DIR")
            ref = t.getcolkeyword("PHASE_DIR", "MEASINFO").get("Ref", "J2000")
        with table(str(ms / "SPECTRAL_WINDOW"), ack=False) as t:
            chan_freq = t.getcol("CHAN_FREQ")
            chan_width = t.getcol("CHAN_WIDTH")
        with table(str(ms / "ANTENNA"), ack=False) as t:
            nants = t.nrows()
            diameters = np.asarray(t.getcol("DISH_DIAMETER"), float)
        with table(str(ms / "OBSERVATION"), ack=False) as t:
            tel = str(t.getcol("TELESCOPE_NAME")[0]) if t.nrows() else ""
        if len(field) == 1 and phase_dir.shape[0] == 1 and ref in ("ICRS", "J2000"):
            time_jd = times / 86400.0 + 2400000.5
            pointing = read_pointing(ms, time_jd=time_jd,
                                     telescope_xyz=read_telescope_xyz(ms, np.union1d(a1, a2)))
    except InputFileError:
        raise
    except RuntimeError as exc:  # casacore raises RuntimeError for unreadable tables
        raise InputFileError(f"{ms}: cannot read the Measurement Set: {exc}") from exc
    if len(field) != 1 or phase_dir.shape[0] != 1:
        raise InputFileError(f"{ms}: imaging needs exactly one field, found {phase_dir.shape[0]}")
    if len(ddid) != 1 or chan_freq.shape[0] != 1:
        raise InputFileError(f"{ms}: imaging needs exactly one spectral window, found {chan_freq.shape[0]}")
    if ref not in ("ICRS", "J2000"):
        raise InputFileError(f"{ms}: phase center frame {ref} is not ICRS/J2000")
    if nvis == 0 or nflag == nvis:
        raise InputFileError(f"{ms}: every cross-correlation visibility is flagged; nothing to image")
    freq = np.asarray(chan_freq[0], float)
    order = np.argsort(freq)
    max_bl = float(np.hypot(uvw[cross, 0], uvw[cross, 1]).max()) if cross.any() else 0.0
    if max_bl <= 0:
        raise InputFileError(f"{ms}: has no cross-correlations with non-zero baselines")
    return MsInfo(
        path=str(ms),
        phase_center_ra_rad=float(phase_dir[0, 0, 0]) % (2 * math.pi),
        phase_center_dec_rad=float(phase_dir[0, 0, 1]),
        time_jd=tuple(float(x) for x in times / 86400.0 + 2400000.5),
        integration_s=interval,
        freq_array=tuple(float(x) for x in freq[order]),
        channel_width_hz=float(abs(chan_width[0][0])),
        max_baseline_m=max_bl,
        max_w_m=float(np.abs(uvw[cross, 2]).max()),
        Nrows=int(nrows),
        Nants=int(nants),
        flagged_fraction=nflag / nvis,
        telescope_name=tel,
        dish_diameter_m=dish_diameter_from_antennas(
            diameters[np.union1d(a1, a2)] if diameters.size > max(a1.max(), a2.max()) else diameters, ms_path=ms),
        pointing=pointing,
    )


def pointing_track(info: MsInfo) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (RA, Dec) of the pointing at each integration (radians).

    From the pointing read from the MS (:mod:`contimg.pointing`): a drift scan's pointing moves
    along its hour angle, a pointed observation's stays put. Without one (an ``MsInfo`` made by
    hand): DSA-110's convention, the meridian at the phase centre's apparent declination (the
    conversion stage phased the MS to the meridian at the group midpoint).
    """
    if info.pointing is not None:
        return info.pointing.icrs(np.asarray(info.time_jd, float))
    from contimg.stations import apparent_to_icrs, icrs_to_apparent, lst_rad

    t = np.asarray(info.time_jd, float)
    _, dec_app = icrs_to_apparent(np.array([info.phase_center_ra_rad]), np.array([info.phase_center_dec_rad]),
                                  np.array([info.mid_time_jd]))
    lst = lst_rad(t)
    ra, dec = apparent_to_icrs(lst, np.full(t.shape, float(dec_app[0])), t)
    return np.mod(ra, 2 * math.pi), dec


def pb_radius_rad(pb_limit: float, freq_hz: float, diameter_m: float = 4.65) -> float:
    """Angular radius (radians) where the Airy power beam of ``diameter_m`` dishes at ``freq_hz`` falls to ``pb_limit``.

    Parameters
    ----------
    pb_limit
        Power response (0-1) to reach, above the main lobe's floor (0 at the first null).
    freq_hz
        Frequency (Hz); the lowest channel for the largest radius.
    diameter_m
        Dish diameter (m), 4.65 for DSA-110.

    Returns
    -------
    float
        Radius (rad) inside the main lobe (before the first null, 1.22 lambda/D).

    Raises
    ------
    ValueError
        If ``pb_limit`` is not strictly between 0 and 1 (no root in the main lobe, from ``brentq``).
    """
    first_null = 1.2197 * SPEED_OF_LIGHT / (freq_hz * diameter_m)
    return float(brentq(lambda r: float(airy_power(r, freq_hz, diameter_m)) - pb_limit, 1e-9, first_null * 0.999))


def _smooth_even(n: int) -> int:
    """The smallest even 5-smooth number (2^a 3^b 5^c) that is >= n."""
    m = max(2, int(n))
    while True:
        if m % 2 == 0:
            k = m
            for p in (2, 3, 5):
                while k % p == 0:
                    k //= p
            if k == 1:
                return m
        m += 1


def derive_geometry(
    info: MsInfo,
    *,
    pb_limit: float,
    pixels_per_beam: float = 3.0,
    cell_arcsec: float | None = None,
    psf_minor_arcsec: float | None = None,
    max_pixels: int = 8192,
) -> ImageGeometry:
    """Cell and image size for ``info`` (see the module docstring).

    Parameters
    ----------
    info
        From :func:`read_ms_info`.
    pb_limit
        Image out to this response of the time-averaged primary beam at the
        lowest frequency (``settings.imaging.pb_limit``).
    pixels_per_beam
        Pixels across ``lambda_min / B_max`` (3 ... 5).
    cell_arcsec
        Force this cell instead of deriving it.
    psf_minor_arcsec
        The narrowest half-power width of the PSF's main lobe
        (:func:`contimg.imaging.psf.main_lobe_fwhm`); the cell samples it by
        ``pixels_per_beam`` too.
    max_pixels
        Upper bound of either dimension.

    Returns
    -------
    ImageGeometry
        Cell (arcsec, floored to 0.1), ``nx`` (along RA: beam diameter plus the drift) and ``ny`` (along Dec:
        beam diameter) as even 5-smooth numbers clipped to ``max_pixels``, ``pb_limit``, the beam radius (deg)
        and the drift of the pointing track (deg).
    """
    lam_min = SPEED_OF_LIGHT / info.max_freq_hz
    if cell_arcsec is None:
        cell = lam_min / info.max_baseline_m / pixels_per_beam / ARCSEC
        if psf_minor_arcsec is not None and psf_minor_arcsec > 0:
            cell = min(cell, psf_minor_arcsec / pixels_per_beam)
        cell_arcsec = math.floor(cell * 10) / 10
    radius = pb_radius_rad(pb_limit, info.min_freq_hz, info.dish_diameter_m)
    ra, dec = pointing_track(info)
    from contimg.beam import angular_separation

    drift = float(angular_separation(ra[0], dec[0], ra[-1], dec[-1]))
    # one integration on either side of the track: the time-averaged beam reaches a
    # little beyond the outermost pointings
    drift_full = drift * info.Ntimes / max(info.Ntimes - 1, 1)
    nx = _smooth_even(math.ceil((2 * radius + drift_full) / (cell_arcsec * ARCSEC)))
    ny = _smooth_even(math.ceil(2 * radius / (cell_arcsec * ARCSEC)))
    if max(nx, ny) > max_pixels:
        log.warning("%s: image %dx%d exceeds %d pixels; clipping", info.path, nx, ny, max_pixels)
        nx, ny = min(nx, max_pixels), min(ny, max_pixels)
    return ImageGeometry(cell_arcsec=float(cell_arcsec), nx=nx, ny=ny, pb_limit=pb_limit,
                         pb_radius_deg=math.degrees(radius), drift_deg=math.degrees(drift))
