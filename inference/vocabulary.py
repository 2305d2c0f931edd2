"""The words of a ticket, as drift counts them: one rule for the training vocabulary a version
stores (trainer) and the recent tickets it is compared with (bot.monitor.drift).

>>> terms("Your new [EMAIL] says the HomeShield+ plan is 25% off, and the 2024 plan isn't")
['new', 'says', 'homeshield', 'plan', 'plan']
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# PII placeholders ([EMAIL], [PHONE], ...) are the masking's words, not the customers'.
PLACEHOLDER = re.compile(r"\[[A-Z_]{1,32}\]")
# Runs of letters or digits: a single character class, so matching is linear in the text.
WORD = re.compile(r"[^\W_]+")
MIN_LENGTH = 3
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are aren as at be because been before being below
between both but by can cannot could couldn did didn do does doesn doing don down during each few for from
further get got had hadn has hasn have haven having he her here hers herself him himself his how i if in into
is isn it its itself just let me more most my myself no nor not now of off on once only or other ought our ours
ourselves out over own please same she should shouldn so some such than thank thanks that the their theirs
them themselves then there these they this those through to too under until up very was wasn we were weren
what when where which while who whom why will with won would wouldn you your yours yourself yourselves hello
dear regards hi hey
""".split())


def terms(text: str) -> list[str]:
    """The counted words of a text, in order: lower-case runs of letters/digits, at least 3 long,
    not a stop word, not only digits (ids and amounts are not vocabulary)."""
    text = PLACEHOLDER.sub(" ", text or "").lower()
    return [w for w in WORD.findall(text)
            if len(w) >= MIN_LENGTH and not w.isdigit() and w not in STOP_WORDS]


def vocabulary(texts: Iterable[str]) -> Counter:
    """word -> occurrences over texts."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(terms(text))
    return counts
