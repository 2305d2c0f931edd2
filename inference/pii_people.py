"""Presidio recognizers for people and places: street addresses (patterns) and names (patterns and spaCy).

Linear in the text like the rest (inference/pii_recognizers.py): bounded or possessive repeats only.
"""

from __future__ import annotations

import re

import regex
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from inference.pii_recognizers import CASE_SENSITIVE, DIGIT, NAME_LIKE

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


class NamePatternRecognizer(PatternRecognizer):
    """Names a pattern can see without a model: after Mr/Ms/Dr, 'my name is', or a sign-off on its own line."""

    NAME = CAPITALISED + r"(?:[ ]" + CAPITALISED + r"){0,2}+"
    PATTERNS = [
        Pattern("title", r"(?<=\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?[ ])" + NAME, 0.8),
        Pattern("my name is", r"(?<=\b(?i:my name is|my name's|name:?|on behalf of|attention:?|attn:?)[ ]{1,2})"
                + NAME, 0.8),
        Pattern("sign-off", r"(?<=(?i:regards|thanks|thank you|cheers|sincerely|best)[,!.]?[ ]{0,2}\n[ ]{0,4})"
                + NAME + r"(?=[ ]*(?:\n|$))", 0.8),
    ]

    def __init__(self):
        super().__init__(supported_entity="PERSON", patterns=self.PATTERNS, name="TuesdayNamePatterns",
                         global_regex_flags=CASE_SENSITIVE)

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        return super().analyze(text, entities, nlp_artifacts, regex_flags) if NAME_LIKE.search(text) else []


NOT_NAMES = {"hi", "hello", "hey", "dear", "thanks", "thank", "regards", "cheers", "team", "support", "customer",
             "agent", "sir", "madam", "admin", "visa", "mastercard", "amex", "paypal", "iban", "ssn", "url", "email",
             "phone", "card", "account", "person", "address", "tel", "gift", "mobile", "fax", "ref", "dad", "mom",
             "mum", "adjuster", "agent", "plumber", "contractor", "llc", "inc", "ltd"}
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
            if any(w.lower().strip(",.") in NOT_NAMES for w in words) or all(w.isupper() for w in words):
                continue
            if len(words) == 1 and SENTENCE_START.search(text, max(0, result.start - 12), result.start):
                continue  # "Drywall is soaked", "Glass shop says": one capitalised word opening a sentence
            if len(words) > 1 and words[-1].lower().strip(",.") in STREET_WORDS:
                continue  # "Main St": a street the model took for a person
            result.entity_type = "PERSON"
            kept.append(result)
        return kept
