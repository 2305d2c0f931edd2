"""Presidio recognizers for people and places: street addresses (patterns) and names (patterns and spaCy).

The name patterns read the openings and sign-offs tickets use ("Hello, this is NAME from COMPANY.", "my name
is NAME", "Regards, NAME", "Thanks,\\nNAME", "- NAME"), with name words in any Latin script, so that a name the
model does not know (it kept a common South Asian first name in "this is NAME from" every time) is masked.

Linear in the text like the rest (inference/pii_recognizers.py): bounded or possessive repeats only.
"""

from __future__ import annotations

import re

import regex
from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from inference.pii_recognizers import CASE_SENSITIVE, DIGIT, NAME_LIKE, _result

CAPITALISED = r"[A-Z][a-z'\u00e0-\u00ff-]++"
STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|Court|Ct|Way|Place|Pl|Terrace|Ter|"
          r"Parkway|Pkwy|Circle|Cir|Highway|Hwy|Close|Crescent|Square|Sq|Row|Gardens|Grove|Mews|Walk|Hill|Trail)")
UNIT = r"(?:,?[ ](?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|#)\.?[ ]?[\w-]{1,6}+)?"
PLACE = (r"(?:,[ ]" + CAPITALISED + r"(?:[ ]" + CAPITALISED + r"){0,2}+)?"
         r"(?:,?[ ](?:[A-Z]{2}[ ]\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}|\d{4,5}))?")


STREET_WORD = regex.compile(r"\b" + STREET + r"\b|\b(?:rue|avenue|boulevard|place|chemin|all\u00e9e|impasse|quai|via|"
                            r"calle|carrer|Box)\b|stra(?:ss|\u00df)e|str\.|(?:weg|gasse|platz|allee|damm|ring|gatan|"
                            r"v\u00e4gen|gade|vej|straat|laan)\b")


class AddressRecognizer(PatternRecognizer):
    """Street addresses: '42 Elm Street, Springfield, IL 62704', 'Hauptstraße 5, 10115 Berlin', '12 rue de la Paix'."""

    PATTERNS = [
        Pattern("street, number first",
                r"\b\d{1,5}[A-Za-z]?(?:[ ][NSEW]\.?)?(?:[ ]" + CAPITALISED + r"){1,3}?[ ]" + STREET + r"\b\.?"
                + UNIT + PLACE, 0.8),
        Pattern("street, number last",
                r"\b[A-Z\u00c4\u00d6\u00dc][a-z\u00e4\u00f6\u00fc\u00df]*(?:stra(?:ss|\u00df)e|str\.|weg|gasse|platz|"
                r"allee|damm|ring|gatan|v\u00e4gen|gade|vej|straat|laan)[ ]\d{1,4}[a-z]?\b(?:,[ ]\d{4,5}[ ]" + CAPITALISED + r")?", 0.8),
        Pattern("rue, avenue",
                r"\b\d{1,4}(?:[ ](?:bis|ter))?,?[ ](?:rue|avenue|boulevard|place|chemin|all\u00e9e|impasse|quai|via|"
                r"calle|carrer)[ ](?:(?:de|du|des|la|le|del|della)[ ])*+(?:l'|d')?" + CAPITALISED
                + r"(?:[ ]" + CAPITALISED + r"){0,3}+(?:,[ ]\d{4,5}[ ]" + CAPITALISED + r")?", 0.8),
        Pattern("po box", r"\bP\.?[ ]?O\.?[ ]Box[ ]\d{1,6}\b", 0.8),
    ]

    def __init__(self):
        super().__init__(supported_entity="ADDRESS", patterns=self.PATTERNS, name="TuesdayAddress",
                         global_regex_flags=CASE_SENSITIVE)  # case matters: Street, not street

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        # One quick scan for a street word spares the four patterns most windows (they try every number).
        if not DIGIT.search(text) or not STREET_WORD.search(text):  # every address has a number
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)


# A word of a name in any Latin script: Łukasz, Wiśniewska, O'Brien, McDonald, Al-Farsi, Min-jun, Nguyễn; two
# letters at least, not all capitals ("IT Helpdesk"). Particles join words: Juan de la Cruz, Khalid bin Saeed.
NAME_WORD = (r"\p{Lu}(?:[\p{Ll}\p{Mn}]|['\u2019-]?\p{Lu}[\p{Ll}\p{Mn}])[\p{Ll}\p{Mn}]*+"
             r"(?:['\u2019-]?\p{Lu}?[\p{Ll}\p{Mn}]++)*+")
