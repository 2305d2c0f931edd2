"""The deploy files (Dockerfiles, compose.yaml, k8s/) name only real commands and real settings.

No Docker and no cluster: each command is parsed by the `tuesday` click group itself (so an
unknown subcommand, option or `--queue` choice fails), and each TUESDAY_* variable is checked
against bot.settings.Settings as it is at test time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.gpu"]
TEXT_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file()) + [ROOT / "docs" / "operations.md"]

INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
VAR_RE = re.compile(r"\bTUESDAY_[A-Z0-9_]*[A-Z0-9]\b")
FORBIDDEN_ON_GPU = re.compile(r"^TUESDAY_(DATABASE_URL|SLACK_\w+|ZENDESK_\w+|GENERIC_WEBHOOK_SECRET|JOB_SIGNING_KEY|"
                              r"LINK_SECRET|METRICS_TOKEN)$")  # the GPU node signs nothing: it checks train jobs


# -- helpers -------------------------------------------------------------------------------------
def setting_names() -> set[str]:
    from bot.settings import Settings

    return {f"TUESDAY_{name.upper()}" for name in Settings.model_fields}


def parse_tuesday(argv: list[str]) -> tuple[str, dict]:
    """Parse argv as `tuesday` would: (subcommand path, the last command's parsed options).

    Raises click.UsageError (or BadParameter) for an unknown subcommand, option or choice.
    """
    from bot.cli.main import main

    assert argv and argv[0] == "tuesday", f"not a tuesday command: {argv}"
    command, name, args, parent, path = main, "tuesday", [str(a) for a in argv[1:]], None, []
    while True:
        ctx = command.make_context(name, list(args), parent=parent, resilient_parsing=False)
        if not isinstance(command, click.Group):
            return " ".join(path), ctx.params
        # click >= 8.2 keeps the subcommand's name apart from its arguments.
        first = getattr(ctx, "_protected_args", None)
        rest = [*(first if first is not None else ctx.protected_args), *ctx.args]
        if not rest:
            raise click.UsageError(f"{' '.join(argv)}: no subcommand")
        name, command, args = command.resolve_command(ctx, rest)
        parent = ctx
        path.append(name)


def queues_of(argv: list[str]) -> set[str]:
    """The --queue values of a `tuesday worker` command line."""
    found = set()
    for i, arg in enumerate(argv):
        if arg == "--queue" and i + 1 < len(argv):
            found.add(argv[i + 1])
        elif arg.startswith("--queue="):
            found.add(arg.split("=", 1)[1])
    return found


def role(argv: list[str]) -> str:
    if argv[1:2] == ["worker"]:
        queues = queues_of(argv)
        return "train" if "train" in queues else "suggest" if "suggest" in queues else "worker"
    return " ".join(argv[1:3]) if argv[1:2] == ["db"] else argv[1]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def compose_env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def tuesday_services() -> dict[str, dict]:
    """Compose services built from deploy/Dockerfile*: each must say its command."""
    services = compose()["services"]
    return {name: svc for name, svc in services.items() if "build" in svc or str(svc.get("image", "")).startswith("tuesday")}


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def k8s_workloads() -> list[tuple[dict, dict]]:
    """(workload, container) for every container of a Deployment or Job."""
    found = []
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"):
            spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
            pod = spec["template"]["spec"]
            found += [(doc, c) for c in pod.get("initContainers", []) + pod["containers"]]
    return found


def k8s_argv(container: dict) -> list[str]:
    argv = list(container.get("command", [])) + list(container.get("args", []))
    assert argv, f"container {container['name']} does not say its command"
    return [str(a) for a in argv]


def k8s_env(container: dict) -> set[str]:
    """Every variable the container gets: env entries plus the keys of envFrom ConfigMaps/Secrets."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs()}
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        doc = docs.get((kind, ref["name"]))
        assert doc is not None, f"{container['name']}: envFrom names {kind} {ref['name']}, which deploy/k8s lacks"
        keys = (doc.get("data") or {}) | (doc.get("stringData") or {})
        names |= {source.get("prefix", "") + key for key in keys}
    for entry in container.get("env", []):
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or (entry.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            kind = "Secret" if "secretKeyRef" in entry["valueFrom"] else "ConfigMap"
            doc = docs.get((kind, ref["name"]))
            assert doc is not None, f"{container['name']}: {entry['name']} names {kind} {ref['name']}, which deploy/k8s lacks"
            assert ref["key"] in (doc.get("data") or {}) | (doc.get("stringData") or {}), f"{ref['name']} has no {ref['key']}"
    return names


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        out.append((keyword, rest.strip()))
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends in a line continuation"
    return out


def dockerfile_commands(path: Path) -> list[list[str]]:
    """The exec-form CMD/ENTRYPOINT lists of a Dockerfile (HEALTHCHECK's own CMD excluded)."""
    commands = []
    for keyword, rest in dockerfile_instructions(path):
        if keyword.upper() in ("CMD", "ENTRYPOINT"):
            assert rest.startswith("["), f"{path.name}: {keyword} {rest}: use the exec (JSON) form"
            commands.append(json.loads(rest))
    return commands


# -- Dockerfiles ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses(path):
    instructions = dockerfile_instructions(path)
    assert instructions[0][0].upper() in ("FROM", "ARG")
    stages, user = set(), None
    for keyword, rest in instructions:
        keyword = keyword.upper()
        assert keyword in INSTRUCTIONS, f"{path.name}: {keyword!r} is not a Dockerfile instruction"
        if keyword == "FROM":
            parts = rest.split()
            assert len(parts) in (1, 3), f"{path.name}: FROM {rest}"
            if len(parts) == 3:
                assert parts[1].upper() == "AS", f"{path.name}: FROM {rest}"
                stages.add(parts[2])
            user = None  # a stage starts as its base image's user; each one that runs says its own
        if keyword in ("COPY", "RUN"):
            for ref in re.findall(r"(?:--from|\bfrom)=([\w.-]+)", rest):
                assert ref in stages, f"{path.name}: {keyword} uses stage {ref!r} before it is defined"
        if keyword == "USER":
            user = rest.split(":")[0]
        if keyword == "CMD":
            assert user not in (None, "root", "0"), f"{path.name}: CMD {rest} would run as root"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_commands_are_real(path):
    commands = dockerfile_commands(path)
    assert commands
    for argv in commands:
        if argv[0] == "tuesday":
            parse_tuesday(argv)


def test_dockerfile_targets():
    cpu = {rest.split()[2] for k, rest in dockerfile_instructions(DEPLOY / "Dockerfile")
           if k.upper() == "FROM" and len(rest.split()) == 3}
    assert {"web", "worker"} <= cpu
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "HEALTHCHECK" in text and "/livez" in text and "/livez" in app_paths()
    assert "download.pytorch.org/whl/cpu" in text  # never a CUDA build on CPU hosts
    gpu = dockerfile_commands(DEPLOY / "Dockerfile.gpu")
    assert any(role(argv) == "train" for argv in gpu if argv[0] == "tuesday")


# -- compose -------------------------------------------------------------------------------------
def test_compose_commands_are_real():
    services = tuesday_services()
    roles = {}
    for name, svc in services.items():
        argv = svc.get("command")
        assert isinstance(argv, list), f"compose service {name}: give the command as a list"
        parse_tuesday(argv)
        roles.setdefault(role(argv), []).append(name)
    assert {"serve", "suggest", "train", "db upgrade"} <= set(roles), roles


def test_compose_builds_existing_targets():
    for name, svc in tuesday_services().items():
        build = svc.get("build")
        if not build:
            continue
        dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        if "target" in build:
            stages = {rest.split()[2] for k, rest in dockerfile_instructions(dockerfile)
                      if k.upper() == "FROM" and len(rest.split()) == 3}
            assert build["target"] in stages, f"{name}: {dockerfile.name} has no stage {build['target']}"


def test_compose_settings_are_real():
    real = setting_names()
    for name, svc in tuesday_services().items():
        unknown = {k for k in compose_env(svc) if k.startswith("TUESDAY_")} - real
        assert not unknown, f"compose service {name} sets {sorted(unknown)}, not settings of bot/settings.py"


def test_compose_train_worker_gets_no_sql_or_slack_and_a_gpu():
    trains = [svc for svc in tuesday_services().values() if role(svc["command"]) == "train"]
    assert trains
    for svc in trains:
        leaked = sorted(k for k in compose_env(svc) if FORBIDDEN_ON_GPU.match(k))
        assert not leaked, f"the train worker must not get {leaked}"
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
        assert svc["deploy"].get("replicas", 1) == 1  # one retrain at a time per store


def test_compose_suggest_workers_scale_and_wait_for_the_migration():
    services = tuesday_services()
    suggest = [svc for svc in services.values() if role(svc["command"]) == "suggest"]
    assert suggest and all(svc["deploy"]["replicas"] >= 2 for svc in suggest)
    migrate = next(n for n, svc in services.items() if role(svc["command"]) == "db upgrade")
    for name, svc in services.items():
        if "TUESDAY_DATABASE_URL" in compose_env(svc) and name != migrate:
            assert svc["depends_on"][migrate]["condition"] == "service_completed_successfully", name


def test_compose_interpolations_are_in_the_example_env():
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    example = (DEPLOY / "compose.env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", example, flags=re.M))
    assert used <= listed, f"compose.yaml uses {sorted(used - listed)}, missing from compose.env.example"


# -- Kubernetes ----------------------------------------------------------------------------------
def test_k8s_commands_are_real():
    roles = {}
    for workload, container in k8s_workloads():
        argv = k8s_argv(container)
        parse_tuesday(argv)
        roles.setdefault(role(argv), []).append(workload)
    assert {"serve", "suggest", "train", "db upgrade"} <= set(roles), roles
    assert all(w["kind"] == "Job" for w in roles["db upgrade"])


def test_k8s_settings_are_real():
    real = setting_names()
    for doc in k8s_docs():
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = (doc.get("data") or {}) | (doc.get("stringData") or {})
            unknown = {k for k in keys if k.startswith("TUESDAY_")} - real
            assert not unknown, f"{doc['kind']} {doc['metadata']['name']}: {sorted(unknown)} are not settings"
    for workload, container in k8s_workloads():
        unknown = {k for k in k8s_env(container) if k.startswith("TUESDAY_")} - real
        assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)} are not settings"


