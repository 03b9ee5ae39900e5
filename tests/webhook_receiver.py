"""A local HTTP endpoint standing in for Slack / a team's webhook: it keeps every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"

    def wait_for(self, text: str, seconds: float = 90) -> dict:
        """The first message whose text contains ``text``, polled until a deadline (the Prefect server's trigger and
        action services run asynchronously)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [m for m in list(self.received) if text in m.get("text", "")]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no notification containing {text!r} within {seconds} s; received: {self.received}")

    def close(self) -> None:
        self._server.shutdown()
