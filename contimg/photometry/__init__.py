"""Photometry: forced flux measurements of catalogue sources in every image, and their normalisation.

Modules, in the order data flows: :mod:`.forced` (vectorised fixed-position
restoring-beam fits with local-noise errors, on arrays and FITS headers),
:mod:`.normalize` (differential normalisation against a reference ensemble),
:mod:`.run` (:func:`photometry_for_image`, the stage's database-facing entry
point).

Example
-------
>>> from contimg.config import load_settings
>>> from contimg.photometry import photometry_for_image
>>> settings = load_settings()
>>> photometry_for_image(42, database=settings, settings=settings)  # doctest: +SKIP
{'image_id': 42, 'n_sources': 37, 'n_measured': 37, 'n_upper_limits': 5, ...}
"""

from contimg.photometry.forced import ForcedPhotometry, forced_photometry
from contimg.photometry.normalize import Normalization, normalize_fluxes, normalize_long
from contimg.photometry.run import photometry_for_image

__all__ = [
    "ForcedPhotometry",
    "Normalization",
    "forced_photometry",
    "normalize_fluxes",
    "normalize_long",
    "photometry_for_image",
]
