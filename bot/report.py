"""Plain-text tables and cards for the terminal."""

from __future__ import annotations

from inference.metrics import headline
from inference.predictor import Suggestion
from inference.registry import VersionInfo
from inference.task import Task


def _pct(x: float | None) -> str:
    return "   –  " if x is None else f"{100 * x:5.1f}%"


def metrics_table(task: Task, columns: dict[str, dict]) -> str:
    """Side-by-side metrics, e.g. {'base (zero-shot)': m1, 'v1 (Q8_0)': m2}."""
    names = list(columns)
    width = max(18, *(len(n) for n in names))
    rows = [("accuracy", lambda m: m.get("accuracy")), ("macro-F1", lambda m: m.get("macro_f1")),
            ("hand-off recall", lambda m: m.get("handoff_recall")),
            ("escalation recall", lambda m: m.get("escalation_recall"))]
    out = ["metric".ljust(26) + "".join(n.rjust(width) for n in names)]
    for title, get in rows:
        out.append(title.ljust(26) + "".join(_pct(get(columns[n])).rjust(width) for n in names))
    out.append("per label (precision / recall)")
    for label in task.labels:
        cells = []
        for n in names:
            m = columns[n].get("per_label", {}).get(label)
            cells.append((f"{_pct(m['precision'])} / {_pct(m['recall'])}" if m else "–").rjust(width))
        support = next((columns[n]["per_label"][label]["support"] for n in names if label in columns[n].get("per_label", {})), 0)
        out.append(f"  {label} (n={support})".ljust(26)[:26] + "".join(cells))
    n = next((columns[k].get("n") for k in names if columns[k].get("n")), 0)
    out.append(f"holdout rows: {n}")
    return "\n".join(out)


def suggestion_card(s: Suggestion, text: str | None = None) -> str:
    """A suggestion as an agent would see it."""
    lines = []
    if text is not None:
        excerpt = " ".join(text.split())
        lines.append(f"  ticket : {excerpt[:110]}{'…' if len(excerpt) > 110 else ''}")
    lines.append(f"  label  : {s.label}   confidence {100 * s.confidence:.0f}%")
    if s.reason:
        lines.append(f"  reason : {s.reason}  (generated)")
    runners = ", ".join(f"{label} {100 * p:.0f}%" for label, p in s.top(3)[1:])
    lines.append(f"  also   : {runners}")
    lines.append(f"  model  : {s.model_version or 'unknown'}   {s.latency_ms:.0f} ms")
    return "\n".join(lines)


def models_table(versions: list[VersionInfo]) -> str:
    if not versions:
        return "no model versions yet: run `tuesday train` or `tuesday demo`"
    out = []
    for v in versions:
        m = v.manifest
        out.append(f"{v.name:<6} {v.status:<10} {m.get('created_at', ''):<26} {m.get('family', ''):<8} "
                   f"train={m.get('data', {}).get('n_train', '?'):<5} {headline(v.metrics)}")
    return "\n".join(out)
