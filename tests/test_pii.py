"""PII masking (inference/pii.py): the team's test set and the held-out set against the goals, the rules, linear
time, the scan. tests/test_pii_identity.py and test_pii_names.py hold the rules of issue 20's types and names."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stdnum import iban, luhn
from stdnum.us import ssn

from bench.pii import HOLDOUT, load, parse_line, score
from inference.pii import MARGIN, OVERLAP, TYPES, WINDOW, PiiInSnapshot, find_pii, mask_pii, refuse_pii, windows

ROOT = Path(__file__).resolve().parent.parent
# docs/pii.md: recall of these on the test set must not fall below 99 % (names and addresses: 95 %) ...
RECALL_GOALS = {"EMAIL": 0.99, "PHONE": 0.99, "CARD": 0.99, "IBAN": 0.99, "SSN": 0.99, "IP": 0.99, "DOB": 0.99,
                "PASSPORT": 0.99, "LICENCE": 0.99, "PERSON": 0.95, "ADDRESS": 0.95}
# ... nor precision below what was measured less a margin (a new false positive or two may come)
PRECISION_GOALS = {"EMAIL": 0.95, "PHONE": 0.95, "CARD": 0.95, "IBAN": 0.95, "SSN": 0.95, "URL": 0.9, "ACCOUNT": 0.9,
                   "IP": 0.9, "DOB": 0.9, "PASSPORT": 0.9, "LICENCE": 0.9, "PERSON": 0.9}
# The held-out set (written after tuning, never tuned on): recall of every type at least 95 % (issue 20).
HOLDOUT_RECALL_GOAL = 0.95
SSN_WORD = re.compile(r"(?i)(?:ssn|ss#|social security)\W{0,3}(?:number|no\.?)?\W{0,3}\Z")


@pytest.fixture(scope="module")
def tickets():
    return load()


@pytest.fixture(scope="module")
def scores(tickets):
    return score(tickets)


@pytest.fixture(scope="module")
def holdout_scores():
    return score(load(HOLDOUT))


def test_the_test_set_covers_every_type_and_many_hard_negatives(tickets):
    assert len(tickets) >= 300
    kinds = [kind for t in tickets for kind, _, _ in t.spans]
    for kind in ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "URL", "ACCOUNT", "PERSON", "ADDRESS", "DOB"):
        assert kinds.count(kind) >= 10, kind
    assert kinds.count("PASSPORT") >= 4 and kinds.count("LICENCE") >= 5 and kinds.count("IP") >= 8
    assert sum(not t.spans for t in tickets) >= 60  # tickets with no PII at all


def test_the_held_out_set_covers_every_type():
    held_out = load(HOLDOUT)
    kinds = [kind for t in held_out for kind, _, _ in t.spans]
    assert {kind for kind in TYPES if kinds.count(kind) == 0} == set()
    assert kinds.count("PERSON") >= 50 and kinds.count("DOB") >= 10 and kinds.count("PASSPORT") >= 5
    assert sum(not t.spans for t in held_out) >= 40


def test_the_test_sets_values_are_valid():
    """Cards pass Luhn, IBANs their checksum, SSNs the SSA's rules (or follow the word "SSN": then any number is
    one, issue 20): a miss is the detector's, not the data's."""
    for t in load():
        for kind, start, end in t.spans:
            value = t.text[start:end]
            digits = "".join(c for c in value if c.isdigit())
            if kind == "CARD":
                assert luhn.is_valid(digits), value
            elif kind == "IBAN":
                assert iban.is_valid(value), value
            elif kind == "SSN":
                assert ssn.is_valid(digits) or SSN_WORD.search(t.text[:start]), value


def test_inline_marks_become_spans():
    ticket = parse_line(r"Thanks,\n<PERSON>Ann Lee</PERSON>, <PHONE>555-0142</PHONE>")
    assert ticket.text == "Thanks,\nAnn Lee, 555-0142"
    assert ticket.spans == [("PERSON", 8, 15), ("PHONE", 17, 25)]


@pytest.mark.parametrize("kind", RECALL_GOALS)
def test_recall_meets_the_goal(scores, kind):
    s = scores[kind]
    assert s.recall >= RECALL_GOALS[kind], f"{kind}: {s.found}/{s.spans} found; missed {s.missed}"


@pytest.mark.parametrize("kind", PRECISION_GOALS)
def test_precision_meets_the_goal(scores, kind):
    s = scores[kind]
    assert s.precision >= PRECISION_GOALS[kind], f"{kind}: false positives {s.wrong}"


@pytest.mark.parametrize("kind", TYPES)
def test_recall_on_the_held_out_set_meets_the_goal(holdout_scores, kind):
    """Beside the tuned set: the set written after tuning (docs/pii.md has both)."""
    s = holdout_scores[kind]
    assert s.spans and s.recall >= HOLDOUT_RECALL_GOAL, f"{kind}: {s.found}/{s.spans} found; missed {s.missed}"


def test_precision_on_the_held_out_set(holdout_scores):
    wrong = {kind: s.wrong for kind, s in holdout_scores.items() if s.detected and s.precision < 0.9}
    assert wrong == {}


def test_masking_is_stable(tickets):
    """Masked text holds nothing the detector finds, so a masked snapshot passes the scan before training."""
    for t in tickets:
        masked = mask_pii(t.text)
        assert find_pii(masked) == [], masked


def test_masks_emails_phones_cards_and_account_numbers():
    text = ("Jo here, j.doe@example.com, (555) 013-2299 or 555-0142, card 4111 1111 1111 1111, "
            "policy HM-204-88123, acct 12345678, IBAN GB82 WEST 1234 5698 7654 32, SSN 536-22-8410")
    masked = mask_pii(text)
    for raw in ("j.doe@example.com", "013-2299", "555-0142", "4111", "12345678", "WEST", "8410"):
        assert raw not in masked
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[ACCOUNT]", "[IBAN]", "[SSN]"):
        assert placeholder in masked
    assert "policy HM-204-88123" in masked  # a policy number is not PII


def test_leaves_ordinary_numbers_alone():
    text = "2 cars, 2019 Civic, $1,250.00 deductible, claim CLM-7781 on 03/04/2024"
    assert mask_pii(text) == text


@pytest.mark.parametrize("text, masked", [
    ("acct 20451 77 please", "acct [ACCOUNT] please"),  # groups joined by a space are one number
    ("policy HM-204-88123.", "policy HM-204-88123."),  # policy, claim and order numbers stay
    ("order 4155552671 shipped", "order 4155552671 shipped"),  # a phone-shaped number after 'order'
    ("call 4155552671 today", "call [PHONE] today"),
    ("+44 20 7946 0958", "[PHONE]"),
    ("card 4111 1111 1111 1112 declined", "card 4111 1111 1111 1112 declined"),  # fails Luhn
    ("IMEI 356938035643809", "IMEI 356938035643809"),  # Luhn-valid, but an IMEI
    ("DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"),  # wrong IBAN checksum
    ("mail a.b+c@mail.example.org, not a@b", "mail [EMAIL], not a@b"),
    ("see https://acme.example/faq or https://acme.example/reset?token=Zx9Qk2Lm7Rt4", "see https://acme.example/faq "
     "or [URL]"),
    ("Thanks,\nMaria Gonzalez", "Thanks,\n[PERSON]"),
    ("ship to 42 Elm Street, Springfield, IL 62704 asap", "ship to [ADDRESS] asap"),
])
def test_masking_keeps_its_rules(text, masked):
    assert mask_pii(text) == masked


def test_a_span_across_a_window_cut_is_found_whole():
    for length in (WINDOW - 40, WINDOW - 10, WINDOW + 5, 2 * WINDOW - OVERLAP - 20):
        text = "x " * (length // 2) + "IBAN GB82 WEST 1234 5698 7654 32 and +44 20 7946 0958 " + "y " * 3000
        assert "[IBAN]" in mask_pii(text) and "[PHONE]" in mask_pii(text), length
    cuts = windows(50_000)
    assert cuts[0][0] == 0 and cuts[-1][1] == 50_000
    assert all(b[0] < a[1] - 2 * MARGIN for a, b in zip(cuts, cuts[1:]))  # overlapping by more than two margins


def one_run(text: str) -> float:
    started = time.perf_counter()
    mask_pii(text)
    return time.perf_counter() - started


def best_time(text: str, runs: int = 3) -> float:
    """The fastest of a few runs: a busy shared CPU only ever adds time."""
    return min(one_run(text) for _ in range(runs))


# Shapes that made the old patterns backtrack (unbounded look-ahead, a scan from every letter of a word).
SHAPES = {
    "digit pairs": lambda n: " ".join(f"{10 + i % 90}" for i in range(n // 3 + 1))[:n],
    "one repeated word": lambda n: ("claim " * (n // 6 + 1))[:n],
    "one long word": lambda n: "a" * n,
    "dashed digits": lambda n: ("1-" * (n // 2 + 1))[:n],
    "dotted word": lambda n: ("a." * (n // 2 + 1))[:n],
    "at signs": lambda n: ("a@" * (n // 2 + 1))[:n],
    "digit pairs then a letter": lambda n: " ".join(f"{10 + i % 90}" for i in range(n // 3 + 1))[:n - 1] + "x",
    # what the IP recognizer's patterns start on: octets without an end, hex groups, double colons
    "dotted octets": lambda n: ("255." * (n // 4 + 1))[:n],
    "hex and colons": lambda n: ("a:" * (n // 2 + 1))[:n],
    "double colons": lambda n: ("ab::" * (n // 4 + 1))[:n],
    # what issue 20's patterns start on: their words, each followed by what they read next (inference/pii_identity.py,
    # pii_spelled.py, pii_people.py)
    "dob words": lambda n: ("dob: is " * (n // 8 + 1))[:n],
    "dates after one dob": lambda n: ("dob " + "1/1/1 12 may " * (n // 13 + 1))[:n],
    "licence no runs": lambda n: ("licence no " * (n // 11 + 1))[:n],
    "at and dot words": lambda n: ("a at b dot c (at) [dot] " * (n // 24 + 1))[:n],
    "one long local part": lambda n: "a." * (n // 2 - 10) + " at gmail dot com",
    "sign-off words": lambda n: ("thanks, regards, - this is " * (n // 27 + 1))[:n],
}
# Shapes where every few characters are a candidate to check (a name for the model, a number for
# phonenumbers, an entity for the anonymizer): linear too, with a larger constant (docs/pii.md).
BUSY_SHAPES = {
    "capitalised words": lambda n: ("Claim Number Smith Road " * (n // 24 + 1))[:n],
    "phone numbers": lambda n: ("0207 946 0958, " * (n // 15 + 1))[:n],
    "emails": lambda n: ("a.b@c.de " * (n // 9 + 1))[:n],
    "ip addresses": lambda n: ("10.0.3.44 fe80::1 " * (n // 18 + 1))[:n],
    # a cue word and a number every few characters: the phone and address recognizers check each number too
    "passport groups": lambda n: ("passport no. 1-a " * (n // 17 + 1))[:n],
    "ssn digits": lambda n: ("ssn 123-45-" * (n // 11 + 1))[:n],
    "spelled e-mails": lambda n: ("a at b dot com " * (n // 15 + 1))[:n],
    "dates of birth": lambda n: ("DOB 1990-02-11 " * (n // 15 + 1))[:n],
    "sign-offs": lambda n: ("Thanks, Ana Li\n- Bo Wu\n" * (n // 23 + 1))[:n],
    "openings": lambda n: ("Hi, this is Ana Li from Acme. " * (n // 30 + 1))[:n],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_masking_is_linear_in_the_text_length(shape):
    make = SHAPES[shape]
    mask_pii(make(1000))  # warm up
    # 4x the text: linear work takes ~4x, quadratic ~16x; 8x leaves room for a busy CPU (3.1x was once
    # seen for 2x the text, alone, with the best of three runs).
    once, four = best_time(make(100_000), 5), best_time(make(400_000), 5)
    assert once < 0.100, f"{shape}: {once * 1000:.0f} ms for 100 KB"
    assert four < 8 * once, f"{shape}: {once * 1000:.1f} ms for 100 KB but {four * 1000:.1f} ms for 400 KB"


@pytest.mark.parametrize("shape", BUSY_SHAPES)
def test_busy_text_is_linear_too(shape):
    make = BUSY_SHAPES[shape]
    mask_pii(make(1000))
    # 100 KB against 200 KB: between 50 and 100 KB the time of 11,000 e-mail addresses jumps ~3x once
    # (allocation, not the algorithm: 100 -> 200 KB is then ~1.8x), while a quadratic step stays ~4x.
    once, twice = best_time(make(100_000), 5), best_time(make(200_000), 5)  # five: a busy CPU only adds time
    assert once < 2.0, f"{shape}: {once * 1000:.0f} ms for 100 KB"
    assert twice < 3 * once, f"{shape}: {once * 1000:.1f} ms for 100 KB but {twice * 1000:.1f} ms for 200 KB"


def test_refuse_pii_names_rows_and_types_never_the_text():
    rows = [{"id": "import:17", "text": "mail me at j.doe@example.com", "label": "x"},
            {"id": "feedback:ticket-9", "text": "card 4111 1111 1111 1111", "reason": "call 555-013-2299"},
            {"id": "clean", "text": "where is my claim CLM-7781?", "reason": "asks for a status"}]
    refuse_pii(rows[2:])  # nothing found: no error
    with pytest.raises(PiiInSnapshot) as raised:
        refuse_pii(rows)
    said = str(raised.value)
    assert said == ("snapshot holds PII in 2 rows (ids import:17, feedback:ticket-9: EMAIL, CARD, PHONE); "
                    "mask or remove them (tuesday forget) and retrain")
    assert "j.doe" not in said and "4111" not in said


def test_building_the_detector_does_not_load_torch():
    code = ("import sys; from inference.pii import mask_pii; print(mask_pii('Hi, I am Ann Lee, ann@example.com')); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Hi, I am [PERSON], [EMAIL]", "[]"]


def test_the_docs_tables_are_the_measured_ones(tickets, scores, holdout_scores):
    """docs/pii.md quotes `python -m bench.pii` (per type and names per context, on both sets); a detector change
    that moves a number must update it."""
    from bench.pii import by_model, by_patterns, context_table, score_names, table

    docs = (ROOT / "docs" / "pii.md").read_text(encoding="utf-8")
    assert table(scores) in docs and table(holdout_scores) in docs
    for ticket_set in (tickets, load(HOLDOUT)):
        names = [score_names(ticket_set, find) for find in (find_pii, by_patterns, by_model)]
        assert context_table(*names) in docs


def test_demo_examples_mask_to_rows_the_scan_accepts():
    rows = [json.loads(line) for line in (ROOT / "inference" / "demo" / "examples.jsonl").read_text().splitlines()]
    masked = [{**r, "text": mask_pii(r["text"]), "reason": mask_pii(r.get("reason") or "")} for r in rows[:80]]
    refuse_pii(masked)
