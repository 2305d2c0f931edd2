"""The review sheet of a candidate: every holdout ticket, what it should be, what the candidate and production said.

The train job stores the answers (models/vN/review.json, see trainer.jobs.review_sheet); this
module judges them and renders the sheet as HTML (`tuesday serve`, signed link), CSV and text.

How an answer is judged: it is routed as that version's server would route it (bot.store.tickets.route,
with the thresholds the version carries; TUESDAY_CONFIDENCE_THRESHOLD is a host's setting and is
not applied): below its hand-off threshold it shows the hand-off label, below its abstain
threshold it shows no label, else its own label. Then

- pass: the label shown is the expected one (a hand-off shown for a ticket labelled hand-off passes);
- fail: another label is shown;
- abstain: no label is shown. The agent is asked instead of misled, so it is not a failure, but
  it is not a pass either: the sheet counts it on its own and lists it between the two.

Rows are sorted failures first (most confident first: a sure mistake matters most), then
abstentions, then passes.
"""

from __future__ import annotations

import csv
import html
import io
import json

from bot.store.tickets import route
from inference.errors import TuesdayError
from inference.registry import REVIEW

PASS, FAIL, ABSTAIN = "pass", "fail", "abstain"
ORDER = {FAIL: 0, ABSTAIN: 1, PASS: 2}
DEFAULT_ABSTAIN = 0.5  # a version without calibration is served with this threshold (bot.worker.suggest)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting with these


class NoReview(TuesdayError):
    """The version has no review sheet (built before review sheets existed, or outside a train job)."""


def judge(answer: dict | None, expected: str, routing: dict) -> dict | None:
    """A model's answer routed as its server would, with its result (pass, fail or abstain)."""
    if answer is None:
        return None
    abstain = routing.get("abstain")
    kind, shown = route(answer["label"], answer["confidence"],
                        threshold=DEFAULT_ABSTAIN if abstain is None else abstain,
                        handoff_threshold=routing.get("handoff") or 0.0, handoff_label=routing.get("handoff_label"),
                        similarity=answer.get("similarity"), far=routing.get("far") or 0.0,
                        far_hands_off=bool(routing.get("far_hands_off")))
    result = ABSTAIN if shown is None else PASS if shown == expected else FAIL
    return {**answer, "routing": kind, "shown": shown, "result": result}


def _counts(rows: list[dict], side: str) -> dict:
    results = [row[side]["result"] for row in rows if row[side] is not None]
    return {key: results.count(key) for key in (PASS, FAIL, ABSTAIN)}


def load_review(registry, version: str) -> dict:
    """The judged sheet of a version: {version, production, routing, summary, rows (failures first)}."""
    data = registry.paper(version, REVIEW)
    if data is None:
        raise NoReview(f"version {version} has no review sheet (it was built before review sheets, "
                       "or without a train job)")
    sheet = json.loads(data)
    theirs = (sheet.get("production") or {}).get("routing") or {}
    rows = []
    for n, row in enumerate(sheet["rows"], start=1):
        ours = judge(row["candidate"], row["expected"], sheet["routing"])
        other = judge(row.get("production"), row["expected"], theirs)
        rows.append({**row, "n": n, "result": ours["result"], "candidate": ours, "production": other})
    rows.sort(key=lambda r: (ORDER[r["result"]], -r["candidate"]["confidence"], r["n"]))
    compared = [r for r in rows if r["production"] is not None]
    summary = {"n": len(rows), "candidate": _counts(rows, "candidate"),
               "production": _counts(rows, "production") if compared else None,
               # tickets the candidate gets right that production got wrong, and the other way round
               "fixed": sum(r["result"] == PASS and r["production"]["result"] != PASS for r in compared),
               "broken": sum(r["result"] != PASS and r["production"]["result"] == PASS for r in compared)}
    return {**sheet, "summary": summary, "rows": rows}


# -- renderings -----------------------------------------------------------------------------------

def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def answer_text(answer: dict | None) -> str:
    """'claim_status 87%', 'no suggestion (claim_status 41%)' or 'hand_off (out of scope, 8%)'."""
    if answer is None:
        return "–"
    if answer["shown"] is None:
        return f"no suggestion ({answer['label']} {_pct(answer['confidence'])})"
    if answer["routing"] == "out_of_scope":
        return f"{answer['shown']} (out of scope, {_pct(answer['confidence'])})"
    return f"{answer['shown']} {_pct(answer['confidence'])}"


def summary_line(review: dict) -> str:
    """'v3 on 120 holdout tickets: 96 pass, 14 fail, 10 abstain; production v2: …; fixes 9, breaks 4'."""
    s = review["summary"]
    c = s["candidate"]
    line = f"{review['version']} on {s['n']} holdout tickets: {c[PASS]} pass, {c[FAIL]} fail, {c[ABSTAIN]} abstain"
    if s["production"] is not None:
        p = s["production"]
        line += (f"; production {review['production']['version']}: {p[PASS]} pass, {p[FAIL]} fail, "
                 f"{p[ABSTAIN]} abstain; {review['version']} gets {s['fixed']} right that production got wrong "
                 f"and {s['broken']} wrong that production got right")
    elif review.get("production") is None:
        line += "; no production model to compare with"
    return line


