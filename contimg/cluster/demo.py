"""``contimg demo``: a small simulated night through an embedded single-machine cluster.

Starts a private Redis (unless a broker is configured), a Celery worker, the
producer and beat as subprocesses; simulates a few small consecutive groups, the
first holding a calibrator's transit; imports the simulated catalogue
(calibrators and sources) into the database; moves the files into the incoming
directory group by group (as the correlator delivers them); follows every group
through the whole chain (convert → calibrate → image → photometry); and returns the final
status with the products (Measurement Sets, calibration tables, images with
QA, photometry rows) for a summary.

Groups after the first may reach calibration before the calibrator group is
solved: they wait for its calibration set (``calibration.wait_for_solution_s``),
as they would in a real night.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contimg.cluster.processes import EmbeddedCluster
from contimg.config import Settings
from contimg.naming import is_subband_filename

log = logging.getLogger(__name__)

DEMO_MARKER = ".contimg-demo"
"""A data root holding this file was made by the demo and may be cleared by it."""


@dataclass(frozen=True)
class DemoOptions:
    data_root: Path
    groups: int = 4
    antennas: int = 16
    """Antennas, spread over the compact core (no outriggers: small images, quick imaging)."""
    channels_per_subband: int = 4
    calibrator_flux_jy: float = 10.0
    """1.4 GHz flux of the calibrator transiting in the first group."""
    seed: int = 1
    concurrency: int = 2
    timeout_s: float = 900.0
    wait_for_solution_s: float = 300.0
    """How long a science group waits for the calibrator group's solution."""
    keep: bool = False
    """Keep the products of an earlier demo run (default: start afresh)."""


def prepare_data_root(root: Path, *, keep: bool) -> None:
    """Create the demo data root; clear an earlier demo's data unless ``keep``.

    Refuses to clear a non-empty directory that the demo did not create.
    """
    from contimg.errors import ConfigError

    root.mkdir(parents=True, exist_ok=True)
    marker = root / DEMO_MARKER
    if any(root.iterdir()) and not marker.exists():
        raise ConfigError(f"{root} is not empty and was not made by 'contimg demo'; choose another --data-root")
    if not keep:
        for entry in root.iterdir():
            if entry.name != DEMO_MARKER:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    marker.touch()


def _staging(root: Path) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"contimg-demo-{os.getuid()}"
    return root / "staging"


