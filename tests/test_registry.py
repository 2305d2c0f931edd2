"""Versions in the artifact store (a folder, and S3 over HTTP), the production pointer in SQL."""

import json
import threading

import boto3
import pytest

from bot.store.base import make_session_factory
from bot.store.production import PointerMoved, Production, switch
from inference.artifacts import ArtifactError, ArtifactExists, LocalArtifacts, S3Artifacts, open_artifacts
from inference.errors import RegistryError
from inference.registry import Registry
from tests.conftest import S3_KEYS


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """An empty artifact store of each backend."""
    if request.param == "local":
        return LocalArtifacts(tmp_path / "artifacts")
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    return S3Artifacts(bucket, "prefix/here", endpoint_url=endpoint, access_key_id="testing",
                       secret_access_key="testing", region="us-east-1")


def _version(registry, metrics=None, payload=b"weights", task="t"):
    staging = registry.stage()
    (staging / "model-q8_0.gguf").write_bytes(payload)
    (staging / "task.yaml").write_text("name: t\n")
    (staging / "adapter").mkdir()
    (staging / "adapter" / "adapter_config.json").write_text("{}")
    return registry.commit(staging, {"files": {"q8_0": "model-q8_0.gguf", "adapter": "adapter"}, "serve": "q8_0",
                                     "metrics": metrics or {}, "task": task})


