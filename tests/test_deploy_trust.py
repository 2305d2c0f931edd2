"""Deploy's trust settings: every TUESDAY_REDIS_URL is TLS with a required password, every Redis client checks the
server against a mounted CA, and only the hosts that queue train jobs hold the key that signs them (the GPU node gets
the public half). Parsed from deploy/ like tests/test_deploy.py, with its helpers."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_deploy import (
    ROOT,
    TEXT_FILES,
    compose,
    compose_env,
    k8s_argv,
    k8s_docs,
    k8s_env,
    k8s_workloads,
    queues_of,
    role,
    tuesday_services,
)

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[?-])?[^}]*\}")


def redis_urls() -> list[tuple[str, str]]:
    """(where, value) of every TUESDAY_REDIS_URL deploy/ sets: compose services, k8s ConfigMaps and Secrets, and any
    assignment written in a text file (README, comments)."""
    found = [(f"compose {name}", str(compose_env(svc)["TUESDAY_REDIS_URL"])) for name, svc in tuesday_services().items()
             if "TUESDAY_REDIS_URL" in compose_env(svc)]
    for doc in k8s_docs():
        keys = (doc.get("data") or {}) | (doc.get("stringData") or {})
        if "TUESDAY_REDIS_URL" in keys:
            found.append((f"{doc['kind']} {doc['metadata']['name']}", str(keys["TUESDAY_REDIS_URL"])))
    for path in TEXT_FILES:
        text = path.read_text(encoding="utf-8")
        for value in re.findall(r"TUESDAY_REDIS_URL\s*[:=]\s*[`'\"]?((?:\$\{[^}]*\}|[^\s`'\"])+)", text):
            if "://" in value:
                found.append((str(path.relative_to(ROOT)), value))
    return found


def test_every_redis_url_in_deploy_is_tls_with_a_required_password():
    from urllib.parse import urlsplit

    urls = redis_urls()
    assert {where.split()[0] for where, _ in urls} >= {"compose", "Secret"}, urls
    for where, value in urls:
        # compose's ${NAME:?message} must be set and non-empty, or compose refuses to start
        for name, mode in INTERPOLATION.findall(value):
            assert mode == ":?", f"{where}: ${{{name}}} in TUESDAY_REDIS_URL may be empty; use ${{{name}:?...}}"
        parts = urlsplit(INTERPOLATION.sub(lambda m: m.group(1), value))
        assert parts.scheme == "rediss", f"{where}: TUESDAY_REDIS_URL={value} is not TLS (rediss://)"
        assert parts.password, f"{where}: TUESDAY_REDIS_URL={value} carries no password"
    assert not re.search(r"(?<![\w-])redis://", "".join(p.read_text(encoding="utf-8") for p in TEXT_FILES
                                                         if p.suffix in (".yaml", ".example"))), "a plain redis:// URL"


def test_compose_redis_speaks_only_tls_and_wants_the_password():
    redis = compose()["services"]["redis"]
    command = " ".join(map(str, redis["command"]))
    assert "--port 0" in command and "--tls-port 6379" in command and "--requirepass" in command
    assert "--tls-cert-file" in command and "--tls-key-file" in command
    assert "--tls" in " ".join(redis["healthcheck"]["test"])


def compose_mounts(service: dict) -> set[str]:
    return {str(v).split(":")[1] for v in service.get("volumes", []) if ":" in str(v)}


def test_every_redis_client_checks_the_servers_certificate_against_a_mounted_ca():
    for name, svc in tuesday_services().items():
        env = compose_env(svc)
        if "TUESDAY_REDIS_URL" in env:
            ca = Path(str(env.get("TUESDAY_REDIS_CA_FILE", "")))
            assert ca.is_absolute() and str(ca.parent) in compose_mounts(svc), f"compose {name}: no Redis CA mounted"
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs()}
    node = docs[("ConfigMap", "tuesday-node")]["data"]
    for workload, container in k8s_workloads():
        names = k8s_env(container)
        if "TUESDAY_REDIS_URL" not in names:
            continue
        assert "TUESDAY_REDIS_CA_FILE" in names, workload["metadata"]["name"]
        folder = str(Path(node["TUESDAY_REDIS_CA_FILE"]).parent)
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert folder in mounts, f"{workload['metadata']['name']}: {folder} is not mounted"
        volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[folder])
        assert "ca.crt" in docs[("ConfigMap", volume["configMap"]["name"])]["data"]
    auth = next(d for d in k8s_docs() if d["kind"] == "TriggerAuthentication" and d["metadata"]["name"] == "tuesday-redis")
    assert {"password", "tls", "ca"} <= {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}  # KEDA too


def test_only_the_hosts_that_queue_train_jobs_hold_the_signing_key_and_the_gpu_node_the_public_one():
    from bot.queues import WORKER_QUEUES

    def check(where: str, argv: list[str], names: set[str]) -> str:
        if "TUESDAY_JOB_SIGNING_KEY" in names:
            assert argv[1:2] == ["worker"] and "control" in WORKER_QUEUES[next(iter(queues_of(argv)))], \
                f"{where} ({' '.join(argv)}) gets TUESDAY_JOB_SIGNING_KEY but queues no train job"
        if role(argv) == "train":
            assert "TUESDAY_JOB_VERIFY_KEY" in names and "TUESDAY_JOB_SIGNING_KEY" not in names, where
        return role(argv) if "TUESDAY_JOB_SIGNING_KEY" in names else ""

    signers = {check(f"compose {n}", s["command"], set(compose_env(s))) for n, s in tuesday_services().items()}
    signers |= {check(w["metadata"]["name"], k8s_argv(c), k8s_env(c)) for w, c in k8s_workloads()}
    assert "suggest" in signers  # the CPU workers sign; nothing else does
