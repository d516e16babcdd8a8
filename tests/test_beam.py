"""The Airy primary beam shared by simulation, calibration and imaging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contimg.beam import SPEED_OF_LIGHT, airy_fwhm_rad, airy_power, angular_separation, beam_response


def test_on_axis_is_one():
    assert airy_power(0.0, 1.4e9) == 1.0
    np.testing.assert_array_equal(airy_power(np.zeros(3), np.array([1.3e9, 1.4e9, 1.5e9])), 1.0)


def test_half_power_at_half_the_fwhm():
    for f in (1.311e9, 1.4e9, 1.499e9):
        assert airy_power(airy_fwhm_rad(f) / 2, f) == pytest.approx(0.5, abs=1e-4)
    assert math.degrees(airy_fwhm_rad(1.4e9)) == pytest.approx(2.70, abs=0.02)


def test_first_null_and_sidelobe():
    lam = SPEED_OF_LIGHT / 1.4e9
    null = math.asin(1.2196699 * lam / 4.65)
    assert airy_power(null, 1.4e9) < 1e-8
    theta = np.linspace(null, 2.2 * lam / 4.65, 2000)
    assert airy_power(theta, 1.4e9).max() == pytest.approx(0.0175, abs=0.001)  # first sidelobe, -17.6 dB


def test_frequency_scaling_and_broadcasting():
    sep = np.radians(np.array([0.5, 1.0, 2.0]))
    freq = np.array([1.3e9, 1.5e9])
    p = airy_power(sep[:, None], freq[None, :])
    assert p.shape == (3, 2)
    assert np.all(p[:, 1] < p[:, 0])  # narrower beam at higher frequency
    # a function of sin(theta) * nu / D only
    assert airy_power(0.01, 1.4e9, diameter_m=4.65) == pytest.approx(airy_power(0.02, 0.7e9, diameter_m=4.65), rel=1e-3)
    assert airy_power(0.01, 1.4e9, diameter_m=9.3) == pytest.approx(airy_power(0.02, 1.4e9, diameter_m=4.65), rel=1e-3)


def test_monotonic_in_main_lobe():
    theta = np.linspace(0, np.radians(2.5), 500)
    assert np.all(np.diff(airy_power(theta, 1.4e9)) < 0)


def test_angular_separation():
    assert angular_separation(0.0, 0.0, math.pi / 2, 0.0) == pytest.approx(math.pi / 2)
    assert angular_separation(1.0, math.radians(89.9), 1.0 + math.pi, math.radians(89.9)) == pytest.approx(math.radians(0.2))
    tiny = angular_separation(0.3, 0.6, 0.3, 0.6 + 1e-10)
    assert tiny == pytest.approx(1e-10, rel=1e-6)


def test_beam_response_shapes():
    r = beam_response(np.array([0.1, 0.11]), 0.6, pointing_ra_rad=0.1, pointing_dec_rad=0.6, freq_hz=np.array([1.3e9, 1.4e9, 1.5e9]))
    assert r.shape == (2, 3)
    np.testing.assert_allclose(r[0], 1.0)
    assert np.all(r[1] < 1)
