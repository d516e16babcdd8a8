"""Photometry: forced flux measurements of catalogue sources in every image, and their normalisation.

Modules, in the order data flows: :mod:`.forced` (vectorised fixed-position
restoring-beam fits with local-noise errors, on arrays and FITS headers),
:mod:`.normalize` (differential normalisation against a reference ensemble),
:mod:`.measure` (one product set: the beam at the sources, the measurement,
the normalisation of stored rows), :mod:`.gate` (the verdict on an image's
normalisation). None of them touches the database: the stage's reads and
writes are in :mod:`contimg.pipeline.photometry`.

Example
-------
>>> from contimg.config import load_settings
>>> from contimg.pipeline.photometry import photometry_for_image
>>> settings = load_settings()
>>> photometry_for_image(42, database=settings, settings=settings)  # doctest: +SKIP
{'image_id': 42, 'n_sources': 37, 'n_measured': 37, 'n_upper_limits': 5, ...}
"""

from contimg.photometry.forced import ForcedPhotometry, forced_photometry
from contimg.photometry.normalize import Normalization, normalize_fluxes, normalize_long
from contimg.photometry.measure import ImageSet, measure_image, normalize_rows

__all__ = [
    "ForcedPhotometry",
    "ImageSet",
    "Normalization",
    "forced_photometry",
    "normalize_fluxes",
    "normalize_long",
    "normalize_rows",
    "measure_image",
]
