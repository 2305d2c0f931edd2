"""Drift: do recent tickets still look like what the production version learned from?

Three signals, each against the reference the trainer stored with the version (drift.json):
- the share of recent suggestions whose nearest labelled example (evidence[0]) is less similar
  than the holdout's 5th percentile: tickets unlike anything the team labelled;
- the total variation between the predicted label distribution and the training one;
- new terms: words frequent in recent tickets that the training data never contains.

A version built before drift.json existed has no reference: drift() then says so with None values.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import and_, case, func, literal, select

from bot.monitor.queries import bounds, bucket_of, day_key
from bot.store.tickets import Suggestion, Ticket
from inference.errors import RegistryError
from inference.registry import DRIFT
from inference.vocabulary import terms

NEW_TERMS_SAMPLE = 2000  # the window's most recent tickets read for new terms (bounded work per request)
NEW_TERM_MIN_COUNT = 3  # occurrences in the sample
NEW_TERM_MIN_TICKETS = 2  # tickets it occurs in
NEW_TERMS_MAX = 20
EXAMPLES_PER_TERM, TICKETS_PER_TERM, EXCERPT_CHARS = 3, 10, 120

# version reference by (this host's registry cache folder, version name): a committed version never changes.
_references: dict[tuple[str, str], dict | None] = {}


def reference(runtime, version: str | None) -> dict | None:
    """A version's drift.json (cached per process), or None when it has none or is unknown."""
    if not version:
        return None
    key = (str(runtime.registry.cache_dir), version)
    if key not in _references:
        try:
            info = runtime.registry.get(version)
        except RegistryError:
            return None  # not cached: it may be committed a moment later
        if DRIFT not in info.manifest.get("artifacts", {}):
            _references[key] = None
        else:
            info = runtime.registry.fetch(version, [DRIFT])
            _references[key] = json.loads((info.path / DRIFT).read_text(encoding="utf-8"))
    return _references[key]


def references(runtime, versions) -> dict[str, dict | None]:
    return {v: reference(runtime, v) for v in versions if v}


def _shares(counts: dict[str, int | float]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: n / total for label, n in sorted(counts.items())} if total else {}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """0.5 x L1 distance between two distributions over labels (0: the same, 1: disjoint)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def drift(runtime, since: datetime, until: datetime | None = None) -> dict:
    """The production version's drift over [since, until).

    Returns {version, reference (bool: the version has drift.json), reason (None, "no production version"
    or "no reference"), holdout_p05, holdout_p50, n (the version's suggestions in the window with
    evidence), below (of those, nearest similarity < holdout_p05), share (below / n), by_day: [{day
    ('YYYY-MM-DD'), n, below, share, mean_similarity}], label_shift: {total_variation, predicted:
    {label: share}, training: {label: share}}, new_terms: [{term, count, tickets: [ticket ids, newest
    first, at most 10], examples: [excerpts of the masked text, at most 3]}] (most frequent first, at
    most 20), sampled_tickets}. Without a reference every number that needs it is None.
    """
    since, until = bounds(since, until)
    version = runtime.production.name()
    ref = reference(runtime, version)
    result = {"version": version, "reference": ref is not None,
              "reason": None if ref else ("no production version" if version is None else "no reference"),
              "holdout_p05": None, "holdout_p50": None, "n": None, "below": None, "share": None, "by_day": [],
              "label_shift": {"total_variation": None, "predicted": {}, "training": None},
              "new_terms": [], "sampled_tickets": 0}
    if version is None:
        return result
    where = and_(Suggestion.model_version == version, Suggestion.created_at >= since, Suggestion.created_at < until)
    p05 = ref["holdout_similarity"].get("p05") if ref else None
    with runtime.sessions() as session:
        # one pass: per day and predicted label, how many, how many have evidence, how many fall below
        day = bucket_of(session, Suggestion.created_at, "day")
        predicted_label = func.coalesce(Suggestion.predicted_label, Suggestion.label)
        below = case((Suggestion.nearest_similarity < p05, 1), else_=0) if p05 is not None else literal(0)
        rows = session.execute(select(day, predicted_label, func.count(), func.count(Suggestion.nearest_similarity),
                                      func.sum(below), func.sum(Suggestion.nearest_similarity))
                               .where(where).group_by(day, predicted_label)).all()
        predicted: Counter = Counter()
        days: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])  # with evidence, below, sum of similarity
        for key, label, n, with_evidence, under, total in rows:
            if label is not None:
                predicted[label] += n
            if with_evidence:
                entry = days[day_key(key)]
                entry[0] += with_evidence
                entry[1] += int(under or 0)
                entry[2] += float(total or 0.0)
        result["label_shift"]["predicted"] = _shares(predicted)
        if ref is None:
            return result
        result.update(holdout_p05=p05, holdout_p50=ref["holdout_similarity"].get("p50"))
        if p05 is not None:
            n = sum(d[0] for d in days.values())
            under = sum(d[1] for d in days.values())
            result.update(n=n, below=under, share=under / n if n else None,
                          by_day=[{"day": d, "n": c, "below": b, "share": b / c, "mean_similarity": total / c}
                                  for d, (c, b, total) in sorted(days.items())])
        training = _shares(ref.get("training_labels", {}))
        result["label_shift"].update(training=training, total_variation=total_variation(result["label_shift"]["predicted"], training)
                                     if predicted else None)
        # the newest suggestions first, by the created_at index: reading stops after the sample
        found = session.execute(
            select(Ticket.id, Ticket.subject, Ticket.text).join(Suggestion, Suggestion.ticket_id == Ticket.id)
            .where(where).order_by(Suggestion.created_at.desc()).limit(NEW_TERMS_SAMPLE)).all()
    tickets = list({tid: (tid, subject, text) for tid, subject, text in found}.values())
    result["sampled_tickets"] = len(tickets)
    result["new_terms"] = new_terms([(tid, _model_text(subject, text)) for tid, subject, text in tickets],
                                    set(ref.get("vocabulary", {})))
    return result


def _model_text(subject: str | None, text: str) -> str:
    return f"{subject}\n\n{text}" if subject and subject not in text else text


def new_terms(tickets: list[tuple[int, str]], known: set[str], *, min_count: int = NEW_TERM_MIN_COUNT,
              min_tickets: int = NEW_TERM_MIN_TICKETS, limit: int = NEW_TERMS_MAX) -> list[dict]:
    """Words of (ticket id, text) pairs not in `known`, frequent enough: [{term, count, tickets, examples}]."""
    counts: Counter = Counter()
    where: dict[str, list[int]] = defaultdict(list)
    texts = dict(tickets)
    for ticket_id, text in tickets:
        words = [w for w in terms(text) if w not in known]
        counts.update(words)
        for word in dict.fromkeys(words):
            where[word].append(ticket_id)
    found = [(word, n) for word, n in counts.items() if n >= min_count and len(where[word]) >= min_tickets]
    found.sort(key=lambda item: (-item[1], item[0]))
    return [{"term": word, "count": n, "tickets": where[word][:TICKETS_PER_TERM],
             "examples": [excerpt(texts[t], word) for t in where[word][:EXAMPLES_PER_TERM]]}
            for word, n in found[:limit]]


def excerpt(text: str, word: str, width: int = EXCERPT_CHARS) -> str:
    """A one-line piece of (already masked) text around the first occurrence of word."""
    flat = " ".join(text.split())
    match = re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", flat, flags=re.IGNORECASE)
    at = match.start() if match else 0
    start = max(0, at - width // 3)
    piece = flat[start:start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(flat) else "")
