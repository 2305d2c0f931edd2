"""The one prompt format: training, evaluation and serving all build text here.

A prompt is the base model's chat template applied to a system message (the
instruction and the labels with their descriptions) and a user message (the
ticket). The expected completion is the label on its own line, optionally a
reason line, then the template's end-of-turn marker:

    >>> build_completion("claim_status", "Asks about payout.", end_of_turn="<|im_end|>")
    'claim_status\\nReason: Asks about payout.<|im_end|>'
"""

from __future__ import annotations

from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.task import Task

# Used when a base model ships no chat template of its own.
PLAIN_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant\n{% endif %}"
)
REASON_PREFIX = "Reason:"
MAX_TICKET_CHARS = 1500
_SENTINEL = "\x00TUESDAY\x00"


@lru_cache(maxsize=16)
def _compile(chat_template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(chat_template)


def _render(chat_template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    return _compile(chat_template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token="", eos_token=""
    )


def instruction(task: Task) -> str:
    """The system message: what to do and which labels exist."""
    lines = ["Label the customer message with one label, then give a short reason."]
    if task.description:
        lines.append(f"Context: {task.description}")
    if task.list_labels:
        lines.append("Labels:")
        for label, description in task.labels.items():
            lines.append(f"{label}: {description}" if description else label)
    return "\n".join(lines)


def clean_ticket(text: str) -> str:
    """Normalise whitespace and cut very long tickets so every prompt stays bounded."""
    text = "\n".join(" ".join(line.split()) for line in text.replace("\r", "\n").split("\n"))
    text = "\n".join(line for line in text.split("\n") if line)
    return text[:MAX_TICKET_CHARS]


def build_prompt(task: Task, text: str, chat_template: str | None) -> str:
    """The prompt text for one ticket, up to where the model writes the label."""
    messages = [
        {"role": "system", "content": instruction(task)},
        {"role": "user", "content": clean_ticket(text)},
    ]
    return _render(chat_template or PLAIN_TEMPLATE, messages, add_generation_prompt=True)


def end_of_turn(chat_template: str | None) -> str:
    """The marker the template puts after an assistant message, e.g. '<|im_end|>'."""
    template = chat_template or PLAIN_TEMPLATE
    messages = [{"role": "system", "content": "s"}, {"role": "assistant", "content": _SENTINEL}]
    rendered = _render(template, messages, add_generation_prompt=False)
    return rendered.split(_SENTINEL, 1)[1].strip() if _SENTINEL in rendered else ""


def build_completion(label: str, reason: str | None, end_of_turn: str) -> str:
    """What the model should write after the prompt."""
    reason = " ".join((reason or "").split())
    body = f"{label}\n{REASON_PREFIX} {reason}" if reason else f"{label}\n"
    return body + end_of_turn


def build_example(task: Task, text: str, label: str | None, reason: str | None, chat_template: str | None):
    """(prompt, completion) for one labelled ticket; completion is '' when label is None."""
    prompt = build_prompt(task, text, chat_template)
    if label is None:
        return prompt, ""
    return prompt, build_completion(label, reason, end_of_turn(chat_template))


def label_target(label: str) -> str:
    """The text scored for a label: the label and the newline that ends it."""
    return f"{label}\n"
