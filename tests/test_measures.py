"""The measures (bot.monitor.measures) on real SQLite and PostgreSQL, from constructed suggestions and
clicks, against numbers computed by hand; drift against a version reference; drift.json from a real build."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bot.monitor import measures
from bot.monitor.drift import drift, new_terms
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import as_utc
from bot.store.feedback import Feedback
from bot.store.runs import RetrainRun
from bot.store.tickets import Suggestion, Ticket, add_suggestion, set_slack_message
from inference.predictor import Suggestion as Prediction
from inference.registry import DRIFT
from tests.demo_names import DEMO_TASK

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)  # a Monday
SINCE, UNTIL = T0, T0 + timedelta(days=7)
DAY1, DAY2 = T0 + timedelta(days=1, hours=10), T0 + timedelta(days=2, hours=10)
B, C, H, P = "billing_dispute", "claim_status", "hand_off", "policy_change"


@pytest.fixture
def runtime(store_url):
    return Runtime(Settings(database_url=store_url, cpu_hour_price=0.10, gpu_hour_price=2.0))


def ticket(session, n: int, text: str = "a ticket", at: datetime = DAY1) -> Ticket:
    row = Ticket(source="test", external_id=str(n), text=text, created_at=at)
    session.add(row)
    session.flush()
    return row


def suggestion(session, ticket_row, label, routing, *, at, latency, cpu=360.0, version="v1", posted=True,
               clicks=(), similarity=None, predicted=None) -> Suggestion:
    """A suggestion posted 5 s after it was made, with clicks (action, label, seconds after posting)."""
    posted_at = at + timedelta(seconds=5) if posted else None
    row = Suggestion(task=DEMO_TASK, ticket_id=ticket_row.id, label=label, routing=routing, confidence=0.9, model_version=version,
                     latency_ms=latency, cpu_ms=cpu, created_at=at, posted_at=posted_at,
                     nearest_similarity=similarity, predicted_label=predicted or label)
    session.add(row)
    session.flush()
    start = posted_at or at
    for i, (action, click_label, after) in enumerate(clicks):
        session.add(Feedback(task=DEMO_TASK, suggestion_id=row.id, ticket_id=ticket_row.id, user_id=f"U{i}", action=action,
                             label=click_label, model_version=version, created_at=start + timedelta(seconds=after)))
        session.flush()
    return row


def constructed(runtime) -> None:
    """Twelve suggestions; the comments give each one's outcome as the measures must count it."""
    with runtime.sessions() as s:
        t = [ticket(s, n) for n in range(1, 12)]
        # day 1, version v1
        suggestion(s, t[0], B, "suggested", at=DAY1, latency=100, clicks=[("accept", B, 60)])  # accepted, correct
        suggestion(s, t[1], B, "suggested", at=DAY1, latency=700, clicks=[("change", C, 120)])  # changed, unsafe
        suggestion(s, t[2], B, "suggested", at=DAY1, latency=300, clicks=[("reject", C, 300)])  # rejected, unsafe
        # accepted first, changed by a second reviewer later: accepted, but not correct (final label P)
        suggestion(s, t[3], B, "suggested", at=DAY1, latency=1100, clicks=[("accept", B, 30), ("change", P, 600)])
        suggestion(s, t[4], B, "suggested", at=DAY1, latency=500, cpu=None)  # never clicked; no CPU time recorded
        suggestion(s, t[5], C, "suggested", at=DAY1, latency=900, clicks=[("handoff", H, 90)])  # handed off: missed
        # day 2, version v2
        suggestion(s, t[6], H, "out_of_scope", at=DAY2, latency=200, version="v2",
                   clicks=[("accept", H, 45)])  # escalation kept
        suggestion(s, t[7], H, "out_of_scope", at=DAY2, latency=1000, version="v2",
                   clicks=[("change", C, 240)])  # wrong escalation; low confidence, so not unsafe
        suggestion(s, t[8], None, "unsure", at=DAY2, latency=400, version="v2",
                   clicks=[("change", H, 180)])  # labelled, not reviewed; a missed hand-off
        suggestion(s, t[9], None, "unsure", at=DAY2, latency=800, version="v2")  # never clicked
        # a second suggestion for ticket 5, stored before posted_at existed: review time from created_at
        suggestion(s, t[4], B, "suggested", at=DAY2, latency=600, version="v2", posted=False,
                   clicks=[("accept", B, 20)])
        # outside the window: counted nowhere
        suggestion(s, t[10], C, "suggested", at=SINCE - timedelta(hours=1), latency=5000, clicks=[("change", B, 10)])
        s.add_all([
            RetrainRun(task=DEMO_TASK, requested_by="U1", trigger="command", status="promoted", finished_at=DAY1,
                       metrics=json.dumps({"cost": {"device": "cuda", "train_s": 1500, "total_s": 1800, "cpu_s": 900}})),
            RetrainRun(task=DEMO_TASK, requested_by="U1", trigger="command", status="kept", finished_at=DAY2,
                       metrics=json.dumps({"cost": {"device": "cpu", "train_s": 3000, "total_s": 3600, "cpu_s": 7200}})),
            RetrainRun(task=DEMO_TASK, requested_by="U1", trigger="command", status="kept", finished_at=UNTIL + timedelta(hours=1),
                       metrics=json.dumps({"cost": {"device": "cuda", "total_s": 3600}})),
        ])
        s.commit()


