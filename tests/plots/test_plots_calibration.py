"""Bandpass and gain pictures: the arrays drawn (unwrapped phase, gaps) and the pictures themselves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from contimg.plots.calibration import CalSolutions, bandpass_curves, bandpass_figure, delays_figure, gains_figure
from contimg.plots.common import save_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_phase_ramp_of_several_turns_unwraps_to_a_straight_line():
    nchan = 256
    freq = np.linspace(1.31e9, 1.50e9, nchan)
    delay_s = 30e-9  # 0.19 GHz x 30 ns = 5.7 turns across the band
    true = 2 * np.pi * delay_s * (freq - freq[0]) + 0.4
    gains = np.stack([1.02 * np.exp(1j * true), 0.98 * np.exp(-1j * true)], axis=-1)  # (Nfreqs, Nfeeds)
    flags = np.zeros(gains.shape, bool)
    flags[100:110, :] = True  # a gap of flagged channels (0.07 turn across it)
    flags[:3, 1] = True  # and the band edge of one feed
    amp, phase = bandpass_curves(gains[None], flags[None])
    amp, phase = amp[0], phase[0]
    assert np.isnan(phase[100:110]).all() and np.isnan(amp[100:110]).all() and np.isnan(phase[:3, 1]).all()
    for p, sign in ((0, 1.0), (1, -1.0)):
        good = ~flags[:, p]
        x, y = freq[good], phase[good, p]
        slope, intercept = np.polyfit(x, y, 1)
        assert slope == pytest.approx(sign * 360 * delay_s, rel=1e-9)
        assert np.max(np.abs(y - (slope * x + intercept))) < 1e-6  # a straight line, no wraps
        assert abs(np.median(y)) <= 180.0  # whole turns removed
    assert np.nanmax(np.abs(np.diff(phase[:, 0]))) < 10  # no 360-degree jumps anywhere
    assert amp[50, 0] == pytest.approx(1.02) and amp[50, 1] == pytest.approx(0.98)
    # a single spectrum (1-D) works too
    a1, p1 = bandpass_curves(gains[:, 0], flags[:, 0])
    assert np.allclose(p1, phase[:, 0], equal_nan=True) and a1.shape == (nchan,)


def _solutions(kind: str, rng, *, nants: int = 10, nchan: int = 64) -> CalSolutions:
    names = [f"DSA-{i:03d}" for i in range(1, nants + 1)]
    freq = np.linspace(1.31e9, 1.50e9, nchan) if kind == "B" else np.array([1.405e9])
    n = freq.size
    delay = rng.uniform(-20e-9, 20e-9, (nants, 1, 2))
    if kind == "K":
        values = delay * 1e9 + np.zeros((nants, n, 2))
    else:
        values = (1 + 0.05 * rng.standard_normal((nants, n, 2))) * np.exp(2j * np.pi * delay * freq[None, :, None])
    flags = np.zeros(values.shape, bool)
    flags[3] = True  # an antenna without any solution
    flags[5, : n // 4] = True  # part of a band flagged
    values[7, :, 0] *= 3.0  # an antenna far off in amplitude (feed X)
    return CalSolutions(table=f"test.{kind}", kind=kind, antenna_names=names, time_mjd=np.full(nants, 60827.4),
                        freq_hz=freq, values=values, flags=flags, refant="DSA-001", no_solution=("DSA-004",))


def test_bandpass_small_multiples(tmp_path, rng):
    sol = _solutions("B", rng)
    fig = bandpass_figure(sol)
    panels = fig.contimg_panels
    assert list(panels) == [n for n in sol.antenna_names if n != "DSA-004"]  # flagged antenna: no panel
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert any(t.startswith("DSA-001 (ref)") for t in texts)
    assert any(t.startswith("DSA-008  amp") for t in texts)  # the deviant antenna says so
    assert any("DSA-004" in t and "no solution" in t for t in texts)
    assert "frequency (MHz)" in texts
    # many antennas without solutions: numbered runs compressed, wrapped beneath the grid
    many = dataclasses.replace(sol, no_solution=tuple(f"DSA-{i:03d}" for i in (*range(11, 40), 41, *range(43, 118))))
    texts = [t.get_text() for t in bandpass_figure(many).findobj(lambda a: hasattr(a, "get_text"))]
    assert any("105 antennas: DSA-011\u2013039, 041, 043\u2013117" in t for t in texts)
    png = save_png(fig, tmp_path / "b.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(png) as im:
        w, h = im.size
    assert 400 < w < 2500 and 300 < h < 2500


@pytest.mark.parametrize("kind", ["G", "K"])
def test_gains_and_delays_by_antenna(tmp_path, rng, kind):
    sol = _solutions(kind, rng)
    fig = gains_figure(sol) if kind == "G" else delays_figure(sol)
    axes = fig.axes
    assert len(axes) == (2 if kind == "G" else 1)
    labels = [t.get_text() for t in axes[-1].get_xticklabels()]
    assert labels == [n[4:] for n in sol.antenna_names if n != "DSA-004"]  # common prefix in the axis label
    assert axes[-1].get_xlabel() == "antenna (DSA-...)"
    bold = [t.get_text() for t in axes[-1].get_xticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["001"]
    # flagged solutions are not drawn: 9 antennas x 2 feeds, less antenna 6's flagged quarter (none for 1 channel)
    n_points = sum(len(line.get_xdata()) for line in axes[0].lines if line.get_label().startswith("feed"))
    assert n_points == 9 * 2
    assert save_png(fig, tmp_path / f"{kind}.png").read_bytes()[:8] == PNG_MAGIC


def _write_caltable(path, *, spw_freqs: list[np.ndarray], nants: int, rng) -> np.ndarray:
    """A minimal CASA-style B table (two spectral windows); returns the gains, shape (Nants, Nfreqs, 2)."""
    from casacore import tables as ct

    desc = ct.maketabdesc([
        ct.makescacoldesc("ANTENNA1", 0), ct.makescacoldesc("TIME", 0.0), ct.makescacoldesc("SPECTRAL_WINDOW_ID", 0),
        ct.makearrcoldesc("CPARAM", 0j, ndim=2), ct.makearrcoldesc("FLAG", False, ndim=2),
    ])
    full = np.concatenate(spw_freqs)
    gains = np.exp(2j * np.pi * rng.uniform(-20e-9, 20e-9, (nants, 1, 2)) * full[None, :, None])
    with ct.table(str(path), desc, nrow=nants * len(spw_freqs), ack=False) as t:
        r = 0
        start = 0
        for w, f in enumerate(spw_freqs):
            for a in range(nants):
                t.putcell("ANTENNA1", r, a)
                t.putcell("TIME", r, 5.2e9)
                t.putcell("SPECTRAL_WINDOW_ID", r, w)
                t.putcell("CPARAM", r, gains[a, start:start + f.size])
                t.putcell("FLAG", r, np.full((f.size, 2), a == 2))  # antenna 2 all flagged
                r += 1
            start += f.size
    with ct.table(str(path) + "/ANTENNA", ct.maketabdesc([ct.makescacoldesc("NAME", "")]), nrow=nants, ack=False) as t:
        t.putcol("NAME", [f"DSA-{a + 1:03d}" for a in range(nants)])
    with ct.table(str(path) + "/SPECTRAL_WINDOW", ct.maketabdesc([ct.makearrcoldesc("CHAN_FREQ", 0.0, ndim=1)]),
                  nrow=len(spw_freqs), ack=False) as t:
        for w, f in enumerate(spw_freqs):
            t.putcell("CHAN_FREQ", w, f)
    return gains


def test_read_solutions_joins_spectral_windows_and_plot_solutions_writes_pngs(tmp_path, rng):
    from contimg.calibration.qa import plot_solutions, read_solutions

    high = np.linspace(1.41e9, 1.50e9, 16)
    low = np.linspace(1.31e9, 1.40e9, 16)
    table = tmp_path / "cal.B"
    gains = _write_caltable(table, spw_freqs=[high, low], nants=4, rng=rng)  # the higher window first
    sol = read_solutions(table, "B", refant="DSA-001")
    assert sol.values.shape == (4, 32, 2)
    assert np.all(np.diff(sol.freq_hz) > 0)  # joined in frequency order
    assert np.allclose(sol.values[0, :16], gains[0, 16:]) and np.allclose(sol.values[0, 16:], gains[0, :16])
    assert sol.antenna_names == ["DSA-001", "DSA-002", "DSA-003", "DSA-004"]
    assert sol.no_solution == ("DSA-003",)
    _, phase = bandpass_curves(sol.values, sol.flags)
    slope = np.polyfit(sol.freq_hz, phase[0, :, 0], 1)[0]  # unwrapped across the join
    assert np.max(np.abs(phase[0, :, 0] - np.polyval(np.polyfit(sol.freq_hz, phase[0, :, 0], 1), sol.freq_hz))) < 1e-6
    assert abs(slope) > 0
    out = plot_solutions({"B": str(table), "G": str(tmp_path / "missing.G")}, refant="DSA-001")
    assert list(out) == ["B"]  # the missing table is logged and skipped
    assert out["B"] == str(table) + ".png" and (tmp_path / "cal.B.png").read_bytes()[:8] == PNG_MAGIC
