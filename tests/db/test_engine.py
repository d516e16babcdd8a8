"""Engines and sessions: SQLite set-up, UTC times, fork safety, transient errors, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from contimg.db import DatabaseBusyError, dispose_engine, get_engine, init_db, run_transaction, session_scope
from contimg.db import groups as q
from contimg.db.models import ObservationGroup, StageTiming

from db_helpers import add_group
from contimg.errors import TransientError

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)


def _sqlite_url(tmp_path, name="contimg.sqlite3", **query) -> str:
    url = f"sqlite:///{tmp_path / 'nested' / 'state' / name}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


def test_sqlite_is_set_up_for_concurrent_processes(tmp_path):
    url = _sqlite_url(tmp_path)
    engine = get_engine(url)
    assert (tmp_path / "nested" / "state").is_dir()
    assert get_engine(url) is engine
    with engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                   for p in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 1}
    dispose_engine(url)
    assert get_engine(url) is not engine
    dispose_engine(url)


def test_times_are_timezone_aware_utc(db_url):
    init_db(db_url)
    local = timezone(timedelta(hours=-7))
    with session_scope(db_url) as s:
        add_group(s, "k", T0.astimezone(local))
    with session_scope(db_url, readonly=True) as s:
        g = q.get_group(s, "k")
        assert g.timestamp == T0 and g.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(db_url) as s:
            add_group(s, "naive", datetime(2025, 10, 2, 10, 2, 45))


_FORK_SCRIPT = """
import json, multiprocessing, os, sys
from datetime import datetime, timezone
from sqlalchemy import select
from contimg.db import GroupState, get_engine, init_db, session_scope
from contimg.db.models import ObservationGroup as G

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
url = sys.argv[1]


def child(parent_engine_id, out):
    engine = get_engine(url)
    with session_scope(url) as s:
        s.add(G(group_key="from-child", timestamp=T0, state=GroupState.COLLECTING))
    out.put(id(engine) != parent_engine_id)


init_db(url)
engine = get_engine(url)
with session_scope(url) as s:  # the parent holds a pooled connection
    s.add(G(group_key="from-parent", timestamp=T0, state=GroupState.COLLECTING))
ctx = multiprocessing.get_context("fork")
out = ctx.Queue()
proc = ctx.Process(target=child, args=(id(engine), out))
proc.start()
new_engine = out.get(timeout=60)
proc.join(timeout=60)
with session_scope(url) as s:  # the parent's pool still works after the child exited
    s.add(G(group_key="parent-again", timestamp=T0.replace(minute=8), state=GroupState.COLLECTING))
    keys = sorted(s.scalars(select(G.group_key)))
print(json.dumps({"child_exit": proc.exitcode, "child_new_engine": new_engine, "keys": keys,
                  "same_parent_engine": get_engine(url) is engine}))
"""


def test_forked_child_gets_its_own_engine(tmp_path):
    """Run in a fresh interpreter: this pytest process may have imported casatools (unsafe to fork)."""
    url = _sqlite_url(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, url], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"child_exit": 0, "child_new_engine": True, "same_parent_engine": True,
                      "keys": ["from-child", "from-parent", "parent-again"]}


_FORK_DURING_WRITE_SCRIPT = r"""
import json, os, sys, threading, time
from sqlalchemy import text
from contimg.db import init_db, run_transaction, session_scope

url = sys.argv[1]
init_db(url)
inside = threading.Event()


def beat():  # a worker's presence thread: a write transaction that takes a while
    with session_scope(url) as s:
        s.execute(text("UPDATE sources SET name = name"))
        s.execute(text("INSERT INTO sources (name, ra_deg, dec_deg, resolved, confused, is_calibrator) "
                       "VALUES ('beat', 0, 0, 0, 0, 0)"))
        inside.set()
        time.sleep(0.5)


thread = threading.Thread(target=beat)
thread.start()
inside.wait()
t0 = time.monotonic()
pid = os.fork()  # while the other thread holds the write lock
if pid == 0:
    try:
        run_transaction(url, lambda s: s.execute(text(
            "INSERT INTO sources (name, ra_deg, dec_deg, resolved, confused, is_calibrator) "
            "VALUES ('child', 0, 0, 0, 0, 0)")), attempts=1)
        os._exit(0)
    except Exception as exc:
        print(f"child: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(3)
fork_wait = time.monotonic() - t0
thread.join()
_, status = os.waitpid(pid, 0)
with session_scope(url, readonly=True) as s:
    names = sorted(s.scalars(text("SELECT name FROM sources")))
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "names": names,
                  "fork_waited_s": round(fork_wait, 2)}))