def test_overview_equals_the_hand_computed_numbers(runtime):
    constructed(runtime)
    o = measures.overview(runtime, SINCE, UNTIL)
    assert (o["suggestions"], o["tickets"], o["abstained"]) == (11, 10, 2)
    assert (o["reviewed"], o["labelled"]) == (8, 1)
    assert (o["accepted"], o["changed"], o["rejected"], o["handed_off"]) == (4, 2, 1, 1)
    assert o["acceptance_rate"] == pytest.approx(4 / 8)
    assert o["override_rate"] == pytest.approx(3 / 8)
    assert o["live_precision"] == pytest.approx(3 / 8)  # tickets 1, 7 and 5's second suggestion end as shown
    assert (o["wrong_escalations"], o["missed_handoffs"], o["unsafe_confident"]) == (1, 2, 2)
    # first clicks: 60 120 300 30 90 45 240 180 20 s -> sorted 20 30 45 60 90 120 180 240 300
    assert o["review_time_s"]["n"] == 9
    assert o["review_time_s"]["p50"] == pytest.approx(90)
    assert o["review_time_s"]["p90"] == pytest.approx(240 + 0.2 * 60)
    # latencies 100..1100 ms: p50 the 6th, p95 halfway between 1000 and 1100
    assert o["latency_ms"]["p50"] == pytest.approx(600)
    assert o["latency_ms"]["p95"] == pytest.approx(1050)
    assert o["cpu_s_per_suggestion"] == pytest.approx(0.36)
    cost = o["cost"]
    # 0.36 CPU-s x 11/10 suggestions per ticket x 1000 tickets = 396 CPU-s = 0.11 h at 0.10
    assert cost["serving_per_1000"] == pytest.approx(0.011)
    # GPU 1800 s = 0.5 h at 2.0 + CPU 7200 CPU-s = 2 h at 0.10 = 1.2, over 10 tickets, per 1000
    assert cost["training_per_1000"] == pytest.approx(120.0)
    assert cost["retrains"] == 2 and cost["training_s"] == pytest.approx(9000)
    assert (cost["cpu_hour_price"], cost["gpu_hour_price"]) == (0.10, 2.0)


def test_overview_of_one_version_and_an_empty_window(runtime):
    constructed(runtime)
    v1 = measures.overview(runtime, SINCE, UNTIL, version="v1")
    assert (v1["suggestions"], v1["reviewed"], v1["accepted"], v1["handed_off"]) == (6, 5, 2, 1)
    assert v1["cost"]["retrains"] == 0  # no run trained v1 in the store
    empty = measures.overview(runtime, UNTIL, UNTIL + timedelta(days=7))
    assert empty["suggestions"] == 0
    assert empty["override_rate"] is None and empty["review_time_s"]["p50"] is None
    assert empty["latency_ms"]["p95"] is None and empty["cost"]["serving_per_1000"] is None