CSV_COLUMNS = ("result", "id", "text", "expected", "reason", "candidate_shown", "candidate_label",
               "candidate_confidence", "candidate_routing", "production_result", "production_shown",
               "production_label", "production_confidence", "production_routing")


def _cell(value) -> str:
    # Ticket text is customer text: a cell a spreadsheet would run as a formula is kept as text.
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def review_csv(review: dict) -> str:
    """One row per holdout ticket, failures first, with both models' answers (RFC 4180, UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in review["rows"]:
        ours, theirs = row["candidate"], row["production"] or {}
        writer.writerow([_cell(v) for v in (
            row["result"], row.get("id"), row["text"], row["expected"], row.get("reason"), ours["shown"],
            ours["label"], ours["confidence"], ours["routing"], theirs.get("result"), theirs.get("shown"),
            theirs.get("label"), theirs.get("confidence"), theirs.get("routing"))])
    return out.getvalue()


def review_text(review: dict, limit: int = 20) -> str:
    """The summary and the first `limit` failures and abstentions, for a terminal."""
    lines = [summary_line(review)]
    shown = [row for row in review["rows"] if row["result"] != PASS][:limit]
    for row in shown:
        flat = " ".join(row["text"].split())
        lines.append(f"  {row['result']:<7} {row.get('id') or row['n']}: expected {row['expected']}, "
                     f"got {answer_text(row['candidate'])}"
                     + (f"; production {answer_text(row['production'])}" if row["production"] else "")
                     + f" | {flat[:80]}{'…' if len(flat) > 80 else ''}")
    rest = sum(row["result"] != PASS for row in review["rows"]) - len(shown)
    if rest > 0:
        lines.append(f"  … {rest} more (--csv FILE or --html FILE has every ticket)")
    return "\n".join(lines)


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem;color:#1d1d1f;max-width:90rem}
h1{font-size:1.5rem;margin:0 0 .3rem}p{margin:.3rem 0 .8rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.45rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f6;position:sticky;top:0}
td.text{white-space:pre-wrap;max-width:36rem;overflow-wrap:anywhere}.small{color:#666;font-size:.85em}
.tag{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600;font-size:.85em}
.tag.fail{background:#fde2e1;color:#a11}.tag.abstain{background:#fff1cc;color:#7a5a00}
.tag.pass{background:#e1f5e6;color:#175c2c}.counts td,.counts th{border:none;padding:.1rem 1rem .1rem 0}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _answer_cell(answer: dict | None) -> str:
    if answer is None:
        return "<td class=small>–</td>"
    return (f"<td>{_e(answer_text(answer))}<br><span class='tag {_e(answer['result'])}'>{_e(answer['result'])}"
            "</span></td>")


def review_html(review: dict, *, csv_url: str | None = None) -> str:
    """The sheet as one self-contained page (no scripts, no external assets; every value escaped)."""
    s, version = review["summary"], review["version"]
    production = (review.get("production") or {}).get("version")
    head = f"<th>{_e(version)}</th>" + (f"<th>production {_e(production)}</th>" if s["production"] else "")
    body = "".join(
        f"<tr><td>{_e(key)}</td>" + f"<td>{s['candidate'][key]}</td>"
        + (f"<td>{s['production'][key]}</td>" if s["production"] else "") + "</tr>" for key in (PASS, FAIL, ABSTAIN))
    rows = []
    for row in review["rows"]:
        rows.append(
            f"<tr class='{_e(row['result'])}'><td class=small>{_e(row.get('id') or row['n'])}</td>"
            f"<td><span class='tag {_e(row['result'])}'>{_e(row['result'])}</span></td>"
            f"<td class=text>{_e(row['text'])}</td>"
            f"<td>{_e(row['expected'])}</td>"
            f"<td>{_e(answer_text(row['candidate']))}</td>"
            + (_answer_cell(row["production"]) if production else "")
            + f"<td>{_e(row.get('reason') or '')}</td></tr>")
    columns = ["id", "result", "ticket", "expected", f"candidate {version}"]
    columns += [f"production {production}"] if production else []
    columns.append("reviewer's reason")
    compare = (f"Compared with production {_e(production)} on the same tickets."
               if production else "There was no production model to compare with.")
    return "".join([
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'><meta name=referrer content=no-referrer>",
        f"<title>Review sheet: {_e(version)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Review sheet: candidate {_e(version)}</h1>",
        f"<p>Every ticket of the holdout (never trained on), with the label the team gave it and what each model "
        f"would have shown an agent. {compare} Failures first, then abstentions, then passes.</p>",
        f"<p>{_e(summary_line(review))}.</p>",
        f"<table class=counts style='width:auto'><tr><th></th>{head}</tr>{body}</table>",
        "<p class=small>pass: the label shown is the expected one. fail: another label is shown. abstain: the "
        "model was not confident enough and would ask the agent instead of suggesting (not a failure, not a "
        "pass). A model below its hand-off threshold shows the hand-off label.</p>",
        f"<p><a href='{_e(csv_url)}'>Download as CSV</a></p>" if csv_url else "",
        "<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead><tbody>",
        "".join(rows), "</tbody></table></body></html>\n"])
