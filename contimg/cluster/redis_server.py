"""A private ``redis-server`` on a free local port.

The server keeps an append-only file in its directory, so that stopping and
restarting it (``restart()``) loses no queued message: this is how the tests
check that a Redis restart during a run loses no group.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from contimg.errors import ContimgError

log = logging.getLogger(__name__)


class RedisServerError(ContimgError):
    """The private redis-server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server subprocess bound to 127.0.0.1 on a private port.

    Parameters
    ----------
    directory
        Working directory of the server: its append-only file and log live here.
    port
        TCP port; a free one is chosen when None.
    executable
        The redis-server program (found on PATH when None).

    Examples
    --------
    >>> with RedisServer(tmp_path) as server:        # doctest: +SKIP
    ...     print(server.url)
    redis://127.0.0.1:40123/0
    """

    host = "127.0.0.1"

    def __init__(self, directory: Path, *, port: int | None = None, executable: str | None = None):
        self.directory = Path(directory).absolute()
        self.port = port or free_port(self.host)
        exe = executable or shutil.which("redis-server")
        if exe is None:
            raise RedisServerError("redis-server not found on PATH; install redis-server or configure CONTIMG_BROKER_URL")
        self.executable = exe
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, *, timeout_s: float = 10.0) -> "RedisServer":
        """Start the server and wait until it accepts connections."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]
        log.debug("starting %s", " ".join(args))
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RedisServerError(
                    f"redis-server on port {self.port} exited with status {self._proc.returncode}; "
                    f"see {self.directory / 'redis.log'}")
            if _port_open(self.host, self.port) and self._ping():
                log.info("private redis-server pid %d on %s", self._proc.pid, self.url)
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisServerError(f"redis-server on port {self.port} did not answer within {timeout_s} s")

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False
        except redis.exceptions.BusyLoadingError:  # pragma: no cover - loading the AOF
            return False

    def stop(self, *, kill: bool = False, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, or SIGKILL when ``kill``); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def restart(self, *, kill: bool = False, down_s: float = 0.0) -> None:
        """Stop and start again on the same port and directory (the AOF keeps the data)."""
        self.stop(kill=kill)
        if down_s:
            time.sleep(down_s)
        self.start()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
