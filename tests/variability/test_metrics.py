"""Variability statistics against direct per-source computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from contimg.variability.metrics import group_runs, sort_long, to_padded, variability_metrics


def _reference(f: np.ndarray, e: np.ndarray, vs_threshold: float = 4.3) -> dict[str, float]:
    w = 1 / e**2
    wm = np.sum(w * f) / np.sum(w)
    n = f.size
    vs_max, m_max = 0.0, 0.0
    for a, b in itertools.combinations(range(n), 2):
        vs = abs(f[a] - f[b]) / np.hypot(e[a], e[b])
        vs_max = max(vs_max, vs)
        if vs >= vs_threshold and f[a] + f[b] > 0:
            m_max = max(m_max, abs(2 * (f[a] - f[b]) / (f[a] + f[b])))
    return {
        "weighted_mean": wm,
        "chi2_nu": np.sum(w * (f - wm) ** 2) / (n - 1),
        "v": np.std(f, ddof=1) / np.mean(f),
        "m_debiased": np.sqrt(max(np.var(f, ddof=1) - np.mean(e**2), 0)) / np.mean(f),
        "vs_max": vs_max,
        "m_max": m_max,
    }


def test_metrics_match_direct_computation(rng):
    n_src = 150
    counts = rng.integers(1, 30, n_src)
    sid = np.repeat(np.arange(n_src) * 3 + 11, counts)
    flux = rng.normal(1.0, 0.05, sid.size)
    flux[sid == 14] *= np.linspace(0.5, 1.5, counts[1])  # one strongly variable source
    err = rng.uniform(0.005, 0.08, sid.size)
    m = variability_metrics(sid, flux, err)
    assert len(m) == n_src
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    for i, (s, c) in enumerate(zip(starts, counts)):
        assert m.source_id[i] == i * 3 + 11 and m.n_epochs[i] == c
        if c < 2:
            assert np.isnan(m.chi2_nu[i]) and np.isnan(m.vs_max[i])
            continue
        ref = _reference(flux[s : s + c], err[s : s + c])
        for key, value in ref.items():
            assert getattr(m, key)[i] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        assert m.eta[i] == pytest.approx(m.chi2_nu[i], rel=1e-9)
    assert m.m_max[1] > 0.26 and m.vs_max[1] > 4.3


def test_vs_max_is_exact_with_heterogeneous_errors(rng):
    # errors spanning a factor 100 defeat simple "brightest vs faintest" shortcuts
    n_src, n_ep = 40, 25
    sid = np.repeat(np.arange(n_src), n_ep)
    flux = rng.normal(1.0, 0.1, sid.size)
    err = np.exp(rng.uniform(np.log(0.002), np.log(0.2), sid.size))
    m = variability_metrics(sid, flux, err)
    for i in range(n_src):
        ref = _reference(flux[i * n_ep : (i + 1) * n_ep], err[i * n_ep : (i + 1) * n_ep])
        assert m.vs_max[i] == pytest.approx(ref["vs_max"], rel=1e-12)
        assert m.m_max[i] == pytest.approx(ref["m_max"], rel=1e-12)


def test_steady_sources_have_chi2_one_and_zero_modulation(rng):
    n_src, n_ep = 2000, 50
    sid = np.repeat(np.arange(n_src), n_ep)
    err = np.full(sid.size, 0.02)
    flux = 1.0 + err * rng.standard_normal(sid.size)
    m = variability_metrics(sid, flux, err)
    assert np.mean(m.chi2_nu) == pytest.approx(1.0, abs=0.01)
    assert np.median(m.m_debiased) < 0.005
    assert np.mean(m.chi2_sigma > 3) < 0.005
    assert np.mean(m.vs_max >= 4.3) < 0.1  # chance pairs among 1225 per source


def test_long_format_helpers():
    sid = np.array([5, 3, 5, 3, 9])
    t = np.array([2.0, 1.0, 1.0, 0.0, 4.0])
    order = sort_long(sid, t)
    assert sid[order].tolist() == [3, 3, 5, 5, 9]
    assert t[order].tolist() == [0.0, 1.0, 1.0, 2.0, 4.0]
    ids, starts, counts = group_runs(sid[order])
    assert ids.tolist() == [3, 5, 9] and starts.tolist() == [0, 2, 4] and counts.tolist() == [2, 2, 1]
    pad = to_padded(t[order], starts, counts)
    assert pad.shape == (3, 2) and np.isnan(pad[2, 1])
    with pytest.raises(ValueError, match="not grouped"):
        group_runs(np.array([1, 2, 1]))


def test_bad_errors_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        variability_metrics(np.zeros(3), np.ones(3), np.array([1.0, 0.0, 1.0]))
    empty = variability_metrics(np.zeros(0), np.zeros(0), np.zeros(0))
    assert len(empty) == 0
