"""What the ``images`` table records of an imaging product set (the rows themselves are written by
:func:`contimg.pipeline.image.record_images`).

Two rows per run: the flat-noise image (``pb_corrected=False``, QA measured on
it) and the primary-beam corrected one (``pb_corrected=True``, same beam; its
noise rises towards the field edge, so the recorded rms is the flat-noise one
at the beam centre), each with the set's files by kind (the manifest).
"""

from __future__ import annotations

from typing import Any

from contimg.imaging.run import ImageProducts

__all__ = ["PRODUCT_KINDS", "image_records", "product_files"]


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
