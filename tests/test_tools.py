"""The tool runner: logged command lines, timeouts that kill the whole process group, classified failures."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest

from contimg.errors import DeferredError, ExternalToolError, PermanentError, TransientError
from contimg.tools import (ToolKilled, ToolOutOfSpace, ToolTableLocked, ToolTimedOut, classify, run_casa_task,
                           run_program)


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_a_successful_run_is_logged_and_timed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="contimg.tools")
    run = run_program(_sh("echo hello; echo world >&2"), subject="x.ms", timeout_s=30, log_path=tmp_path / "log")
    assert (tmp_path / "log").read_text().split() == ["hello", "world"]
    assert run.wall_s > 0 and run.command[0] == "/bin/sh"
    assert "running: /bin/sh -c 'echo hello; echo world >&2'" in caplog.text


@pytest.mark.parametrize("script, kind, transient", [
    ("echo 'bad input: no such column' >&2; exit 3", ExternalToolError, False),
    ("echo 'write failed: No space left on device' >&2; exit 1", ToolOutOfSpace, True),
    ("echo 'Table /data/x.ms is locked by process 4242' >&2; exit 1", ToolTableLocked, True),
    ("kill -9 $$", ToolKilled, True),
])
def test_failures_are_classified(tmp_path, script, kind, transient):
    with pytest.raises(kind) as info:
        run_program(_sh(script), subject="/data/x.ms", timeout_s=30, log_path=tmp_path / "log")
    exc = info.value
    assert type(exc) is kind
    assert isinstance(exc, TransientError) is transient and isinstance(exc, PermanentError) is not transient
    assert str(exc).startswith("/data/x.ms: sh ") and str(tmp_path / "log") in str(exc)


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    marker = f"contimg-tools-test-{os.getpid()}"
    t0 = time.monotonic()
    with pytest.raises(ToolTimedOut, match=r"x.ms: sh did not finish in 1 s; killed") as info:
        run_program(_sh(f"sleep 300 {marker} & sleep 300"), subject="x.ms", timeout_s=1, log_path=tmp_path / "log")
    assert time.monotonic() - t0 < 10
    assert isinstance(info.value, PermanentError)
    time.sleep(0.2)
    # the backgrounded grandchild went with the shell ("sleep 300 <marker>" would be an orphan otherwise)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_a_missing_program_names_it(tmp_path):
    with pytest.raises(ExternalToolError, match="x.ms: cannot run /nonexistent/wsclean"):
        run_program(["/nonexistent/wsclean"], subject="x.ms", timeout_s=5, log_path=tmp_path / "log")


def test_casa_task_failures_are_classified(tmp_path):
    # a real CASA task on a Measurement Set that does not exist: permanent, naming the subject and the task
    with pytest.raises(ExternalToolError, match=r"missing.ms: casatasks.listobs failed") as info:
        run_casa_task("listobs", tmp_path / "missing.ms", vis=str(tmp_path / "missing.ms"))
    assert not isinstance(info.value, TransientError)

    def locked(**_):
        raise RuntimeError("Table /data/x.ms cannot be locked: it is locked by process 99")

    with pytest.raises(ToolTableLocked, match="x.ms: casatasks.applycal failed: Table /data/x.ms cannot be locked"):
        run_casa_task("applycal", "/data/x.ms", task=locked, vis="/data/x.ms")
    with pytest.raises(ExternalToolError, match="reported failure"):
        run_casa_task("flagdata", "x.ms", task=lambda **_: False)


def test_not_ready_yet_is_its_own_category():
    from contimg.calibration import NoValidCalibration

    assert issubclass(NoValidCalibration, DeferredError)
    assert not issubclass(NoValidCalibration, (PermanentError, TransientError))
    assert classify("", returncode=-9) is ToolKilled and classify("something else") is ExternalToolError
