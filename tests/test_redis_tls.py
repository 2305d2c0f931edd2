"""Redis between hosts over TLS with a password (rediss://): a real redis-server started here with --requirepass and
--tls-port, its CA, server and client certificates made here; a job goes through, a wrong setting fails clearly."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis import Redis
from redis.exceptions import RedisError

from bot.queues import QueueConfigError, Queues, QueueUnreachable, SchedulerThread
from bot.cli.main import main
from bot.settings import Settings
from bot.worker.jobs import worker

PASSWORD = "s3cret-Redis-pw"


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key=None, cert=None) -> Path:
    if key is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    else:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, usage=None, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a second, unrelated CA."""
    out = tmp_path_factory.mktemp("tls")
    ca_key = _key()
    ca = _cert("tuesday test CA", ca_key, None, None, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("redis", server_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   sans=(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")))
    client = _cert("tuesday worker", client_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_key = _key()
    return {"ca": _write(out / "ca.crt", cert=ca), "server_cert": _write(out / "redis.crt", cert=server),
            "server_key": _write(out / "redis.key", key=server_key), "client_cert": _write(out / "client.crt", cert=client),
            "client_key": _write(out / "client.key", key=client_key),
            "other_ca": _write(out / "other-ca.crt", cert=_cert("someone else", other_key, None, None, ca=True))}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tls_redis(certs, tmp_path_factory):
    """redis-server speaking only TLS (no plain port), asking for a password and a client certificate."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port, folder = _free_port(), tmp_path_factory.mktemp("redis-tls")
    log = open(folder / "redis.log", "w")
    proc = subprocess.Popen([exe, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(certs["server_cert"]), "--tls-key-file", str(certs["server_key"]),
                             "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "yes",
                             "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=log, stderr=subprocess.STDOUT)
    client = Redis(host="127.0.0.1", port=port, password=PASSWORD, ssl=True, ssl_ca_certs=str(certs["ca"]),
                   ssl_certfile=str(certs["client_cert"]), ssl_keyfile=str(certs["client_key"]),
                   socket_connect_timeout=1, socket_timeout=2)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except RedisError:
            if proc.poll() is not None:
                log.close()
                text = (folder / "redis.log").read_text()
                pytest.skip(f"this redis-server cannot serve TLS: {text[-300:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server with TLS did not answer within 20 s")
            time.sleep(0.1)
    client.close()
    yield port
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def tls_env(monkeypatch, certs, port: int, *, password: str | None = PASSWORD, scheme: str = "rediss",
            ca: str = "ca", client: bool = True) -> Settings:
    auth = f":{password}@" if password is not None else ""
    monkeypatch.setenv("TUESDAY_REDIS_URL", f"{scheme}://{auth}127.0.0.1:{port}/0")
    for name, value in (("CA_FILE", certs[ca] if ca else None), ("CERT_FILE", certs["client_cert"] if client else None),
                        ("KEY_FILE", certs["client_key"] if client else None)):
        if value is None:
            monkeypatch.delenv(f"TUESDAY_REDIS_{name}", raising=False)
        else:
            monkeypatch.setenv(f"TUESDAY_REDIS_{name}", str(value))
    return Settings()


def test_a_job_goes_through_over_tls_with_the_password(tls_redis, certs, monkeypatch, stand_in_jobs):
    queues = Queues.from_settings(tls_env(monkeypatch, certs, tls_redis))
    try:
        queues.check()
        assert queues.tls and queues.address == f"rediss://127.0.0.1:{tls_redis}/0"  # no password in what is logged
        queues.connection.flushdb()
        job, enqueued = queues.enqueue("control", "json.loads", '{"over": "tls"}', job_id="tls-job")
        assert enqueued
        worker(queues, ["control"]).work(burst=True)
        assert queues.fetch("tls-job").return_value() == {"over": "tls"}
        # rq's scheduler builds a client of its own from the connection's class and keyword arguments: TLS too.
        scheduler = SchedulerThread(queues, ["control"])
        assert scheduler.scheduler.connection.ping()
        scheduler.start().stop()
    finally:
        queues.close()


def _refused(monkeypatch, certs, port, **kw) -> str:
    queues = Queues.from_settings(tls_env(monkeypatch, certs, port, **kw))
    try:
        with pytest.raises(QueueUnreachable) as raised:
            queues.check()
    finally:
        queues.close()
    said = str(raised.value)
    assert PASSWORD not in said and "wrong-password" not in said
    return said


def test_a_wrong_setting_fails_with_a_clear_error(tls_redis, certs, monkeypatch):
    port = tls_redis
    assert "refused the password in TUESDAY_REDIS_URL" in _refused(monkeypatch, certs, port, password="wrong-password")
    assert "wants a password" in _refused(monkeypatch, certs, port, password=None)
    plain = _refused(monkeypatch, certs, port, scheme="redis", ca=None, client=False)
    assert f"Redis at redis://127.0.0.1:{port}/0 is unreachable or closed the connection" in plain
    assert "use a rediss:// URL" in plain
    untrusted = _refused(monkeypatch, certs, port, ca="other_ca")  # a server certificate no CA of ours signed
    assert "the TLS handshake failed" in untrusted and "TUESDAY_REDIS_CA_FILE" in untrusted
    _refused(monkeypatch, certs, port, client=False)  # the server asks for a client certificate
    with pytest.raises(QueueConfigError, match="must then start with rediss://"):
        Queues.from_settings(tls_env(monkeypatch, certs, port, scheme="redis"))  # TLS files beside a plain URL
    tls_env(monkeypatch, certs, port)
    monkeypatch.setenv("TUESDAY_REDIS_CA_FILE", str(Path(certs["ca"]).parent / "missing.crt"))
    with pytest.raises(QueueConfigError, match="TUESDAY_REDIS_CA_FILE: no file"):
        Queues.from_settings(Settings())


def test_a_worker_with_a_refused_password_stops_and_says_why(tls_redis, certs, monkeypatch):
    """`tuesday worker` does not retry a setting: a wrong password ends it with one clear line and exit 1."""
    tls_env(monkeypatch, certs, tls_redis, password="wrong-password")
    result = CliRunner().invoke(main, ["worker", "--queue", "writeback", "--burst"])
    assert result.exit_code == 1, result.output
    assert f"Redis at rediss://127.0.0.1:{tls_redis}/0 refused the password in TUESDAY_REDIS_URL" in result.output
    assert "wrong-password" not in result.output
    tls_env(monkeypatch, certs, tls_redis)
    result = CliRunner().invoke(main, ["worker", "--queue", "writeback", "--burst"], catch_exceptions=False)
    assert result.exit_code == 0, result.output  # the right one works
