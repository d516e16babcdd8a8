"""The photometry QA gate: the normalisation's correction factor and the agreement of the references."""

from __future__ import annotations

from contimg.config import QaSettings
from contimg.photometry.gate import judge_normalization


def test_verdicts_on_the_normalisation():
    qa = QaSettings()
    assert judge_normalization({"correction": 1.02, "correction_err": 0.005, "references": 8}, qa=qa).status == "pass"
    assert judge_normalization({"correction": 1.15, "correction_err": 0.005, "references": 8}, qa=qa).status == "warn"
    bad = judge_normalization({"correction": 0.6, "correction_err": 0.005, "references": 8}, qa=qa)
    assert bad.status == "fail" and "0.600" in bad.reasons[0]
    # references that disagree: the correction is uncertain to 4 %, then 15 %
    assert judge_normalization({"correction": 1.0, "correction_err": 0.04, "references": 8}, qa=qa).status == "warn"
    assert judge_normalization({"correction": 1.0, "correction_err": 0.15, "references": 8}, qa=qa).status == "fail"
    few = judge_normalization({"correction": None, "correction_err": None, "references": 1}, qa=qa)
    assert few.status == "warn" and "not normalised" in few.reasons[0]
