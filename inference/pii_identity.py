"""A Presidio recognizer for what identifies a person on paper, found by the word next to it: dates of birth,
passport and driver's licence numbers, and SSNs whatever the validity rules say.

None of these has a shape of its own — a date of birth is a date like an order date, a passport number
looks like a booking reference — so each is masked only where a word right next to it says what it is:
"DOB 1990-02-11", "born on 5 August 1978", "passport no. C01X00T47", "driver's licence D1234567",
"SSN 123-45-6789". The word makes it PII even where a validity rule rejects the number: an SSN the SSA's
rules reject (123-45-6789 is on the published list of samples) is still a customer writing theirs, maybe
with a typo. Dates and numbers with no such word next to them stay (docs/pii.md).

Linear in the text: one pass of each kind's pattern (PATTERNS, skipped where its word cannot be) finds the
word and reads a bounded stretch after it, possessively (the joining words, then the number); a date of birth
named after it ("1990-02-11 (DOB)") is looked for only in a window that holds a DOB word.
"""

from __future__ import annotations

import re

from presidio_analyzer import LocalRecognizer

from inference.pii_recognizers import _result

# The words, by the kind of number they name. "licence"/"license" alone names one only with "no", "number" or
# "#" after it ("license key ABCD-..." and "the licence no longer works" stay); "DL" only in capitals.
CUES = {
    "DOB": r"d\.?o\.?b\b\.?|date[ ]of[ ]birth|birth[ ]?date|birthday|born(?:[ ]on)?",
    "PASSPORT": r"passport",
    "DRIVER": r"(?:drivers?|driver[’']s|drivers[’']|driving)[ ]licen[cs]e|(?-i:DL)(?=[ ]?[#:]|[ ]\d|[ ]no\b|[ ]num)",
    "LICENCE": r"licen[cs]e(?=[ ]?(?:no\b|nr\b|number|num\b|\#))",
    "SSN": r"ssn|ss\#|social[ ]security|social[ ]sec\b",
}
# Each cue holds one of these (lower-cased; "DL" as written): a window without them costs a few scans in C.
CUE_PARTS = {"DOB": ("ob", "o.b", "birth", "born"), "PASSPORT": ("passport",), "DRIVER": ("licen", "DL"),
             "LICENCE": ("licen",), "SSN": ("ss", "social")}
TYPE = {"DOB": "DOB", "PASSPORT": "PASSPORT", "DRIVER": "LICENCE", "LICENCE": "LICENCE", "SSN": "SSN"}
# What may come between the word and the number: punctuation and a few joining words, bounded and taken
# possessively (nothing is read twice when no number follows).
PUNCT = r"[ \t\n:#=(\-–—.,]{0,6}+"
JOIN = (PUNCT + r"(?:(?:(?:i[dst]|was|o[fn]|to|should|be|actually|reads|s(?:ays|hows)|n(?:umber|um|o|r))\b|n°)\.?"
        + PUNCT + r"){0,4}+")
MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
DAY = r"(?:3[01]|[12]\d|0?[1-9])(?:st|nd|rd|th)?"
YEAR = r"(?:19|20)\d\d"
# 1990-02-11, 14/02/1987, 03.11.1992, 07/04/85, 5 August 1978, 21st of June, July 9, 1990, Sept 3 1983
DATE = (r"(?=\d|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"  # what a date starts with: a quick no
        r"(?:" + YEAR + r"[-./](?:1[0-2]|0?[1-9])[-./](?:3[01]|[12]\d|0?[1-9])"
        r"|(?:3[01]|[12]\d|0?[1-9])[-./](?:3[01]|[12]\d|0?[1-9])[-./](?:" + YEAR + r"|\d\d)"
        r"|" + DAY + r"(?:[ ]of)?[ ]" + MONTH + r"(?:,?[ ]" + YEAR + r")?"
        r"|" + MONTH + r"[ ]" + DAY + r"(?:,?[ ]" + YEAR + r")?"
        r")(?![\w]|[-./]\d)")
