"""Logging configuration shared by the CLI, the workers and the tests."""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Libraries that are chatty at INFO level.
_QUIET = ("casacore", "pyuvdata", "matplotlib", "PIL", "urllib3", "numba", "watchdog", "alembic")


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    if not getattr(configure_logging, "_done", False):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        root.addHandler(handler)
        configure_logging._done = True  # type: ignore[attr-defined]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
