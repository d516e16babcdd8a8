"""The image QA gate: WSClean's log read, the thermal noise predicted from the MS, and verdicts that fail
what they should (a diverged image, a wrong flux scale) and pass what they should."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from contimg.config import QaSettings
from contimg.imaging.gate import FAIL, PASS, WARN, judge_image
from contimg.imaging.wsclean import parse_wsclean_log

from conftest import CELL_ARCSEC, CORE_ANTENNAS, field_catalog

NORMAL_LOG = """\
2026-Dec-03 15:01:48.898828 Fitting beam... major=100.98'', minor=44.66'', PA=93.52 deg, theoretical=85.34''.
2026-Dec-03 15:01:49.056955 Stopped on peak 452.25 mJy, because the minor-loop threshold was reached. Continuing
2026-Dec-03 15:01:49.245261 Stopped on peak 24.74 mJy, because the threshold was reached.
2026-Dec-03 15:01:49.429880 Stopped on peak 10.01 mJy, because the threshold was reached.
2026-Dec-03 15:01:49.551514 3 major iterations were performed.
"""
RUNAWAY_LOG = """\
2026-Dec-03 15:01:49.056955 Stopped on peak 2.1 Jy, because the minor-loop threshold was reached. Continuing
2026-Dec-03 15:01:49.429880 Stopped on peak -264.35 Jy, because maximum number of iterations was reached.
2026-Dec-03 15:01:49.551514 6 major iterations were performed.
"""


@pytest.mark.parametrize(("text", "reason", "diverged"), [
    (NORMAL_LOG, "threshold", False),
    (RUNAWAY_LOG, "iterations", True),
    ("Stopped on peak -nan Jy, because the threshold was reached.\n", "threshold", True),
    ("Stopped on peak 1.0 Jy, because the minor-loop threshold was reached.\n"
     "Stopped on peak 0.2 Jy, because maximum number of iterations was reached.\n", "iterations", False),
    # the core-only array at mgain 0.95 (full-scale night): the masked loop starts at 22.7 mJy and runs away
    ("Initial peak: 454.3 mJy at 360,270\nStopped on peak 454.3 mJy, because the minor-loop threshold was reached.\n"
     "Initial peak: 23.5 mJy at 402,214\nStopped on peak 22.66 mJy, because the minor-loop threshold was reached.\n"
     "Initial peak: 22.7 mJy at 375,270\nStopped on peak -50.42 Jy, because maximum number of iterations was "
     "reached.\n", "iterations", True),
    # the full array next to a 6.5 Jy source (full-scale night): the loop cleaning its artefacts runs out of
    # iterations while its residual still falls -- not divergence, an iteration-limit warning
    ("Initial peak: 6.4 Jy at 1920,1536\nStopped on peak 1.2 Jy, because the minor-loop threshold was reached.\n"
     "Initial peak: 2.6 mJy at 1700,1536\nStopped on peak 2.2 mJy, because the minor-loop threshold was reached.\n"
     "Initial peak: -3.9 mJy at 1750,1500\nStopped on peak -3.02 mJy, because maximum number of iterations "
     "was reached.\n", "iterations", False),
])
def test_the_wsclean_log_says_how_cleaning_stopped(tmp_path, text, reason, diverged):
    path = tmp_path / "wsclean.log"
    path.write_text(text)
    d = parse_wsclean_log(path)
    assert d.final_reason == reason and d.diverged is diverged
    if text is NORMAL_LOG:
        assert d.stops[0] == pytest.approx((0.45225, "the minor-loop threshold was reached"))
        assert d.major_iterations == 3 and d.theoretical_beam_arcsec == 85.34


def _judge(**over):
    args = dict(rms_jy=1e-3, peak_jy=1.0, negative_jy=-5e-3, dynamic_range=1000.0, predicted_rms_jy=8e-4,
                deconvolution={"diverged": False, "final_reason": "threshold", "theoretical_beam_arcsec": 30.0,
                               "stops": [[0.01, "the threshold was reached"]]},
                beam_arcsec=(40.0, 20.0), flux_ratio=1.01, flux_sources=3, qa=QaSettings())
    args.update(over)
    return judge_image(**args)


@pytest.mark.parametrize(("offset", "status"), [((1.0, -1.0), PASS), ((4.0, 3.0), WARN), ((9.0, 6.0), FAIL)])
def test_the_gate_judges_the_astrometric_offset_in_beams(offset, status):
    astrometry = {"ra_offset_arcsec": offset[0], "dec_offset_arcsec": offset[1], "n_clean": 12, "flux_ratio": 0.8}
    v = _judge(astrometry=astrometry)  # beam minor axis 20 arcsec: 0.07, 0.25, 0.54 of it
    assert v.status == status, v.summary()
    assert v.figures["astrometric_offset_beams"] == pytest.approx(np.hypot(*offset) / 20.0)
    # the blind flux ratio (0.8) is recorded, not judged: the forced-photometry flux scale (1.01) is
    assert v.figures["blind_flux_ratio"] == 0.8
    if status != PASS:
        assert any("offset from their catalogue matches" in r for r in v.reasons)
    # too few clean matches: not judged
    assert _judge(astrometry=astrometry | {"n_clean": 2}).status == PASS


def test_verdicts_of_the_image_gate():
    assert _judge().status == PASS
    runaway = _judge(rms_jy=12.0, peak_jy=1.0e4, negative_jy=-8.0e3, expected_peak_jy=10.0,
                     deconvolution={"diverged": True, "final_reason": "iterations", "stops": [[-264.35, "x"]]},
                     flux_ratio=400.0)
    assert runaway.status == FAIL
    assert any("diverged" in r for r in runaway.reasons) and any("thermal" in r or "floor" in r for r in runaway.reasons)
    assert any("catalogue flux" in r for r in runaway.reasons)
    assert _judge(flux_ratio=0.5).status == FAIL  # a flux scale off by a factor of two
    assert _judge(flux_ratio=0.85).status == WARN
    assert _judge(flux_ratio=0.5, flux_sources=0).status == PASS  # no bright catalogue source: not judged
    assert _judge(rms_jy=5e-3, expected_peak_jy=0.1).status == WARN  # 6 x the thermal noise
    assert _judge(rms_jy=5e-3, expected_peak_jy=10.0).status == PASS  # a 10 Jy source sets a 10 mJy floor
    assert _judge(negative_jy=-0.5).status == FAIL
    assert _judge(negative_jy=-0.005).status == PASS
    assert _judge(deconvolution={"diverged": False, "final_reason": "iterations", "stops": []}).status == WARN
    assert _judge(rms_jy=float("nan")).status == FAIL


@pytest.fixture(scope="module")
def noise_only_group(tmp_path_factory):
    """The test array, thermal noise (SEFD 6500 Jy) and a sky of one faint source: the image is noise."""
    from contimg.conversion import convert_group
    from contimg.simulation import SimulationConfig, simulate
    from contimg.simulation.sky import SkyCatalog

    center = field_catalog()
    sky = SkyCatalog.from_sources(center.ra_deg[:1], center.dec_deg[:1], np.array([1e-3]))
    out = tmp_path_factory.mktemp("noise_only")
    cfg = SimulationConfig(antenna_numbers=CORE_ANTENNAS, channels_per_subband=2, seed=11, noise=True, gains=False,
                           jitter_s=0)
    result = simulate(out / "raw", cfg, catalog=sky)
    ms = out / "group.ms"
    convert_group(result.groups[0].paths, ms, staging_dir=out / "staging", processes=1)
    return ms


@pytest.mark.integration
def test_the_predicted_noise_is_the_noise_of_the_image(noise_only_group, tmp_path, imaging_settings):
    """Against truth: the residual rms of a noise image equals the noise predicted from the MS's weights
    and the Briggs weights, within 10 %."""
    from contimg.imaging import image_ms

    p = image_ms(noise_only_group, settings=imaging_settings, out_dir=tmp_path, cell_arcsec=CELL_ARCSEC,
                 tier="quicklook")
    assert p.predicted_rms_jy == pytest.approx(p.qa.rms_jy, rel=0.10), (p.predicted_rms_jy, p.qa.rms_jy)


@pytest.mark.integration
def test_the_gate_passes_a_good_image_and_fails_a_wrong_flux_scale_and_a_diverged_one(sim_group, tmp_path,
                                                                                       imaging_settings,
                                                                                       catalogue_settings):
    from contimg.imaging import image_ms
    from contimg.pipeline.image import judge_products

    ms = tmp_path / "group.ms"
    shutil.copytree(sim_group["ms"], ms)
    good = image_ms(ms, settings=imaging_settings, out_dir=tmp_path / "good", cell_arcsec=CELL_ARCSEC)
    right = judge_products(catalogue_settings(tmp_path / "right", 1.0), good)
    assert right.status != FAIL, right.summary()
    assert right.figures["flux_sources"] >= 3 and abs(right.figures["flux_ratio"] - 1) < 0.05
    # the blind finder on the real WSClean image: every simulated source found where the catalogue has it
    from contimg.pipeline.image import blind_components

    blind = blind_components(catalogue_settings(tmp_path / "blind", 1.0), good)
    assert blind.summary["n_matches"] >= len(field_catalog().ra_deg), blind.summary  # + sidelobes near them
    assert blind.summary["n_clean"] >= 3 and blind.summary["offset_arcsec"] < 0.1 * good.qa.beam_minor_arcsec
    assert abs(blind.summary["flux_ratio"] - 1) < 0.1
    wrong = judge_products(catalogue_settings(tmp_path / "wrong", 2.0), good)
    assert wrong.status == FAIL and any("catalogue flux" in r for r in wrong.reasons), wrong.summary()
    # a CLEAN that runs away (loop gain 2.5 over-subtracts every component): repeated once with a lower
    # major-cycle gain, still diverged (the gain stays), so the gate fails it
    bad = image_ms(ms, settings=imaging_settings, out_dir=tmp_path / "bad", cell_arcsec=CELL_ARCSEC,
                   extra_wsclean_args=["-gain", "2.5"])
    assert bad.deconvolution["diverged"] and bad.deconvolution["retried_with_mgain"] == 0.8
    assert (tmp_path / "bad" / "group.wsclean.log").exists()
    verdict = judge_products(catalogue_settings(tmp_path / "bad-cat", 1.0), bad)
    assert verdict.status == FAIL and any("diverged" in r for r in verdict.reasons), verdict.summary()