def test_per_label_override_rate_precision_and_corrections(runtime):
    constructed(runtime)
    table = {row["label"]: row for row in measures.per_label(runtime, SINCE, UNTIL)}
    assert list(table) == list(runtime.task.labels)  # every label of the task, in its order
    b, c, h = table[B], table[C], table[H]
    assert (b["suggested"], b["reviewed"], b["accepted"], b["changed"], b["rejected"]) == (6, 5, 3, 1, 1)
    assert b["override_rate"] == pytest.approx(2 / 5)
    assert b["live_precision"] == pytest.approx(2 / 5)
    assert b["corrections"] == [{"to": C, "count": 2}]
    assert (c["suggested"], c["handed_off"], c["override_rate"], c["live_precision"]) == (1, 1, 0.0, 0.0)
    assert c["corrections"] == [{"to": H, "count": 1}]
    assert (h["suggested"], h["accepted"], h["changed"]) == (2, 1, 1)
    assert h["override_rate"] == pytest.approx(0.5) and h["live_precision"] == pytest.approx(0.5)
    assert table[P]["suggested"] == 0 and table[P]["override_rate"] is None


def test_timeline_by_day_and_week(runtime):
    constructed(runtime)
    days = measures.timeline(runtime, SINCE, UNTIL)
    assert [d["start"] for d in days] == ["2026-11-03", "2026-11-04"]
    one, two = days
    assert (one["suggestions"], one["reviewed"], two["suggestions"], two["reviewed"]) == (6, 5, 5, 3)
    assert one["acceptance_rate"] == pytest.approx(2 / 5) and two["acceptance_rate"] == pytest.approx(2 / 3)
    assert one["override_rate"] == pytest.approx(2 / 5) and two["override_rate"] == pytest.approx(1 / 3)
    assert one["review_time_p50_s"] == pytest.approx(90)  # 30 60 90 120 300
    assert two["review_time_p50_s"] == pytest.approx(112.5)  # 20 45 180 240
    assert one["latency_p95_ms"] == pytest.approx(900 + 0.75 * 200)  # 100 300 500 700 900 1100
    assert one["drift_share"] is None  # no version with a drift reference
    weeks = measures.timeline(runtime, SINCE, UNTIL, bucket="week")
    assert [(w["start"], w["suggestions"]) for w in weeks] == [("2026-11-02", 11)]


def test_metrics_export_counts_since_the_beginning(runtime):
    constructed(runtime)
    m = measures.measures_for_metrics(runtime)
    assert sum(row["count"] for row in m["suggestions"]) == 12
    assert {"version": "v2", "label": "", "routing": "unsure", "count": 2} in m["suggestions"]
    decisions = {(d["version"], d["label"], d["action"]): d["count"] for d in m["decisions"]}
    assert decisions[("v1", B, "accepted")] == 2 and decisions[("v1", C, "changed")] == 1
    assert decisions[("v2", "", "labelled")] == 1
    latency = dict((str(b), n) for b, n in m["latency_ms"]["buckets"])
    assert (latency["100"], latency["250"], latency["1000"], latency["+Inf"]) == (1, 2, 10, 12)
    assert m["latency_ms"]["sum"] == pytest.approx(sum(range(100, 1200, 100)) + 5000)
    review = dict((str(b), n) for b, n in m["review_time_s"]["buckets"])
    assert (review["30"], review["60"], review["300"], review["+Inf"]) == (3, 5, 10, 10)
    assert m["cpu_s"]["v1"] == pytest.approx(0.36 * 6)


def test_versions_carry_promotion_and_live_acceptance(runtime):
    constructed(runtime)
    rows = {row["version"]: row for row in measures.versions(runtime)}
    assert list(rows) == ["v1", "v2"]  # only the store knows them here: their files are elsewhere
    assert rows["v1"]["suggestions"] == 7 and rows["v1"]["reviewed"] == 6
    assert rows["v1"]["live_acceptance"] == pytest.approx(2 / 6)
    assert rows["v2"]["live_acceptance"] == pytest.approx(2 / 3)


