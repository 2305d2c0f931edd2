"""The task spec: the team's labels, what they mean, and which mean 'a human must look'."""

from __future__ import annotations

import hashlib
import re
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


TASK_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class TaskSet:
    """Every task of one deployment, in the order of the task file, and which one routes.

    The routing task's hand-off decides escalation: its hand-off label is the one "Hand off"
    button. Every other task only fills its field. A single-task file is a set of one.
    """

    tasks: tuple[Task, ...]
    routing_name: str
    name: str = ""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise TaskError("the task file defines no tasks")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise TaskError(f"task names repeat: {', '.join(names)}")
        if self.routing_name not in names:
            raise TaskError(f"routing task {self.routing_name!r} is not one of {', '.join(names)}")

    @property
    def routing(self) -> Task:
        return self[self.routing_name]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def __getitem__(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise TaskError(f"no task {name!r}: this deployment has {', '.join(self.names)}")

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def get(self, name: str | None) -> Task:
        """The named task; with no name the only task, else an error that says which to name."""
        if name:
            return self[name]
        if len(self.tasks) == 1:
            return self.tasks[0]
        raise TaskError(f"this deployment has several tasks: name one of {', '.join(self.names)}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "task") -> TaskSet:
        if not isinstance(data, dict):
            raise TaskError(f"{source}: expected a mapping at the top level")
        if "tasks" not in data:
            task = Task.from_dict(data, source)
            return cls((task,), task.name, task.name)
        items = data["tasks"]
        if not isinstance(items, list) or not items:
            raise TaskError(f"{source}: 'tasks' must be a list of tasks, each with a name and labels")
        tasks = tuple(Task.from_dict(item, f"{source} task {i + 1}") for i, item in enumerate(items))
        for task in tasks:
            if not TASK_NAME_RE.match(task.name):
                raise TaskError(f"{source}: task name {task.name!r} must be short, lower case, letters, digits, - or _ "
                                "(it names a field, a Slack command argument and a metrics label)")
        routed = [item.get("name") for item in items if isinstance(item, dict) and item.get("routing")]
        if len(routed) > 1:
            raise TaskError(f"{source}: only one task may route (routing: true), not {', '.join(map(str, routed))}")
        with_handoff = [t.name for t in tasks if t.handoff_label]
        routing = str(routed[0]) if routed else (with_handoff[0] if with_handoff else tasks[0].name)
        return cls(tasks, routing, str(data.get("name") or routing))


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"task file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: not valid YAML: {exc}") from None


def load_tasks(path: str | Path) -> TaskSet:
    """Read every task of a deployment from a task file (a single task, or `tasks:` with several)."""
    path = Path(path)
    return TaskSet.from_dict(_read_yaml(path), source=str(path))


def load_task(path: str | Path) -> Task:
    """Read one task from a YAML file (a version's task.yaml; of a deployment file, its routing task)."""
    return load_tasks(path).routing


def demo_task_path() -> Path:
    return Path(str(resources.files("inference") / "demo" / "task.yaml"))


def demo_examples_path() -> Path:
    return Path(str(resources.files("inference") / "demo" / "examples.jsonl"))
