"""A Presidio recognizer for e-mail addresses spelled out so that a form or a filter does not take them:
"jane dot doe at gmail dot com", "j.okafor(at)example(dot)com", "wei [at] example [dot] cn", "dmitri @ example.ru".

Linear in the text: one pass finds each written "at" (AT); at each, one anchored pattern with bounded
repeats reads the domain after it, and only where that ends in a top-level domain is the local part read
backwards from a bounded stretch before it (LOCAL_CHARS, reversed, one anchored match).
"at" is an everyday word, so a plain " at " counts only with more to say it is an address (`_plain_at_ok`):
"I logged in at portal.acme.com" stays.
"""

from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer

from inference.pii_recognizers import _result

BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"), ("<", ">"))
AT = re.compile(r"[ ]?(?:" + "|".join(re.escape(a) + r"(?i:at)" + re.escape(b) for a, b in BRACKETS)
                + r")[ ]?|[ ](?:at|AT|At)[ ]|[ ]?@[ ]?")
DOT = (r"(?:[ ]?(?:" + "|".join(re.escape(a) + r"(?i:dot)" + re.escape(b) for a, b in BRACKETS)
       + r")[ ]?|[ ](?:dot|DOT|Dot)[ ]|\.)")
DOT_REVERSED = (r"(?:[ ]?(?:" + "|".join(re.escape(b) + r"(?i:tod)" + re.escape(a) for a, b in BRACKETS)
                + r")[ ]?|[ ](?:tod|TOD|toD)[ ]|\.)")
LABEL = r"[A-Za-z0-9][\w-]{0,62}+"
DOMAIN = re.compile(LABEL + r"(?:" + DOT + LABEL + r"){1,4}+")
DOTS = re.compile(DOT)
LOCAL_REVERSED = re.compile(r"[\w%+'-]{1,64}+(?:" + DOT_REVERSED + r"[\w%+'-]{1,64}+){0,4}+(?![\w.@])")
LOCAL_CHARS = 4 * 65 + 4 * 7  # the longest local part LOCAL_REVERSED takes
TLDS = frozenset("""com net org edu gov mil int info biz io co ai app dev me us uk de fr es it nl be ch at se no dk fi
    pl pt ie ca au nz in jp cn kr br mx ar ru ua za ng ke gh tz ug et ae sa qa kw om bh eg ma tn dz tr gr cz sk ro hu bg
    hr rs si ba mk al sg hk tw my ph id vn th il pk bd lk np ir iq jo lb cl pe ve uy ec bo py cr pa do cu is lu li mt cy
    ee lv lt by kz uz ge am az tv cc ws xyz online site tech email cloud store shop name pro mobi asia eu""".split())
PROVIDERS = frozenset("""gmail googlemail yahoo ymail outlook hotmail live msn icloud me mac aol proton protonmail pm
    gmx web mail yandex zoho qq 163 126 rediffmail naver daum hanmail fastmail tutanota hey orange free laposte
    libero virgilio btinternet sky comcast verizon att sbcglobal bigpond xtra shaw rogers t-online""".split())
# Words that stand before an everyday "at" ("I logged in at ...", "we are at ..."): never a local part.
NOT_LOCAL = frozenset("""me us you him her them it is was are am be been were in on up out here there look looked
    looking logged log login signed sign arrived arrive stuck site live hosted available online anyone someone
    everyone one home work office store shop page go went going order ordered bought buy paid pay registered
    account staff team people we i they he she this that what which who all now later again only""".split())
# An "at" written out or bracketed, or an "@" with a space beside it, holds one of these; a plain "@" counts only
# with a "dot" written out: most windows hold none and cost a few scans each.
AT_PARTS = (" at ", "(at)", "[at]", "{at}", "<at>", " @", "@ ")
MAIL_WORD = re.compile(r"(?i)\b(?:e-?mail|mail|contact|write|reach|address|inbox|send)\b")
MAIL_WORD_CHARS = 40


def _domain_end(text: str, start: int, end: int) -> int | None:
    """Where the domain in text[start:end] ends: after its last label that is a top-level domain, with a label
    before it; None if there is none."""
    labels, at = [], start
    for dot in DOTS.finditer(text, start, end):
        labels.append((at, dot.start()))
        at = dot.end()
    labels.append((at, end))
    for a, b in reversed(labels[1:]):
        if text[a:b].lower() in TLDS:
            return b
    return None


def _spelled(part: str) -> bool:
    """Whether a local part or a domain has a dot written out or bracketed."""
    return any(dot.group() != "." for dot in DOTS.finditer(part))


def _plain_at_ok(text: str, local_start: int, local: str, domain: str) -> bool:
    """Whether a plain " at " joins an address: the local part is no everyday word and has a dot, a digit or
    an underscore in it, or the domain is spelled with "dot" or is a mail provider, or a mail word comes before."""
    if local.lower() in NOT_LOCAL:
        return False
    if any(c in local for c in "._-+") or _spelled(local) or any(c.isdigit() for c in local):
        return True
    if _spelled(domain) or domain.split(".")[0].split(" ")[0].lower() in PROVIDERS:
        return True
    return MAIL_WORD.search(text, max(0, local_start - MAIL_WORD_CHARS), local_start) is not None


class SpelledEmailRecognizer(LocalRecognizer):
    """E-mail addresses with "at" or "dot" written out or bracketed, or with spaces around the "@"."""

    def __init__(self):
        super().__init__(supported_entities=["EMAIL"], name="TuesdaySpelledEmail")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        lowered = text.lower()
        if not any(part in lowered for part in AT_PARTS) and not ("@" in text and "dot" in lowered):
            return found
        for at in AT.finditer(text):
            domain = DOMAIN.match(text, at.end())
            end = domain and _domain_end(text, domain.start(), domain.end())
            if end is None or (at.group() == "@" and not _spelled(text[at.end():end])):
                continue  # a plain address (EmailRecognizer's)
            before = text[max(0, at.start() - LOCAL_CHARS):at.start()][::-1]
            local = LOCAL_REVERSED.match(before)
            if local is None:
                continue
            start = at.start() - local.end()
            written = at.group()
            if written.strip().lower() == "at" and not _plain_at_ok(text, start, text[start:at.start()],
                                                                    text[at.end():end]):
                continue
            found.append(_result(self, "EMAIL", start, end))
        return found
