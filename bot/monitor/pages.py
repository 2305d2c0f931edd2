"""The dashboard's HTML pages, built from the measures' plain dicts: pure functions, every value escaped.

Pages hold no script and load nothing: charts are inline SVG (bot.monitor.charts) and the one
stylesheet is allowed by its hash in the Content-Security-Policy (CSP below).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Callable

from bot.links import Links
from bot.monitor.charts import PALETTE, hbars, line_chart, stacked_bars

# (name, path, title) of each page, in the navigation's order.
PAGES = (("overview", "/dashboard", "Overview"), ("labels", "/dashboard/labels", "Labels"),
         ("drift", "/dashboard/drift", "Drift"), ("versions", "/dashboard/versions", "Versions"),
         ("people", "/dashboard/people", "People"))
WINDOWS = (7, 30, 90)  # days offered by the window switch (any 1..366 works in the address)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0 12px 0 0}
header a{color:#cfe3ff;text-decoration:none;padding:4px 8px;border-radius:4px}
header a.here{background:#fff;color:#1d2b3a}
main{padding:16px 24px;max-width:1400px}
.windows{margin-left:auto;font-size:13px}
.tasks{margin-left:16px;font-size:13px}
.windows strong{padding:4px 8px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;margin:8px 0 20px}
.tile{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px}
.tile .value{font-size:24px;font-weight:600}
.tile .name{color:#5a6270;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile .note{color:#5a6270;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(650px,1fr));gap:12px}
.chart-box{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
svg.chart{max-width:100%;height:auto;font-size:11px}
svg .chart-title{font-size:13px;font-weight:600;fill:#1d1d1f}
svg .tick,svg .chart-legend{fill:#5a6270}
svg .grid{stroke:#e6e8eb}
svg .ref{stroke:#D55E00;stroke-dasharray:4 3}
svg .ref-label{fill:#D55E00}
svg .chart-empty{fill:#8a919c;font-size:14px}
table{border-collapse:collapse;background:#fff;margin:8px 0 20px;width:100%}
th,td{border:1px solid #dde1e6;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.live td{background:#eef7ee}
.warn{color:#a33}
.muted{color:#5a6270}
footer{color:#5a6270;font-size:12px;padding:8px 24px 24px}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
CSP = (f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")

Href = Callable[[str, int], str]  # (page path, days) -> the signed relative link (of the page's task)


# -- formatting ----------------------------------------------------------------------------------------

def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def num(value) -> str:
    return "–" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def duration(seconds) -> str:
    """'42 s', '3.5 min', '2.1 h', '1.5 d'."""
    if seconds is None:
        return "–"
    for limit, div, unit in ((90, 1, "s"), (90 * 60, 60, "min"), (36 * 3600, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit}" if unit == "s" else f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


def ms(value) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def money(value) -> str:
    return "–" if value is None else f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


def day(iso: str | None) -> str:
    return "–" if not iso else iso[:16].replace("T", " ")


def who(name: str | None) -> str:
    return name or "–"


# -- the frame --------------------------------------------------------------------------------------------

def page(current: str, title: str, body: str, *, href: Href, days: int, expires_at: str, generated_at: str,
         tasks: list[tuple[str, str | None]] = ()) -> str:
    """A whole page: header with navigation, window switch and (several tasks) task picker (signed links),
    the body, a footer. tasks: (task, link to this page for it; None for the task shown)."""
    here_cls = ' class="here"'
    nav = "".join(f'<a href="{escape(href(path, days))}" rel="noreferrer"{here_cls if name == current else ""}>'
                  f"{escape(label)}</a>" for name, path, label in PAGES)
    here = dict((name, path) for name, path, _ in PAGES)[current]
    picker = ('<span class="tasks">Field: ' + " · ".join(
        f"<strong>{escape(name)}</strong>" if link is None else
        f'<a href="{escape(link)}" rel="noreferrer">{escape(name)}</a>' for name, link in tasks) + "</span>"
        if tasks else "")
    windows = " · ".join(f"<strong>{d} days</strong>" if d == days else
                         f'<a href="{escape(href(here, d))}" rel="noreferrer">{d} days</a>' for d in WINDOWS)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Tuesday · {escape(title)}</title><style>{STYLE}</style></head><body>"
            f'<header><h1>Tuesday</h1><nav>{nav}</nav>{picker}<span class="windows">{windows}</span></header>'
            f"<main><h2>{escape(title)}</h2>{body}</main>"
            f"<footer>Generated {escape(generated_at)} UTC from the store. This link works until "
            f"{escape(expires_at)} UTC; ask <code>/tuesday dashboard</code> for a new one.</footer></body></html>")


def tiles(items: list[tuple[str, str, str]]) -> str:
    """Big numbers: (name, value, note)."""
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="name">{escape(name)}</div><div class="value">{escape(value)}</div>'
        f'<div class="note">{escape(note)}</div></div>' for name, value, note in items) + "</div>"


def charts(*svgs: str) -> str:
    return '<div class="charts">' + "".join(f'<div class="chart-box">{svg}</div>' for svg in svgs) + "</div>"


def table(head: list[str], rows: list[list[tuple[str, str]]], row_classes: list[str] | None = None) -> str:
    """rows of (text, css class) cells; text is escaped here."""
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = (row_classes or [""] * len(rows))[i]
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        out += [f'<td class="{c}">{escape(t)}</td>' if c else f"<td>{escape(t)}</td>" for t, c in row]
        out.append("</tr>")
    return "".join(out + ["</tbody></table>"])


# -- pages ------------------------------------------------------------------------------------------------

def promise_body(p: dict | None) -> str:
    """The production version's promise, its realised rates from clicks with intervals beside it, and a banner while
    live tickets differ from the rows it was measured on (bot.monitor.promise.summary)."""
    if not p:
        return ""
    out = ["<h3>Is the promise holding?</h3>"]
    if p["banner"]:
        out.append(f'<p class="warn"><strong>{escape(p["banner"])}</strong></p>')
    out.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in p["lines"]) + "</ul>")
    rates = p["realised"]
    level = f"{100 * rates['level']:.3g}%"
    rows, classes = [], []
    for name, rate in (("wrong among shown suggestions", rates["shown"]), ("wrong escalations", rates["escalations"])):
        if rate is None:
            continue
        promised = f"≤ {pct(rate['promise'])}" if rate["guaranteed"] else "no promise"
        high = rate["guaranteed"] and rate["low"] is not None and rate["low"] > rate["promise"]
        rows.append([(name, ""), (promised, "num"), (f"{num(rate['wrong'])} of {num(rate['n'])}", "num"),
                     (pct(rate["rate"]), "num"), (f"{pct(rate['low'])} – {pct(rate['high'])}", "num")])
        classes.append("warn" if high else "")
    out.append(table(["rate", "promised", "wrong of clicked", "realised", f"{level} interval"], rows, classes))
    check = p["check"]
    if check is None:
        out.append('<p class="muted">No exchangeability check yet (the CPU workers check every few minutes).</p>')
    else:
        state = "differ from" if check["shifted"] else "look like"
        stale = "" if p["fresh"] else " (not recent: are the CPU workers running?)"
        out.append(f'<p class="muted">Last check {escape(day(check["checked_at"]))} UTC{escape(stale)}: '
                   f"{num(check['below'])} of the last {num(check['n'])} tickets below the holdout's p05 "
                   f"({escape(pct(check['below'] / check['n']) if check['n'] else '–')}; 5% expected): live tickets "
                   f"{state} the promise's rows.</p>")
    return "".join(out)


def overview_body(ov: dict, timeline: list[dict], production: str | None, bucket: str,
                  promise: dict | None = None) -> str:
    """Volume, acceptance, review time, latency and cost over the window, and how they moved; the promise beside the
    realised rates (promise: bot.monitor.promise.summary)."""
    cost = ov["cost"]
    big = tiles([
        ("production", production or "none", "model version serving now"),
        ("tickets", num(ov["tickets"]), f"{num(ov['suggestions'])} suggestions, {num(ov['abstained'])} unsure"),
        ("acceptance", pct(ov["acceptance_rate"]), f"of {num(ov['reviewed'])} reviewed suggestions"),
        ("override rate", pct(ov["override_rate"]), f"changed {num(ov['changed'])}, rejected {num(ov['rejected'])}"),
        ("live precision", pct(ov["live_precision"]), "shown label = the ticket's final label"),
        ("review time", duration(ov["review_time_s"]["p50"]),
         f"p50; p90 {duration(ov['review_time_s']['p90'])} (n={num(ov['review_time_s']['n'])})"),
        ("latency", ms(ov["latency_ms"]["p50"]), f"p50; p95 {ms(ov['latency_ms']['p95'])}"),
        ("cost / 1,000 tickets", money(cost["total_per_1000"]),
         f"serving {money(cost['serving_per_1000'])}, training {money(cost['training_per_1000'])} "
         f"({cost['retrains']} retrains)"),
        ("hand-offs", f"{ov['wrong_escalations']} / {ov['missed_handoffs']}", "wrong escalations / missed hand-offs"),
        ("unsafe confidence", num(ov["unsafe_confident"]), "shown above the threshold, then changed"),
    ])
    starts = [row["start"][5:] for row in timeline]
    per = "week (from Monday)" if bucket == "week" else "day (UTC)"
    reviewed = [row["reviewed"] for row in timeline]
    graphs = charts(
        stacked_bars(f"Suggestions per {per}", starts,
                     {"reviewed": reviewed,
                      "not reviewed": [row["suggestions"] - row["reviewed"] for row in timeline]}),
        line_chart(f"Acceptance and override rate per {per}", starts,
                   {"acceptance": [row["acceptance_rate"] for row in timeline],
                    "override": [row["override_rate"] for row in timeline]}, unit="%"),
        line_chart(f"Review time, median per {per}", starts, {"p50": [row["review_time_p50_s"] for row in timeline]},
                   unit="s"),
        line_chart(f"Suggestion latency, p95 per {per}", starts, {"p95": [row["latency_p95_ms"] for row in timeline]},
                   unit="ms"),
        line_chart(f"Drift share per {per}", starts, {"share": [row["drift_share"] for row in timeline]}, unit="%"),
    )
    return big + promise_body(promise) + graphs


def labels_body(rows: list[dict]) -> str:
    """Per label: suggested, accepted, override rate, precision, and the corrections agents made most."""
    shown = [r for r in rows if r["suggested"]]
    names = [r["label"] for r in shown]
    graphs = charts(
        hbars("First click per label shown", names,
              {"accepted": [r["accepted"] for r in shown], "changed": [r["changed"] for r in shown],
               "rejected": [r["rejected"] for r in shown], "handed off": [r["handed_off"] for r in shown]},
              stacked=True, colours=(PALETTE[2], PALETTE[1], PALETTE[3], PALETTE[4])),
        hbars("Override rate per label", names, {"": [r["override_rate"] for r in shown]}, unit="%",
              colours=(PALETTE[3],)),
    )
    body = table(["label", "suggested", "reviewed", "accepted", "changed", "rejected", "handed off", "override rate",
                  "live precision", "unsafe confidence", "most common corrections"],
                 [[(r["label"], ""), (num(r["suggested"]), "num"), (num(r["reviewed"]), "num"),
                   (num(r["accepted"]), "num"), (num(r["changed"]), "num"), (num(r["rejected"]), "num"),
                   (num(r["handed_off"]), "num"), (pct(r["override_rate"]), "num"), (pct(r["live_precision"]), "num"),
                   (num(r["unsafe_confident"]), "num"),
                   ("; ".join(f"→ {c['to']} ({c['count']})" for c in r["corrections"][:3]) or "–", "")]
                  for r in rows])
    note = ('<p class="muted">A suggestion counts by its first click: accepted when the agent kept the label shown; '
            "override rate = (changed + rejected) / reviewed; live precision = the label shown is the one the "
            "ticket ended with; unsafe confidence = shown above the abstain threshold, then changed or rejected.</p>")
    return graphs + body + note


def people_body(rows: list[dict], labellers: str) -> str:
    """Per person: clicks, corrections, held clicks and agreement with the others (bot.trail.labellers.people)."""
    body = table(["person", "clicks", "changed or rejected", "trains the model", "held (not a labeller)",
                  "agrees with others", "compared"],
                 [[(who(r["user_name"]) if r["user_name"] else r["user_id"], ""), (num(r["clicks"]), "num"),
                   (num(r["corrections"]), "num"), (num(r["trains"]), "num"), (num(r["held"]), "num"),
                   (pct(r["agreement"]), "num"), (num(r["compared"]), "num")] for r in rows],
                 ["warn" if r["held"] else "" for r in rows])
    note = (f'<p class="muted">Labellers: {escape(labellers)}. A click from anyone else is held: shown on the ticket, '
            "never trained on until a manager approves it (<code>/tuesday labellers</code>). Agrees with others = of "
            "this person's clicks on tickets someone else also labelled, the share with the same label.</p>")
    return (body if rows else '<p class="muted">Nobody clicked in this window.</p>') + note


def drift_body(d: dict) -> str:
    """Is live traffic still like the training data: share below the holdout's p05, label shift, new terms."""
    if d["version"] is None:
        return '<p class="muted">No production version yet: drift is measured against the version serving.</p>'
    shift = d["label_shift"]
    head = tiles([
        ("version", d["version"], "production, whose training data is the reference"),
        ("drift share", pct(d["share"]), f"{num(d['below'])} of {num(d['n'])} tickets below the holdout's p05"),
        ("holdout similarity", "–" if d["holdout_p05"] is None else f"{d['holdout_p05']:.3f}",
         "5th percentile" + ("" if d["holdout_p50"] is None else f"; median {d['holdout_p50']:.3f}")),
        ("label shift", "–" if shift["total_variation"] is None else f"{shift['total_variation']:.3f}",
         "total variation, predicted vs training labels (0 = same)"),
        ("new terms", num(len(d["new_terms"])), f"in the {num(d['sampled_tickets'])} newest tickets"),
    ])
    if not d["reference"]:
        head += (f'<p class="warn">{escape(d["version"])} has no drift reference (it was built before Tuesday stored '
                 "one): the next retrain adds it. Predicted labels are shown below.</p>")
    days = [row["day"][5:] for row in d["by_day"]]
    labels = sorted(set(shift["predicted"]) | set(shift["training"] or {}))
    series = {"predicted (live)": [shift["predicted"].get(lb, 0.0) for lb in labels]}
    if shift["training"] is not None:
        series["training"] = [shift["training"].get(lb, 0.0) for lb in labels]
    terms = d["new_terms"]
    graphs = charts(
        line_chart("Share of tickets less similar than the holdout's p05, per day", days,
                   {"share": [row["share"] for row in d["by_day"]]}, unit="%"),
        line_chart("Similarity to the nearest labelled example, mean per day", days,
                   {"mean": [row["mean_similarity"] for row in d["by_day"]]},
                   refs={"holdout p05": d["holdout_p05"], "holdout p50": d["holdout_p50"]}),
        hbars("Label distribution: live predictions vs training", labels, series, unit="%"),
        hbars("New terms (not in the training data), occurrences", [t["term"] for t in terms],
              {"": [t["count"] for t in terms]}, colours=(PALETTE[3],)),
    )
    term_table = table(["term", "occurrences", "tickets", "examples (masked)"],
                       [[(t["term"], ""), (num(t["count"]), "num"), (", ".join(f"#{i}" for i in t["tickets"]), ""),
                         (" | ".join(t["examples"]), "")] for t in terms]) if terms else \
        '<p class="muted">No new terms: every frequent word of recent tickets occurs in the training data.</p>'
    return head + graphs + "<h3>New terms with example tickets</h3>" + term_table


