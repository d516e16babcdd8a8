"""Light-curve pictures: upper limits, catalogue line, statistics, a time axis without offset."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.plots.common import save_png
from contimg.plots.lightcurve import (
    UPPER_LIMITS_GID,
    lightcurve_figure,
    lightcurve_stats,
    upper_limit_values,
)
from contimg.variability.metrics import variability_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curve(rng, n: int = 30):
    t = 60827.4 + np.sort(rng.uniform(0, 90, n))  # MJD ~6e4: an offset axis would say "+6.082e4"
    e = np.full(n, 1.0e-3)
    f = 0.012 + rng.normal(0, 1e-3, n)
    f[[4, 11, 20]] = [0.002, -0.001, 0.0025]  # three non-detections
    return t, f, e, f < 3 * e


def test_upper_limits_are_arrows_at_the_limit(tmp_path, rng):
    t, f, e, ul = _curve(rng)
    fig = lightcurve_figure(t, f, e, upper_limit=ul, catalog_flux_jy=0.012, title="SRC")
    ax = fig.axes[0]
    arrows = [c for c in ax.collections if c.get_gid() == UPPER_LIMITS_GID]
    assert len(arrows) == 1
    segments = arrows[0].get_segments()
    assert len(segments) == ul.sum() == 3
    limits = upper_limit_values(f[ul], e[ul]) * 1e3  # drawn in mJy
    for seg, x, lim in zip(segments, t[ul], limits):
        (x0, y0), (x1, y1) = seg
        assert x0 == x1 == pytest.approx(x) and y0 == pytest.approx(lim) and y1 < y0  # from the limit, downward
    assert upper_limit_values(np.array([-0.001]), np.array([0.001]))[0] == pytest.approx(0.003)
    detections = [c for c in ax.containers if c.get_label().startswith("detection")]
    assert len(detections) == 1 and len(detections[0].lines[0].get_xdata()) == (~ul).sum()
    assert any(ln.get_label().startswith("catalogue 12") for ln in ax.lines)
    assert ax.get_ylabel() == "flux density (mJy)"
    # the statistics line and an MJD axis without offset
    texts = [tx.get_text() for tx in fig.texts]
    assert any(tx.startswith("N 30 (3 upper limits), weighted mean") for tx in texts)
    fig.canvas.draw()
    assert ax.xaxis.get_major_formatter().get_offset() == ""
    assert all("e" not in lab.get_text() for lab in ax.get_xticklabels())
    assert float(ax.get_xticklabels()[1].get_text().replace("\u2212", "-")) > 60000
    png = save_png(fig, tmp_path / "lc.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_no_upper_limits_no_arrows_and_jy_for_bright_sources(rng):
    t = 61000 + np.arange(5.0)
    fig = lightcurve_figure(t, np.full(5, 2.0), np.full(5, 0.02))
    ax = fig.axes[0]
    assert not [c for c in ax.collections if c.get_gid() == UPPER_LIMITS_GID]
    assert ax.get_ylabel() == "flux density (Jy)"


def test_statistics_are_those_of_the_variability_library(rng):
    t, f, e, ul = _curve(rng)
    s = lightcurve_stats(f, e, upper_limit=ul)
    m = variability_metrics(np.zeros(f.size, int), f, e)
    assert s.n == 30 and s.n_upper_limits == 3
    assert s.chi2_nu == pytest.approx(m.chi2_nu[0]) and s.v == pytest.approx(m.v[0])
    assert s.m_debiased == pytest.approx(m.m_debiased[0])
    assert s.std_jy == pytest.approx(np.std(f, ddof=1))
    steady = lightcurve_stats(0.02 + rng.normal(0, 1e-3, 400), np.full(400, 1e-3))
    assert steady.chi2_nu == pytest.approx(1.0, abs=0.2) and steady.m_debiased < 0.02
    empty = lightcurve_stats(np.array([np.nan]), np.array([1.0]))
    assert empty.n == 0 and np.isnan(empty.weighted_mean_jy)
