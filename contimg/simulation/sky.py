"""Point-source sky catalogues: random NVSS-like fields, a transiting calibrator, CSV I/O.

The CSV format is the one the calibration stage imports::

    id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator
    0,312.41325100,34.90021400,2.103000,-0.712,0

``flux_jy`` is the flux density at :data:`REFERENCE_FREQ_HZ` (1.4 GHz) and
``S(nu) = flux_jy * (nu / 1.4 GHz) ** spectral_index``; positions are ICRS.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contimg.beam import angular_separation
from contimg.errors import InputFileError

__all__ = ["CSV_COLUMNS", "REFERENCE_FREQ_HZ", "SkyCatalog", "power_law_fluxes", "random_field"]

REFERENCE_FREQ_HZ = 1.4e9
CSV_COLUMNS = ("id", "ra_deg", "dec_deg", "flux_jy", "spectral_index", "calibrator")


@dataclass(frozen=True)
class SkyCatalog:
    """A list of point sources (arrays of equal length ``Nsrc``), ICRS positions."""

    source_id: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    flux_jy: np.ndarray
    """Flux density at 1.4 GHz (Jy)."""
    spectral_index: np.ndarray
    calibrator: np.ndarray
    """True for calibrators."""

    def __post_init__(self) -> None:
        n = len(self.source_id)
        for name in ("ra_deg", "dec_deg", "flux_jy", "spectral_index", "calibrator"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SkyCatalog.{name} has {len(getattr(self, name))} entries, expected {n}")
        if len(np.unique(self.source_id)) != n:
            raise ValueError("SkyCatalog source ids are not unique")

    @classmethod
    def from_sources(
        cls,
        ra_deg: "np.ndarray | list[float]",
        dec_deg: "np.ndarray | list[float]",
        flux_jy: "np.ndarray | list[float] | float",
        *,
        spectral_index: "np.ndarray | list[float] | float" = 0.0,
        calibrator: "np.ndarray | list[bool] | bool" = False,
        source_id: "np.ndarray | list[int] | None" = None,
    ) -> "SkyCatalog":
        """Build a catalogue from positions and fluxes (ids 0 ... N-1 by default).

        ``ra_deg`` sets the number of sources ``N``; every other argument is a scalar (the same for all) or
        has ``N`` entries.

        Parameters
        ----------
        ra_deg, dec_deg
            ICRS positions (deg).
        flux_jy
            Flux densities at 1.4 GHz (Jy).
        spectral_index
            Power-law indices, ``S ~ nu ** spectral_index`` (default flat).
        calibrator
            Which sources are calibrators (default none).
        source_id
            Unique integer ids (default ``0 ... N-1``).

        Returns
        -------
        SkyCatalog

        Raises
        ------
        ValueError
            Arrays of different lengths, or repeated ids.
        """
        ra = np.atleast_1d(np.asarray(ra_deg, float))
        n = ra.size
        return cls(
            source_id=np.arange(n) if source_id is None else np.asarray(source_id, int),
            ra_deg=ra,
            dec_deg=np.broadcast_to(np.asarray(dec_deg, float), (n,)).copy(),
            flux_jy=np.broadcast_to(np.asarray(flux_jy, float), (n,)).copy(),
            spectral_index=np.broadcast_to(np.asarray(spectral_index, float), (n,)).copy(),
            calibrator=np.broadcast_to(np.asarray(calibrator, bool), (n,)).copy(),
        )

    @property
    def Nsrc(self) -> int:  # noqa: N802 - pyuvdata-style naming
        return len(self.source_id)

    def flux_at(self, freq_hz: np.ndarray) -> np.ndarray:
        """Flux density (Jy), shape (Nsrc, Nfreqs), of the 1.4 GHz power law."""
        ratio = np.asarray(freq_hz, float)[None, :] / REFERENCE_FREQ_HZ
        return self.flux_jy[:, None] * ratio ** self.spectral_index[:, None]

    def index_of(self, source_id: int) -> int:
        """Row of ``source_id``; KeyError if absent."""
        hits = np.flatnonzero(self.source_id == source_id)
        if hits.size == 0:
            raise KeyError(f"source id {source_id} is not in the catalogue")
        return int(hits[0])

    def concat(self, other: "SkyCatalog") -> "SkyCatalog":
        return SkyCatalog(
            *(np.concatenate([getattr(self, n), getattr(other, n)]) for n in
              ("source_id", "ra_deg", "dec_deg", "flux_jy", "spectral_index", "calibrator"))
        )

    def write_csv(self, path: str | Path) -> Path:
        """Write ``id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator`` (calibrator as 0/1)."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(CSV_COLUMNS)
            for i in range(self.Nsrc):
                w.writerow([
                    int(self.source_id[i]), f"{self.ra_deg[i]:.9f}", f"{self.dec_deg[i]:.9f}",
                    f"{self.flux_jy[i]:.9g}", f"{self.spectral_index[i]:.6g}", int(bool(self.calibrator[i])),
                ])
        return path

    @classmethod
    def read_csv(cls, path: str | Path) -> "SkyCatalog":
        """Read a catalogue written by :meth:`write_csv`.

        Raises
        ------
        InputFileError
            If the file is missing, lacks a column or has a bad value.
        """
        path = Path(path)
        cols: dict[str, list[str]] = {c: [] for c in CSV_COLUMNS}
        try:
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise InputFileError(f"{path}: missing column(s) {sorted(missing)}")
                for row in reader:
                    for c in CSV_COLUMNS:
                        cols[c].append(row[c])
            return cls(
                source_id=np.array(cols["id"], dtype=int),
                ra_deg=np.array(cols["ra_deg"], dtype=float),
                dec_deg=np.array(cols["dec_deg"], dtype=float),
                flux_jy=np.array(cols["flux_jy"], dtype=float),
                spectral_index=np.array(cols["spectral_index"], dtype=float),
                calibrator=np.array([c.strip().lower() in ("1", "true", "yes") for c in cols["calibrator"]]),
            )
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read catalogue: {exc}") from exc
        except ValueError as exc:
            raise InputFileError(f"{path}: bad catalogue value: {exc}") from exc


