"""Engines and sessions: one engine per (process, URL), safe across ``fork``.

Use :func:`session_scope` for a unit of work::

    from contimg.db import session_scope
    with session_scope(settings) as session:      # or a URL, or an Engine
        ...                                       # committed on exit, rolled back on error

or :func:`run_transaction` to retry a whole unit of work when the database is
momentarily locked or the connection dropped.

SQLite (the default) is set up for several worker *processes* writing at once:
WAL journal, ``synchronous=NORMAL``, foreign keys on, a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE`` -- it takes the write lock up front
and waits for it (busy timeout) instead of failing with "database is locked"
when a read transaction later tries to write. Read-only work can ask for a
deferred transaction (``session_scope(..., readonly=True)``), which never
blocks writers under WAL.

Celery prefork workers fork after the parent may have connected: engines are
created lazily per process, and a child drops (without closing) the connection
pools inherited from its parent, following SQLAlchemy's guidance on
multiprocessing.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from contimg.errors import ConfigError, TransientError
from contimg.secrets import mask_text, mask_url, url_passwords

if TYPE_CHECKING:  # pragma: no cover
    from contimg.config import Settings

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for another process's write lock (URL ``?timeout=`` overrides)."""

T = TypeVar("T")

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_pid = os.getpid()

# PostgreSQL error codes worth retrying: serialization failure, deadlock.
_PG_TRANSIENT_CODES = frozenset({"40001", "40P01"})
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class DatabaseBusyError(TransientError):
    """The database was locked, unreachable, or aborted the transaction (deadlock, serialization)."""


class _ForkGate:
    """Keeps ``fork`` out of database sessions: a fork waits until no other thread is inside one.

    SQLite keeps each process's lock state in memory (which of the
    process's connections hold which lock), and ``fork`` copies it. A child
    forked while another thread of its parent was inside a write transaction
    inherits "this process holds the write lock" with no thread left to
    release it: every write it tries waits out the busy timeout and fails,
    for the child's whole life (a Celery worker child forked while the
    worker's presence thread beat the heartbeats: measured, every write in
    such a child failed with "database is locked"). So sessions enter the gate
    and a fork (``os.register_at_fork(before=...)``) waits, holding new
    sessions back, until every other thread has left its session, then
    closes the idle pooled connections, so that the child inherits no
    connection at all. The forking thread's own open session, if any, is not
    waited for (it could never finish). The rule that follows: a thread must
    not stay inside a session while it waits for a thread that may fork (the
    nightly job's reader thread waits for its consumer, which never forks).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside: dict[int, int] = {}
        self._forking: int | None = None

    def enter(self) -> None:
        me = threading.get_ident()
        with self._cond:
            while self._forking is not None and self._forking != me and me not in self._inside:
                self._cond.wait()
            self._inside[me] = self._inside.get(me, 0) + 1

    def leave(self) -> None:
        me = threading.get_ident()
        with self._cond:
            depth = self._inside.get(me, 0) - 1
            if depth > 0:
                self._inside[me] = depth
            else:
                self._inside.pop(me, None)
            self._cond.notify_all()

    def before_fork(self) -> None:
        me = threading.get_ident()
        with self._cond:
            self._forking = me
            while any(thread != me for thread in self._inside):
                self._cond.wait()
        for engine in list(_engines.values()):
            try:
                engine.pool.dispose()  # closes the checked-in connections; a checked-out one stays open
            except Exception:  # noqa: BLE001 - never fail a fork over a pool
                pass

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = None
            self._cond.notify_all()


_gate = _ForkGate()


def _reset_after_fork() -> None:
    """In a forked child: forget the parent's engines without closing its connections."""
    global _lock, _pid, _gate
    _lock = threading.Lock()
    _gate = _ForkGate()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _pid = os.getpid()


def _before_fork() -> None:
    _gate.before_fork()


def _after_fork_in_parent() -> None:
    _gate.after_fork_in_parent()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_reset_after_fork)


