"""Several tasks per deployment: the task file, imports with several label columns, one Slack message with every field."""

import json

import pytest
from sqlalchemy import select

from bot.slack.blocks import CHANGE, HANDOFF, REJECT, parse_option_value
from bot.slack.fields import ACCEPT_ALL, fields_blocks, fields_text
from bot.store.base import make_session_factory
from bot.store.examples import Example
from bot.store.importer import import_file, read_labelled, read_labelled_tasks
from bot.store.tickets import Suggestion, Ticket
from inference.errors import TaskError
from inference.task import TaskSet, demo_task_path, load_task, load_tasks
from tests.slash import env, fake_slack  # noqa: F401 (fixtures)
from tests.tickets import stored_ticket

HELPDESK = """
name: helpdesk
tasks:
  - name: queue
    labels: [billing, technical, returns, hand_off]
    handoff_label: hand_off
  - name: priority
    labels: [low, medium, high, critical]
  - name: type
    labels: [incident, request, problem, change]
"""


@pytest.fixture
def helpdesk(tmp_path) -> TaskSet:
    path = tmp_path / "tasks.yaml"
    path.write_text(HELPDESK)
    return load_tasks(path)


# -- the task file ------------------------------------------------------------------------------------

def test_a_task_file_declares_several_tasks_and_one_routes(helpdesk, tmp_path):
    assert helpdesk.names == ["queue", "priority", "type"] and helpdesk.name == "helpdesk"
    assert helpdesk.routing_name == "queue"  # the first task with a hand-off label
    assert helpdesk["priority"].label_names == ["low", "medium", "high", "critical"]
    assert load_task(tmp_path / "tasks.yaml").name == "queue"  # a deployment file read as one task: its routing one
    # routing: true picks another; a single-task file is a set of one
    chosen = TaskSet.from_dict({"tasks": [{"name": "a", "labels": ["x"]}, {"name": "b", "labels": ["y"], "routing": True}]})
    assert chosen.routing_name == "b"
    single = TaskSet.from_dict({"name": "insurance-inbound", "labels": ["x", "y"]})
    assert (single.names, single.routing_name) == (["insurance-inbound"], "insurance-inbound")
    assert single.get(None).name == "insurance-inbound"
    with pytest.raises(TaskError, match="name one of queue, priority, type"):
        helpdesk.get(None)
    with pytest.raises(TaskError, match="no task 'urgency'"):
        helpdesk["urgency"]


@pytest.mark.parametrize("tasks, error", [
    ([{"name": "a", "labels": ["x"]}, {"name": "a", "labels": ["y"]}], "repeat"),
    ([{"name": "a", "labels": ["x"], "routing": True}, {"name": "b", "labels": ["y"], "routing": True}], "only one"),
    ([{"name": "Queue Name", "labels": ["x"]}], "lower case"),
    ([], "list of tasks"),
])
def test_a_bad_task_file_is_refused(tasks, error):
    with pytest.raises(TaskError, match=error):
        TaskSet.from_dict({"tasks": tasks})


def test_the_demo_deployment_has_two_fields():
    demo = load_tasks(demo_task_path())
    assert demo.names == ["topic", "urgency"] and demo.routing.handoff_label == "hand_off"
    assert demo["urgency"].handoff_label is None


# -- import with several label columns ----------------------------------------------------------------

