"""Run a predictor over labelled rows and score it."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from inference.metrics import classification_report
from inference.predictor import Predictor
from inference.task import Task


def evaluate(predictor: Predictor, task: Task, rows: list[dict], *, progress: bool = True,
             desc: str = "evaluating", predictor_task: Task | None = None) -> dict:
    """Metrics of `predictor` on rows with 'text' and 'label'; adds latency percentiles in ms.

    Also returns, for calibration, 'predictions' (labels) and 'probabilities' (rows x labels, task
    order); callers drop both before storing the metrics. predictor_task: the labels the predictor
    was trained on when they differ from `task` (a prediction `task` lacks counts as wrong).
    """
    gold, predicted, latencies, probabilities = [], [], [], []
    for row in tqdm(rows, desc=desc, unit="ticket", disable=not progress):
        started = time.perf_counter()
        suggestion = predictor.predict(row["text"])
        latencies.append((time.perf_counter() - started) * 1000)
        gold.append(row["label"])
        predicted.append(suggestion.label)
        probabilities.append([suggestion.probabilities[label] for label in (predictor_task or task).label_names])
    report = classification_report(task, gold, predicted)
    ordered = sorted(latencies)
    if ordered:
        report["latency_ms"] = {"p50": ordered[len(ordered) // 2], "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]}
    report["predictions"] = predicted
    report["probabilities"] = probabilities
    return report