"""


def test_a_child_forked_during_another_threads_write_can_still_write(tmp_path):
    """SQLite's in-memory lock state is copied by fork: without the fork gate the child's writes all fail.

    (Measured before the gate: the child waited out the busy timeout and got
    "database is locked", however long the parent's transaction had since
    been committed.) The fork waits for the other thread's transaction.
    """
    url = _sqlite_url(tmp_path, timeout="3")
    proc = subprocess.run([sys.executable, "-c", _FORK_DURING_WRITE_SCRIPT, url], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["child_exit"] == 0, proc.stderr
    assert result["names"] == ["beat", "child"]
    assert result["fork_waited_s"] >= 0.3  # the fork waited for the transaction to end


def test_a_nested_write_transaction_in_one_thread_fails_at_once(tmp_path):
    """The inner BEGIN IMMEDIATE would wait for its own thread's lock (minutes, blocking every process)."""
    from contimg.db import NestedWriteError

    url = _sqlite_url(tmp_path, timeout="5")
    init_db(url)
    with session_scope(url) as outer:
        add_group(outer, "outer", T0)
        start = time.monotonic()
        with pytest.raises(NestedWriteError, match="would wait for its own lock"):
            with session_scope(url) as inner:
                add_group(inner, "inner", T0.replace(minute=5))
        assert time.monotonic() - start < 1.0
        with session_scope(url, readonly=True) as reader:  # a read beside the write is fine (WAL)
            assert reader.scalars(select(ObservationGroup.group_key)).all() == []
    with session_scope(url) as s:  # the outer transaction committed; the thread can write again
        assert s.scalars(select(ObservationGroup.group_key)).all() == ["outer"]
        add_group(s, "after", T0.replace(minute=10))
    dispose_engine(url)


def _hold_write_lock(path, seconds: float) -> threading.Thread:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO sources (name, ra_deg, dec_deg, resolved, confused, is_calibrator) "
                 "VALUES ('lock', 0, 0, 0, 0, 0)")

    def release():
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_a_persistent_lock_becomes_a_transient_error(tmp_path):
    url = _sqlite_url(tmp_path, timeout="0.2")
    init_db(url)
    holder = _hold_write_lock(tmp_path / "nested" / "state" / "contimg.sqlite3", 2.0)
    try:
        with pytest.raises(DatabaseBusyError, match="database is locked") as info:
            with session_scope(url) as s:
                add_group(s, "k", T0)
        assert "contimg.sqlite3" in str(info.value)
        with pytest.raises(DatabaseBusyError, match="gave up after 2 attempts"):
            run_transaction(url, lambda s: add_group(s, "k", T0), attempts=2)
    finally:
        holder.join()
    dispose_engine(url)


def test_run_transaction_retries_until_the_lock_is_released(tmp_path):
    url = _sqlite_url(tmp_path, timeout="0.2")
    init_db(url)
    holder = _hold_write_lock(tmp_path / "nested" / "state" / "contimg.sqlite3", 0.5)
    try:
        group_id = run_transaction(url, lambda s: add_group(s, "k", T0).id, attempts=8)
    finally:
        holder.join()
    assert group_id == 1
    dispose_engine(url)


def test_readonly_session_does_not_wait_for_writers(tmp_path):
    url = _sqlite_url(tmp_path, timeout="0.2")
    init_db(url)
    holder = _hold_write_lock(tmp_path / "nested" / "state" / "contimg.sqlite3", 1.0)
    try:
        with session_scope(url, readonly=True) as s:  # WAL: readers proceed beside a writer
            assert s.execute(text("SELECT count(*) FROM sources")).scalar() == 0
    finally:
        holder.join()
    dispose_engine(url)


@pytest.mark.parametrize("n_workers", [5])
def test_concurrent_writer_processes(db_url, n_workers):
    """Several spawned processes write at once: no 'database is locked', no lost update, every row."""
    from db_concurrent_writer import SHARED_KEY, child_main

    n_transactions = 100
    with session_scope(db_url) as s:
        add_group(s, SHARED_KEY, T0 - timedelta(days=1))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n_workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=child_main, args=(db_url, w, n_transactions, barrier, results))
             for w in range(n_workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [o for o in outcomes if "error" in o]
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0] * n_workers
    with session_scope(db_url, readonly=True) as s:
        n_groups = s.scalar(select(text("count(*)")).select_from(ObservationGroup))
        n_timings = s.scalar(select(text("count(*)")).select_from(StageTiming))
        shared = q.get_group(s, SHARED_KEY)
    total = n_workers * n_transactions
    assert (n_groups, n_timings, shared.retry_count) == (total + 1, total, total)
    slowest = max(o["seconds"] for o in outcomes)
    print(f"{total} write transactions from {n_workers} processes: slowest worker {slowest:.1f} s")


def test_settings_name_the_database(db_settings, db_url, settings):
    assert db_settings.database == db_url
    if db_url.startswith("sqlite"):
        assert settings.database == db_url  # the default database of the data root
    with session_scope(db_settings) as s:  # a Settings object is a valid target
        add_group(s, "k", T0)
    with session_scope(db_url, readonly=True) as s:
        assert q.get_group(s, "k").timestamp == T0


def test_only_database_errors_are_retried(tmp_path):
    url = _sqlite_url(tmp_path)
    init_db(url)
    calls = []

    def fn(session):
        calls.append(1)
        add_group(session, "k", T0)
        raise TransientError("staging full (not a database problem)")

    with pytest.raises(TransientError, match="staging full"):
        run_transaction(url, fn, attempts=5)
    assert len(calls) == 1
    with session_scope(url, readonly=True) as s:  # rolled back
        assert q.find_group(s, "k") is None
    dispose_engine(url)


def test_bad_database_urls_are_configuration_errors():
    from contimg.errors import ConfigError

    with pytest.raises(ConfigError, match="CONTIMG_DATABASE_URL='not a url'"):
        get_engine("not a url")
    with pytest.raises(ConfigError, match="unsupported backend 'mysql'.*sqlite and postgresql"):
        get_engine("mysql://u:pw@host/db")