PARTICLE = r"(?:al|el|bin|bint|ibn|ben|de|del|della|der|den|di|da|das|do|dos|du|la|le|van|von|ter|y)"
NAME = r"(?P<name>" + NAME_WORD + r"(?:[ ](?:" + PARTICLE + r"[ ]){0,2}" + NAME_WORD + r"){0,3}+)"
GREETING = r"(?i:hi|hello|hey|hiya|greetings|dear[ ]\w{1,20}|good[ ](?:morning|afternoon|evening|day))"
OPENING = r"(?:^|\n|(?<![\w])" + GREETING + r"[,!.]?[ ]{1,2})"
# A thanking word may take a few more ("Thanks a lot,", "Thanks in advance,"); a closing word ("Best", "Cheers")
# must end with a comma or the line ("Best Practices" is a title). After a "." the name starts a new line
# ("... best practices. Additionally, ..." names no one).
SIGN_OFF = (r"(?<![\w])(?:(?i:regards|thanks|thank[ ]you|thank[ ]u|thx|tia)(?:[ ][a-z]{1,10}){0,3}"
            r"(?:[,!]?[ ]{1,2}|[,!.]?[ ]*\n[ ]{0,4})"
            r"|(?i:cheers|sincerely|best|best[ ]wishes|warmly|yours|yours[ ]truly)"
            r"(?:[,!][ ]{1,2}|[,!.]?[ ]*\n[ ]{0,4}))")
ENDS_LINE = r"(?=[ ]*(?:\n|\Z|[.!](?:[ ]*(?:\n|\Z))|,))"  # the name ends its line (a role or a town may follow)
# Where tickets name their writer, as openings and sign-offs are really written. Each is measured on its own
# (bench.pii's per-context table): the model alone missed names in some of them every time.
NAME_CONTEXTS = {
    "title": r"(?<![\w])(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?[ ]" + NAME,
    # "attention" in lower case only: "Immediate Attention Needed:" opens many a subject line
    "my name is": (r"(?<![\w])(?:(?i:my[ ]name[ ]is|my[ ]name's|name:?|on[ ]behalf[ ]of|attn:?)|attention:?)[ ]{1,2}"
                   + NAME),
    "i am": (r"(?<![\w])(?i:i[ ]am|i'm|i\u2019m)[ ]" + NAME
             + r"(?=[ ]*(?:[,.!;]|\n|\Z|[ ](?:from|and|here|with|at)\b))"),
    "this is, from": r"(?<![\w])(?i:this[ ]is|it's|it[ ]is)[ ]" + NAME + r"(?=[ ](?:from|at|with|of|here|calling)\b)",
    "greeting, this is": OPENING + r"(?i:this[ ]is|it's|it[ ]is)[ ]" + NAME + r"(?=[ ]*(?:[,.!;:]|\n|\Z))",
    "here": OPENING + NAME + r"(?=[ ]here\b)",
    "sign-off": SIGN_OFF + NAME + ENDS_LINE,
    "dash": r"(?:^|\n|[.!?][ ]{1,2})(?:--?|[\u2013\u2014~])[ ]?" + NAME + r"(?=[ ]*(?:,[^\n]{0,60})?(?:\n|\Z))",
}
BULLET = re.compile(r"[ ]*(?:[-*\u2022\u2013\u2014]|\d{1,2}[.)])[ ]")


def _in_a_list(text: str, start: int, end: int) -> bool:
    """Whether the line holding text[start:end] sits in a list: the line before or after it starts with a bullet."""
    line_start = text.rfind("\n", 0, start)
    before = text.rfind("\n", 0, max(line_start, 0)) + 1 if line_start > 0 else None
    line_end = text.find("\n", end)
    after = line_end + 1 if line_end != -1 else None
    return any(at is not None and BULLET.match(text, at) for at in (before, after))