def test_posting_and_a_prediction_record_what_the_measures_read(runtime):
    with runtime.sessions() as s:
        t = ticket(s, 1)
        s.commit()
        evidence = [{"id": "a", "text": "x", "label": B, "reason": "", "similarity": 0.4321}]
        row = add_suggestion(s, t.id, Prediction(label=C, confidence=0.3, probabilities={B: 0.3, C: 0.7},
                                                 model_version="v1", latency_ms=12.0, evidence=evidence),
                             threshold=0.5, cpu_ms=8.5, task=DEMO_TASK)
        assert (row.label, row.predicted_label, row.nearest_similarity, row.cpu_ms) == (None, C, 0.4321, 8.5)
        assert row.posted_at is None
        first = set_slack_message(s, row.id, "C1", "1.1").posted_at
        assert first is not None
        assert set_slack_message(s, row.id, "C1", "1.2").posted_at == first  # a re-post keeps the clock


# -- drift --------------------------------------------------------------------------------------------

KNOWN = "my charge on the invoice is wrong, please refund the premium"
NEW = "the quantumpay autopay of my homeshield bundle charged twice"


def version_with_reference(runtime, reference: dict | None) -> str:
    """Commit a version (only its papers) to the runtime's registry; with drift.json when reference is given."""
    staging = runtime.registry.stage()
    (staging / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "macro_f1": 0.8, "handoff_recall": 1.0}))
    if reference is not None:
        (staging / DRIFT).write_text(json.dumps(reference))
    info = runtime.registry.commit(staging, {"family": "encoder",
                                             "metrics": {"accuracy": 0.9, "macro_f1": 0.8, "handoff_recall": 1.0}})
    runtime.production.switch(info.name, by="U_ADMIN", reason="test")
    return info.name


REFERENCE = {"holdout_similarity": {"n": 40, "p05": 0.6, "p50": 0.8, "min": 0.5},
             "training_labels": {B: 30, C: 10}, "n_train": 40,
             "vocabulary": {w: 3 for w in "charge invoice wrong refund premium twice bundle charged autopay".split()}}


def live_tickets(runtime, version: str, start: datetime, texts_and_sims, label=B) -> None:
    """Tickets suggested by `version` through add_suggestion, each with its nearest example's similarity."""
    with runtime.sessions() as s:
        for i, (text, similarity) in enumerate(texts_and_sims):
            t = ticket(s, int(start.timestamp()) + i, text=text, at=start)
            s.commit()
            row = add_suggestion(s, t.id, Prediction(label=label, confidence=0.9, probabilities={label: 0.9},
                                                     model_version=version, latency_ms=10.0,
                                                     evidence=[{"id": "e", "text": "x", "label": label,
                                                                "similarity": similarity}]), threshold=0.5, task=DEMO_TASK)
            row.created_at = start + timedelta(minutes=i)
            s.commit()


def test_new_vocabulary_raises_the_drift_share_and_names_the_new_terms(runtime):
    version = version_with_reference(runtime, REFERENCE)
    before, recent = T0 - timedelta(days=7), T0
    live_tickets(runtime, version, before + timedelta(days=1), [(KNOWN, 0.8)] * 18 + [(KNOWN, 0.55)] * 2)
    live_tickets(runtime, version, recent + timedelta(days=1), [(KNOWN, 0.8)] * 10)
    live_tickets(runtime, version, recent + timedelta(days=2), [(NEW, 0.4)] * 8 + [(NEW, 0.7)] * 2)

    last_week = drift(runtime, before, recent)
    this_week = drift(runtime, recent, recent + timedelta(days=7))
    assert last_week["reference"] and last_week["holdout_p05"] == 0.6
    assert (last_week["n"], last_week["below"], last_week["share"]) == (20, 2, 0.1)
    assert (this_week["n"], this_week["below"], this_week["share"]) == (20, 8, 0.4)
    assert [(d["day"], d["n"], d["below"]) for d in this_week["by_day"]] == [("2026-11-03", 10, 0), ("2026-11-04", 10, 8)]
    terms = {t["term"]: t for t in this_week["new_terms"]}
    assert set(terms) == {"quantumpay", "homeshield"}  # known words and stop words are not new
    assert terms["homeshield"]["count"] == 10 and len(terms["homeshield"]["tickets"]) == 10
    assert "homeshield" in terms["homeshield"]["examples"][0].lower()
    assert last_week["new_terms"] == []
    # every suggestion predicted billing_dispute; training was 3/4 billing_dispute
    assert this_week["label_shift"]["predicted"] == {B: 1.0}
    assert this_week["label_shift"]["total_variation"] == pytest.approx(0.25)
    # the timeline's drift share uses each version's own reference
    days = {d["start"]: d["drift_share"] for d in measures.timeline(runtime, recent, recent + timedelta(days=7))}
    assert days == {"2026-11-03": 0.0, "2026-11-04": 0.8}


