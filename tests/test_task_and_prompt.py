import pytest

from inference.errors import TaskError
from inference.prompt import build_completion, build_example, build_prompt, end_of_turn, label_target
from inference.task import Task, load_task

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_demo_task_loads_with_handoff_and_escalations(task):
    assert task.handoff_label == "hand_off"
    assert set(task.escalation_labels) <= set(task.labels)
    assert len(task.labels) >= 6


def test_task_refers_to_unknown_label_is_rejected(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: x\nlabels: {a: one, b: two}\nhandoff_label: c\n")
    with pytest.raises(TaskError, match="does not define: c"):
        load_task(path)


def test_missing_task_file_is_a_clear_error(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        load_task(tmp_path / "nope.yaml")


def test_prompt_names_every_label_with_description_and_ends_at_assistant_turn(task):
    prompt = build_prompt(task, "  where is my\r\n claim  ", CHATML)
    for label, description in task.labels.items():
        assert f"{label}: {description}" in prompt
    assert prompt.endswith("<|im_start|>user\nwhere is my\nclaim<|im_end|>\n<|im_start|>assistant\n")


def test_completion_is_label_line_reason_line_and_end_of_turn():
    assert end_of_turn(CHATML) == "<|im_end|>"
    assert build_completion("claim_status", "Asks about payout.", "<|im_end|>") == \
        "claim_status\nReason: Asks about payout.<|im_end|>"
    assert build_completion("claim_status", None, "<|im_end|>") == "claim_status\n<|im_end|>"
    assert build_completion("x", None, "").startswith(label_target("x"))


def test_build_example_prompt_is_the_serving_prompt(task):
    prompt, completion = build_example(task, "hi", "new_claim", None, CHATML)
    assert prompt == build_prompt(task, "hi", CHATML)
    assert completion.startswith("new_claim\n")


def test_labels_must_be_single_lines():
    with pytest.raises(TaskError):
        Task(name="x", labels={"a\nb": ""}, handoff_label="a\nb")


def test_a_task_may_leave_the_label_list_out_of_the_prompt(task):
    from dataclasses import replace

    short = build_prompt(replace(task, list_labels=False), "hi", CHATML)
    assert "claim_status" not in short and "one label" in short
    assert len(short) < len(build_prompt(task, "hi", CHATML))
