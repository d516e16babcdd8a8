"""Imaging: a calibrated Measurement Set to FITS images, primary-beam corrected, with QA.

One interface, :func:`image_ms`, over two backends: WSClean (default, through
the one wrapper :mod:`.wsclean`) and CASA ``tclean`` (:mod:`.tclean`).

Modules, in the order data flows: :mod:`.geometry` (what the MS holds; cell and
size), :mod:`.tiers` (quicklook / standard / deep), :mod:`.mask` (catalogue
masks), :mod:`.wsclean` / :mod:`.tclean`, :mod:`.pbcor` (time/band-averaged
Airy beam), :mod:`.qa` (noise, beam, peak, fits at known positions,
thumbnail), :mod:`.run` (:func:`image_ms`), :mod:`.records` (database rows).

Example
-------
>>> from contimg.config import load_settings
>>> from contimg.imaging import image_ms, record_images
>>> settings = load_settings()
>>> products = image_ms("group.ms", settings=settings.imaging, out_dir=settings.paths.images)  # doctest: +SKIP
>>> products.qa.rms_jy, products.pbcor                                                          # doctest: +SKIP
>>> with session_scope() as session:                                                           # doctest: +SKIP
...     record_images(session, products, ms=ms_row)
"""

from contimg.imaging.geometry import ImageGeometry, MsInfo, derive_geometry, read_ms_info
from contimg.imaging.qa import ImageQA, PointSourceFit, fit_point_source, image_qa
from contimg.imaging.records import image_records, record_images
from contimg.imaging.run import ImageProducts, image_ms
from contimg.imaging.tiers import TIERS, TierParameters, tier_parameters

__all__ = [
    "ImageGeometry",
    "ImageProducts",
    "ImageQA",
    "MsInfo",
    "PointSourceFit",
    "TIERS",
    "TierParameters",
    "derive_geometry",
    "fit_point_source",
    "image_ms",
    "image_qa",
    "image_records",
    "read_ms_info",
    "record_images",
    "tier_parameters",
]
