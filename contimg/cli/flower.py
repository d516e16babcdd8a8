"""``contimg flower``: the Flower monitor on the contimg app, with basic auth."""

from __future__ import annotations

import argparse

NAME = "flower"
HELP = "start Flower (web monitor) with basic auth from settings.monitoring"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None, help="port (default: settings.monitoring.flower_port)")
    parser.add_argument("--address", default=None, help="address (default: settings.monitoring.flower_address)")


def flower_argv(settings, *, port: int | None = None, address: str | None = None) -> list[str]:
    """The Celery command line that starts Flower for ``settings``."""
    m = settings.monitoring
    return ["flower", f"--port={port or m.flower_port}", f"--address={address or m.flower_address}",
            f"--basic-auth={m.flower_user}:{m.flower_password.get_secret_value()}",
            "--purge_offline_workers=300"]


def run(args: argparse.Namespace, settings) -> int:
    from workers.app import app

    app.start(argv=flower_argv(settings, port=args.port, address=args.address))
    return 0