def versions_body(versions: list[dict], history: list[dict]) -> str:
    """Each version's holdout metrics, who promoted it, and how agents received it live; production's history."""
    names = [v["version"] for v in versions]
    graphs = charts(
        line_chart("Holdout metrics and live acceptance per version", names,
                   {"holdout macro-F1": [v["macro_f1"] for v in versions],
                    "holdout accuracy": [v["accuracy"] for v in versions],
                    "live acceptance": [v["live_acceptance"] for v in versions]}, unit="%"),
        stacked_bars("Suggestions per version", names, {"reviewed": [v["reviewed"] for v in versions],
                                                        "not reviewed": [v["suggestions"] - v["reviewed"]
                                                                         for v in versions]}),
    )
    body = table(["version", "built", "family", "accuracy", "macro-F1", "hand-off recall", "promoted", "promoted by",
                  "signed off by", "suggestions", "reviewed", "live acceptance"],
                 [[(v["version"] + (" (production)" if v["live"] else ""), ""), (day(v["created_at"]), ""),
                   (v["family"] or "–", ""), (pct(v["accuracy"]), "num"), (pct(v["macro_f1"]), "num"),
                   (pct(v["handoff_recall"]), "num"), (day(v["promoted_at"]), ""), (who(v["promoted_by"]), ""),
                   (who(v["signed_off_by"]), ""), (num(v["suggestions"]), "num"), (num(v["reviewed"]), "num"),
                   (pct(v["live_acceptance"]), "num")] for v in reversed(versions)],
                 ["live" if v["live"] else "" for v in reversed(versions)])
    events = table(["when (UTC)", "action", "version", "was", "by", "why"],
                   [[(day(e["at"]), ""), (e["action"], ""), (e["version"], ""), (e.get("previous") or "–", ""),
                     (who(e["by"]), ""), (e.get("reason") or "", "")] for e in reversed(history)]) if history else \
        '<p class="muted">Nothing was ever promoted.</p>'
    return graphs + body + "<h3>Production history</h3>" + events


DEFAULT_DAYS, MAX_DAYS = 30, 366


def dashboard_path(page: str = "overview") -> str:
    """The path of a dashboard page ('overview', 'labels', 'drift', 'versions')."""
    return {name: path for name, path, _ in PAGES}[page]


def dashboard_link(runtime, page: str = "overview", days: int = DEFAULT_DAYS, clock: Callable[[], float] | None = None,
                   ttl_hours: float | None = None) -> str:
    """A fresh signed link to a dashboard page (raises LinksOff without TUESDAY_LINK_SECRET / TUESDAY_PUBLIC_URL)."""
    import time

    links = Links.for_runtime(runtime, clock=clock or time.time)
    hours = runtime.settings.dashboard_link_hours if ttl_hours is None else ttl_hours
    url = links.url(dashboard_path(page), ttl_s=hours * 3600)
    return url if days == DEFAULT_DAYS else f"{url}&days={int(days)}"