def test_a_version_without_reference_says_so(runtime):
    version = version_with_reference(runtime, None)
    live_tickets(runtime, version, T0 + timedelta(days=1), [(NEW, 0.4)] * 4)
    result = measures.drift(runtime, SINCE, UNTIL)
    assert (result["version"], result["reference"], result["reason"]) == (version, False, "no reference")
    assert result["share"] is None and result["new_terms"] == [] and result["label_shift"]["total_variation"] is None
    assert result["label_shift"]["predicted"] == {B: 1.0}


def test_new_terms_need_a_few_occurrences_in_more_than_one_ticket():
    tickets = [(1, "zorblax zorblax zorblax"), (2, "Frobnik here"), (3, "frobnik and FROBNIK again, [EMAIL]")]
    found = new_terms(tickets, known={"here", "again"})
    assert [(t["term"], t["count"], t["tickets"]) for t in found] == [("frobnik", 3, [2, 3])]
    assert found[0]["examples"] == ["Frobnik here", "frobnik and FROBNIK again, [EMAIL]"]


def test_a_build_stores_its_drift_reference(trained_version):
    from inference.registry import served_files
    from inference.vocabulary import vocabulary

    registry, version, train, holdout = trained_version
    assert DRIFT in version.manifest["artifacts"] and DRIFT in served_files(version.manifest)
    ref = json.loads((version.path / DRIFT).read_text(encoding="utf-8"))
    sims = ref["holdout_similarity"]
    assert sims["n"] == len(holdout)
    assert -1.0 <= sims["min"] <= sims["p05"] <= sims["p50"] <= 1.0
    assert sum(ref["training_labels"].values()) == ref["n_train"] == len(train)
    assert ref["vocabulary"] == dict(vocabulary(r["text"] for r in train))
    assert not set(ref["vocabulary"]) & {"the", "and", "you"}


def test_the_upgrade_fills_the_new_columns_of_rows_stored_before(store_url):
    """A store at 0004 with suggestions and clicks: 0005 gives them their first/last click, top label and similarity."""
    from alembic import command
    from sqlalchemy import create_engine, insert, select

    from bot.store.schema import _config, upgrade

    engine = create_engine(store_url)
    with engine.connect() as conn, conn.begin():
        command.upgrade(_config(conn), "0004")
    evidence = json.dumps([{"id": "a", "text": "x", "label": C, "similarity": 0.61}])
    with engine.begin() as conn:
        conn.execute(insert(Ticket.__table__).values(id=1, source="t", external_id="1", subject="", text="x",
                                                      created_at=DAY1))
        for sid, label, routing in ((1, None, "unsure"), (2, B, "suggested")):
            conn.execute(insert(Suggestion.__table__).values(
                id=sid, ticket_id=1, label=label, routing=routing, confidence=0.4, reason="", model_version="v1",
                probabilities=json.dumps({B: 0.4, C: 0.6} if sid == 1 else {B: 0.9}), latency_ms=10.0,
                created_at=DAY1, evidence=evidence if sid == 1 else "[]"))
        for fid, action, label in ((1, "change", C), (2, "change", P)):
            conn.execute(insert(Feedback.__table__).values(
                id=fid, suggestion_id=1, ticket_id=1, user_id="U1", user_name="", action=action, label=label,
                model_version="v1", created_at=DAY1 + timedelta(minutes=fid), conflict=False))
    upgrade(engine)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(Suggestion.__table__))}
    one, two = rows[1], rows[2]
    assert (one.predicted_label, one.nearest_similarity) == (C, 0.61)
    assert (one.first_action, one.first_label, one.last_label, one.clicks) == ("change", C, P, 2)
    assert as_utc(one.first_click_at) == DAY1 + timedelta(minutes=1)
    assert (two.predicted_label, two.nearest_similarity, two.first_action, two.clicks) == (B, None, None, None)
    engine.dispose()
