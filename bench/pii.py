"""The PII detector measured on the team's test set: per-type recall and precision, names per context, latency.

    python -m bench.pii [--latency] [--stages] [--json] [--misses]

Reads tests/fixtures/pii/tickets.txt (one ticket a line, spans marked inline as
<PHONE>+44 20 7946 0958</PHONE>) and prints the Markdown tables quoted in docs/pii.md;
tests/test_pii.py asserts the goals on the same numbers. Then the same for holdout.txt, tickets
written after the detector was tuned, which nothing is tuned on (its goals are asserted too).
Names are also counted per context (`name_context`: "this is NAME", "my name is NAME", "regards,
NAME", "thanks, NAME", "- NAME", elsewhere), read from the words before each marked name.

A marked span is *found* when the detector's spans (of any type) cover every one of its characters,
so that nothing of it is left after masking. A detected span is a *false positive* when it
overlaps no marked span; precision = (detected - false positives) / detected, per detected type.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from inference.pii import TYPES, detector, door_detector, find_pii, mask_door, mask_pii

TEST_SET = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pii" / "tickets.txt"
HOLDOUT = TEST_SET.with_name("holdout.txt")
MARK = re.compile(r"<(" + "|".join(TYPES) + r")>(.*?)</\1>")


@dataclass
class Ticket:
    text: str
    spans: list[tuple[str, int, int]]  # (type, start, end) of the marked PII


def parse_line(line: str) -> Ticket:
    r"""A ticket from a line with inline marks; "\n" in the line is a line break.

    >>> parse_line("call <PHONE>555-0142</PHONE> now")
    Ticket(text='call 555-0142 now', spans=[('PHONE', 5, 13)])
    """
    line = line.replace("\\n", "\n")
    text, spans, done = [], [], 0
    for match in MARK.finditer(line):
        text.append(line[done:match.start()])
        start = sum(map(len, text))
        text.append(match.group(2))
        spans.append((match.group(1), start, start + len(match.group(2))))
        done = match.end()
    text.append(line[done:])
    return Ticket("".join(text), spans)


def load(path: Path = TEST_SET) -> list[Ticket]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [parse_line(line) for line in lines if line.strip() and not line.startswith("#")]


@dataclass
class Score:
    spans: int = 0
    found: int = 0
    detected: int = 0
    false_positives: int = 0
    missed: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.spans if self.spans else None

    @property
    def precision(self) -> float | None:
        return (self.detected - self.false_positives) / self.detected if self.detected else None


def score(tickets: list[Ticket], find=find_pii) -> dict[str, Score]:
    """Per-type Score of `find` on the tickets (see the module docstring for the rules)."""
    scores = {kind: Score() for kind in TYPES}
    for ticket in tickets:
        detected = find(ticket.text)
        covered = set()
        for item in detected:
            covered.update(range(item.start, item.end))
        for kind, start, end in ticket.spans:
            scores[kind].spans += 1
            if all(i in covered for i in range(start, end)):
                scores[kind].found += 1
            else:
                scores[kind].missed.append(ticket.text[start:end])
        for item in detected:
            scores[item.type].detected += 1
            if not any(start < item.end and item.start < end for _, start, end in ticket.spans):
                scores[item.type].false_positives += 1
                scores[item.type].wrong.append(ticket.text[item.start:item.end])
    return scores


# The context of a marked name, from the words before it (first that fits); independent of the detector's patterns.
NAME_CONTEXTS = (
    ("- NAME", re.compile(r"(?:\A|\s)(?:--?|[\u2013\u2014])[ ]?\Z")),
    ("this is NAME", re.compile(r"(?i)\b(?:this is|it's|it is)[ ]\Z")),
    ("my name is NAME", re.compile(r"(?i)\b(?:my name is|my name's)[ ]{1,2}\Z")),
    ("regards, NAME", re.compile(r"(?i)\bregards\W{0,3}\s*\Z")),
    ("thanks, NAME", re.compile(r"(?i)\b(?:thanks|thank you|thank u|thx|cheers)\b[^\n]{0,20}?\s*\Z")),
)
ELSEWHERE = "elsewhere"


def name_context(text: str, start: int) -> str:
    """The context of a name starting at `start`: one of NAME_CONTEXTS' names, or ELSEWHERE."""
    before = text[max(0, start - 40):start]
    return next((name for name, pattern in NAME_CONTEXTS if pattern.search(before)), ELSEWHERE)


