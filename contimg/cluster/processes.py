"""Cluster processes as real subprocesses: Celery workers, the producer, beat.

:class:`EmbeddedCluster` puts a private Redis, workers and the producer on one
machine, all configured through ``CONTIMG_*`` environment variables so that
each process reads the same settings as the parent. Processes are stopped by
their own pid (SIGTERM, then SIGKILL after a timeout), never by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from contimg.cluster.redis_server import RedisServer
from contimg.config import ENV_PREFIX, Settings, load_settings
from contimg.errors import ContimgError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Directory holding the ``contimg``, ``workers`` and ``beat`` packages."""


RESTART_BACKOFF_S = 5.0
"""A supervised process that dies within this long of a restart is restarted no sooner (systemd's RestartSec)."""


class ClusterProcessError(ContimgError):
    """A cluster process did not start or died."""


def subprocess_env(overrides: Mapping[str, str] | None = None, *, extra_path: Sequence[Path] = ()) -> dict[str, str]:
    """The environment for a cluster subprocess.

    The parent's environment, minus its own ``CONTIMG_*`` settings when
    ``overrides`` replaces them, plus ``overrides``, with the repository
    (and ``extra_path``) on ``PYTHONPATH``.
    """
    env = dict(os.environ)
    if overrides is not None:
        for key in [k for k in env if k.startswith(ENV_PREFIX) and k in overrides]:
            del env[key]
        env.update({k: str(v) for k, v in overrides.items()})
    paths = [str(p) for p in (*extra_path, REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextlib.contextmanager
def _patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_for_env(env: Mapping[str, str]) -> Settings:
    """The settings a subprocess started with ``env`` will read."""
    with _patched_environ(env):
        return load_settings()


class ClusterProcess:
    """One subprocess with its log file.

    Parameters
    ----------
    name
        Short name used in logs and the log file name.
    args
        Command line (argument list; no shell).
    env
        Its environment.
    log_path
        File receiving its stdout and stderr.
    """

    def __init__(self, name: str, args: Sequence[str], *, env: Mapping[str, str], log_path: Path,
                 cwd: Path | None = None):
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.supervised = False
        self.started_at = 0.0

    def start(self) -> "ClusterProcess":
        self.started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("starting %s: %s", self.name, " ".join(self.args))
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ClusterProcessError(f"{self.name} was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, *, timeout_s: float = 60.0, start_offset: int = 0) -> None:
        """Wait until ``needle`` appears in the log (after ``start_offset`` characters).

        The log is re-read every 0.1 s.

        Parameters
        ----------
        needle
            Text to wait for (plain substring, e.g. ``" ready."``).
        timeout_s
            How long to wait, in seconds.
        start_offset
            Characters of the log to skip, e.g. its length before a restart, so that older lines do not count.

        Raises
        ------
        ClusterProcessError
            The process was not started, exited first, or did not log ``needle`` within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_text()[start_offset:]:
                return
            if not self.alive():
                if self.proc is None:
                    raise ClusterProcessError(f"{self.name} was not started")
                raise ClusterProcessError(f"{self.name} exited (status {self.proc.returncode}) before "
                                          f"logging {needle!r}; see {self.log_path}:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)
        raise ClusterProcessError(f"{self.name} did not log {needle!r} within {timeout_s} s; see {self.log_path}")

    def children(self) -> list[int]:
        """Pids of the direct children (e.g. a Celery worker's pool processes)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return []
        return [int(p) for p in text.split()]

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, *, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop it (``sig``, then SIGKILL of its process group after ``timeout_s``); idempotent.

        A SIGTERM is an operator's stop: the cluster's supervisor leaves the process
        stopped. Any other signal is a crash: a supervised process is started again.
        """
        if sig == signal.SIGTERM:
            self.supervised = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop within %.0f s; killing it", self.name, self.pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout_s)
        # reap pool children left in the process group (same session, started by us)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def private_node_command(args: Sequence[str], *, staging: Path, size: str) -> list[str]:
    """``args`` run in a private mount namespace with a RAM disk of ``size`` at ``staging``.

    The way to have several tmpfs nodes on one machine: each node's processes
    see only their own staging, as containers with their own tmpfs do.

    Parameters
    ----------
    args
        The command line to run inside the namespace (argument list).
    staging
        The staging path the tmpfs is mounted on; created (in the shared namespace) if missing.
    size
        The tmpfs size, as ``mount -o size=`` takes it (e.g. ``"1g"``, ``"512m"``).

    Returns
    -------
    list of str
        ``unshare --mount --propagation private sh -c 'mount -t tmpfs ... && exec "$@"' node size staging *args``.

    Raises
    ------
    ClusterProcessError
        If this process is not root or ``unshare`` is missing.
    """
    import shutil as _shutil

    if os.geteuid() != 0:
        raise ClusterProcessError("a node with private staging needs root (unshare -m, mount -t tmpfs)")
    unshare = _shutil.which("unshare")
    if unshare is None:
        raise ClusterProcessError("a node with private staging needs unshare (util-linux)")
    Path(staging).mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o "size=$1,mode=0750" tmpfs "$2" && shift 2 && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "node", size, str(staging),
            *args]


class EmbeddedCluster:
    """A private single-machine cluster under one data root.

    Parameters
    ----------
    data_root
        The data root of every process (``CONTIMG_DATA_ROOT``).
    env
        Further ``CONTIMG_*`` settings for every process.
    broker_url
        Use this broker instead of starting a private redis-server.
    log_dir
        Where process logs go (default ``<data_root>/state/logs``).

    Examples
    --------
    >>> with EmbeddedCluster(Path("contimg-data/demo")) as cluster:   # doctest: +SKIP
    ...     cluster.start_worker()
    ...     cluster.start_producer()
    """

    def __init__(self, data_root: Path, *, env: Mapping[str, str] | None = None, broker_url: str | None = None,
                 log_dir: Path | None = None):
        self.data_root = Path(data_root).absolute()
        self.extra_env = {k: str(v) for k, v in (env or {}).items()}
        self.log_dir = Path(log_dir or self.data_root / "state" / "logs").absolute()
        self.redis: RedisServer | None = None
        self._broker_url = broker_url
        self.processes: list[ClusterProcess] = []
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def broker_url(self) -> str:
        if self._broker_url:
            return self._broker_url
        if self.redis is None:
            raise ClusterProcessError("the cluster's redis-server is not started")
        return self.redis.url

    def env(self, **more: str) -> dict[str, str]:
        """The environment of the cluster's processes."""
        overrides = {f"{ENV_PREFIX}DATA_ROOT": str(self.data_root), f"{ENV_PREFIX}BROKER_URL": self.broker_url,
                     **self.extra_env, **more}
        return subprocess_env(overrides)

    def settings(self) -> Settings:
        """The settings every process of this cluster reads."""
        return settings_for_env(self.env())

    def start(self) -> "EmbeddedCluster":
        """Start the private redis-server (unless a broker was given) and create the schema."""
        from contimg.db import init_db

        if not self._broker_url and self.redis is None:
            self.redis = RedisServer(self.data_root / "state" / "redis").start()
        settings = self.settings()
        settings.paths.ensure()
        init_db(settings)
        return self

    def _spawn(self, name: str, args: Sequence[str], *, env: Mapping[str, str] | None = None,
               extra_path: Sequence[Path] = ()) -> ClusterProcess:
        base = self.env()
        if extra_path:
            base["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in extra_path), base["PYTHONPATH"]])
        proc = ClusterProcess(name, args, env={**base, **(env or {})}, log_path=self.log_dir / f"{name}.log",
                              cwd=self.data_root)
        self.processes.append(proc.start())
        return proc

    # ------------------------------------------------------------------ processes
    def start_worker(self, name: str = "worker", *, queues: Sequence[str] | None = None, concurrency: int = 2,
                     app: str | None = None, extra_path: Sequence[Path] = (), wait: bool = True,
                     timeout_s: float = 90.0, private_staging: str | None = None,
                     supervised: bool = True) -> ClusterProcess:
        """Start a Celery worker (``contimg worker``; ``app`` selects another Celery app module).

        Parameters
        ----------
        name
            Celery node name prefix (``<name>@<host>``) and log file name (``<log_dir>/<name>.log``).
        queues
            Queues to consume (default: all of :data:`contimg.pipeline.stages.QUEUES`).
        concurrency
            Number of pool processes.
        app
            Celery app module to run with ``celery -A`` instead of ``contimg worker`` (e.g. a test app).
        extra_path
            Directories put first on the worker's ``PYTHONPATH`` (e.g. where ``app`` lives).
        wait
            Wait until the worker's log says it is ready (``"... ready."``).
        timeout_s
            How long to wait for that, in seconds.
        private_staging
            Run the worker as a node of its own: in a private mount namespace
            with a RAM disk of this size (e.g. ``"1g"``) mounted at the cluster's
            staging path, so that no other node sees its parts (as containers
            or hosts). Needs root (``unshare -m``).
        supervised
            Restart the worker when it exits (as systemd or compose would); a
            restarted private-staging worker is a new node (a fresh RAM disk).

        Returns
        -------
        ClusterProcess
            The started worker (also in :attr:`processes`).

        Raises
        ------
        ClusterProcessError
            With ``wait``, the worker exited or was not ready within ``timeout_s``; with ``private_staging``,
            not root or no ``unshare``.
        """
        if app is None:
            args = [sys.executable, "-m", "contimg", "worker", "--concurrency", str(concurrency),
                    "-n", f"{name}@%h"]
            if queues:
                args += ["--queues", ",".join(queues)]
        else:
            from contimg.pipeline.stages import QUEUES

            args = [sys.executable, "-m", "celery", "-A", app, "worker", "--concurrency", str(concurrency),
                    "-n", f"{name}@%h", "-Q", ",".join(queues or QUEUES), "--without-gossip",
                    "--without-mingle", "--loglevel", "INFO"]
        if private_staging is not None:
            args = private_node_command(args, staging=self.settings().paths.staging, size=private_staging)
        proc = self._spawn(name, args, extra_path=extra_path)
        proc.supervised = supervised
        self._ensure_supervisor()
        if wait:
            proc.wait_for_log(" ready.", timeout_s=timeout_s)
        return proc

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="cluster-supervisor", daemon=True)
            self._supervisor.start()

    def _supervise(self, period_s: float = 1.0) -> None:
        """Restart supervised processes that died (what systemd's ``Restart=always`` does in production).

        Celery 5.7/kombu 5.7 workers can exit with "Unrecoverable error:
        AttributeError(... 'hostname')" when the broker goes away while a
        late-acknowledged task is running (kombu restores unacked messages on a
        connection that no longer exists); a supervised worker comes back and
        reconnects when the broker does.
        """
        while not self._stopping.wait(period_s):
            for proc in list(self.processes):
                if proc.supervised and proc.proc is not None and proc.proc.poll() is not None \
                        and not self._stopping.is_set():
                    if proc.restarts and time.monotonic() - proc.started_at < RESTART_BACKOFF_S:
                        continue  # it died right after its last start (its broker is away): wait a little
                    proc.restarts += 1
                    log.warning("%s (pid %d) exited with status %s; restarting it (restart %d)",
                                proc.name, proc.pid, proc.proc.returncode, proc.restarts)
                    proc.start()

    def start_producer(self, name: str = "producer", *, wait: bool = True) -> ClusterProcess:
        """Start ``contimg producer``."""
        proc = self._spawn(name, [sys.executable, "-m", "contimg", "-v", "producer"])
        if wait:
            proc.wait_for_log("producer started", timeout_s=60)
        return proc

    def start_beat(self, name: str = "beat", *, app: str | None = None, extra_path: Sequence[Path] = ()) -> ClusterProcess:
        """Start ``contimg beat`` (``app`` selects another Celery app module).

        Beat is always supervised (restarted when it exits, e.g. after losing the broker); this does not
        wait for it to start.

        Parameters
        ----------
        name
            Process name, also of its log file (``<log_dir>/<name>.log``).
        app
            Celery app module to run with ``celery -A ... beat`` (RedBeat scheduler) instead of ``contimg beat``.
        extra_path
            Directories put first on beat's ``PYTHONPATH`` (e.g. where ``app`` lives).

        Returns
        -------
        ClusterProcess
            The started beat process (also in :attr:`processes`).
        """
        if app is None:
            args = [sys.executable, "-m", "contimg", "beat"]
        else:
            args = [sys.executable, "-m", "celery", "-A", app, "beat", "-S", "redbeat.RedBeatScheduler",
                    "--loglevel", "DEBUG"]
        proc = self._spawn(name, args, extra_path=extra_path)
        proc.supervised = True  # a beat that lost the broker exits; its supervisor starts it again
        self._ensure_supervisor()
        return proc

    def stop(self) -> None:
        """Stop every process (newest first), then the redis-server."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
            self._supervisor = None
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                log.exception("could not stop %s", proc.name)
        self.processes.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> "EmbeddedCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
