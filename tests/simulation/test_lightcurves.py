"""Light-curve models: ESE profile shape, red-noise statistics, population simulation."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.simulation.lightcurves import (
    EseSpec,
    LightCurveSpec,
    ese_profile,
    ese_shape,
    make_lightcurve,
    red_noise,
    simulate_population,
)


def test_ese_profile_dip_caustics_and_quiescence():
    t = np.arange(0.0, 200.0, 0.25)
    p = ese_profile(t, t_center=100, duration_days=60, depth=0.3, caustic_amplitude=0.5)
    assert p[np.abs(t - 100) <= 20].min() == pytest.approx(0.7)  # flat bottom
    assert p[np.abs(t - 100) <= 20].max() == pytest.approx(0.7)
    assert np.all(p[np.abs(t - 100) > 30 + 0.075 * 60 + 0.08 * 60] == 1.0)  # exactly 1 outside
    assert p.max() == pytest.approx(1 + 0.5 * 0.3)  # caustic peaks outside the dip
    assert abs(t[np.argmax(p)] - 100) > 30
    half = p[np.argmin(np.abs(t - 70))]
    # half depth plus the tail of the caustic (4.5 d from its peak, half-width 4.8 d)
    assert half == pytest.approx(1 - 0.3 / 2 + 0.5 * 0.3 * 0.5 * (1 + np.cos(np.pi * 4.5 / 4.8)), rel=1e-9)
    plain = ese_profile(t, t_center=100, duration_days=60, depth=0.3, caustic_amplitude=0.0)
    assert plain.max() == 1.0
    # duration is the full width at half depth
    assert plain[np.argmin(np.abs(t - 70))] == pytest.approx(0.85)


def test_ese_shape_is_the_unit_depth_profile(rng):
    dt = rng.uniform(-100, 100, 500)
    for amp, width in ((0.0, 0.08), (0.4, 0.05), (0.8, 0.11)):
        p = ese_profile(dt, t_center=0.0, duration_days=50, depth=0.25, caustic_amplitude=amp, caustic_width_frac=width)
        s = ese_shape(dt, duration_days=50, caustic_amplitude=amp, caustic_width_frac=width)
        np.testing.assert_allclose(p, 1 + 0.25 * s, atol=1e-12)


@pytest.mark.parametrize("bad", [dict(depth=1.0), dict(depth=-0.1), dict(duration_days=0.0)])
def test_ese_profile_rejects_bad_parameters(bad):
    kw = dict(t_center=0.0, duration_days=30.0, depth=0.2) | bad
    with pytest.raises(ValueError):
        ese_profile(np.zeros(3), **kw)


def test_red_noise_statistics(rng):
    x = red_noise(200_000, rng=rng, amplitude=0.05, timescale_days=20.0)
    assert x.mean() == pytest.approx(1.0, abs=0.005)
    lx = np.log(x)
    assert lx.std() == pytest.approx(0.05, rel=0.05)
    lag = 20
    corr = np.corrcoef(lx[:-lag], lx[lag:])[0, 1]
    assert corr == pytest.approx(np.exp(-1.0), abs=0.05)
    assert np.all(red_noise(10, rng=rng, amplitude=0.0, timescale_days=5.0) == 1.0)


def test_make_lightcurve_combines_components(rng):
    t = np.sort(rng.uniform(0, 365, 300))
    spec = LightCurveSpec(flux_jy=0.5, ese=EseSpec(t_center=180, duration_days=40, depth=0.4, caustic_amplitude=0.0))
    f = make_lightcurve(t, spec, rng=rng)
    np.testing.assert_allclose(f[np.abs(t - 180) < 15], 0.3)
    np.testing.assert_allclose(f[np.abs(t - 180) > 30], 0.5)


def test_population_has_gaps_noise_and_truth(rng):
    pop = simulate_population(200, rng=rng, ese_fraction=0.05)
    assert pop.true_has_ese.sum() == 10
    assert np.all(np.isnan(pop.true_depth[~pop.true_has_ese]))
    counts = np.bincount(pop.source_idx)
    assert counts.max() < 365 and counts.min() > 250  # shared and random gaps
    frac_err = pop.flux_err / pop.true_flux_jy[pop.source_idx]
    assert 0.009 < np.median(frac_err) and frac_err.max() < 0.06
    for i in range(5):  # time-ordered, one measurement a day
        t = pop.t_days[pop.source_idx == i]
        assert np.all(np.diff(t) > 0.9)
