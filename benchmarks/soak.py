"""Fault soak: many groups through the whole chain on several tmpfs nodes while faults are injected.

A small simulated night (16 core antennas, 4 channels per subband; a 10 Jy
calibrator transiting in its first group) is imported into the catalogue; its
calibrator group is delivered first, then ``--groups - 1`` copies of its
science groups under new timestamps, one every ``--interval`` seconds, as the
correlator would. The cluster is the real one, embedded: a private Redis,
``--nodes`` convert-and-everything workers, each in its own mount namespace
with a private RAM disk at the same staging path (``unshare -m``, root), the
producer, and beat with the stale-run sweeper. Every run goes convert →
calibrate → image → photometry.

While groups flow, faults are injected at random (seeded) every
``--fault-every`` seconds on average until every group has finished, each
kind once per round in a random order (worker faults hit a node that holds a
group at that moment):

* ``child_kill``: SIGKILL of a worker pool process (its task is redelivered);
* ``node_kill``: SIGKILL of a whole node (its RAM disk is lost; the supervisor
  starts it again as a new node, as compose or systemd would);
* ``redis_restart``: Redis stopped for 3-60 s, then started again;
* ``producer_restart``: the producer SIGKILLed and started again;
* ``slow_writer``: the next group's files are written in place in two halves
  with a pause longer than the producer's stability time between them.

At the end: ``completed``, ``failed`` and ``lost`` (delivered but not finished
by the deadline) groups; ``duplicated``: groups with more than one
Measurement Set (in the database or on disk), more than one image set, or
more than one photometry row per source and image; and ``max_recovery_s``:
for each fault, the time from the fault to the next stage event (a stage
starting or finishing, or the group finishing) of each group it affected
(held by the killed worker or node; every group in flight for a Redis
restart, counting only events after Redis is back, so the outage is
included; the slow group itself, from its last byte).

The last line is one JSON object. Targets: ``completed == groups``,
``lost == duplicated == 0``, ``max_recovery_s <= 180``.

    sudo .venv/bin/python benchmarks/soak.py [--groups 50] [--nodes 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contimg.cluster import EmbeddedCluster  # noqa: E402
from contimg.naming import TIMESTAMP_FORMAT, format_subband_filename, parse_subband_filename  # noqa: E402

FAULT_KINDS = ("child_kill", "node_kill", "redis_restart", "producer_restart", "slow_writer")

ENV = {
    "CONTIMG_INGEST__STABLE_S": "0.5",
    "CONTIMG_INGEST__POLL_INTERVAL_S": "0.5",
    "CONTIMG_INGEST__GROUP_TIMEOUT_S": "120",
    "CONTIMG_INGEST__STALE_IN_PROGRESS_S": "150",
    "CONTIMG_INGEST__SWEEP_INTERVAL_S": "3",
    "CONTIMG_INGEST__MAX_RETRIES": "5",
    "CONTIMG_CONVERSION__TIMEOUT_S": "120",
    "CONTIMG_CALIBRATION__TIMEOUT_S": "120",
    "CONTIMG_IMAGING__TIMEOUT_S": "90",
    "CONTIMG_PHOTOMETRY__TIMEOUT_S": "120",
    "CONTIMG_CELERY__PRESENCE_INTERVAL_S": "2",
    "CONTIMG_CELERY__PRESENCE_TTL_S": "8",
    "CONTIMG_CALIBRATION__WAIT_FOR_SOLUTION_S": "600",
    "CONTIMG_CALIBRATION__MIN_BEAM_RESPONSE": "0.95",
    "CONTIMG_IMAGING__THREADS": "1",
    "CONTIMG_LOG_LEVEL": "INFO",
}
"""Soak settings: liveness periods short enough to see recovery within minutes (the step limits stay
below the stale threshold, as the settings' check demands)."""


@dataclass
class Fault:
    kind: str
    at: float
    """Unix time of the fault (for a slow writer: of its last byte)."""
    affected: list[str] = field(default_factory=list)
    detail: str = ""
    until: float | None = None
    """End of the fault (Redis back); the affected groups' recovery counts events after it only."""


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def _copy_group(paths: list[Path], incoming: Path, start: datetime, *, slow: float = 0.0) -> str:
    """Deliver a copy of a group under new names starting at ``start``; ``slow``: write in two halves."""
    names = {p: parse_subband_filename(p) for p in paths}
    t0 = min(n.timestamp for n in names.values())
    for path, name in sorted(names.items(), key=lambda kv: kv[1].subband):
        dest = incoming / format_subband_filename(start + (name.timestamp - t0), name.subband)
        if slow and name.subband == 7:
            data = path.read_bytes()
            with dest.open("wb") as f:  # in place, under its final name, with a pause: a slow writer
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(slow)
                f.write(data[len(data) // 2:])
            continue
        tmp = incoming / f".{dest.name}.partial"
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    return start.strftime(TIMESTAMP_FORMAT)


def _in_flight(settings, *, worker_prefix: str | None = None) -> list[str]:
    from sqlalchemy import select

    from contimg.db import GroupState, session_scope
    from contimg.db.models import ObservationGroup

    with session_scope(settings, readonly=True) as s:
        rows = s.scalars(select(ObservationGroup).where(
            ObservationGroup.state.in_([GroupState.IN_PROGRESS, GroupState.PENDING]))).all()
        out = []
        for g in rows:
            if worker_prefix is None or any(w.startswith(worker_prefix) for w in (g.worker or "").split(",")):
                out.append(g.group_key)
        return out


class Injector(threading.Thread):
    """Injects random faults until stopped."""

    def __init__(self, cluster: EmbeddedCluster, nodes: list, rng: random.Random, every_s: float,
                 slow_requests: list[float]):
        super().__init__(daemon=True, name="faults")
        self.cluster = cluster
        self.nodes = nodes
        self.rng = rng
        self.every_s = every_s
        self.slow_requests = slow_requests
        self.faults: list[Fault] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        settings = self.cluster.settings()
        kinds: list[str] = []
        while not self.stopping.wait(self.rng.uniform(0.5, 1.5) * self.every_s):
            if not kinds:  # every kind once per round, in a random order
                kinds = self.rng.sample(FAULT_KINDS, len(FAULT_KINDS))
            kind = kinds.pop()
            try:
                self.inject(kind, settings)
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported
                print(f"  fault {kind} not injected: {exc}", flush=True)

    def _busy_node(self, settings):
        """A node holding a group's task now (a random node if none does)."""
        busy = [n for n in self.nodes if _in_flight(settings, worker_prefix=f"{n.name}@")]
        return self.rng.choice(busy or self.nodes)

    def inject(self, kind: str, settings) -> None:
        now = time.time()
        if kind == "child_kill":
            node = self._busy_node(settings)
            children = node.children()
            if not children:
                return
            pid = self.rng.choice(children)
            affected = _in_flight(settings, worker_prefix=f"{node.name}@")
            os.kill(pid, signal.SIGKILL)
            self.faults.append(Fault(kind, now, affected, f"{node.name} child {pid}"))
        elif kind == "node_kill":
            node = self._busy_node(settings)
            affected = _in_flight(settings, worker_prefix=f"{node.name}@")
            node.stop(sig=signal.SIGKILL)  # the cluster's supervisor starts it again: a new node
            self.faults.append(Fault(kind, now, affected, node.name))
        elif kind == "redis_restart":
            down = self.rng.uniform(3, 60)
            affected = _in_flight(settings)
            self.cluster.redis.stop()
            time.sleep(down)
            self.cluster.redis.start()
            self.faults.append(Fault(kind, now, affected, f"down {down:.1f} s", until=time.time()))
        elif kind == "producer_restart":
            producer = next(p for p in self.cluster.processes if p.name == "producer")
            producer.stop(sig=signal.SIGKILL)
            time.sleep(1)
            producer.start()
            self.faults.append(Fault(kind, now, [], "producer"))
        elif kind == "slow_writer":
            self.slow_requests.append(now)


def _recovery(settings, faults: list[Fault], slow_groups: dict[str, float]) -> tuple[float, list[dict]]:
    """For each fault and affected group: seconds from the fault to the group's next stage event."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from contimg.db import session_scope
    from contimg.db.models import ObservationGroup

    with session_scope(settings, readonly=True) as s:
        groups = {g.group_key: g for g in s.scalars(select(ObservationGroup).options(
            selectinload(ObservationGroup.stage_timings)))}
        events = {}
        for key, g in groups.items():
            times = [t.started_at for t in g.stage_timings] + [t.finished_at for t in g.stage_timings if t.finished_at]
            if g.finished_at:
                times.append(g.finished_at)
            events[key] = sorted(t.timestamp() for t in times if t is not None)
    rows, worst = [], 0.0
    for fault in faults:
        for key in fault.affected:
            after = [t for t in events.get(key, []) if t > (fault.until or fault.at)]
            rec = (after[0] - fault.at) if after else float("inf")
            worst = max(worst, rec)
            rows.append({"fault": fault.kind, "group": key, "recovery_s": round(rec, 1)})
    for key, last_byte in slow_groups.items():
        after = [t for t in events.get(key, []) if t > last_byte]
        rec = (after[0] - last_byte) if after else float("inf")
        worst = max(worst, rec)
        rows.append({"fault": "slow_writer", "group": key, "recovery_s": round(rec, 1)})
    return worst, rows


def _duplicates(settings, keys: list[str]) -> list[str]:
    from sqlalchemy import func, select

    from contimg.db import session_scope
    from contimg.db.models import Image, MeasurementSet, ObservationGroup, Photometry

    bad = set()
    with session_scope(settings, readonly=True) as s:
        for key, n in s.execute(select(ObservationGroup.group_key, func.count(MeasurementSet.id))
                                .join(MeasurementSet).group_by(ObservationGroup.group_key)):
            if n > 1:
                bad.add(key)
        for key, n in s.execute(select(ObservationGroup.group_key, func.count(Image.id))
                                .join(MeasurementSet, MeasurementSet.group_id == ObservationGroup.id)
                                .join(Image, Image.ms_id == MeasurementSet.id)
                                .where(Image.pb_corrected.is_(True)).group_by(ObservationGroup.group_key)):
            if n > 1:
                bad.add(key)
        for key, n in s.execute(select(ObservationGroup.group_key, func.count())
                                .join(MeasurementSet, MeasurementSet.group_id == ObservationGroup.id)
                                .join(Image, Image.ms_id == MeasurementSet.id)
                                .join(Photometry, Photometry.image_id == Image.id)
                                .group_by(ObservationGroup.group_key, Photometry.source_id, Photometry.image_id)):
            if n > 1:
                bad.add(key)
    ms_dirs = Counter(p.name.split(".")[0] for p in settings.paths.ms.glob("*.ms"))
    bad |= {k for k in keys if ms_dirs.get(k.replace(":", ""), 0) > 1}
    return sorted(bad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes per node")
    parser.add_argument("--interval", type=float, default=3.0,
                        help="seconds between delivered groups (faster than two nodes process them: a backlog)")
    parser.add_argument("--fault-every", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on unfinished groups after this")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: every node runs in its own mount namespace with a private tmpfs")

    from contimg.cluster.demo import core_antennas, import_catalogue
    from contimg.simulation import SimulationConfig, simulate

    rng = random.Random(args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="contimg-soak-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    sim = simulate(work / "sim", SimulationConfig(n_groups=4, antenna_numbers=core_antennas(16),
                                                  channels_per_subband=4, seed=args.seed, n_sources=30,
                                                  calibrator_flux_jy=10.0))
    print(f"simulated 4 groups in {time.monotonic() - t_start:.0f} s under {work}", flush=True)
    root = work / "cluster"
    cluster = EmbeddedCluster(root, env={**ENV, "CONTIMG_STAGING_DIR": str(root / "staging")})
    slow_requests: list[float] = []
    slow_groups: dict[str, float] = {}
    delivered: list[str] = []
    with cluster:
        settings = cluster.settings()
        import_catalogue(settings, sim.truth_path)
        nodes = [cluster.start_worker(f"node{k}", concurrency=args.concurrency, private_staging="1g")
                 for k in range(args.nodes)]
        cluster.start_producer()
        cluster.start_beat()
        injector = Injector(cluster, nodes, rng, args.fault_every, slow_requests)
        incoming = settings.paths.incoming
        calibrator, *science = [list(g.paths) for g in sim.groups]
        t0 = time.monotonic()
        base = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
        injector.start()
        for i in range(args.groups):
            paths = calibrator if i == 0 else science[(i - 1) % len(science)]
            slow = 3.0 if slow_requests and i > 0 else 0.0
            if slow:
                slow_requests.clear()
            key = _copy_group(paths, incoming, base + timedelta(seconds=309 * i), slow=slow)
            if slow:
                slow_groups[key] = time.time()
            delivered.append(key)
            time.sleep(args.interval)
        print(f"{len(delivered)} groups delivered in {time.monotonic() - t0:.0f} s; waiting for them", flush=True)
        deadline = time.monotonic() + args.timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = _states(settings, delivered)
            done = sum(v in ("completed", "failed") for v in states.values())
            if done == len(delivered):
                break
            time.sleep(5)
        injector.stopping.set()
        injector.join(timeout=60)
        wall = time.monotonic() - t0
        states = _states(settings, delivered)
        worst, rows = _recovery(settings, injector.faults, slow_groups)
        duplicated = _duplicates(settings, delivered)
        errors = _errors(settings, [k for k, v in states.items() if v == "failed"])
        restarts = {p.name: p.restarts for p in cluster.processes if p.restarts}
    counts = Counter(states.values())
    result = {
        "groups": len(delivered),
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0),
        "lost": len(delivered) - counts.get("completed", 0) - counts.get("failed", 0),
        "duplicated": len(duplicated),
        "faults": dict(Counter(f.kind for f in injector.faults) + Counter({"slow_writer": len(slow_groups)})),
        "max_recovery_s": round(worst, 1) if rows else 0.0,
        "nodes": args.nodes,
        "wall_s": round(wall, 1),
        "restarts": restarts,
    }
    print("faults:")
    for f in injector.faults:
        print(f"  {f.kind:<17} at +{f.at - (time.time() - (time.monotonic() - t0)):.0f} s  {f.detail}; "
              f"affected {', '.join(f.affected) or '-'}")
    print("recovery per affected group:")
    for row in sorted(rows, key=lambda r: -r["recovery_s"])[:20]:
        print(f"  {row['fault']:<17} {row['group']}  {row['recovery_s']} s")
    for key, err in errors.items():
        print(f"failed {key}: {err}")
    if duplicated:
        print(f"duplicated: {', '.join(duplicated)}")
    print(f"data and logs: {work}")
    print(json.dumps(result))
    ok = result["completed"] == result["groups"] and not result["lost"] and not result["duplicated"] \
        and result["max_recovery_s"] <= 180
    return 0 if ok else 1


def _states(settings, keys: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from contimg.db import session_scope
    from contimg.db.models import ObservationGroup

    with session_scope(settings, readonly=True) as s:
        got = dict(s.execute(select(ObservationGroup.group_key, ObservationGroup.state)
                             .where(ObservationGroup.group_key.in_(keys))).all())
    return {k: (got[k].value if k in got else "missing") for k in keys}


def _errors(settings, keys: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from contimg.db import session_scope
    from contimg.db.models import ObservationGroup

    with session_scope(settings, readonly=True) as s:
        return dict(s.execute(select(ObservationGroup.group_key, ObservationGroup.error_message)
                              .where(ObservationGroup.group_key.in_(keys))).all())


if __name__ == "__main__":
    sys.exit(main())
