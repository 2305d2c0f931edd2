"""Train jobs signed by the control side and checked by the GPU node before anything loads.

Redis only delivers, and whoever can write to it can queue a train job naming a snapshot, a task
and license approvals of its choosing; the GPU node has no SQL store to check them against. So the
control side, which read them from SQL, signs each train job's arguments with an Ed25519 private
key (TUESDAY_JOB_SIGNING_KEY), and the GPU node, which holds only the public key
(TUESDAY_JOB_VERIFY_KEY), refuses a job that is unsigned, altered, queued under another job id than
the one it was signed for, or older than MAX_AGE_S. A public key cannot sign: a GPU node taken over
cannot queue work for anyone.

What is signed is the canonical JSON (sorted keys, no spaces, UTF-8) of the version, the job id,
the issue time and the arguments, whatever they hold (license notes with their pins included).

    python -m inference.job_signing      # a new key pair, as the two .env lines
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inference.errors import TuesdayError

VERSION = 1
DOMAIN = b"tuesday train job\n"  # a signature made for a train job means nothing anywhere else
MAX_AGE_S = 24 * 3600  # a job that waited longer for a GPU is refused; the CPU side queues it again
CLOCK_SKEW_S = 300  # how far ahead of this host's clock a signer's clock may be
KEY_FILE = "job-signing.key"  # one machine with no key set: generated once into the data folder


class JobSignatureError(TuesdayError):
    """A train job is unsigned, altered, meant for another job id or expired, or this host has no key to check it."""


def canonical(value) -> bytes:
    """The bytes a signature covers: JSON with sorted keys and no spaces; NaN and infinities refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def key_id(public: Ed25519PublicKey) -> str:
    """A short, public name of a key (the first 8 bytes of its sha256), so an error can say which key signed."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


def _message(job_id: str, issued_at: int, args: dict) -> bytes:
    return DOMAIN + canonical({"v": VERSION, "job_id": job_id, "issued_at": issued_at, "args": args})


def sign_job(args: dict, job_id: str, key: Ed25519PrivateKey, *, now: float | None = None) -> dict:
    """The signed envelope a train job is queued with: {"v", "job_id", "issued_at", "key", "args", "signature"}."""
    # Through JSON first: what is signed is exactly what Redis hands the GPU node (tuples become lists).
    args = json.loads(canonical(args))
    issued_at = int(time.time() if now is None else now)
    signature = key.sign(_message(job_id, issued_at, args))
    return {"v": VERSION, "job_id": job_id, "issued_at": issued_at, "key": key_id(key.public_key()), "args": args,
            "signature": _b64(signature)}


def verify_job(envelope, job_id: str, keys: list[Ed25519PublicKey], *, now: float | None = None,
               max_age_s: float = MAX_AGE_S) -> dict:
    """The arguments of a signed train job queued as `job_id`; JobSignatureError unless every check passes."""
    if not keys:
        raise JobSignatureError("this host has no key to check train jobs with: set TUESDAY_JOB_VERIFY_KEY")
    if not isinstance(envelope, dict) or not {"v", "job_id", "issued_at", "args", "signature"} <= set(envelope):
        raise JobSignatureError(f"train job {job_id} is not signed by the control side; not run")
    if envelope["v"] != VERSION:
        raise JobSignatureError(f"train job {job_id} is signed in an unknown format; not run")
    signed_for, issued_at, args = envelope["job_id"], envelope["issued_at"], envelope["args"]
    if not isinstance(issued_at, int) or not isinstance(args, dict) or not isinstance(signed_for, str):
        raise JobSignatureError(f"train job {job_id} has a malformed signature; not run")
    try:
        signature, message = _unb64(str(envelope["signature"])), _message(signed_for, issued_at, args)
    except (binascii.Error, ValueError) as exc:
        raise JobSignatureError(f"train job {job_id} has a malformed signature ({type(exc).__name__}); not run") from None
    for public in keys:
        try:
            public.verify(signature, message)
            break
        except InvalidSignature:
            continue
    else:
        trusted = ", ".join(key_id(k) for k in keys)
        # The envelope's key name is not signed: quoted only when it looks like one, never as free text.
        named = envelope.get("key") if re.fullmatch(r"[0-9a-f]{16}", str(envelope.get("key"))) else "unknown"
        raise JobSignatureError(f"train job {job_id}: its signature does not match its arguments under any trusted "
                                f"key (it names key {named}; this host trusts {trusted}); not run")
    # Checked after the signature, so these messages only ever describe what the control side really signed.
    if signed_for != job_id:
        raise JobSignatureError(f"train job {job_id} carries the signed arguments of job {signed_for}; not run")
    now = time.time() if now is None else now
    if issued_at > now + CLOCK_SKEW_S:
        raise JobSignatureError(f"train job {job_id} was signed {issued_at - now:.0f} s in the future; not run "
                                "(check the hosts' clocks)")
    if now - issued_at > max_age_s:
        raise JobSignatureError(f"train job {job_id} was signed {(now - issued_at) / 3600:.1f} h ago, longer than "
                                f"{max_age_s / 3600:.0f} h; not run (queue the retrain again)")
    return args


# -- keys ---------------------------------------------------------------------------------------------
def new_key_pair() -> tuple[str, str]:
    """(private, public) as the text TUESDAY_JOB_SIGNING_KEY and TUESDAY_JOB_VERIFY_KEY take (base64 of the raw 32 bytes)."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64(raw), _b64(public)


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """A private key from base64 of its 32 raw bytes, or a PEM (`openssl genpkey -algorithm ed25519`)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(_unb64(text))
    except (ValueError, TypeError, binascii.Error):
        raise JobSignatureError("TUESDAY_JOB_SIGNING_KEY is not an Ed25519 private key (base64 of 32 bytes, or PEM)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise JobSignatureError("TUESDAY_JOB_SIGNING_KEY is not an Ed25519 private key (base64 of 32 bytes, or PEM)")
    return key


def parse_public_keys(text: str) -> list[Ed25519PublicKey]:
    """Public keys from base64 of their 32 raw bytes (several, comma-separated, while a key is rotated), or a PEM."""
    text = text.strip()
    pieces = [text] if text.startswith("-----BEGIN") else [p for p in text.replace("\n", ",").split(",") if p.strip()]
    keys = []
    for piece in pieces:
        try:
            if piece.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(piece.encode("ascii"))
            else:
                key = Ed25519PublicKey.from_public_bytes(_unb64(piece))
        except (ValueError, TypeError, binascii.Error):
            raise JobSignatureError("TUESDAY_JOB_VERIFY_KEY is not a list of Ed25519 public keys "
                                    "(base64 of 32 bytes, comma-separated, or PEM)") from None
        if not isinstance(key, Ed25519PublicKey):
            raise JobSignatureError("TUESDAY_JOB_VERIFY_KEY is not an Ed25519 public key")
        keys.append(key)
    return keys


def _read_key_file(path: Path) -> str:
    # Another process of this machine may have created the file a moment ago; wait briefly for its text.
    deadline = time.monotonic() + 2.0
    while True:
        text = path.read_text(encoding="ascii").strip()
        if text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def signing_key(text: str, data_dir: Path) -> Ed25519PrivateKey:
    """The control side's key: TUESDAY_JOB_SIGNING_KEY, else data_dir's key file, created (0600) on first use."""
    if text.strip():
        return parse_private_key(text)
    path = Path(data_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    private, _ = new_key_pair()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_private_key(_read_key_file(path))
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(private + "\n")
    return parse_private_key(private)


def verify_keys(text: str, data_dir: Path) -> list[Ed25519PublicKey]:
    """The keys train jobs must be signed with: TUESDAY_JOB_VERIFY_KEY, else the public half of data_dir's key file.

    Never generates one: a host with neither refuses every train job (JobSignatureError says what to set).
    """
    if text.strip():
        return parse_public_keys(text)
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        return []
    return [parse_private_key(_read_key_file(path)).public_key()]


if __name__ == "__main__":
    private_text, public_text = new_key_pair()
    print("# control side only (the hosts that work the control queue): signs train jobs")
    print(f"TUESDAY_JOB_SIGNING_KEY={private_text}")
    print("# the GPU node (any host may have it): checks them")
    print(f"TUESDAY_JOB_VERIFY_KEY={public_text}")
