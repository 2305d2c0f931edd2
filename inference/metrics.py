"""Holdout metrics a support lead reads: accuracy, macro-F1, per-label P/R, hand-off recall."""

from __future__ import annotations

from inference.task import Task


def classification_report(task: Task, gold: list[str], predicted: list[str]) -> dict:
    """Metrics over the task's labels; every number is a fraction in [0, 1]."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    n = len(gold)
    per_label = {}
    for label in task.labels:
        tp = sum(1 for g, p in zip(gold, predicted) if g == label and p == label)
        n_pred = sum(1 for p in predicted if p == label)
        n_gold = sum(1 for g in gold if g == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    present = [m for m in per_label.values() if m["support"]]
    escalations = set(task.escalation_labels)
    esc_gold = [i for i, g in enumerate(gold) if g in escalations]
    return {
        "n": n,
        "accuracy": sum(g == p for g, p in zip(gold, predicted)) / n if n else 0.0,
        "macro_f1": sum(m["f1"] for m in present) / len(present) if present else 0.0,
        "handoff_recall": per_label[task.handoff_label]["recall"] if task.handoff_label else None,
        "escalation_recall": (sum(predicted[i] in escalations for i in esc_gold) / len(esc_gold)) if esc_gold else 0.0,
        "per_label": per_label,
    }


def headline(metrics: dict) -> str:
    """One line for listings: 'acc 0.912 · F1 0.884 · hand-off 0.93 (n=120)'."""
    if not metrics:
        return "no metrics"
    return (f"acc {metrics['accuracy']:.3f} · F1 {metrics['macro_f1']:.3f} · "
            + (f"hand-off {metrics['handoff_recall']:.2f} " if metrics.get("handoff_recall") is not None else "")
            + f"(n={metrics['n']})")