def run_demo(settings: Settings, options: DemoOptions, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the demo; returns the final status (see :func:`contimg.cluster.status.collect_status`).

    Parameters
    ----------
    settings
        The caller's settings; only its broker is used (``settings.broker_url`` if configured, else a private
        redis-server). Every process reads the cluster's own settings, rooted at ``options.data_root``.
    options
        Size of the simulated night, worker concurrency, timeouts (s) and whether to keep an earlier run's data.
    say
        Called with each progress line (e.g. ``print``).

    Returns
    -------
    dict
        The last :func:`~contimg.cluster.status.collect_status` snapshot (``counts``, ``groups``, ``queues``,
        ``nodes``, ``broker``) plus ``elapsed_s`` (s since the cluster started), ``expected_groups``,
        ``products`` (:func:`~contimg.cluster.status.collect_products`, every product in the database) and
        ``timed_out`` (True, only when ``options.timeout_s`` ran out first).

    Raises
    ------
    contimg.errors.ConfigError
        A non-empty data root not made by the demo, or an antenna count outside 3 ... 102.
    """
    from contimg.cluster.status import collect_products, collect_status
    from contimg.db import safe_url
    from contimg.secrets import mask_url
    from contimg.simulation import SimulationConfig, simulate

    root = options.data_root.absolute()
    prepare_data_root(root, keep=options.keep)
    env = {
        "CONTIMG_INGEST__STABLE_S": "0.5",
        "CONTIMG_INGEST__POLL_INTERVAL_S": "0.5",
        "CONTIMG_INGEST__GROUP_TIMEOUT_S": "60",
        "CONTIMG_CALIBRATION__WAIT_FOR_SOLUTION_S": str(options.wait_for_solution_s),
    }
    if "CONTIMG_STAGING_DIR" not in os.environ:
        env["CONTIMG_STAGING_DIR"] = str(_staging(root))
    cluster = EmbeddedCluster(root, env=env, broker_url=settings.broker_url if settings.broker_configured else None)
    t0 = time.monotonic()
    with cluster:
        csettings = cluster.settings()
        say(f"broker {mask_url(cluster.broker_url)} "
            f"({'configured' if settings.broker_configured else 'private redis-server'}), "
            f"database {safe_url(csettings)}, data root {root}")
        say(f"logs in {cluster.log_dir}")
        cluster.start_worker("worker", concurrency=options.concurrency)
        say(f"worker started (concurrency {options.concurrency}, all queues)")
        cluster.start_producer()
        say(f"producer watching {csettings.paths.incoming}")
        cluster.start_beat()
        say("beat started (housekeeping every minute, nightly variability; redbeat lock)")

        sim_dir = root / "simulated"
        say(f"simulating {options.groups} group(s): {options.antennas} core antennas, "
            f"{options.channels_per_subband} channels per subband, 16 subbands, "
            f"a {options.calibrator_flux_jy:g} Jy calibrator transiting in the first group")
        result = simulate(sim_dir, SimulationConfig(
            n_groups=options.groups, antenna_numbers=core_antennas(options.antennas),
            channels_per_subband=options.channels_per_subband,
            seed=options.seed, n_sources=30, calibrator_flux_jy=options.calibrator_flux_jy))
        report = import_catalogue(csettings, result.truth_path)
        say(f"catalogue imported: {report.n_rows} sources ({report.n_calibrators} calibrator(s)) "
            f"from {result.truth_path}")
        incoming = csettings.paths.incoming
        delivered = 0
        for group in result.groups:  # in time order, as the correlator writes them
            for path in sorted(group.paths):
                if is_subband_filename(path.name):
                    os.replace(path, incoming / path.name)
                    delivered += 1
        say(f"{delivered} subband files delivered in {time.monotonic() - t0:.0f} s; following the groups")

        expected = len(result.groups)
        last = ""
        deadline = time.monotonic() + options.timeout_s
        while True:
            status = collect_status(csettings, latest=max(expected, 10))
            counts = status["counts"]
            stages = ", ".join(f"{g['group'][11:]} {g['stage']}" for g in reversed(status["groups"])
                               if g["state"] == "in_progress")
            line = ", ".join(f"{k} {v}" for k, v in counts.items() if v) + (f" ({stages})" if stages else "")
            if line != last:
                say(f"[{time.monotonic() - t0:6.1f} s] groups: {line or 'none yet'}")
                last = line
            if counts["completed"] + counts["failed"] >= expected and not counts["pending"] \
                    and not counts["in_progress"] and not counts["collecting"]:
                break
            if time.monotonic() > deadline:
                say(f"timed out after {options.timeout_s:.0f} s")
                status["timed_out"] = True
                break
            time.sleep(1.0)
        status["elapsed_s"] = time.monotonic() - t0
        status["expected_groups"] = expected
        status["products"] = collect_products(csettings)
        return status


def core_antennas(n: int) -> tuple[int, ...]:
    """``n`` antenna numbers spread evenly over the 102 core stations (0 ... 101).

    The outriggers lengthen the longest baseline from ~0.5 to ~2.3 km and the
    image five times in each axis; the demo leaves them out.
    """
    from contimg.errors import ConfigError
    from contimg.stations import N_OUTRIGGERS, NSTATIONS

    ncore = NSTATIONS - N_OUTRIGGERS
    if not 3 <= n <= ncore:
        raise ConfigError(f"the demo needs 3 to {ncore} antennas, got {n}")
    step = (ncore - 1) / (n - 1)
    return tuple(round(k * step) for k in range(n))


def import_catalogue(settings: Settings, truth_path: Path) -> Any:
    """Import a simulation's catalogue (calibrators and sources) into the database; returns the report."""
    from contimg.pipeline.catalog import import_truth
    from contimg.db import session_scope

    with session_scope(settings) as session:
        return import_truth(session, truth_path)