def power_law_fluxes(n: int, *, rng: np.random.Generator, s_min: float, s_max: float, slope: float) -> np.ndarray:
    """``n`` fluxes drawn from dN/dS ~ S^-slope on [s_min, s_max] (inverse-CDF sampling).

    The 1.4 GHz counts of NVSS/FIRST between ~10 mJy and a few Jy have an
    integral slope N(>S) ~ S^-0.8 ... S^-1 (Condon et al. 1998, AJ 115, 1693),
    i.e. ``slope`` ~ 1.8 ... 2.

    Parameters
    ----------
    n
        Number of fluxes.
    rng
        The random generator.
    s_min, s_max
        Flux range (Jy), ``0 < s_min < s_max``.
    slope
        Differential slope: dN/dS ~ S^-slope (1 gives a log-uniform distribution).

    Returns
    -------
    numpy.ndarray
        ``n`` fluxes (Jy), in random order.
    """
    x = rng.uniform(size=n)
    if abs(slope - 1.0) < 1e-9:
        return s_min * (s_max / s_min) ** x
    a = 1.0 - slope
    return (s_min**a + x * (s_max**a - s_min**a)) ** (1.0 / a)


def random_field(
    n: int,
    *,
    rng: np.random.Generator,
    ra_range_deg: tuple[float, float],
    dec_deg: float,
    radius_deg: float,
    s_min: float,
    s_max: float,
    slope: float,
    alpha_mean: float,
    alpha_rms: float,
    first_id: int = 0,
) -> SkyCatalog:
    """Random sources within ``radius_deg`` of the track from ``ra_range_deg`` at ``dec_deg`` (ICRS).

    Positions are uniform on the sphere inside the union of circles of
    ``radius_deg`` around every point of the track (the sky that drifts
    through the beam during the simulated groups). Sources are sorted by
    decreasing flux and numbered from ``first_id``.

    Parameters
    ----------
    n
        Number of sources.
    rng
        The random generator.
    ra_range_deg
        ``(start, end)`` RA of the track (deg); an end below the start wraps through 360.
    dec_deg
        Declination of the track (deg), e.g. the pointing.
    radius_deg
        Radius around the track (deg), e.g. the primary beam's extent. The distance is taken to the track point
        at the same RA (clipped to the track), which is exact only for small radii.
    s_min, s_max, slope
        The 1.4 GHz flux distribution (Jy), see :func:`power_law_fluxes`.
    alpha_mean, alpha_rms
        Mean and rms of the Gaussian spectral indices.
    first_id
        Id of the brightest source; the others follow consecutively.

    Returns
    -------
    SkyCatalog
        ``n`` sources, none a calibrator, RA in [0, 360) deg.
    """
    ra0, ra1 = ra_range_deg
    if ra1 < ra0:
        ra1 += 360.0
    dec_r = np.radians(dec_deg)
    rad = np.radians(radius_deg)
    lo = max(-np.pi / 2, dec_r - rad)
    hi = min(np.pi / 2, dec_r + rad)
    cosd = max(np.cos(dec_r + np.sign(dec_r) * rad) if abs(dec_r) + rad < np.pi / 2 else 0.0, 1e-3)
    pad = min(180.0, np.degrees(rad / cosd))
    ras: list[float] = []
    decs: list[float] = []
    while len(ras) < n:  # rejection sampling in an RA/sin(dec) box
        m = 4 * (n - len(ras)) + 16
        ra = rng.uniform(ra0 - pad, ra1 + pad, m)
        dec = np.arcsin(rng.uniform(np.sin(lo), np.sin(hi), m))
        ra_near = np.clip(ra, ra0, ra1)  # closest track point in RA (good for small radius)
        sep = angular_separation(np.radians(ra_near), dec_r, np.radians(ra), dec)
        keep = sep <= rad
        ras.extend(ra[keep].tolist())
        decs.extend(dec[keep].tolist())
    ra_deg = np.mod(np.array(ras[:n]), 360.0)
    dec_out = np.degrees(np.array(decs[:n]))
    flux = np.sort(power_law_fluxes(n, rng=rng, s_min=s_min, s_max=s_max, slope=slope))[::-1]
    alpha = rng.normal(alpha_mean, alpha_rms, n)
    return SkyCatalog(
        source_id=np.arange(first_id, first_id + n),
        ra_deg=ra_deg,
        dec_deg=dec_out,
        flux_jy=flux,
        spectral_index=alpha,
        calibrator=np.zeros(n, bool),
    )
