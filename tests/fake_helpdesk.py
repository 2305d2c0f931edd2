"""A local stand-in for Zendesk's Tickets API: records every request and keeps each ticket's tags and comments."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeZendesk:
    """Serve http://127.0.0.1:<port>/api/v2/tickets/... in a thread, checking basic auth like Zendesk."""

    def __init__(self, email: str, api_token: str):
        self.expected_auth = "Basic " + base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
        # Each request: {"method", "path", "headers", "body"}.
        self.requests: list[dict] = []
        self.tags: dict[str, list[str]] = {}
        self.comments: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeZendesk:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, method: str, path: str, headers: dict, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            if headers.get("Authorization") != self.expected_auth:
                return 401, {"error": "Couldn't authenticate you"}
            if m := re.fullmatch(r"/api/v2/tickets/(\d+)/tags\.json", path):
                tags = self.tags.setdefault(m.group(1), [])
                if method == "POST":  # Zendesk: POST sets the tags, replacing the old ones
                    tags.clear()
                tags.extend(t for t in body.get("tags", []) if t not in tags)  # PUT adds
                return 200, {"tags": list(tags)}
            if (m := re.fullmatch(r"/api/v2/tickets/(\d+)\.json", path)) and method == "PUT":
                comment = (body.get("ticket") or {}).get("comment")
                if comment:
                    self.comments.setdefault(m.group(1), []).append(comment)
                return 200, {"ticket": {"id": int(m.group(1)), "tags": self.tags.get(m.group(1), [])}}
            return 404, {"error": "InvalidEndpoint"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = fake._answer(self.command, self.path, dict(self.headers), json.loads(raw or b"{}"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler
