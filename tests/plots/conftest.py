"""Fixtures of the plot tests."""

from __future__ import annotations

import pytest

from plot_helpers import point_sources, sky_header, write_image


@pytest.fixture
def small_image(tmp_path, rng):
    """(path, header, source pixel positions): 300 x 240 pixels, 1 mJy noise, three sources."""
    nx, ny = 300, 240
    positions = [(150.3, 120.6), (60.0, 200.2), (250.7, 40.1)]
    img = point_sources(nx, ny, positions, [0.5, 0.02, 0.008]) + rng.normal(0, 1e-3, (ny, nx))
    h = sky_header(nx, ny)
    return write_image(tmp_path / "small.image.fits", img, h), h, positions
