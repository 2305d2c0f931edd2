"""First-pass PII masking applied at the door, before anything is stored."""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(r"(?<![\w-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])?\d{3}[\s.-]\d{4}\b")
# identifiers with six or more digits: account, policy and routing numbers
ACCOUNT = re.compile(r"\b[A-Za-z]{0,4}[-#]?(?=(?:[-\s]?\d){6,})\d[\d-]*\d\b")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group()


def mask_pii(text: str) -> str:
    """Replace emails, card numbers, phone numbers and long account numbers with placeholders.

    >>> mask_pii("call 555-0142 or mail j.doe@example.com, card 4111 1111 1111 1111")
    'call [PHONE] or mail [EMAIL], card [CARD]'
    """
    text = EMAIL.sub("[EMAIL]", text)
    text = CARD.sub(_card, text)
    text = PHONE.sub("[PHONE]", text)
    return ACCOUNT.sub("[ACCOUNT]", text)
