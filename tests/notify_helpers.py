"""A local webhook receiver for the notification tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "T0KEN-abc123"
"""The secret part of the receiver's URL (must never be logged)."""


class WebhookReceiver:
    """A local webhook receiver: an ``http.server`` in a thread that keeps every JSON body it was sent."""

    def __init__(self, *, delay_s: float = 0.0, status: int = 200):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if delay_s:
                    time.sleep(delay_s)
                hook.bodies.append(json.loads(body))
                hook.paths.append(self.path)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
