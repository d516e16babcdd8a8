"""The night summary picture from plain rows."""

from __future__ import annotations

import numpy as np

from contimg.plots.common import save_png
from contimg.plots.night import night_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(n: int = 40):
    rng = np.random.default_rng(1)
    t = 60827.0 + 0.1 + np.arange(n) * 5 / 1440
    verdict = ["pass"] * n
    verdict[5], verdict[6], verdict[30] = "warn", "fail", None
    return [dict(mid_mjd=float(t[i]), rms_jy=float(3e-4 * (1 + 0.1 * rng.random())), n_measured=12, n_detected=10,
                 correction=None if i % 7 == 0 else float(1 + 0.01 * rng.standard_normal()), verdict=verdict[i])
            for i in range(n)]


def test_three_panels_with_verdicts_marked(tmp_path):
    rows = _rows()
    fig = night_figure(rows, title="night")
    assert len(fig.axes) == 3
    ax_rms, ax_n, ax_c = fig.axes
    assert ax_rms.get_ylabel() == "image rms (mJy/beam)" and ax_c.get_ylabel() == "flux-scale correction"
    marks = {ln.get_gid(): len(ln.get_xdata()) for ln in ax_rms.lines if ln.get_gid()}
    assert marks == {"verdict-pass": 37, "verdict-warn": 1, "verdict-fail": 1, "verdict-unknown": 1}
    assert float(np.nanmax(ax_rms.lines[0].get_ydata())) < 1.0  # in mJy/beam
    missing = [ln for ln in ax_c.lines if ln.get_label().startswith("no correction")]
    assert len(missing) == 1 and len(missing[0].get_xdata()) == 6  # rows 0, 7, 14, 21, 28, 35
    assert any(t.get_text() == "40 images: 37 pass, 1 warn, 1 fail" for t in fig.texts)
    fig.canvas.draw()
    assert ax_c.get_xticklabels()[1].get_text().count(":") == 1  # HH:MM
    png = save_png(fig, tmp_path / "night.png")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_columns_form_and_sparse_rows(tmp_path):
    rows = _rows()[:3]
    cols = {k: [r[k] for r in rows] for k in ("mid_mjd", "rms_jy", "n_measured", "verdict")}
    fig = night_figure(cols)
    assert len(fig.axes) == 3
    assert any(t.get_text().startswith("Night of 2025-06-01") for t in fig.texts)
    assert save_png(fig, tmp_path / "n.png").read_bytes()[:8] == PNG_MAGIC
