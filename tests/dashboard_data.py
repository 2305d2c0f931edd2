"""A store filled with constructed suggestions and clicks, for /metrics and the dashboard (fast and browser tests).

Everything is relative to `now`, and the numbers the pages and metrics must show are worked out
by hand next to the data (EXPECTED).

Production is v2 (drift reference: holdout p05 0.6); v1 was production before.
In the last 7 days, all by v2:
  billing_dispute  10 suggested: 6 accepted, 3 changed to claim_status, 1 rejected to policy_change
                   latency 80 ms, first click 50 s after posting, nearest similarity 0.8
  claim_status      5 suggested: 5 accepted; 400 ms, 500 s, 0.7
  hand_off          2 out of scope: 1 accepted (the Hand off button), 1 changed to claim_status; 3000 ms, 2000 s, 0.3
  unsure            3: 2 labelled (agent chose), 1 never clicked; 700 ms, 20 s, 0.5
20 days ago, by v1: claim_status 4 suggested: 2 accepted (after 100,000 s), 2 never clicked; 12,000 ms.
Every suggestion took 200 ms of CPU. One more ticket has no suggestion (waiting).
The billing_dispute tickets mention "QuantumPay", a word the training data never had.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from bot.store.feedback import Feedback
from bot.store.tickets import Suggestion, Ticket
from inference.registry import DRIFT
from tests.demo_names import DEMO_TASK

B, C, H, P = "billing_dispute", "claim_status", "hand_off", "policy_change"
REFERENCE = {"holdout_similarity": {"n": 40, "p05": 0.6, "p50": 0.8, "min": 0.5},
             "training_labels": {B: 20, C: 15, H: 5}, "n_train": 40,
             "vocabulary": {w: 3 for w in "charged card twice invoice claim where payment status call lawyer "
                                          "something else entirely".split()}}
TEXTS = {B: "QuantumPay charged my card twice for the invoice", C: "where is my claim payment status",
         H: "I will call my lawyer about this", None: "something else entirely"}

# (version, label shown, routing, latency ms, review s or None, similarity, clicks [(action, label)], days ago, n)
ROWS = [
    ("v2", B, "suggested", 80, 50, 0.8, [("accept", B)], 1, 6),
    ("v2", B, "suggested", 80, 50, 0.8, [("change", C)], 2, 3),
    ("v2", B, "suggested", 80, 50, 0.8, [("reject", P)], 2, 1),
    ("v2", C, "suggested", 400, 500, 0.7, [("accept", C)], 3, 5),
    ("v2", H, "out_of_scope", 3000, 2000, 0.3, [("handoff", H)], 3, 1),
    ("v2", H, "out_of_scope", 3000, 2000, 0.3, [("change", C)], 4, 1),
    ("v2", None, "unsure", 700, 20, 0.5, [("change", C)], 5, 2),
    ("v2", None, "unsure", 700, None, 0.5, [], 5, 1),
    ("v1", C, "suggested", 12000, 100_000, None, [("accept", C)], 20, 2),
    ("v1", C, "suggested", 12000, None, None, [], 20, 2),
]
CPU_MS = 200.0

EXPECTED = {
    "suggestions": {("v2", B, "suggested"): 10, ("v2", C, "suggested"): 5, ("v2", H, "out_of_scope"): 2,
                    ("v2", "", "unsure"): 3, ("v1", C, "suggested"): 4},
    "feedback": {("v2", B, "accepted"): 6, ("v2", B, "changed"): 3, ("v2", B, "rejected"): 1,
                 ("v2", C, "accepted"): 5, ("v2", H, "accepted"): 1, ("v2", H, "changed"): 1,
                 ("v2", "", "labelled"): 2, ("v1", C, "accepted"): 2},
    # cumulative counts per upper bound, seconds
    "latency_buckets": {"0.05": 0, "0.1": 10, "0.25": 10, "0.5": 15, "1.0": 18, "2.5": 18, "5.0": 20, "10.0": 20,
                        "+Inf": 24},
    "latency_sum_s": 10 * 0.08 + 5 * 0.4 + 2 * 3.0 + 3 * 0.7 + 4 * 12.0,
    "review_buckets": {"30.0": 2, "60.0": 12, "300.0": 12, "900.0": 17, "1800.0": 17, "3600.0": 19,
                       "14400.0": 19, "86400.0": 19, "+Inf": 21},
    "review_sum_s": 10 * 50 + 5 * 500 + 2 * 2000 + 2 * 20 + 2 * 100_000,
    "override_7d": {B: 0.4, C: 0.0, H: 0.5},
    "reviews_7d": {B: 10, C: 5, H: 2},
    "drift_share": 5 / 20,  # hand_off (0.3) and unsure (0.5) are below 0.6
    "cpu_s": {"v1": 0.8, "v2": 4.0},
    # 30-day window: reviewed 10 + 5 + 2 (v2) + 2 (v1) = 19, accepted 6 + 5 + 1 + 2 = 14
    "acceptance_30d": "73.7%",
}


def commit_version(runtime, metrics: dict, reference: dict | None, *, by: str) -> str:
    """A version holding only its papers (metrics, drift reference), promoted by `by`."""
    staging = runtime.registry.stage()
    (staging / "metrics.json").write_text(json.dumps(metrics))
    if reference is not None:
        (staging / DRIFT).write_text(json.dumps(reference))
    info = runtime.registry.commit(staging, {"family": "encoder", "metrics": metrics})
    runtime.production.switch(info.name, by=by, reason="constructed for a test")
    return info.name


def fill(runtime, now: datetime) -> None:
    """Two versions and the suggestions and clicks above, timed relative to now."""
    assert commit_version(runtime, {"accuracy": 0.70, "macro_f1": 0.60, "handoff_recall": 0.80}, None,
                          by="slack:U0ADMIN") == "v1"
    assert commit_version(runtime, {"accuracy": 0.82, "macro_f1": 0.75, "handoff_recall": 0.90}, REFERENCE,
                          by="cli:ana") == "v2"
    n = 0
    with runtime.sessions() as s:
        for version, label, routing, latency, review_s, similarity, clicks, days_ago, count in ROWS:
            for _ in range(count):
                n += 1
                at = now - timedelta(days=days_ago, minutes=n)
                ticket = Ticket(source="test", external_id=str(n), text=TEXTS[label], created_at=at)
                s.add(ticket)
                s.flush()
                posted = at + timedelta(seconds=2)
                row = Suggestion(task=DEMO_TASK, ticket_id=ticket.id, label=label, routing=routing, confidence=0.9,
                                 model_version=version, latency_ms=float(latency), cpu_ms=CPU_MS, created_at=at,
                                 posted_at=posted, nearest_similarity=similarity, predicted_label=label or C,
                                 slack_channel="C0TRIAGE", slack_ts=f"{n}.0")
                s.add(row)
                s.flush()
                for i, (action, click_label) in enumerate(clicks):
                    s.add(Feedback(task=DEMO_TASK, suggestion_id=row.id, ticket_id=ticket.id, user_id=f"U{i}", action=action,
                                   label=click_label, model_version=version,
                                   created_at=posted + timedelta(seconds=review_s + 3600 * i)))
        s.add(Ticket(source="test", external_id="waiting", text="no suggestion yet", created_at=now))
        s.commit()


def fill_history(runtime, now: datetime, days: int = 28, seed: int = 7) -> None:
    """Four weeks of ordinary traffic on top of fill(): v1 until a week ago, v2 since; tickets in the last
    three days drift away from the training data (lower similarity, 'QuantumPay'). For the screenshot."""
    import random

    rng = random.Random(seed)
    labels = [(B, 0.30), (C, 0.35), (P, 0.15), ("new_claim", 0.12), (H, 0.08)]
    n = 0
    with runtime.sessions() as s:
        for day in range(days, 0, -1):
            version = "v2" if day <= 7 else "v1"
            drifting = day <= 3
            for i in range(rng.randint(18, 30)):
                n += 1
                at = now - timedelta(days=day, hours=rng.uniform(0, 20))
                label = rng.choices([lb for lb, _ in labels], [w for _, w in labels])[0]
                routing = "out_of_scope" if label == H else "suggested"
                if rng.random() < 0.1:
                    label, routing = None, "unsure"
                text = TEXTS[B] if drifting and rng.random() < 0.4 else TEXTS.get(label, TEXTS[None])
                ticket = Ticket(source="history", external_id=str(n), text=text, created_at=at)
                s.add(ticket)
                s.flush()
                posted = at + timedelta(seconds=2)
                unlike = drifting and rng.random() < 0.5
                similarity = round(rng.uniform(0.35, 0.7) if unlike else rng.uniform(0.6, 0.95), 4)
                row = Suggestion(task=DEMO_TASK, ticket_id=ticket.id, label=label, routing=routing, confidence=rng.uniform(0.5, 0.99),
                                 model_version=version,
                                 latency_ms=rng.lognormvariate(5.5 if version == "v2" else 6.0, 0.4),
                                 cpu_ms=rng.uniform(150, 400), created_at=at, posted_at=posted,
                                 nearest_similarity=similarity if version == "v2" else None,
                                 predicted_label=label or C, slack_channel="C0TRIAGE", slack_ts=f"h{n}")
                s.add(row)
                s.flush()
                if rng.random() < 0.85:
                    wrong = rng.random() < (0.25 if version == "v1" else 0.12) + (0.15 if label == B else 0.0)
                    click = (label or C) if not wrong else rng.choice([C, P, "new_claim"])
                    action = "accept" if click == label else ("change" if rng.random() < 0.8 else "reject")
                    s.add(Feedback(task=DEMO_TASK, suggestion_id=row.id, ticket_id=ticket.id, user_id="U0AGENT", action=action,
                                   label=click, model_version=version,
                                   created_at=posted + timedelta(seconds=rng.lognormvariate(5.0, 0.9))))
        s.commit()
