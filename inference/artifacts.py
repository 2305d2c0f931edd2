"""Where model versions and training snapshots live: a local folder, or any S3-compatible bucket.

Keys are '/'-separated names ("models/v3/version.json", "snapshots/1f2e….jsonl"), never host
paths: a key means the same thing on the web host, a CPU worker and the GPU node. Objects are
written whole (a temporary file renamed into place, or one S3 PUT), so a reader never sees half
of one; `put_new` refuses to overwrite, which is how two writers cannot both claim a version name.

    store = open_artifacts("s3://tuesday/prod", endpoint_url="http://minio:9000")
    store.put_file("snapshots/x.jsonl", path)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from inference.errors import TuesdayError

CHUNK = 1 << 20


class ArtifactError(TuesdayError):
    """An artifact is missing, corrupt, or the store cannot be reached."""


class ArtifactExists(ArtifactError):
    """put_new found the key already written."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArtifactError(f"not a valid artifact key: {key!r}")
    return key


class ArtifactStore(Protocol):
    """The one interface both backends keep."""

    url: str

    def put_file(self, key: str, path: Path) -> None: ...
    def put_new(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def download(self, key: str, dest: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def check(self, *, write: bool) -> None: ...
    def replace(self, key: str, data: bytes) -> None: ...  # overwrite, leaving no older copy (forget)
    def delete(self, key: str) -> None: ...  # remove, with every older copy (forget)


def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64] or "host"


def utc_stamp() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fetch_verified(store: ArtifactStore, key: str, dest: Path, sha256: str) -> Path:
    """Download key to dest only if its sha256 matches; a partial or corrupt copy is never left at dest."""
    dest = Path(dest)
    if dest.exists() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        store.download(key, Path(tmp))
        got = sha256_file(tmp)
        if got != sha256:
            raise ArtifactError(f"{key}: sha256 {got[:12]}… does not match the manifest's {sha256[:12]}…; not used")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


class LocalArtifacts:
    """A folder on this machine (the default for one machine and the demo)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def check(self, *, write: bool) -> None:
        """Raise ArtifactError unless the folder can be read (and, write=True, written) by this host."""
        try:
            if write:
                self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"artifact store {self.url}: cannot create the folder ({exc.strerror})") from None
        if self.root.exists() and not os.access(self.root, os.R_OK | (os.W_OK if write else 0)):
            raise ArtifactError(f"artifact store {self.url}: this host cannot {'write' if write else 'read'} it")

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_new(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)  # fails if the key exists: the first writer wins
        except FileExistsError:
            raise ArtifactExists(f"{key} exists already") from None
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"no artifact {key} in {self.url}") from None

    def download(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise ArtifactError(f"no artifact {key} in {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def replace(self, key: str, data: bytes) -> None:
        self._path(key).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._path(key).parent, prefix=".") as tmp:
            (Path(tmp) / "data").write_bytes(data)
            self.put_file(key, Path(tmp) / "data")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))


# Every wait on the bucket is bounded (botocore's defaults are 60 s each, and more attempts): a host
# that cannot reach it says so within seconds. Model files are large, but a read timeout bounds the
# wait between two packets, not the whole download.
S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S, S3_ATTEMPTS = 3, 20, 3


class S3Artifacts:
    """A bucket (and key prefix) on any S3-compatible store, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # Credentials left empty fall back to boto3's own chain (instance role, ~/.aws, AWS_* variables).
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            config=Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_READ_TIMEOUT_S,
                          retries={"max_attempts": S3_ATTEMPTS, "mode": "standard"}, s3={"addressing_style": "path"}))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_check_key(key)}" if self.prefix else _check_key(key)

    def check(self, *, write: bool) -> None:
        """Raise one clear ArtifactError unless the bucket exists and this host can read (write=True: and write)
        it; a host checks at start instead of failing on its first job."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            if write:  # one small object, the same key at every start: nothing piles up, no delete needed
                self.client.put_object(Bucket=self.bucket, Key=self._key(f"checks/{_host()}"),
                                       Body=utc_stamp().encode())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ArtifactError(
                    f"artifact store {self.url}: the bucket {self.bucket!r} does not exist. Create it (e.g. "
                    f"`aws s3 mb s3://{self.bucket}` with --endpoint-url for MinIO or another S3 store) or set "
                    "TUESDAY_ARTIFACTS_URL to one that exists") from None
            what = "write to" if write and code in ("403", "AccessDenied") else "reach"
            raise ArtifactError(f"artifact store {self.url}: this host cannot {what} the bucket {self.bucket!r} "
                                f"({code}); check TUESDAY_S3_ACCESS_KEY_ID and its policy") from None
        except BotoCoreError as exc:
            raise ArtifactError(f"artifact store {self.url}: unreachable ({type(exc).__name__}); check "
                                "TUESDAY_S3_ENDPOINT_URL") from None

    def _error(self, key: str, exc: Exception) -> ArtifactError:
        return ArtifactError(f"{self.url}/{key}: {exc}")

    def put_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from exc

    def put_new(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # A conditional write: S3 (and MinIO, moto) answer 412 when the key exists.
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise ArtifactExists(f"{key} exists already") from None
            raise self._error(key, exc) from exc
        except BotoCoreError as exc:
            raise self._error(key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from exc

    def download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(key, exc) from exc
        except BotoCoreError as exc:
            raise self._error(key, exc) from exc

    def _drop_versions(self, key: str, *, keep_latest: bool) -> None:
        """Delete a key's noncurrent versions (and delete markers) in a versioned bucket; nothing otherwise."""
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(key)):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if item["Key"] != self._key(key) or (keep_latest and item.get("IsLatest")) \
                        or item.get("VersionId") in (None, "null"):
                    continue
                self.client.delete_object(Bucket=self.bucket, Key=item["Key"], VersionId=item["VersionId"])

    def replace(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
            self._drop_versions(key, keep_latest=True)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            self._drop_versions(key, keep_latest=False)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(key, exc) from exc

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._error(prefix, exc) from exc
        return sorted(keys)


def open_artifacts(url: str, *, default_root: Path | None = None, endpoint_url: str | None = None,
                   region: str | None = None, access_key_id: str | None = None,
                   secret_access_key: str | None = None) -> ArtifactStore:
    """The store a URL names: s3://bucket/prefix, file:///folder or a plain folder; empty means default_root."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ArtifactError(f"no bucket in {url!r} (expected s3://bucket/prefix)")
        return S3Artifacts(bucket, prefix, endpoint_url=endpoint_url, region=region, access_key_id=access_key_id,
                           secret_access_key=secret_access_key)
    if url.startswith("file://"):
        return LocalArtifacts(url[len("file://"):])
    if "://" in url:
        raise ArtifactError(f"unsupported artifacts URL {url!r}: use s3://bucket/prefix or a folder")
    if not url:
        if default_root is None:
            raise ArtifactError("no artifacts URL and no default folder")
        return LocalArtifacts(default_root)
    return LocalArtifacts(url)
