"""The compiled Kalman whitening against dense generalised least squares."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.variability.esemodel import DEFAULT_EDGE_FRAC, ese_shape
from contimg.variability.kalman import shape_scalar, whitened_products


def test_shape_scalar_equals_ese_shape(rng):
    dt = rng.uniform(-150, 150, 400)
    for d, a, w in ((30.0, 0.0, 0.08), (100.0, 0.4, 0.04), (14.0, 0.8, 0.11), (60.0, 0.3, 0.0)):
        ref = ese_shape(dt, duration_days=d, caustic_amplitude=a, caustic_width_frac=w)
        got = np.array([shape_scalar(x, d, a, w, DEFAULT_EDGE_FRAC) for x in dt])
        np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("a2,tau", [(0.0, 1.0), (0.03**2, 20.0), (0.1**2, 0.5)])
def test_products_equal_dense_gls(rng, a2, tau):
    n = 60
    t = np.sort(rng.uniform(0, 120, n))
    r = rng.uniform(0.01, 0.03, n) ** 2
    y = rng.normal(0, 0.05, n)
    bank = tuple(np.array([[v1, v2]]) for v1, v2 in ((50.0, 80.0), (20.0, 35.0), (0.3, 0.0), (0.08, 0.05)))
    sq, cd, c1, logdet = whitened_products(
        t[None], y[None], r[None], np.array([n]), a2=np.array([[a2]]), tau=np.array([[tau]]), bank=bank,
        edge_frac=DEFAULT_EDGE_FRAC,
    )
    C = np.diag(r) + a2 * np.exp(-np.abs(t[:, None] - t[None, :]) / tau)
    X = np.column_stack([y, np.ones(n)] + [ese_shape(t - bank[0][0, j], duration_days=bank[1][0, j],
                                                     caustic_amplitude=bank[2][0, j], caustic_width_frac=bank[3][0, j])
                                           for j in range(2)])
    G = X.T @ np.linalg.solve(C, X)
    np.testing.assert_allclose(sq[0, 0], np.diag(G), rtol=1e-9)
    np.testing.assert_allclose(cd[0, 0], G[:, 0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c1[0, 0], G[:, 1], rtol=1e-9, atol=1e-9)
    assert logdet[0, 0] == pytest.approx(np.linalg.slogdet(C)[1], rel=1e-10)


def test_padding_beyond_counts_is_ignored(rng):
    t = np.arange(10.0)[None].repeat(2, 0)
    y = rng.normal(size=(2, 10))
    r = np.full((2, 10), 0.01)
    y[1, 6:] = 1e9  # garbage in the padding of source 1
    t[1, 6:] = -5.0
    args = dict(a2=np.full((2, 1), 0.01), tau=np.full((2, 1), 3.0), bank=None, edge_frac=DEFAULT_EDGE_FRAC)
    sq, *_ = whitened_products(t, y, r, np.array([10, 6]), **args)
    sq6, *_ = whitened_products(t[1:, :6], y[1:, :6], r[1:, :6], np.array([6]), **args)
    np.testing.assert_allclose(sq[1], sq6[0])
