"""``contimg web``: serve the operator's window (JSON API and pages) with uvicorn."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "web"
HELP = "serve the web window on groups, images, QA, light curves and candidates (settings.web)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default: settings.web.host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: settings.web.port)")


def run(args: argparse.Namespace, settings) -> int:
    import uvicorn

    from contimg.web.app import create_app

    web = settings.web
    host, port = args.host or web.host, args.port or web.port
    if web.operator_password is None:
        log.warning("web: no operator login (CONTIMG_WEB__OPERATOR_PASSWORD): reprocessing and candidate review "
                    "through the web are disabled")
    if host not in ("127.0.0.1", "localhost", "::1") and web.public_read:
        log.warning("web: serving on %s with public_read: anyone who reaches the port may read the pages", host)
    app = create_app(settings)
    log.info("web: serving http://%s:%d/ (API docs at /docs)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=True)
    return 0