def database_url(target: str | URL | Settings) -> URL:
    """The SQLAlchemy URL of ``target`` (a URL string, a :class:`URL` or the settings)."""
    if isinstance(target, URL):
        return target
    if isinstance(target, str):
        raw = target
    elif hasattr(target, "database"):
        raw = target.database
    else:
        raise TypeError(f"expected a database URL or Settings, got {type(target).__name__}")
    try:
        return make_url(raw)
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        secrets = url_passwords(raw)
        raise ConfigError(f"CONTIMG_DATABASE_URL={mask_url(raw)!r}: not a valid SQLAlchemy URL "
                          f"({mask_text(str(exc), secrets)})") from None


def safe_url(target: str | URL | Engine | Settings) -> str:
    """The database URL with any password hidden, for messages and logs."""
    url = target.url if isinstance(target, Engine) else database_url(target)
    return url.render_as_string(hide_password=True)


SQLITE_FILE_MODE = 0o644
"""Mode of a new SQLite database file before the process's umask (``settings.umask``) is taken off:
``0o640`` under the default umask ``027`` (not world-readable), ``0o644`` only if an operator sets ``022``."""


def create_sqlite_file(path: Path) -> None:
    """Create the SQLite database file ``path`` (empty) with mode ``0o644 & ~umask`` unless it exists.

    The process's umask (``settings.umask``, applied by ``contimg``) is taken
    off by :func:`os.open`, so the file is ``0o640`` under the default umask
    whatever the SQLite build's default permissions. SQLite creates its
    ``-wal`` and ``-shm`` files with the database file's permissions, so they
    follow. An existing file is left as it is.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    log.debug("created %s with mode %o", path, path.stat().st_mode & 0o777)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


class NestedWriteError(RuntimeError):
    """A thread asked for a SQLite write transaction while it already holds one on the same database.

    The inner ``BEGIN IMMEDIATE`` would wait for the outer transaction's lock,
    which its own thread holds: a self-deadlock that stalls every other
    process's writes for the busy timeout times the retries (minutes) and
    then fails. A programming error, raised at once.
    """


_writers = threading.local()


def _held_writes(engine: Engine) -> set[int]:
    """The ids of the DBAPI connections through which this thread holds a write transaction on ``engine``."""
    held = getattr(_writers, "held", None)
    if held is None:
        held = _writers.held = {}
    return held.setdefault(id(engine), set())


def _configure_sqlite(engine: Engine, timeout_s: float) -> None:
    busy_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event (below) issue BEGIN, not the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        held = _held_writes(engine)
        dbapi_id = id(conn.connection.dbapi_connection)
        if mode != "DEFERRED" and held - {dbapi_id}:
            raise NestedWriteError(
                f"database {safe_url(engine)}: a write transaction was started while this thread already "
                "holds one on another connection; it would wait for its own lock (finish the outer "
                "transaction first, or pass its session down)")
        conn.exec_driver_sql(f"BEGIN {mode}")
        if mode != "DEFERRED":
            held.add(dbapi_id)

    def _on_end(conn: Any) -> None:
        _held_writes(engine).discard(id(conn.connection.dbapi_connection))

    event.listen(engine, "commit", _on_end)
    event.listen(engine, "rollback", _on_end)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, _record: Any) -> None:
        _held_writes(engine).discard(id(dbapi_conn))


def get_engine(target: str | URL | Settings) -> Engine:
    """The engine of ``target``'s database for this process, created on first use.

    Parameters
    ----------
    target
        A SQLAlchemy URL (``sqlite:////abs/path.sqlite3``,
        ``postgresql+psycopg2://user@host/db``) or the settings (their
        :attr:`~contimg.config.Settings.database`).

    Notes
    -----
    The engine is cached per process and URL; a forked child gets its own. For
    a SQLite file URL the parent directory is created, and the database file
    with mode ``0o644`` less the umask (:func:`create_sqlite_file`).
    """
    url = database_url(target)
    key = url.render_as_string(hide_password=False)
    if os.getpid() != _pid:  # forked without the at-fork hook (should not happen on POSIX)
        _reset_after_fork()
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        backend = url.get_backend_name()
        if backend not in SUPPORTED_BACKENDS:
            raise ConfigError(f"database {safe_url(url)}: unsupported backend {backend!r} "
                              f"(contimg supports {' and '.join(SUPPORTED_BACKENDS)})")
        if backend == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                create_sqlite_file(path)
            # A ``?timeout=`` in the URL overrides the busy timeout (seconds).
            timeout = url.query.get("timeout", SQLITE_BUSY_TIMEOUT_S)
            if isinstance(timeout, tuple):  # ?timeout= given more than once: the last one wins
                timeout = timeout[-1]
            timeout_s = float(timeout)
            engine = create_engine(url.difference_update_query(["timeout"]), connect_args={"timeout": timeout_s})
            _configure_sqlite(engine, timeout_s)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=5, max_overflow=5)
        _engines[key] = engine
        log.debug("created engine for %s in process %d", safe_url(url), os.getpid())
        return engine


def dispose_engine(target: str | URL | Settings) -> None:
    """Close and forget this process's engine for ``target``, if there is one."""
    key = database_url(target).render_as_string(hide_password=False)
    with _lock:
        engine = _engines.pop(key, None)
    if engine is not None:
        engine.dispose()