def test_k8s_train_worker_gets_no_sql_or_slack_and_a_gpu():
    trains = [(w, c) for w, c in k8s_workloads() if role(k8s_argv(c)) == "train"]
    assert trains
    for workload, container in trains:
        leaked = sorted(k for k in k8s_env(container) if FORBIDDEN_ON_GPU.match(k))
        assert not leaked, f"the train worker must not get {leaked}"
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        pod = workload["spec"]["template"]["spec"]
        assert pod.get("nodeSelector") or pod.get("affinity"), "the train worker must be placed on GPU nodes"
        assert workload["spec"].get("replicas", 1) == 1  # one retrain at a time per store


def app_paths() -> set[str]:
    from bot.runtime import Runtime
    from bot.settings import Settings
    from bot.web.app import create_app
    from tests.test_web import unreachable_queues

    return {route.path for route in create_app(Runtime(Settings()), unreachable_queues()).routes}


def test_k8s_web_probes_readiness_and_liveness_apart():
    webs = [c for _, c in k8s_workloads() if role(k8s_argv(c)) == "serve"]
    assert webs
    paths = app_paths()
    for container in webs:
        ready, live = (container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe"))
        assert (ready, live) == ("/readyz", "/livez") and {ready, live} <= paths


def test_k8s_suggest_workers_scale_on_the_suggest_queue():
    targets = {w["metadata"]["name"] for w, c in k8s_workloads() if role(k8s_argv(c)) == "suggest"}
    assert targets
    scaled = [d for d in k8s_docs() if d["kind"] == "ScaledObject"]
    for name in targets:
        objects = [d for d in scaled if d["spec"]["scaleTargetRef"]["name"] == name]
        assert objects, f"no KEDA ScaledObject scales {name}"
        spec = objects[0]["spec"]
        assert spec.get("minReplicaCount", 0) >= 1  # they also work the control queue
        assert any(t["type"] == "redis" and t["metadata"]["listName"] == "rq:queue:suggest" for t in spec["triggers"])


def test_k8s_pods_run_as_non_root():
    for workload, container in k8s_workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, workload["metadata"]["name"]


# -- every file ----------------------------------------------------------------------------------
def test_every_tuesday_variable_named_anywhere_is_a_setting():
    """Comments, READMEs, interpolations and Dockerfile ENV included: a renamed setting shows up here."""
    real = setting_names()
    for path in TEXT_FILES:
        unknown = set(VAR_RE.findall(path.read_text(encoding="utf-8"))) - real
        assert not unknown, f"{path.relative_to(ROOT)} names {sorted(unknown)}, not settings of bot/settings.py"


def test_parse_tuesday_refuses_what_tuesday_refuses():
    """The checks above would pass anything if parse_tuesday did."""
    assert parse_tuesday(["tuesday", "worker", "--queue", "suggest"])[0] == "worker"
    for argv in (["tuesday", "wrker"], ["tuesday", "worker", "--queue", "foo"], ["tuesday", "serve", "--hots", "x"],
                 ["tuesday", "--data-dir", "/x"]):
        with pytest.raises(click.UsageError):
            parse_tuesday(argv)
