"""A local stand-in for the Slack Web API: records every call, answers like Slack does.

Tests use it as the fake at Slack's network boundary; `tuesday demo --online` uses it to show,
without a workspace, every message Tuesday would post.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit


class LocalSlack:
    """Serve http://127.0.0.1:<port>/api/<method> in a thread; `calls` holds what arrived."""

    def __init__(self, echo: Callable[[str, dict], None] | None = None):
        # Called with (method, body) for every call, e.g. to print what would be posted.
        self.echo = echo
        # Each call: {"method", "headers", "body"}, the body decoded from JSON or a form.
        self.calls: list[dict] = []
        # Slack error codes (e.g. "internal_error") the next calls answer with, {"ok": false, ...}.
        self.fail_next: list[str] = []
        # Seconds a method takes to answer, to show what waits on Slack and what does not.
        self.delays: dict[str, float] = {}
        # Messages posted so far (channel, ts, text, metadata), for conversations.history.
        self.messages: list[dict] = []
        # Files uploaded the files_upload_v2 way, by file id: filename, title, the bytes POSTed to
        # the upload URL, and the channel and comment files.completeUploadExternal shared them with.
        self.uploads: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def start(self) -> LocalSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls_to(self, method: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["method"] == method]

    def _answer(self, method: str, headers: dict, body: dict) -> dict:
        time.sleep(self.delays.get(method, 0))
        if self.echo is not None:
            self.echo(method, body)
        with self._lock:
            self.calls.append({"method": method, "headers": headers, "body": body})
            if self.fail_next:
                return {"ok": False, "error": self.fail_next.pop(0)}
            ts = f"1764489600.{len(self.calls):06d}"
        if method == "chat.postMessage":
            with self._lock:
                self.messages.append({"channel": body.get("channel"), "ts": ts, "text": body.get("text"),
                                      "metadata": _json(body.get("metadata"))})
            # Slack answers with the channel's id even when a name was given.
            return {"ok": True, "channel": body.get("channel"), "ts": ts,
                    "message": {"ts": ts, "text": body.get("text")}}
        if method == "conversations.history":
            with self._lock:  # newest first, as Slack lists them
                found = [m for m in reversed(self.messages) if m["channel"] == body.get("channel")]
            return {"ok": True, "channel": body.get("channel"),
                    "messages": [{k: v for k, v in m.items() if k != "channel" and v is not None} for m in found]}
        if method == "files.getUploadURLExternal":
            with self._lock:
                file_id = f"F{len(self.uploads) + 1:08d}"
                self.uploads[file_id] = {"filename": body.get("filename"), "length": int(body.get("length") or 0),
                                         "data": None, "title": None, "channel": None, "initial_comment": None}
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url.removesuffix('api/')}upload/{file_id}"}
        if method == "files.completeUploadExternal":
            shared = []
            with self._lock:
                for item in _json(body.get("files")) or []:
                    upload = self.uploads.get(item.get("id"))
                    if upload is None or upload["data"] is None:
                        return {"ok": False, "error": "file_not_found"}
                    upload.update(title=item.get("title"), channel=body.get("channel_id"),
                                  initial_comment=body.get("initial_comment"))
                    shared.append({"id": item["id"], "title": item.get("title"), "name": upload["filename"]})
            return {"ok": True, "files": shared}
        if method == "chat.update":
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts"), "text": body.get("text")}
        if method == "auth.test":
            # bolt asks once, on the first request, whose token it holds.
            return {"ok": True, "url": "https://tuesday-test.slack.com/", "team": "Tuesday Test", "user": "tuesday",
                    "team_id": "T0TEST", "user_id": "U0TUESDAY", "bot_id": "B0TUESDAY", "is_enterprise_install": False}
        return {"ok": True}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/upload/"):  # step 2 of files_upload_v2: the file's bytes
                    return self._upload(self.path.rsplit("/", 1)[-1], raw)
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw or b"{}")
                else:
                    body = dict(parse_qsl(raw.decode()))
                method = self.path.rsplit("/", 1)[-1]
                answer = json.dumps(fake._answer(method, dict(self.headers), body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):  # noqa: N802  (the Web API's read methods, e.g. conversations.history)
                url = urlsplit(self.path)
                answer = json.dumps(fake._answer(url.path.rsplit("/", 1)[-1], dict(self.headers),
                                                 dict(parse_qsl(url.query)))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _upload(self, file_id: str, raw: bytes) -> None:
                with fake._lock:
                    upload = fake.uploads.get(file_id)
                    if upload is not None:
                        upload["data"] = raw
                answer = f"OK - {len(raw)}".encode() if upload is not None else b"no such upload"
                self.send_response(200 if upload is not None else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler


def _json(value):
    """A metadata field as sent: JSON in a form post, an object in a JSON post."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value
