"""Fixtures of the cluster tests: simulated groups, a private Redis, real worker processes.

Every cluster runs its own redis-server on a free port (never the shared 6379)
and real ``celery worker`` subprocesses; nothing is eager or faked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster_helpers import CLUSTER_ENV, CONVERT_ONLY
from contimg.cluster import EmbeddedCluster

# Anything in the test process that publishes without naming a cluster's broker
# must fail, never reach the shared Redis on 6379 (port 1 refuses connections).
os.environ.setdefault("CONTIMG_BROKER_URL", "redis://127.0.0.1:1/0")


@pytest.fixture(scope="session")
def sim_groups(tmp_path_factory) -> list[list[Path]]:
    """Two small simulated groups (8 antennas, 4 channels per subband), written once."""
    from contimg.simulation import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("sim")
    result = simulate(out, SimulationConfig(n_antennas=8, channels_per_subband=4, n_groups=2, seed=1, n_sources=20))
    return [list(g.paths) for g in result.groups]


@pytest.fixture
def make_cluster(tmp_path) -> Iterator[Callable[..., EmbeddedCluster]]:
    """Factory of started clusters under ``tmp_path`` (stopped after the test); runs end after conversion."""
    made: list[EmbeddedCluster] = []

    def make(name: str = "cluster", **env: str) -> EmbeddedCluster:
        root = tmp_path / name
        cluster = EmbeddedCluster(root, env={**CLUSTER_ENV, **CONVERT_ONLY, "CONTIMG_STAGING_DIR": str(root / "staging"),
                                             **env})
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="session")
def sim_night(tmp_path_factory):
    """Two consecutive small groups, a 10 Jy calibrator transiting in the first (16 core antennas, 4 channels)."""
    import numpy as np

    from contimg.simulation import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("night")
    core = tuple(int(a) for a in np.round(np.linspace(0, 101, 16)))
    return simulate(out, SimulationConfig(antenna_numbers=core, channels_per_subband=4, n_groups=2, seed=3,
                                          n_sources=20, calibrator_flux_jy=10.0))
