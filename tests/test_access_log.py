"""Secrets out of the access log: a signed link's signature is never written by `tuesday serve` (issue 20, item 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.demo.online import _free_port
from bot.links import signature
from bot.web.access_log import redact

LINK_SECRET = "access-log-test-secret"


def test_redact_leaves_everything_but_the_secret_values():
    assert redact("/review/v3.csv?expires=1767225600&sig=9f2c1e") == "/review/v3.csv?expires=1767225600&sig=[redacted]"
    assert redact("/dashboard?days=7&sig=abc&task=topic") == "/dashboard?days=7&sig=[redacted]&task=topic"
    assert redact("/livez") == "/livez" and redact("/x?signal=1") == "/x?signal=1"


def test_redact_is_linear_in_the_path():
    for shape in ("?sig=" * 20_000, "&sig=" + "a" * 100_000, "?x=1" * 25_000):
        started = time.perf_counter()
        redact(shape[:100_000])
        assert time.perf_counter() - started < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_never_writes_a_signature_to_its_access_log(workers, redis_url, tmp_path):
    port, log = _free_port(), tmp_path / "serve.log"
    env = {**os.environ, "TUESDAY_REDIS_URL": redis_url, "TUESDAY_DATA_DIR": str(tmp_path / "data"),
           "TUESDAY_LINK_SECRET": LINK_SECRET, "TUESDAY_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    exe = str(Path(sys.executable).parent / "tuesday")
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    expires = int(time.time()) + 3600
    sig = signature(LINK_SECRET, "review", "/review/v1", expires, 1)  # a fresh store's epoch
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"tuesday serve did not answer /livez:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        answer = httpx.get(f"http://127.0.0.1:{port}/review/v1?expires={expires}&epoch=1&sig={sig}", timeout=10)
        assert answer.status_code in (403, 404)  # the page is not there; the link's secret is what matters
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    written = log.read_text()
    assert f"/review/v1?expires={expires}&epoch=1&sig=[redacted]" in written  # the request is logged ...
    assert sig not in written  # ... without its signature
