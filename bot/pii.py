"""First-pass PII masking applied at the door, before anything is stored.

Customers write the text, so every step is linear in its length. Each pattern either looks at a
bounded window (PHONE; CARD, only inside a run of at most MAX_CARD_RUN characters) or, past a
bounded start, takes its whole run possessively (``++``: no backtracking) and always succeeds, so
no character is read again from a later start; whether a run is PII is then decided in Python.
"""

from __future__ import annotations

import re

# Starts only where a run of local-part characters starts, so a long word is read once, not once per letter.
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)++")
# Digit groups joined by one space or dash; _cards looks for card numbers inside each such run.
DIGIT_RUN = re.compile(r"\b\d++(?:[ -]\d++)*+")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# A longer run is no card (ACCOUNT masks it whole); the cap keeps CARD's bounded backtracking off 100 KB of digits.
MAX_CARD_RUN = 1000
PHONE = re.compile(r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])?\d{3}[\s.-]\d{4}\b")
# An identifier: up to four letters and a '-' or '#', then digit groups joined by dashes or one space
# (account, policy and routing numbers); masked by _account when it has six or more digits.
ACCOUNT = re.compile(r"\b[A-Za-z]{0,4}[-#]?\d++(?:(?:-++|\s)\d++)*+")
ACCOUNT_DIGITS = 6
DIGITS = "0123456789"


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _glued(match: re.Match) -> bool:
    """Whether the match runs straight into a word ("1234abc"), so it ends inside one."""
    end, text = match.end(), match.string
    return end < len(text) and (text[end].isalnum() or text[end] == "_")


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group()


def _cards(match: re.Match) -> str:
    run = match.group()
    if not 13 <= len(run) <= MAX_CARD_RUN:
        return run
    # A last group that runs into a word ("1111abc") cannot end a card: search before it.
    head = run[:len(run.rstrip(DIGITS))] if _glued(match) else run
    return CARD.sub(_card, head) + run[len(head):]


def _account(match: re.Match) -> str:
    found = match.group()
    if sum(map(str.isdecimal, found)) < ACCOUNT_DIGITS:
        return found
    if not _glued(match):
        return "[ACCOUNT]"
    # The last digit group runs into a word ("78abc"): it counts, but only the groups before it are masked.
    kept = found.rstrip(DIGITS)
    head = kept.rstrip("-") if kept.endswith("-") else kept[:-1]
    if not head[-1:].isdecimal():
        return found  # one group, glued: a word, not a number
    return "[ACCOUNT]" + found[len(head):]


def mask_pii(text: str) -> str:
    """Replace emails, card numbers, phone numbers and long account numbers with placeholders.

    >>> mask_pii("call 555-0142 or mail j.doe@example.com, card 4111 1111 1111 1111")
    'call [PHONE] or mail [EMAIL], card [CARD]'
    """
    text = EMAIL.sub("[EMAIL]", text)
    text = DIGIT_RUN.sub(_cards, text)
    text = PHONE.sub("[PHONE]", text)
    return ACCOUNT.sub(_account, text)