def reset_after_fork() -> None:
    """Forget (without closing) every engine inherited from a parent process.

    Runs automatically in a forked child (``os.register_at_fork``); calling it
    again, e.g. from Celery's ``worker_process_init``, is harmless.
    """
    _reset_after_fork()


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, orderly shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    

def is_transient(exc: BaseException) -> bool:
    """True for database errors that may go away on retry (locks, lost connections, deadlocks)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    return getattr(exc.orig, "pgcode", None) in _PG_TRANSIENT_CODES


@contextmanager
def session_scope(target: str | URL | Engine | Settings, *, readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    Parameters
    ----------
    target
        URL, engine or settings naming the database.
    readonly
        On SQLite, start a deferred transaction that does not take the write
        lock, so it never waits for writers (the session should not write: a
        write would then fail with "database is locked" under contention).

    Raises
    ------
    DatabaseBusyError
        A :class:`~contimg.errors.TransientError`, for locks, lost connections,
        serialization failures and deadlocks (chained to the database error);
        the unit of work may be retried as a whole (:func:`run_transaction`). Other database errors, such as
        :class:`~sqlalchemy.exc.IntegrityError`, propagate unchanged.

    Notes
    -----
    Objects stay usable after the block (``expire_on_commit=False``), but are
    detached: re-read them in a new session to change them.
    """
    engine = target if isinstance(target, Engine) else get_engine(target)
    bind = engine.execution_options(sqlite_begin="DEFERRED") if readonly else engine
    gate = _gate
    gate.enter()
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        # Also for read-only work: a rollback would expire the loaded objects.
        session.commit()
    except DBAPIError as exc:
        session.rollback()
        if is_transient(exc):
            reason = mask_text(str(exc.orig), url_passwords(engine.url.render_as_string(hide_password=False)))
            raise DatabaseBusyError(f"database {safe_url(engine)}: {reason}") from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        gate.leave()


def run_transaction(
    target: str | URL | Engine | Settings,
    fn: Callable[[Session], T],
    *,
    attempts: int = 5,
    readonly: bool = False,
) -> T:
    """Run ``fn(session)`` in its own transaction, retrying when the database is busy.

    ``fn`` must be safe to run again from the start (it is, if it only touches
    the database through ``session``). Only :class:`DatabaseBusyError` is
    retried; between attempts the wait grows exponentially from 0.1 s, with
    jitter. Any other exception propagates at once.

    Parameters
    ----------
    target
        URL, engine or settings naming the database.
    fn
        The unit of work, called with a fresh session; the transaction commits when it returns.
    attempts
        How many times at most ``fn`` is run.
    readonly
        On SQLite, a deferred transaction that never waits for writers (see :func:`session_scope`); ``fn``
        must not write.

    Returns
    -------
    T
        What ``fn`` returned (ORM objects stay loaded but are detached).

    Raises
    ------
    DatabaseBusyError
        If the last attempt still failed (a :class:`~contimg.errors.TransientError`).
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(target, readonly=readonly) as session:
                return fn(session)
        except DatabaseBusyError as exc:
            if attempt == attempts:
                raise DatabaseBusyError(f"{exc} (gave up after {attempts} attempts)") from exc.__cause__
            delay = 0.1 * 2 ** (attempt - 1) * (1 + random.random())
            log.warning("transient database error (attempt %d/%d), retrying in %.2f s: %s",
                        attempt, attempts, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