# A passport or licence number: letters and digits (two digits at least), in groups joined by "-" (or by a
# space when the next group starts with a digit within three capitals: "MH12 20110012345", not "D1234567 was").
ID = (r"(?-i:(?=(?:[A-Za-z-]{0,12}+\d){2})[A-Za-z0-9]{1,20}+(?:-[A-Za-z0-9]{1,20}+|[ ](?=[A-Z]{0,3}\d)[A-Z0-9]{1,20}+)"
      r"{0,5}+(?![\w@]))")
SSN_SHAPE = r"\d{3}(?P<sep>[- .]?)\d{2}(?P=sep)\d{4}(?![\w-]|[.,]\d)"
VALUE = {"DOB": DATE, "PASSPORT": ID, "DRIVER": ID, "LICENCE": ID, "SSN": SSN_SHAPE}
PATTERNS = {kind: re.compile(r"(?i)(?<![\w])(?:" + cue + r")(?!\w)" + JOIN + r"(?P<value>" + VALUE[kind] + r")")
            for kind, cue in CUES.items()}
# A date with the word after it: "1990-02-11 (DOB)", "14/02/1987 is my date of birth". Looked for in the
# DOB_BEFORE characters before each such word (a text full of dates is not read date by date), for the first
# MAX_DOB_WORDS words of a window.
DOB_WORD = re.compile(r"(?i)(?<![\w])(?:d\.?o\.?b\b|date of birth|birth ?date|birthday)")
DOB_BEFORE = 40
MAX_DOB_WORDS = 16  # DOB words per window looked behind; past them (a hostile text) only dates after a word count
DIGIT = re.compile(r"\d")  # every date has one
DATE_BEFORE_WORD = re.compile(r"(?i)(?<![\w/.-])(?P<value>" + DATE + r")[ \t]{0,3}(?:[(\[\-–][ \t]{0,3})?"
                              r"(?:(?:is|was)[ ](?:my|his|her|their)[ ]|=[ ]?)?\Z")
# Software keys (four or more groups of 4-6): "license no. XK4P-99Q2-7TTR-M1NA" names a product, not a person.
PRODUCT_KEY = re.compile(r"[A-Z0-9]{4,6}(?:-[A-Z0-9]{4,6}){3,}")
MIN_ID, MAX_ID = 5, 20  # letters and digits in a passport or licence number


def _is_document_number(value: str, cue: str) -> bool:
    """Whether what follows 'passport' or 'licence' is a document number: 5-20 letters and digits, two digits at
    least, not a product key after a bare 'licence no.'."""
    chars = [c for c in value if c.isalnum()]
    if not MIN_ID <= len(chars) <= MAX_ID or sum(c.isdigit() for c in chars) < 2:
        return False
    return not (cue == "LICENCE" and PRODUCT_KEY.fullmatch(value.upper()))


class IdentityRecognizer(LocalRecognizer):
    """DOB, PASSPORT, LICENCE and SSN right after (a date of birth: or right before) the word that names it."""

    def __init__(self):
        super().__init__(supported_entities=["DOB", "PASSPORT", "LICENCE", "SSN"], name="TuesdayIdentity")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        lowered = text.lower()
        for kind, pattern in PATTERNS.items():
            if TYPE[kind] not in entities or not any(part in (text if part == "DL" else lowered)
                                                     for part in CUE_PARTS[kind]):
                continue
            for match in pattern.finditer(text):
                if kind in ("PASSPORT", "DRIVER", "LICENCE") and not _is_document_number(match.group("value"), kind):
                    continue
                found.append(_result(self, TYPE[kind], match.start("value"), match.end("value")))
        if "DOB" in entities and any(part in lowered for part in CUE_PARTS["DOB"]):
            for number, word in enumerate(DOB_WORD.finditer(text)):
                if number == MAX_DOB_WORDS:
                    break
                begin = max(0, word.start() - DOB_BEFORE)
                date = DIGIT.search(text, begin, word.start()) and DATE_BEFORE_WORD.search(text, begin, word.start())
                if date is not None:
                    found.append(_result(self, "DOB", date.start("value"), date.end("value")))
        return found
