"""Fixtures of the variability tests: a small simulated population and a loader into the database."""

from __future__ import annotations

import numpy as np
import pytest

from contimg.db import products, session_scope
from contimg.db import science as sci
from contimg.simulation.lightcurves import simulate_population

T0 = 61000.0


@pytest.fixture(scope="session")
def population():
    return simulate_population(40, rng=np.random.default_rng(5), ese_fraction=0.15, depth_range=(0.3, 0.5),
                               duration_range_days=(20.0, 60.0))


def _load_photometry(url, pop, *, before: float | None = None, after: float | None = None) -> dict[int, int]:
    """Insert the population's photometry in [after, before) (sources and images created as needed)."""
    with session_scope(url) as s:
        ids = sci.upsert_sources(s, [{"name": f"SRC{i:04d}", "ra_deg": float(i), "dec_deg": 35.0}
                                     for i in range(pop.true_flux_jy.size)])
        days = np.unique(np.floor(pop.t_days - T0).astype(int))
        images = {d: products.upsert_image(s, path=f"/img/{d}.fits", mid_mjd=float(T0 + d + 0.5)).id
                  for d in days.tolist()}
        sel = np.ones(pop.flux.size, dtype=bool)
        if before is not None:
            sel &= pop.t_days < before
        if after is not None:
            sel &= pop.t_days >= after
        rows = [
            {"source_id": ids[f"SRC{i:04d}"], "image_id": images[int(np.floor(t - T0))], "epoch_mjd": float(t),
             "flux_jy": float(f), "flux_err_jy": float(e)}
            for i, t, f, e in zip(pop.source_idx[sel], pop.t_days[sel], pop.flux[sel], pop.flux_err[sel])
        ]
        sci.upsert_photometry(s, rows)
    return {i: ids[f"SRC{i:04d}"] for i in range(pop.true_flux_jy.size)}


@pytest.fixture
def load_photometry():
    """``load_photometry(url, population, before=MJD, after=MJD) -> {population index: source id}``."""
    return _load_photometry

