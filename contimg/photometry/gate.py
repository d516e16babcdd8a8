"""The photometry QA gate: a verdict on one image's differential normalisation.

* **correction factor**: the epoch's flux-scale correction from the reference
  ensemble (:mod:`contimg.photometry.normalize`), judged by how far it is from
  1 (``qa.photometry_correction_warn`` / ``_fail``): a large one means the
  image's flux scale is off, which normalisation can repair only so far;
* **agreement of the reference ensemble**: the correction's relative
  uncertainty, which the normalisation inflates by sqrt(chi2) when the
  references' ratios scatter more than their errors
  (``qa.photometry_scatter_warn`` / ``_fail``): the 1-2 % relative precision
  the science needs is lost when the references disagree;
* too few references for a correction: a warning (the epoch is not normalised).
"""

from __future__ import annotations

import math
from typing import Any

from contimg.verdict import WARN, Verdict

__all__ = ["judge_normalization"]


def judge_normalization(normalization: dict[str, Any], *, qa: Any) -> Verdict:
    """The verdict on one image's normalisation summary (``photometry_for_image(...)["normalization"]``).

    Parameters
    ----------
    normalization
        ``correction``, ``correction_err`` (this epoch) and ``references`` (how many).
    qa
        ``settings.qa``.
    """
    c, err = normalization.get("correction"), normalization.get("correction_err")
    v = Verdict(figures={"correction": c, "correction_err": err, "references": normalization.get("references")})
    if c is None or not math.isfinite(c) or c <= 0:
        v.add(WARN, f"not normalised: {normalization.get('references', 0)} usable reference source(s) in this epoch")
        return v
    v.grade(abs(c - 1.0), warn=qa.photometry_correction_warn, fail=qa.photometry_correction_fail,
            message=f"flux-scale correction {c:.3f} from the reference ensemble")
    if err is not None and math.isfinite(err):
        v.grade(err / c, warn=qa.photometry_scatter_warn, fail=qa.photometry_scatter_fail,
                message=f"the references agree to {err / c:.1%} (the correction's relative uncertainty)")
    return v