def test_a_csv_with_several_label_columns_trains_each_task_on_its_own_rows(helpdesk, tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text("id,text,queue,priority,type\n"
                    "1,my invoice is wrong,billing,high,incident\n"
                    "2,the app crashes on start,,critical,\n"  # labelled for priority only
                    "3,please send a return label,returns,,request\n"
                    "4,no label at all,,,\n"
                    "5,printer on fire,technical,urgent,incident\n", encoding="utf-8")  # urgent is not a priority
    sessions = make_session_factory(f"sqlite:///{tmp_path / 'store.db'}")
    report = import_file(path, helpdesk, sessions)
    assert report.by_task == {"queue": 2, "priority": 2, "type": 2} and report.added == 6
    assert [line for line, _ in report.errors] == [5, 6]
    assert "no label" in report.errors[0][1] and "unknown priority label 'urgent'" in report.errors[1][1]
    with sessions() as session:
        stored = {(e.task, e.external_id): e.label for e in session.scalars(select(Example))}
    assert stored == {("queue", "1"): "billing", ("priority", "1"): "high", ("type", "1"): "incident",
                      ("priority", "2"): "critical", ("queue", "3"): "returns", ("type", "3"): "request"}
    # the same file again adds nothing; the snapshot of one task reads only its rows
    assert import_file(path, helpdesk, sessions).added == 0
    rows, _ = read_labelled(path, helpdesk["priority"])
    assert [(r["id"], r["label"]) for r in rows] == [("1", "high"), ("2", "critical")]


def test_jsonl_rows_may_miss_any_field_and_label_names_the_routing_task(helpdesk, tmp_path):
    path = tmp_path / "tickets.jsonl"
    rows = [{"id": "a", "text": "refund please", "label": "billing", "priority": "low", "reason": "asks for money back"},
            {"id": "b", "text": "server down for everyone", "type": "incident", "priority": "critical"},
            {"id": "c", "text": "lawyer letter", "queue": "hand_off"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    per_task, errors = read_labelled_tasks(path, helpdesk)
    assert errors == []
    assert {name: [(r["id"], r["label"]) for r in found] for name, found in per_task.items()} == {
        "queue": [("a", "billing"), ("c", "hand_off")], "priority": [("a", "low"), ("b", "critical")],
        "type": [("b", "incident")]}
    # a reason explains the routing task's label; another task's comes from its own column
    assert [r["reason"] for r in per_task["queue"]] == ["asks for money back", None]
    assert [r["reason"] for r in per_task["priority"]] == [None, None]


# -- one message, every field ---------------------------------------------------------------------------

LONG = "x" * 70


def _row(id_: int, task: str, label: str | None, confidence: float) -> Suggestion:
    evidence = [{"label": label or "?", "text": "a labelled ticket " * 20, "reason": "because " * 40}] * 3
    return Suggestion(id=id_, ticket_id=1, task=task, label=label, routing="suggested" if label else "unsure",
                      confidence=confidence, probabilities="{}", reason="r" * 500, model_version=f"v{id_}",
                      latency_ms=12.0, evidence=json.dumps(evidence))


def test_one_message_carries_every_field_within_slacks_limits():
    names = ["queue" + "q" * 25, "priority", "type"]
    tasks = TaskSet.from_dict({"tasks": [
        {"name": names[0], "labels": [f"{LONG}{i}" for i in range(120)] + ["hand_off"], "handoff_label": "hand_off"},
        {"name": names[1], "labels": [f"{LONG}p{i}" for i in range(4)]},
        {"name": names[2], "labels": ["incident", "request"]}]})
    ticket = Ticket(id=1, source="zendesk", external_id="77", subject="s" * 300, text="t" * 20_000)
    routing = _row(10, names[0], f"{LONG}3", 0.91)
    fields = {names[1]: _row(11, names[1], f"{LONG}p2", 0.77), names[2]: _row(12, names[2], None, 0.41)}
    blocks = fields_blocks(ticket, routing, fields, tasks, link="https://helpdesk.example/77")
    assert len(blocks) <= 50
    for block in blocks:
        texts = [block.get("text", {}).get("text", "")] + [e.get("text", "") for e in block.get("elements", [])
                                                              if isinstance(e.get("text"), str)]
        assert all(len(t) <= 3000 for t in texts)
        selects = [e for e in block.get("elements", []) + [block.get("accessory") or {}] if e.get("options")]
        for select_ in selects:
            assert len(select_["options"]) <= 100 and all(len(o["text"]["text"]) <= 75 for o in select_["options"])
    text = json.dumps(blocks, ensure_ascii=False)
    assert f"`{LONG}p2` · 77%" in text and "unsure (best guess 41%)" in text
    # each field's menu changes that field only: its options carry that task's suggestion id
    menus = {b["accessory"]["placeholder"]["text"]: b["accessory"] for b in blocks if b.get("accessory")}
    assert {parse_option_value(o["value"])[0] for o in menus[f"Change {names[1]}"]["options"]} == {11}
    assert {parse_option_value(o["value"])[0] for o in menus[f"Change {names[2]}"]["options"]} == {12}
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [ACCEPT_ALL, CHANGE, REJECT, HANDOFF]
    assert all(e["value"] == "10" for e in actions["elements"] if "value" in e)  # hand off belongs to routing
    assert fields_text(ticket, routing, fields).startswith(f"Suggested {names[0]} {LONG}3, priority {LONG}p2, type unsure")


def test_a_ticket_whose_job_stopped_before_the_routing_row_is_swept_again(tmp_path):
    from types import SimpleNamespace

    from bot.store.tickets import add_suggestion, unsuggested_tickets, waiting_count

    sessions = make_session_factory(f"sqlite:///{tmp_path / 'store.db'}")
    ticket, _ = stored_ticket(sessions, source="generic", external_id="1", text="server down")
    done, _ = stored_ticket(sessions, source="generic", external_id="2", text="refund please")
    prediction = SimpleNamespace(label="high", confidence=0.9, reason="", probabilities={"high": 0.9},
                                 model_version="v2", latency_ms=1.0)
    with sessions() as session:  # the job stored the priority field, then died before the routing task's row
        add_suggestion(session, ticket.id, prediction, task="priority", threshold=0.5)
        add_suggestion(session, done.id, prediction, task="priority", threshold=0.5)
        add_suggestion(session, done.id, SimpleNamespace(**{**vars(prediction), "label": "billing"}), task="queue",
                       threshold=0.5)
    assert unsuggested_tickets(sessions, posts=False, task="queue") == [ticket.id]
    assert waiting_count(sessions, posts=False, task="queue") == 1
    assert unsuggested_tickets(sessions, posts=False) == []  # any row would have hidden it


def test_slash_commands_name_a_task_and_a_mistyped_one_queues_nothing(two_tasks, env, fake_slack):
    from tests.slash import MANAGER, Parts

    parts = Parts(fake_slack)
    try:
        reply = parts.slash(MANAGER, "retrain urgncy")[1]
        assert "`urgncy` is not a task here" in reply and "topic|urgency" in reply and parts.runs() == []
        assert "is not a task here" in parts.slash(MANAGER, "eval priority")[1]
        assert parts.slash(MANAGER, "retrain urgency")[1].startswith("*urgency*: Retrain queued as run 1")
        assert [(r.task, r.active) for r in parts.runs()] == [("urgency", "urgency")]
        both = parts.slash(MANAGER, "retrain")[1]  # every task: topic gets its own run, urgency's is joined
        assert "*topic*: Retrain queued as run 2" in both and "*urgency*: A retrain is already queued as run 1" in both
        assert [(r.task, r.active) for r in parts.runs()] == [("urgency", "urgency"), ("topic", "topic")]
    finally:
        parts.close()