def test_artifact_store_basics(store, tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    store.put_file("a/b/c.bin", tmp_path / "f")
    store.put_new("a/new.json", b"{}")
    with pytest.raises(ArtifactExists):
        store.put_new("a/new.json", b"{}")  # create-only: the first writer wins
    assert store.get_bytes("a/b/c.bin") == b"abc" and store.exists("a/new.json") and not store.exists("a/none")
    assert store.list("a") == ["a/b/c.bin", "a/new.json"] and store.list("b") == []
    with pytest.raises(ArtifactError):
        store.get_bytes("a/none")
    with pytest.raises(ArtifactError, match="not a valid artifact key"):
        store.put_new("../escape", b"x")


def test_versions_are_numbered_with_checksums_and_fetched_verified(store, tmp_path):
    builder = Registry(store, tmp_path / "gpu-cache")
    v1, v2 = _version(builder), _version(builder, payload=b"other weights")
    assert (v1.name, v2.name) == ("v1", "v2")
    assert set(v1.manifest["artifacts"]) == {"model-q8_0.gguf", "task.yaml", "adapter/adapter_config.json"}
    assert all(len(a["sha256"]) == 64 for a in v1.manifest["artifacts"].values())

    # another host: nothing shared but the store
    reader = Registry(store, tmp_path / "cpu-cache")
    assert reader.names() == ["v1", "v2"]
    assert not (reader.get("v1").path / "model-q8_0.gguf").exists()  # a manifest read downloads nothing
    local = reader.fetch("v2")
    assert local.gguf().read_bytes() == b"other weights" and (local.path / "task.yaml").exists()
    assert not (local.path / "adapter").exists()  # serving needs no adapter


def test_a_corrupt_download_is_refused_and_never_left_in_the_cache(tmp_path):
    store = LocalArtifacts(tmp_path / "artifacts")
    _version(Registry(store, tmp_path / "gpu"))
    (tmp_path / "artifacts" / "models" / "v1" / "model-q8_0.gguf").write_bytes(b"tampered")
    reader = Registry(store, tmp_path / "cpu")
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        reader.fetch("v1")
    assert not (tmp_path / "cpu" / "v1" / "model-q8_0.gguf").exists()
    assert not [p for p in (tmp_path / "cpu" / "v1").iterdir() if p.name.startswith(".")]  # no partial file left


def test_a_corrupt_cached_file_is_downloaded_again(tmp_path):
    store = LocalArtifacts(tmp_path / "artifacts")
    _version(Registry(store, tmp_path / "gpu"))
    reader = Registry(store, tmp_path / "cpu")
    path = reader.fetch("v1").gguf()
    path.write_bytes(b"bit rot")
    assert reader.fetch("v1").gguf().read_bytes() == b"weights"


def test_incomplete_versions_are_invisible_and_their_names_skipped(store, tmp_path):
    store.put_new("models/v5/claim.json", b"{}")  # a writer that died before its manifest
    registry = Registry(store, tmp_path / "cache")
    assert registry.names() == []
    with pytest.raises(RegistryError, match="tuesday train"):
        registry.newest()
    assert _version(registry).name == "v6"


def test_two_writers_never_share_a_version_name(tmp_path):
    store = LocalArtifacts(tmp_path / "artifacts")
    names = []
    threads = [threading.Thread(target=lambda i=i: names.append(_version(Registry(store, tmp_path / f"c{i}")).name))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == ["v1", "v2", "v3", "v4"]


def test_open_artifacts_reads_urls(tmp_path):
    assert isinstance(open_artifacts("", default_root=tmp_path), LocalArtifacts)
    assert open_artifacts(f"file://{tmp_path}/x").root == (tmp_path / "x").resolve()
    s3 = open_artifacts("s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:9", **{
        "access_key_id": "a", "secret_access_key": "b", "region": "us-east-1"})
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix", "s3://bucket/some/prefix")
    with pytest.raises(ArtifactError, match="unsupported"):
        open_artifacts("ftp://x")


def test_s3_objects_are_under_the_prefix(s3_endpoint, s3_bucket, tmp_path):
    store = S3Artifacts(s3_bucket, "team-a", endpoint_url=s3_endpoint, access_key_id="testing",
                        secret_access_key="testing", region="us-east-1")
    _version(Registry(store, tmp_path / "c"))
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEYS["TUESDAY_S3_ACCESS_KEY_ID"],
                          aws_secret_access_key="testing", region_name="us-east-1")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert "team-a/models/v1/version.json" in keys and all(k.startswith("team-a/models/v1/") for k in keys)


# -- the production pointer ---------------------------------------------------------------------------

def test_promote_switches_pointer_logs_and_retires_previous(store_url, tmp_path):
    registry = Registry(LocalArtifacts(tmp_path / "a"), tmp_path / "c")
    _version(registry), _version(registry), _version(registry)
    production = Production(make_session_factory(store_url), registry, "t")
    assert production.name() is None and production.resolve().name == "v3"  # newest while none is live
    production.switch("v1", by="alice", reason="first")
    production.switch("v2", by="bob", reason="better", expect="v1")
    assert production.name() == "v2"
    assert production.statuses() == {"v1": "retired", "v2": "production", "v3": "candidate"}
    assert [(h["version"], h["previous"], h["by"], h["action"]) for h in production.history()] == [
        ("v1", None, "alice", "promote"), ("v2", "v1", "bob", "promote")]

    # a second host sees the switch at once: same SQL, its own registry cache
    other = Production(make_session_factory(store_url), Registry(registry.store, tmp_path / "other"), "t")
    assert other.name() == "v2" and other.info().name == "v2"


def test_a_switch_expecting_another_production_changes_nothing(store_url, tmp_path):
    registry = Registry(LocalArtifacts(tmp_path / "a"), tmp_path / "c")
    _version(registry), _version(registry)
    sessions = make_session_factory(store_url)
    switch(sessions, "v1", task="t", by="a", reason="first", expect=None)
    with pytest.raises(PointerMoved):
        switch(sessions, "v2", task="t", by="gate", reason="trained against none", expect=None)
    production = Production(sessions, registry, "t")
    assert production.name() == "v1" and len(production.history()) == 1
    with pytest.raises(RegistryError, match="no model version 'v9'"):
        production.switch("v9", by="x", reason="y")
    assert json.dumps(production.history())  # JSON-safe for `tuesday status --json`


def test_each_task_has_its_own_pointer_versions_and_history(store_url, tmp_path):
    registry = Registry(LocalArtifacts(tmp_path / "a"), tmp_path / "c")
    _version(registry, task="queue"), _version(registry, task="priority"), _version(registry, task="queue")
    sessions = make_session_factory(store_url)
    queue, priority = Production(sessions, registry, "queue"), Production(sessions, registry, "priority")
    assert queue.names() == ["v1", "v3"] and priority.names() == ["v2"]
    assert queue.resolve().name == "v3" and priority.resolve().name == "v2"  # each task's newest
    queue.switch("v1", by="a", reason="first")
    priority.switch("v2", by="a", reason="first")
    queue.switch("v3", by="gate", reason="better", expect="v1")
    # A promotion of one task leaves the other's production, statuses and history as they were.
    assert (queue.name(), priority.name()) == ("v3", "v2")
    assert priority.statuses() == {"v2": "production"}
    assert [h["version"] for h in priority.history()] == ["v2"] and {h["task"] for h in queue.history()} == {"queue"}
    with pytest.raises(RegistryError, match="v2 is a version of priority, not of queue"):
        queue.switch("v2", by="x", reason="wrong task")
    assert queue.name() == "v3"
