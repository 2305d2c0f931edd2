"""The task spec: the team's labels, what they mean, and which mean 'a human must look'."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from inference.errors import TaskError


@dataclass(frozen=True)
class Task:
    """One triage job. Label order is the order of the task file and is kept everywhere.

    handoff_label names the label that means "a human must look"; a task may have none.
    """

    name: str
    labels: dict[str, str]
    handoff_label: str | None
    escalation_labels: tuple[str, ...] = ()
    description: str = ""
    priority: tuple[str, ...] = field(default=())
    # With many labels the list dominates every prompt; a task may leave it out and let the
    # adapter learn the names from examples (the prompt still says what to do).
    list_labels: bool = True

    def __post_init__(self) -> None:
        if not self.labels:
            raise TaskError(f"task {self.name!r} defines no labels")
        for label in self.labels:
            if not label or label != label.strip() or "\n" in label:
                raise TaskError(f"label {label!r} must be a non-empty single line without outer spaces")
        named = ([self.handoff_label] if self.handoff_label else []) + [*self.escalation_labels, *self.priority]
        unknown = [x for x in named if x not in self.labels]
        if unknown:
            raise TaskError(f"task {self.name!r} refers to labels it does not define: {', '.join(unknown)}")

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "labels": dict(self.labels),
            "handoff_label": self.handoff_label,
            "escalation_labels": list(self.escalation_labels),
            "priority": list(self.priority),
            "list_labels": self.list_labels,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def fingerprint(self) -> str:
        """Short hash of everything that changes the prompt or the label set."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict, source: str = "task") -> Task:
        if not isinstance(data, dict):
            raise TaskError(f"{source}: expected a mapping at the top level")
        missing = [k for k in ("name", "labels") if k not in data]
        if missing:
            raise TaskError(f"{source}: missing {', '.join(missing)}")
        labels = data["labels"]
        if isinstance(labels, list):  # a bare list of names is allowed; descriptions then stay empty
            labels = {str(name): "" for name in labels}
        if not isinstance(labels, dict):
            raise TaskError(f"{source}: 'labels' must map each label to a one-line description")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            labels={str(k): " ".join(str(v or "").split()) for k, v in labels.items()},
            handoff_label=str(data["handoff_label"]) if data.get("handoff_label") else None,
            escalation_labels=tuple(data.get("escalation_labels") or ()),
            priority=tuple(data.get("priority") or ()),
            list_labels=bool(data.get("list_labels", True)),
        )


def load_task(path: str | Path) -> Task:
    """Read a task from a YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"task file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: not valid YAML: {exc}") from None
    return Task.from_dict(data, source=str(path))


def demo_task_path() -> Path:
    return Path(str(resources.files("inference") / "demo" / "task.yaml"))


def demo_examples_path() -> Path:
    return Path(str(resources.files("inference") / "demo" / "examples.jsonl"))
