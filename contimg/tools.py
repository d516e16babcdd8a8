"""One way to run the external tools: WSClean and CASA tasks (in this process or in a child interpreter).

Every run is logged with its full command line (or task and arguments), bounded by a timeout
where it runs in a child process, and its failure is classified, because what the cluster does
next depends on the class, not on the tool:

=====================  ==========================================================  ===================
class                  recognised by                                                what happens
=====================  ==========================================================  ===================
killed                 the process died of a signal (the OOM killer, an operator)  :class:`ToolKilled`, transient: retried
out of space           "No space left on device", ``ENOSPC``, "disk quota"          :class:`ToolOutOfSpace`, transient: retried
table lock             casacore's "table is locked", "lock file", "cannot be       :class:`ToolTableLocked`, transient: retried
                       locked"
timed out              the run outlived its timeout                                 :class:`ToolTimedOut`, permanent: the step's
                                                                                    budget is spent (raise the timeout)
failed                 anything else (bad input, an error of the tool)             :class:`~contimg.errors.ExternalToolError`,
                                                                                    permanent: the group fails with the reason
=====================  ==========================================================  ===================

"Not ready yet" is its own category, :class:`contimg.errors.DeferredError` (no calibration set
is valid for a group *yet*): neither a failure of the tool nor of the input, it is waited for.

Heartbeats while a tool runs come from the worker's presence thread (``workers/presence.py``),
which beats every run its worker holds, whatever the tool.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contimg.errors import ExternalToolError, TransientError

__all__ = ["ToolKilled", "ToolOutOfSpace", "ToolRun", "ToolTableLocked", "ToolTimedOut", "classify",
           "run_casa_task", "run_program"]

log = logging.getLogger(__name__)


class ToolKilled(TransientError):
    """The tool's process was killed by a signal (the OOM killer, an operator): retry."""


class ToolOutOfSpace(TransientError):
    """The tool ran out of disk space (scratch being cleaned, another group's products): retry."""


class ToolTableLocked(TransientError):
    """A casacore table the tool needs is locked by another process: retry."""


class ToolTimedOut(ExternalToolError):
    """The tool did not finish within its timeout: permanent (the step's time budget is spent)."""


_OUT_OF_SPACE = re.compile(r"no space left on device|disk quota exceeded|\bENOSPC\b", re.IGNORECASE)
_TABLE_LOCK = re.compile(r"table .*is locked|lock file|cannot be locked|locked by (another )?process|"
                         r"could not acquire .*lock", re.IGNORECASE)


def classify(message: str, *, returncode: int | None = None) -> type[Exception]:
    """The exception class for a failed run with this ``message`` (error text or log tail) and exit status.

    A negative ``returncode`` (killed by a signal; 128 + signal from a shell) is :class:`ToolKilled`.
    """
    if returncode is not None and (returncode < 0 or returncode in (128 + signal.SIGKILL, 128 + signal.SIGTERM)):
        return ToolKilled
    if _OUT_OF_SPACE.search(message):
        return ToolOutOfSpace
    if _TABLE_LOCK.search(message):
        return ToolTableLocked
    return ExternalToolError


@dataclass(frozen=True)
class ToolRun:
    """A finished run of an external program."""

    command: tuple[str, ...]
    wall_s: float
    cpu_s: float
    """CPU time (user + system) of the program and its children."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file, joined with " | " ("" if unreadable)."""
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def run_program(command: Sequence[str], *, subject: str | os.PathLike, timeout_s: float, log_path: str | os.PathLike,
                cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> ToolRun:
    """Run an external program to completion, its output to ``log_path``; raise a classified error on failure.

    Parameters
    ----------
    command
        The program and its arguments.
    subject
        What the run works on (the MS), named in every message.
    timeout_s
        Kill the program (and its process group) after this many seconds.
    log_path
        The program's stdout and stderr go here; its last lines are quoted in a failure's message.
    cwd, env
        Working directory and environment of the process.

    Returns
    -------
    ToolRun
        The command line, wall and CPU seconds.

    Raises
    ------
    ToolKilled, ToolOutOfSpace, ToolTableLocked
        Transient failures (see the module docstring).
    ToolTimedOut
        The program outlived ``timeout_s`` (it was killed).
    ExternalToolError
        The program is missing or failed otherwise; the message names ``subject``, the exit status and
        the last lines of the log.
    """
    cmd = [str(c) for c in command]
    name = Path(cmd[0]).name
    log.info("running: %s", shlex.join(cmd))
    log_path = Path(log_path)
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    with open(log_path, "w") as out:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                    start_new_session=True)
        except OSError as exc:
            kind: type[Exception] = ToolOutOfSpace if exc.errno == errno.ENOSPC else ExternalToolError
            raise kind(f"{subject}: cannot run {cmd[0]}: {exc}") from exc
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise ToolTimedOut(f"{subject}: {name} did not finish in {timeout_s:g} s; killed (log {log_path})") from exc
        except BaseException:  # interrupted (the task's hard time limit, Ctrl-C): never leave it running
            _kill_group(proc)
            raise
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if returncode != 0:
        last = tail(log_path)
        kind = classify(last, returncode=returncode)
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"failed with exit status {returncode}"
        raise kind(f"{subject}: {name} {how} (log {log_path}): {last}")
    log.info("%s finished in %.1f s wall, %.1f s CPU (%s)", name, wall, cpu, subject)
    return ToolRun(tuple(cmd), wall, cpu)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_casa_task(name: str, subject: str | os.PathLike, *, task: Callable[..., Any] | None = None,
                  **kwargs: Any) -> Any:
    """Run the casatasks task ``name`` in this process; CASA's errors become classified contimg errors.

    Parameters
    ----------
    name
        The casatasks task (``bandpass``, ``gaincal``, ``applycal``, ``tclean`` ...).
    subject
        What the task works on (the MS), named in every message.
    task
        The callable to run instead of ``casatasks.<name>`` (tests, or a task already imported).
    kwargs
        The task's arguments, logged.

    Returns
    -------
    Any
        What the task returns.

    Raises
    ------
    ToolOutOfSpace, ToolTableLocked
        Transient failures recognised in CASA's message.
    ExternalToolError
        The task raised, or returned False ("see the CASA log").
    """
    if task is None:
        from contimg import casa_env

        task = getattr(casa_env.casatasks(), name)
    log.debug("casatasks.%s(%s)", name, ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
    try:
        result = task(**kwargs)
    except Exception as exc:  # noqa: BLE001 - casatasks raises bare Exception, RuntimeError, AssertionError ...
        message = str(exc)
        raise classify(message)(f"{subject}: casatasks.{name} failed: {message}") from exc
    if result is False:
        raise ExternalToolError(f"{subject}: casatasks.{name} reported failure (see the CASA log)")
    return result
