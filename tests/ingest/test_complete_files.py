"""Complete files only: content checks, paused and held-open writers, once-only warnings, retries after a fix."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from sqlalchemy import select

from contimg.config import IngestSettings
from contimg.db import GroupState, run_transaction, session_scope
from contimg.db.models import ObservationGroup, SubbandFile
from contimg.errors import InputFileError
from contimg.ingest.files import StabilityTracker, content_problem
from contimg.ingest.producer import Producer
from contimg.db.groups import register_file
from contimg.naming import format_subband_filename
from contimg.db import groups

T0 = datetime(2025, 10, 2, 10, 2, 45, tzinfo=timezone.utc)
KEY = "2025-10-02T10:02:45"
STABLE_S = 0.3


@pytest.fixture(scope="module")
def uvh5_bytes(tmp_path_factory) -> bytes:
    """The bytes of one real simulated subband file (pyuvdata's UVH5 writer), about 50 kB."""
    from contimg.simulation import SimulationConfig, simulate

    cfg = SimulationConfig(n_antennas=3, channels_per_subband=1, n_integrations=2, subbands=(3,), n_sources=0,
                           seed=2, noise=False, gains=False, processes=1)
    res = simulate(tmp_path_factory.mktemp("sim"), cfg)
    return Path(res.groups[0].paths[0]).read_bytes()


def _minimal_uvh5(path: Path, *, shape: tuple[int, ...] = (1, 1, 2), dims: tuple[int, int, int] = (1, 1, 2)) -> Path:
    """A small UVH5-shaped file: header dimensions (Nblts, Nfreqs, Npols) and Data datasets of ``shape``."""
    with h5py.File(path, "w") as f:
        header = f.create_group("Header")
        for name, value in zip(("Nblts", "Nfreqs", "Npols"), dims):
            header[name] = value
        header["Nspws"] = 1
        data = f.create_group("Data")
        data["visdata"] = np.zeros(shape, dtype=np.complex64)
        data["flags"] = np.zeros(shape, dtype=bool)
        data["nsamples"] = np.ones(shape, dtype=np.float32)
    return path


def _age(path: Path, seconds: float = 60.0) -> Path:
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


@pytest.fixture
def env(tmp_path, db_url):
    """(db url, incoming directory, published runs, producer factory) on a migrated database."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    published: list[tuple[str, str, str]] = []
    settings = IngestSettings(stable_s=STABLE_S, group_timeout_s=3600, min_subbands=12, tolerance_s=60)

    def make(**kw) -> Producer:
        return Producer(db=db_url, incoming=incoming, settings=settings.model_copy(update=kw),
                        enqueue=lambda *a: published.append(a), rescan_interval_s=0.0, unpublished_grace_s=0.0)

    return db_url, incoming, published, make


def _files(url) -> dict[str, int | None]:
    with session_scope(url, readonly=True) as s:
        return {Path(f.path).name: f.size_bytes for f in s.scalars(select(SubbandFile))}


def _group(url, key=KEY) -> ObservationGroup:
    with session_scope(url, readonly=True) as s:
        group = s.scalar(select(ObservationGroup).where(ObservationGroup.group_key == key))
        s.expunge(group)
        return group


def _step_for(producer: Producer, seconds: float, *, until: list[str] | None = None) -> list[str]:
    """Step the producer repeatedly for ``seconds`` (or until it registered ``until``); the names it registered."""
    names: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and names != until:
        names += [r.path.name for r in producer.step().registered]
        time.sleep(0.05)
    return names


def _step_until_checked(producer: Producer, path: Path) -> list[str]:
    """Step for at least 4 ``stable_s`` and until ``path``'s content was checked (failed); the names registered."""
    names = _step_for(producer, 4 * STABLE_S)
    end = time.monotonic() + 30
    while producer.tracker.reason(path) is None and not names and time.monotonic() < end:
        names += _step_for(producer, STABLE_S)
    return names


# ---------------------------------------------------------------------------- the content check
def test_hdf5_refuses_a_truncated_file(tmp_path, uvh5_bytes):
    """What the check relies on: HDF5 compares the superblock's stored end of file with the real size."""
    path = tmp_path / "whole.hdf5"
    path.write_bytes(uvh5_bytes)
    assert content_problem(path) is None
    for size in (100, len(uvh5_bytes) // 2, len(uvh5_bytes) - 1):
        cut = tmp_path / f"cut{size}.hdf5"
        cut.write_bytes(uvh5_bytes[:size])
        with pytest.raises(OSError, match="truncated file"):
            h5py.File(cut, "r")
        reason = content_problem(cut)
        assert reason is not None and "truncated file" in reason and f"eof = {size}" in reason


def test_truncated_file_is_never_complete_however_long_it_is_stable(tmp_path, uvh5_bytes):
    path = tmp_path / format_subband_filename(T0, 3)
    path.write_bytes(uvh5_bytes[: len(uvh5_bytes) // 2])
    clock = [0.0]
    tracker = StabilityTracker(stable_s=2.0, clock=lambda: clock[0])
    tracker.add(path)
    for t in (0.0, 2.5, 5.0, 100.0):  # its size and mtime never change
        clock[0] = t
        assert tracker.pop_complete() == []
    assert "truncated file" in tracker.reason(path)
    _age(path)  # nor when found old, as by a scan at start-up
    fresh = StabilityTracker(stable_s=2.0, clock=lambda: clock[0])
    fresh.add(path)
    assert fresh.pop_complete() == []
    path.write_bytes(uvh5_bytes)
    _age(path)
    assert fresh.pop_complete() == [path]


@pytest.mark.parametrize(
    ("shape", "dims", "problem"),
    [
        ((4, 3, 2), (4, 3, 2), None),  # UVH5 >= 1.0: (Nblts, Nfreqs, Npols)
        ((4, 1, 3, 2), (4, 3, 2), None),  # legacy: (Nblts, 1, Nfreqs, Npols)
        ((3, 3, 2), (4, 3, 2), "Data/visdata has shape (3, 3, 2)"),
        ((4, 2, 3, 2), (4, 3, 2), "Data/visdata has shape (4, 2, 3, 2)"),
    ],
)
def test_content_check_compares_data_shapes_with_the_header(tmp_path, shape, dims, problem):
    reason = content_problem(_minimal_uvh5(tmp_path / "f.hdf5", shape=shape, dims=dims))
    assert reason == problem if problem is None else problem in reason


def test_content_check_needs_the_uvh5_items(tmp_path):
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("Header")
    assert "no integer 'Nblts'" in content_problem(path)
    _minimal_uvh5(path)
    with h5py.File(path, "a") as f:
        del f["Data/nsamples"]
    assert content_problem(path) == "no Data/nsamples dataset"
    path.write_bytes(b"")
    assert content_problem(path) == "empty"
    path.write_bytes(b"not hdf5 at all")
    assert content_problem(path).startswith("does not open as HDF5")


# ---------------------------------------------------------------------------- the producer
def test_file_written_in_pauses_is_registered_only_when_complete(env, uvh5_bytes):
    url, incoming, published, make = env
    producer = make()
    path = incoming / format_subband_filename(T0, 3)
    half = len(uvh5_bytes) // 2
    with path.open("wb") as f:  # a copy straight to the final name that stalls halfway
        f.write(uvh5_bytes[:half])
    assert _step_until_checked(producer, path) == []  # its size was stable for longer than stable_s
    assert "truncated file" in producer.tracker.reason(path)
    assert _files(url) == {}
    with path.open("ab") as f:
        f.write(uvh5_bytes[half:])
    assert _step_for(producer, 30, until=[path.name]) == [path.name]
    assert _files(url) == {path.name: len(uvh5_bytes)}


_HOLD = """
import sys, h5py
f = h5py.File(sys.argv[1], "r+")
f["Header"].attrs["writing"] = 1
f.flush()
print("open", flush=True)
sys.stdin.readline()
f.close()
"""


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
                    reason="HDF5 file locking is turned off in this environment")
def test_file_held_open_by_a_writer_is_not_registered(env, uvh5_bytes):
    url, incoming, published, make = env
    path = incoming / format_subband_filename(T0, 3)
    path.write_bytes(uvh5_bytes)
    _age(path)
    writer = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        producer = make()
        assert _step_until_checked(producer, path) == []
        assert producer.tracker.reason(path) == "held open by a writer (HDF5 file lock)"
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(timeout=30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert _step_for(producer, 30, until=[path.name]) == [path.name]


def test_ignored_files_are_reported_once_per_process(env, caplog):
    url, incoming, published, make = env
    bad = _age(_minimal_uvh5(incoming / "2025-10-02T10:02:45_sb16.hdf5"))  # subband out of range
    first = _age(_minimal_uvh5(incoming / format_subband_filename(T0, 3)))
    conflict = _age(_minimal_uvh5(incoming / format_subband_filename(T0 + timedelta(seconds=5), 3)))
    (incoming / "notes.txt").write_text("not a subband file")
    producer = make()
    with caplog.at_level(logging.DEBUG, logger="contimg"):
        for _ in range(4):  # rescan_interval_s = 0: every step rescans the directory
            producer.step()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(str(bad) in m for m in warnings) == 1, warnings
    assert sum(str(conflict) in m and "already has subband 03" in m for m in warnings) == 1, warnings
    assert not any("notes.txt" in m for m in warnings)
    assert _files(url) == {first.name: first.stat().st_size}
    # a late file (its group already enqueued) is recorded, and reported once
    producer.settings = producer.settings.model_copy(update={"min_subbands": 1, "group_timeout_s": 0.01})
    time.sleep(0.05)
    assert producer.step().enqueued == [KEY]
    late = _age(_minimal_uvh5(incoming / format_subband_filename(T0, 4)))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="contimg"):
        for _ in range(4):
            producer.step()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(late) in warnings[0] and "after group" in warnings[0], warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="contimg"):
        make().step()  # a new process reports them again, once
    assert sum(str(bad) in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------------------- retry after the file was fixed
def _registered_group(env, uvh5_bytes, *, truncated_sb: int = 3) -> tuple[Path, str]:
    """A pending, published group of 16 files whose sb``truncated_sb`` was registered truncated.

    The truncated file is registered directly (as a producer without the
    content check did), so the group is promoted with it.
    """
    url, incoming, published, make = env
    for sb in range(16):
        if sb != truncated_sb:
            _age(_minimal_uvh5(incoming / format_subband_filename(T0, sb)))
    bad = incoming / format_subband_filename(T0, truncated_sb)
    bad.write_bytes(uvh5_bytes[: len(uvh5_bytes) // 2])
    _age(bad)
    run_transaction(url, lambda s: register_file(s, bad, tolerance_s=60))
    producer = make()
    assert producer.step().enqueued == [KEY]
    (key, token, stage), = published
    return bad, token


def _fail_as_convert_does(url, path: Path, token: str) -> str:
    """Claim the run and fail it with the InputFileError that conversion raises for ``path``."""
    from contimg.conversion.plan import read_header

    assert groups.claim(url, KEY, token)
    with pytest.raises(InputFileError) as info:
        read_header(path)
    error = f"convert.plan: {type(info.value).__name__}: {info.value}"
    assert str(path) in error
    assert groups.fail(url, KEY, error, token=token)
    return error


def test_failed_group_is_retried_when_its_truncated_file_becomes_complete(env, uvh5_bytes, caplog):
    url, incoming, published, make = env
    bad, token = _registered_group(env, uvh5_bytes)
    _fail_as_convert_does(url, bad, token)
    producer = make(stable_s=10.0)
    assert not producer.step().retried  # the file is still the truncated one
    bad.write_bytes(uvh5_bytes)  # the rest of the file arrives
    assert not producer.step().retried  # modified less than stable_s ago
    _age(bad, 11.0)
    with caplog.at_level(logging.WARNING, logger="contimg.ingest"):
        report = producer.step()
    assert report.retried == [KEY]
    group = _group(url)
    assert group.state is GroupState.PENDING and group.current_stage == "convert"
    assert group.task_id not in (None, token) and group.enqueued_at is not None
    assert published[-1] == (KEY, group.task_id, "convert") and len(published) == 2
    assert _files(url)[bad.name] == len(uvh5_bytes)
    warning, = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert KEY in warning and str(bad) in warning
    assert not make().step()  # nothing more to do, in this process or another
    assert len(published) == 2


def test_file_retries_need_an_error_naming_a_changed_file_and_are_limited(env, uvh5_bytes):
    url, incoming, published, make = env
    bad, token = _registered_group(env, uvh5_bytes)
    producer = make(max_file_retries=2)
    # run 1 fails with an error that names none of the group's files: never retried
    assert groups.claim(url, KEY, token)
    groups.fail(url, KEY, f"calibrate.solve: ValidationError: group {KEY}: 40% of solutions flagged", token=token)
    bad.write_bytes(uvh5_bytes)
    _age(bad, 1.0)
    assert not producer.step().retried
    # run 2 (an operator's reprocess) fails on the file, which has changed and is complete: retried
    (item,) = groups.request_reprocess(url, [KEY])
    assert groups.claim(url, KEY, item.token)
    error = f"convert.plan: InputFileError: {bad}: cannot read as HDF5 (corrupt or truncated?)"
    groups.fail(url, KEY, error, token=item.token)
    assert make(max_file_retries=0).step().retried == []  # retries turned off
    assert producer.step().retried == [KEY]
    # run 3 fails on the same file again: unchanged since the retry, so not retried
    token = _group(url).task_id
    assert groups.claim(url, KEY, token)
    groups.fail(url, KEY, error, token=token)
    assert not producer.step().retried
    # rewritten again (same size, newer mtime), but the group has run 3 times: 2 runs beyond the first
    bad.write_bytes(uvh5_bytes)
    time.sleep(STABLE_S + 0.1)
    assert not producer.step().retried
    assert make(max_file_retries=3).step().retried == [KEY]
    assert _group(url).attempt == 3


def test_failed_groups_outside_the_retry_window_are_left_alone(env, uvh5_bytes):
    url, incoming, published, make = env
    bad, token = _registered_group(env, uvh5_bytes)
    _fail_as_convert_does(url, bad, token)
    bad.write_bytes(uvh5_bytes)
    _age(bad, 1.0)
    time.sleep(0.1)
    assert not make(retry_window_s=0.05).step().retried
    assert make().step().retried == [KEY]