class NamePatternRecognizer(LocalRecognizer):
    """Names a pattern can see without a model: after Mr/Ms/Dr, 'my name is', 'this is ... from', a greeting's
    'this is', 'NAME here', a sign-off ('Regards, NAME', 'Thanks,\\nNAME'), or a dash ('- NAME') opening a line
    or following a sentence, the name ending its line, outside a list."""

    PATTERNS = {context: regex.compile(pattern, regex.DOTALL) for context, pattern in NAME_CONTEXTS.items()}

    def __init__(self):
        super().__init__(supported_entities=["PERSON"], name="TuesdayNamePatterns")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        if not NAME_LIKE.search(text):
            return found
        for context, pattern in self.PATTERNS.items():
            for match in pattern.finditer(text, overlapped=True):  # "Thanks. Regards, NAME": both cues
                start, end = match.span("name")
                if not_a_name(text[start:end]) or (context == "dash" and _in_a_list(text, start, end)):
                    continue
                found.append(_result(self, "PERSON", start, end, 0.8))
        return found


NOT_NAMES = {"hi", "hello", "hey", "dear", "thanks", "thank", "regards", "cheers", "team", "support", "customer",
             "agent", "sir", "madam", "admin", "visa", "mastercard", "amex", "paypal", "iban", "ssn", "url", "email",
             "phone", "card", "account", "person", "address", "tel", "gift", "mobile", "fax", "ref", "dad", "mom",
             "mum", "adjuster", "agent", "plumber", "contractor", "llc", "inc", "ltd",
             # what signs a ticket or follows a greeting that is not a person: a team, a desk, a device, a product
             "the", "my", "our", "your", "all", "everyone", "sent", "from", "department", "dept", "office", "desk",
             "helpdesk", "service", "services", "success", "sales", "billing", "accounts", "payable", "receivable",
             "finance", "operations", "management", "hr", "it", "staff", "crew", "iphone", "android", "samsung",
             "galaxy", "windows", "outlook", "microsoft", "apple", "google", "again", "advance",
             # sign-off words themselves: "Thank you for your support. Sincerely," names no one
             "sincerely", "best", "kind", "warm", "warmly", "yours", "respectfully", "cordially", "faithfully"}
# A last word that makes it a company ("this is Priya from Kochi Exports"): the model takes some for people.
COMPANY_WORDS = {"exports", "imports", "energy", "tools", "solutions", "logistics", "systems", "foods", "freight",
                 "steel", "parts", "coffee", "travel", "marine", "textiles", "games", "group", "corp", "corporation",
                 "inc", "ltd", "llc", "gmbh", "ag", "sa", "plc", "co", "company", "holdings", "labs", "technologies",
                 "tech", "software", "consulting", "partners", "bank", "insurance", "media", "pharma", "motors",
                 "industries", "trading", "enterprises", "studio", "studios", "networks", "airlines", "hotels",
                 "clinic", "hospital", "university", "school", "agency", "store", "stores", "shop", "microfinance"}


def not_a_name(span: str) -> bool:
    """Whether words a pattern or the model took for a name are a greeting, a team, a product or a company."""
    words = [w.lower().strip(",.!'\u2019") for w in span.split()]
    return not words or any(w in NOT_NAMES for w in words) or words[-1] in COMPANY_WORDS


SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*)$")
STREET_WORDS = set(STREET.strip("(?:)").lower().split("|"))


class PersonRecognizer(SpacyRecognizer):
    """People the spaCy model tags PERSON, less what it tags wrongly in tickets (greetings, brands, placeholders)."""

    def __init__(self):
        super().__init__(supported_entities=["PERSON"], name="TuesdaySpacyPerson")

    def analyze(self, text, entities, nlp_artifacts=None):
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts):
            words = text[result.start:result.end].strip("[]()'\" ").split()
            if not words or any(c.isdigit() or c in "[]@/\n" for c in text[result.start:result.end]):
                continue
            if not_a_name(text[result.start:result.end]) or all(w.isupper() for w in words):
                continue
            if len(words) == 1 and SENTENCE_START.search(text, max(0, result.start - 12), result.start):
                continue  # "Drywall is soaked", "Glass shop says": one capitalised word opening a sentence
            if len(words) > 1 and words[-1].lower().strip(",.") in STREET_WORDS:
                continue  # "Main St": a street the model took for a person
            result.entity_type = "PERSON"
            kept.append(result)
        return kept
