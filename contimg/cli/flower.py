"""``contimg flower``: the Flower monitor on the contimg app, with basic auth.

Flower's basic auth (``--basic-auth``) guards its pages and ``/api/*`` but, as
shipped, not ``/metrics`` (Prometheus) nor ``/healthcheck``. Before Flower starts,
:func:`protect_metrics` puts ``/metrics`` behind the same authentication: worker
names, task names and counts are not for anonymous readers. ``/healthcheck`` stays
open on purpose: it answers ``OK`` and reveals nothing, and load balancers and
container health checks need it without credentials.

Flower starts in this process (``app.start``), so the password never appears on a
command line (``ps``). With the built-in default password it logs a warning.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "flower"
HELP = "start Flower (web monitor) with basic auth from settings.monitoring"

PASSWORD_VAR = "CONTIMG_MONITORING__FLOWER_PASSWORD"
"""The environment variable that sets Flower's basic-auth password."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None, help="port (default: settings.monitoring.flower_port)")
    parser.add_argument("--address", default=None, help="address (default: settings.monitoring.flower_address)")


def flower_argv(settings, *, port: int | None = None, address: str | None = None) -> list[str]:
    """The Celery command line that starts Flower for ``settings``.

    Parameters
    ----------
    settings
        The pipeline settings; ``settings.monitoring`` gives the defaults and the basic-auth user and password.
    port
        TCP port to listen on (default, also for ``0``: ``settings.monitoring.flower_port``).
    address
        Address to bind (default, also for ``""``: ``settings.monitoring.flower_address``).

    Returns
    -------
    list of str
        Arguments for ``app.start(argv=...)``: ``flower``, ``--port``, ``--address``, ``--basic-auth=user:password``
        (the password in clear) and ``--purge_offline_workers=300`` (seconds).
    """
    m = settings.monitoring
    return ["flower", f"--port={port or m.flower_port}", f"--address={address or m.flower_address}",
            f"--basic-auth={m.flower_user}:{m.flower_password.get_secret_value()}",
            "--purge_offline_workers=300"]


def protect_metrics() -> type:
    """Serve Flower's ``/metrics`` with a handler that requires Flower's authentication.

    Replaces the ``/metrics`` entry of Flower's URL table (``flower.urls.handlers``,
    read when the Flower application is built) with a subclass of its
    ``Metrics`` handler whose ``get`` is wrapped in :func:`tornado.web.authenticated`,
    as Flower's own pages are: with ``--basic-auth`` a request without valid
    credentials gets ``401``. Idempotent; call it before Flower starts.

    Returns
    -------
    type
        The handler class now serving ``/metrics``.
    """
    from flower import urls
    from flower.views import monitor
    from tornado.routing import URLSpec
    from tornado.web import authenticated

    class AuthenticatedMetrics(monitor.Metrics):
        """Flower's Prometheus metrics, behind Flower's authentication."""

        contimg_authenticated = True

        @authenticated
        async def get(self) -> None:
            await super().get()

    for i, entry in enumerate(urls.handlers):
        if isinstance(entry, URLSpec):
            pattern, handler = entry.regex.pattern, entry.handler_class
        else:
            pattern, handler = entry[0], entry[1]
        if pattern.rstrip("$") != "/metrics":
            continue
        if getattr(handler, "contimg_authenticated", False):
            return handler
        urls.handlers[i] = (URLSpec(pattern, AuthenticatedMetrics, entry.kwargs, entry.name)
                            if isinstance(entry, URLSpec) else (pattern, AuthenticatedMetrics, *entry[2:]))
        return AuthenticatedMetrics
    raise RuntimeError("Flower serves no /metrics handler to protect (has Flower changed?)")


def uses_default_password(settings) -> bool:
    """True if Flower's password is the built-in default (public, in the source)."""
    from contimg.secrets import default_flower_password

    return settings.monitoring.flower_password.get_secret_value() == default_flower_password()


def run(args: argparse.Namespace, settings) -> int:
    if uses_default_password(settings):
        log.warning("Flower's password is the built-in default: anyone who knows contimg can log in; "
                    "set %s to a secret (e.g. `openssl rand -hex 16`)", PASSWORD_VAR)
    protect_metrics()
    from workers.app import app

    app.start(argv=flower_argv(settings, port=args.port, address=args.address))
    return 0
