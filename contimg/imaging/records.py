"""Recording image products in the database (the ``images`` table).

The cluster's ``image`` task calls :func:`record_images` with its session after
:func:`contimg.imaging.image_ms`; two rows are written per run, the flat-noise
image (``pb_corrected=False``, QA measured on it) and the primary-beam
corrected one (``pb_corrected=True``, same beam; its noise rises towards the
field edge, so the recorded rms is the flat-noise one at the beam centre).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contimg.imaging.run import ImageProducts

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from contimg.db.models import Image, MeasurementSet

__all__ = ["PRODUCT_KINDS", "image_records", "product_files", "record_images"]


PRODUCT_KINDS = ("image", "pbcor", "pb", "residual", "model", "psf", "thumbnail", "log")
"""The files of one imaging product set, as recorded in ``images.files``."""


def product_files(products: ImageProducts) -> dict[str, str]:
    """The product set's files by kind (:data:`PRODUCT_KINDS`; ``log`` only when the imager wrote one)."""
    return {kind: str(getattr(products, kind)) for kind in PRODUCT_KINDS if getattr(products, kind) is not None}


def image_records(products: ImageProducts) -> list[dict[str, Any]]:
    """The Image column values of both products (flat-noise first), as plain dictionaries."""
    qa = products.qa
    common = dict(
        mid_mjd=products.mid_mjd, ra_deg=products.ra_deg, dec_deg=products.dec_deg,
        beam_major_arcsec=qa.beam_major_arcsec, beam_minor_arcsec=qa.beam_minor_arcsec, beam_pa_deg=qa.beam_pa_deg,
        rms_jy=qa.rms_jy, peak_jy=qa.peak_jy, dynamic_range=qa.dynamic_range,
        tier=products.tier, backend=products.backend, files=product_files(products),
    )
    return [
        dict(path=products.image, pb_corrected=False, **common),
        dict(path=products.pbcor, pb_corrected=True, **common),
    ]


def record_images(session: "Session", products: ImageProducts, *, ms: "MeasurementSet | int | None" = None) -> list["Image"]:
    """Create or update the Image rows of ``products`` (keyed by path) in ``session``; the caller commits.

    Parameters
    ----------
    session
        An open session.
    products
        From :func:`contimg.imaging.image_ms`.
    ms
        The MeasurementSet row (or its id) the images were made from.
    """
    from contimg.db.products import upsert_image

    return [upsert_image(session, ms=ms, **rec) for rec in image_records(products)]