def score_names(tickets: list[Ticket], find=find_pii) -> dict[str, Score]:
    """Recall on marked names per context (a name is found as in `score`); detected counts are not kept."""
    scores = {name: Score() for name, _ in NAME_CONTEXTS} | {ELSEWHERE: Score()}
    for ticket in tickets:
        names = [(start, end) for kind, start, end in ticket.spans if kind == "PERSON"]
        if not names:
            continue
        covered = {i for item in find(ticket.text) for i in range(item.start, item.end)}
        for start, end in names:
            s = scores[name_context(ticket.text, start)]
            s.spans += 1
            if all(i in covered for i in range(start, end)):
                s.found += 1
            else:
                s.missed.append(ticket.text[start:end])
    return scores


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def table(scores: dict[str, Score]) -> str:
    lines = ["| type | spans | found | recall | detected | false positives | precision |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, s in scores.items():
        lines.append(f"| {kind} | {s.spans} | {s.found} | {_pct(s.recall)} | {s.detected} | {s.false_positives} | "
                     f"{_pct(s.precision)} |")
    return "\n".join(lines)


def by_patterns(text: str) -> list:
    """The names the name patterns alone find (inference/pii_people.py: NamePatternRecognizer)."""
    from inference.pii import Found
    from inference.pii_people import NamePatternRecognizer

    return [Found("PERSON", r.start, r.end) for r in NamePatternRecognizer().analyze(text, ["PERSON"])]


def by_model(text: str) -> list:
    """The names spaCy's model alone tags PERSON, unfiltered."""
    from inference.pii import Found

    return [Found("PERSON", a, b) for a, b in detector().names.find(text)]


def context_table(scores: dict[str, Score], patterns: dict[str, Score], model: dict[str, Score]) -> str:
    """Names per context: found by the detector, and by its name patterns alone and its model alone."""
    lines = ["| where the name is | names | found | recall | patterns alone | model alone |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s.spans} | {s.found} | {_pct(s.recall)} | {patterns[name].found} | "
                     f"{model[name].found} |")
    return "\n".join(lines)


def _percentiles(texts: list[str], repeat: int = 3) -> dict:
    took = []
    for _ in range(repeat):
        for text in texts:
            detector().names.seen.clear()
            started = time.perf_counter()
            mask_pii(text)
            took.append(1000 * (time.perf_counter() - started))
    took.sort()
    return {"tickets": len(texts), "p50_ms": round(statistics.median(took), 2),
            "p95_ms": round(took[int(0.95 * (len(took) - 1))], 2), "max_ms": round(took[-1], 2)}


def latency(tickets: list[Ticket]) -> dict:
    """mask_pii's latency on the test set's tickets, on 3-4 KB tickets made of them, and on 100 KB texts."""
    short = [t.text for t in tickets]
    long = [" ".join(short[i:i + 45]) for i in range(0, len(short) - 45, 12)]  # 3 to 4 KB each
    hostile = {"digit pairs": " ".join(f"{10 + i % 90}" for i in range(34_000))[:100_000],
               "capitalised words": ("Claim Number Smith Road " * 5000)[:100_000],
               "dotted word": ("a." * 50_000)[:100_000], "at signs": ("a@" * 50_000)[:100_000],
               "tickets": " ".join(short * 10)[:100_000]}
    worst = {}
    for name, text in hostile.items():
        detector().names.seen.clear()
        started = time.perf_counter()
        mask_pii(text)
        worst[name] = round(1000 * (time.perf_counter() - started), 1)
    return {"short": _percentiles(short), "long": {**_percentiles(long, 1), "chars_p50": int(statistics.median(
        map(len, long)))}, "100 KB (ms)": worst}


def stages(limit: int = 300) -> dict:
    """Each stage's time per ticket on support_tickets test texts (realistic e-mails, median ~430 characters):
    the door's patterns, the full detector, and the worker's stage (full over the door's text), each text new
    to the model's memory of pieces."""
    from bench.datasets import load_split

    texts = [row["text"] for row in load_split("support_tickets", "test")][:limit]
    door_detector(), detector()
    out = {"tickets": len(texts), "chars_p50": int(statistics.median(map(len, texts)))}
    for name, mask in (("door", mask_door), ("full", mask_pii), ("worker", lambda t, door=mask_door: mask_pii(door(t)))):
        took = []
        for text in texts:
            detector().names.seen.clear()
            started = time.perf_counter()
            mask(text)
            took.append(1000 * (time.perf_counter() - started))
        q = statistics.quantiles(took, n=100)
        out[name] = {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", action="store_true", help="also time mask_pii (run it alone on the machine)")
    parser.add_argument("--stages", action="store_true", help="also time the door's and the worker's stage on "
                                                                "support_tickets texts (alone on the machine)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--misses", action="store_true", help="list the missed spans and the false positives")
    args = parser.parse_args(argv)
    find_pii("warm up")
    result = {}
    for name, path in (("test set", TEST_SET), ("holdout", HOLDOUT)):
        tickets = load(path)
        scores, names = score(tickets), score_names(tickets)
        alone = {"patterns": score_names(tickets, by_patterns), "model": score_names(tickets, by_model)}
        result[name] = {"tickets": len(tickets), "scores": {
            k: {"spans": s.spans, "found": s.found, "recall": s.recall, "detected": s.detected,
                "false_positives": s.false_positives, "precision": s.precision} for k, s in scores.items()},
            "names by context": {k: {"names": s.spans, "found": s.found, "recall": s.recall,
                                     "found by the patterns alone": alone["patterns"][k].found,
                                     "found by the model alone": alone["model"][k].found} for k, s in names.items()}}
        if args.json:
            continue
        print(f"{path.name}: {len(tickets)} tickets, {sum(s.spans for s in scores.values())} marked spans\n")
        print(table(scores) + "\n")
        print(context_table(names, alone["patterns"], alone["model"]) + "\n")
        if args.misses:
            for context, s in names.items():
                for text in s.missed:
                    print(f"missed name ({context}): {text!r}")
            for kind, s in scores.items():
                for text in s.missed:
                    print(f"missed {kind}: {text!r}")
                for text in s.wrong:
                    print(f"false {kind}: {text!r}")
    if args.latency:
        result["latency"] = latency(load())
    if args.stages:
        result["stages"] = stages()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key in ("latency", "stages"):
        if key in result:
            print("\n" + json.dumps(result[key], indent=2))


if __name__ == "__main__":
    main()
