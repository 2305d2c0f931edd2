"""Presidio recognizers for the PII Tuesday masks, each linear in the text it is given.

Every regex here either has bounded repeats (so each start position costs a bounded number of
steps) or takes its runs possessively (``++``, ``*+``: nothing is read twice). Presidio's pattern
recognizers run theirs with `regex`; the ones Tuesday runs itself use `re`, 2-5x faster here. Whether a match is
PII is then decided in Python: a checksum (python-stdnum), a phone numbering plan (phonenumbers),
or the words just before it (`cue`), read from a bounded window.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import phonenumbers
import regex
from presidio_analyzer import LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer, UsSsnRecognizer
from stdnum import iban, luhn
from stdnum.us import ssn

CASE_SENSITIVE = regex.DOTALL | regex.MULTILINE  # Presidio's default adds IGNORECASE, which no pattern here needs
CUE_CHARS = 40  # how far back the words that say what a number is are looked for
# The last of these words before a number says what it is ("order 4155552671" vs "call 4155552671").
CUES = re.compile(r"""(?ix)\b(?:
    (?P<id>order|invoice|tracking|shipment|parcel|package|ref|reference|confirmation|booking|ticket|claim|
        policy|case|serial|sku|imei|member|transaction|receipt|item|model|version|build|quote|po|awb|vin|
        plate|registration|id)
  | (?P<phone>phone|telephone|tel|mobile|mob|cell|cellphone|call|ring|fax|whatsapp|sms|text|reach|contact|
        landline|line|hotline|helpline|office|ph)
  | (?P<account>account|acct|a/c|routing|sort\ code|bsb|aba)
  | (?P<ssn>ssn|social\ security|social)
  | (?P<card>card|visa|mastercard|amex|credit|debit|cc)
)\b""")


def cue(text: str, start: int, chars: int = CUE_CHARS) -> str | None:
    """The kind of the last cue word in the `chars` before `start` ('id', 'phone', ...), or None."""
    kind = None
    for match in CUES.finditer(text, max(0, start - chars), start):
        kind = match.lastgroup
    return kind


# Quick scans that spare a window the patterns that cannot match in it (one pass in C each).
FOUR_DIGITS = re.compile(r"\d{4}")
THREE_DIGITS = re.compile(r"\d{3}")
NAME_LIKE = regex.compile(r"[A-Z][a-z]")
DIGIT = re.compile(r"\d")


def _result(recognizer, entity: str, start: int, end: int, score: float = 1.0) -> RecognizerResult:
    return RecognizerResult(entity, start, end, score,
                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
                                                  RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id})


# -- emails and secret-bearing URLs (run over the whole text: a token has no spaces to cut at) --------

class EmailRecognizer(PatternRecognizer):
    """Emails; starts only where a run of local-part characters starts, so a long word is read once."""

    PATTERNS = [Pattern("email", r"(?<![\w.+%'-])[\w.+%'-]++@[\w-]++(?:\.[\w-]++)++", 0.9)]

    def __init__(self):
        # Presidio's own EmailRecognizer validates with tldextract, which fetches a suffix list online.
        super().__init__(supported_entity="EMAIL", patterns=self.PATTERNS, name="TuesdayEmail",
                         global_regex_flags=CASE_SENSITIVE)

    def validate_result(self, pattern_text: str) -> bool:
        return pattern_text.rsplit(".", 1)[-1].isalpha() and len(pattern_text.rsplit(".", 1)[-1]) >= 2


URL = re.compile(r"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'`|\\^{}]++")
SECRET_KEYS = re.compile(r"(?i)token|secret|passw|pwd|pass$|key|sig|auth|session|sid$|^code$|otp|jwt|credential|"
                            r"reset|magic|nonce|hash|^t$|^k$|^s$")
KEYWORD_SEGMENTS = {"reset", "verify", "verification", "confirm", "activate", "invite", "magic", "token", "auth",
                    "login", "unsubscribe", "password", "recover", "s", "share", "dl", "download", "sign"}
SECRETISH = re.compile(r"[A-Za-z0-9_\-.~+/=%]{16,}+")


def _random_looking(value: str) -> bool:
    """A value a person did not type: long, letters and digits mixed (a JWT, a hex or base64 token)."""
    if value.startswith("eyJ") and len(value) >= 20:
        return True
    if not SECRETISH.fullmatch(value) or "-" in value.strip("-") and value.count("-") >= 2:
        return False  # a slug like 360001234567-How-to-reset-my-password
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and len(value) >= 20


def carries_secret(url: str) -> bool:
    """Whether a URL holds a credential: a token-like query value, a random path segment, a password."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return True  # unparseable: mask it rather than guess
    if parts.password:
        return True
    for key, value in parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(parts.fragment):
        if value and (SECRET_KEYS.search(key) or _random_looking(value)):
            return True
    segments = [s for s in parts.path.split("/") if s]
    for before, segment in zip([""] + segments, segments):
        if _random_looking(segment) or (before.lower() in KEYWORD_SEGMENTS and len(segment) >= 8
                                        and any(c.isdigit() for c in segment)):
            return True
    return False


class SecretUrlRecognizer(LocalRecognizer):
    """URLs that carry a credential (a reset link, ?token=..., a signed link), masked whole; others stay."""

    def __init__(self):
        super().__init__(supported_entities=["URL"], name="TuesdaySecretUrl")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        for match in URL.finditer(text):
            start, end = match.span()
            while end > start and text[end - 1] in ".,;:!?)]}*_'\"":
                end -= 1
            if carries_secret(text[start:end]):
                found.append(_result(self, "URL", start, end))
        return found


# -- IP addresses ----------------------------------------------------------------------------------

OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Four octets, not inside a longer dotted number (a version 1.2.3.4.5 or a decimal) or a word.
IPV4 = re.compile(r"(?<![\w.])" + OCTET + r"(?:\." + OCTET + r"){3}(?![\w]|\.\d)")
HEX4 = r"[0-9A-Fa-f]{1,4}"
# Eight groups, or fewer with one "::" (fe80::1, 2001:db8::8a2e:370:7334); "10:30:00" has neither.
IPV6 = re.compile(r"(?<![\w:])(?:(?:" + HEX4 + r":){7}" + HEX4 + r"|(?:" + HEX4 + r":){1,6}:(?:" + HEX4
                  + r"(?::" + HEX4 + r"){0,5})?|::" + HEX4 + r"(?::" + HEX4 + r"){0,6})(?![\w:])")


class IpRecognizer(LocalRecognizer):
    """IPv4 (192.168.10.254) and IPv6 (2001:db8::8a2e:370:7334) addresses: they locate a customer."""

    def __init__(self):
        super().__init__(supported_entities=["IP"], name="TuesdayIp")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        if "." in text:
            found += [_result(self, "IP", m.start(), m.end()) for m in IPV4.finditer(text)]
        if "::" in text or text.count(":") >= 7:
            found += [_result(self, "IP", m.start(), m.end()) for m in IPV6.finditer(text)]
        return found


# -- numbers: cards, IBANs, SSNs, accounts -------------------------------------------------------

ID_CUE_CHARS = 16  # "order 4111...", "IMEI 3569..." ("I paid for order 77120934 with 4111..." is a card)
IIN = regex.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6")  # Visa, Mastercard, Amex, Diners, JCB, Discover/UnionPay


class CardRecognizer(CreditCardRecognizer):
    """Card numbers: 13 to 19 digits, whole or grouped as printed, Luhn-valid, with a card network's prefix."""

    PATTERNS = [
        # one pattern, one pass: a run of 13 to 19 digits, groups of four, or Amex/Diners' 4-6-5 (4-6-4);
        # \b first, so the look-behind is checked only where a number starts
        # (not the tail of a longer run of groups, nor of an IBAN: "DE89 3704 0044 ...")
        Pattern("card", r"\b(?<![.+/-])(?<!\d[ -])(?<![A-Z]{2}\d\d[ -])(?:[2-6]\d{12,18}(?![\w]|[.,]\d)"
                        r"|[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?(?![\w]|[.,]\d|[ -]\d)"
                        r"|3\d{3}([ -])\d{6}\2\d{4,5}(?![\w]|[.,]\d|[ -]\d))", 0.5),
    ]

    def __init__(self):
        super().__init__(patterns=self.PATTERNS, supported_entity="CARD", name="TuesdayCard")
        self.global_regex_flags = CASE_SENSITIVE

    def validate_result(self, pattern_text: str) -> bool:
        digits = "".join(c for c in pattern_text if c.isdigit())
        return 13 <= len(digits) <= 19 and bool(IIN.match(digits)) and luhn.is_valid(digits)

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        if not FOUR_DIGITS.search(text):
            return []
        # An IMEI or an order number can pass Luhn by chance: the word right before it says it is no card.
        return [r for r in super().analyze(text, entities, nlp_artifacts, regex_flags)
                if cue(text, r.start, ID_CUE_CHARS) != "id"]


class IbanCheckRecognizer(IbanRecognizer):
    """Presidio's IBAN patterns (printed whole or in groups of four), checked by python-stdnum."""

    def __init__(self):
        super().__init__(supported_entity="IBAN", name="TuesdayIban")

    def validate_result(self, pattern_text: str) -> bool:
        return iban.is_valid(pattern_text)


class SsnRecognizer(UsSsnRecognizer):
    """US SSNs written 123-45-6789 (or with spaces or dots); nine bare digits only after 'SSN' or 'social security'."""

    PATTERNS = [Pattern("ssn", r"\b(?<![.-])(?:\d{3}([- .])\d{2}\1\d{4}|\d{9})(?![\w-]|[.,]\d)", 0.8)]

    def __init__(self):
        super().__init__(patterns=self.PATTERNS, supported_entity="SSN", name="TuesdaySsn")
        self.global_regex_flags = CASE_SENSITIVE

    def validate_result(self, pattern_text: str) -> bool:
        return ssn.is_valid(pattern_text.replace(" ", "-").replace(".", "-"))

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        if not THREE_DIGITS.search(text):
            return []
        found = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in found if r.end - r.start == 11 or cue(text, r.start) == "ssn"]


ACCOUNT_WORDS = ("account", "acct", "a/c", "routing", "sort code", "bsb", "aba")
# Runs are taken whole and always match (no look-ahead that could fail and make the engine start
# again inside the run); whether one is glued to a word ("12345678abc") is checked after (`glued`).
DIGIT_RUN = re.compile(r"\b(?<![.+/-])\d++(?:[ -]\d++)*+")


def glued(text: str, end: int, also: str = "") -> bool:
    """Whether a run ending at `end` runs on into a word (or an email, a decimal: `also`)."""
    return end < len(text) and (text[end].isalnum() or text[end] == "_" or text[end] in also or (
        text[end] in ".," and end + 1 < len(text) and text[end + 1].isdigit()))


class AccountRecognizer(LocalRecognizer):
    """Bank account and routing numbers (6 to 20 digits) right after 'account', 'acct', 'routing', 'sort code'.

    Other long numbers (orders, claims, policies, tickets) are not PII and stay, so a team can still
    search its tickets by them.
    """

    def __init__(self):
        super().__init__(supported_entities=["ACCOUNT"], name="TuesdayAccount")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found = []
        lowered = text.lower()
        if not any(word in lowered for word in ACCOUNT_WORDS):
            return found
        for match in DIGIT_RUN.finditer(text):
            run = match.group()
            if not glued(text, match.end()) and 6 <= len(run) - run.count(" ") - run.count("-") <= 20 and cue(text, match.start()) == "account":
                found.append(_result(self, "ACCOUNT", match.start(), match.end()))
        return found


# -- phone numbers ---------------------------------------------------------------------------------

# A run of digit groups joined by separators (" ", "-", ".", " - "), with an optional leading + or (.
PHONE_RUN = re.compile(r"(?<![\w+@/.#-])(?:\+|\(\+?)?\d[\d()]*+(?:[ \u00a0.-]{1,3}+\(?\d[\d()]*+)*+")
PAIRS = re.compile(r"\d\d[ .-]\d\d[ .-]\d\d")  # 01 23 45 67 89 has no three digits in a row
MAX_PHONE_RUN = 40  # a longer run of digit groups is a table of numbers, not a phone number
DATE_LIKE = re.compile(r"(?:19|20)\d\d[-./]\d\d?[-./]\d\d?\b|\d\d?[-./]\d\d?[-./](?:19|20)\d\d\b")
NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}|\d{3}[ .-]\d{4}")
# Regions whose numbers are written nationally with a leading 0 (trunk prefix), tried in this order.
TRUNK_ZERO = ("GB", "DE", "FR", "NL", "AU", "IN", "IE", "ZA", "JP", "CN", "KR", "SE", "CH", "AT", "BE", "NZ", "NG",
              "PH", "AE", "IT", "TR", "BR")
# Tried for a number that starts with an area code in brackets: (11) 2345-6628, (02) 1234 5678.
AREA_CODE = ("US", "BR", "AU", "MX", "AR", "IE", "TR", "PH", "GB")
# Tried as well when 'phone', 'call', 'mobile' ... comes just before a number without a 0 or a +.
ANY_REGION = ("US", "ES", "IT", "MX", "SG", "PL", "BR", "PT", "DK", "NO", "GR", "HK", "IL", "AR", "CA")
MAX_PHONE_CHECKS = 40  # phonenumbers calls per window; past it a phone-shaped run is masked unchecked


def _valid(number: str, region: str | None, loose: bool = False) -> bool:
    """Whether phonenumbers finds the number in the region's plan (loose: of a possible length will do)."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) or (loose and phonenumbers.is_possible_number(parsed))


class PhoneRecognizer(LocalRecognizer):
    """Phone numbers: international (+44 20 7946 0958, 0049 30 123456), national ones checked against each
    region's numbering plan with phonenumbers, and North American formats ((555) 013-2299, 555-0142)."""

    def __init__(self):
        super().__init__(supported_entities=["PHONE"], name="TuesdayPhone")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        found, budget = [], [MAX_PHONE_CHECKS]
        if not THREE_DIGITS.search(text) and not PAIRS.search(text):
            return found
        for match in PHONE_RUN.finditer(text):
            start, end = match.span()
            if glued(text, end, "@"):
                continue
            while text[end - 1] in "()" and text[start:end].count("(") < text[start:end].count(")"):
                end -= 1
            if text[start] == "(" and ")" not in text[start:end]:
                start += 1
            if end - start <= MAX_PHONE_RUN and self._is_phone(text, start, text[start:end], budget):
                found.append(_result(self, "PHONE", start, end))
        return found

    def _is_phone(self, text: str, start: int, run: str, budget: list[int]) -> bool:
        digits = sum(map(str.isdigit, run))
        if not 7 <= digits <= 15 or DATE_LIKE.match(run):
            return False
        said = cue(text, start)
        plus = run.startswith(("+", "(+"))
        international = plus or run.startswith("00")
        if not plus and cue(text, start, ID_CUE_CHARS) == "id":  # "order 4155552671", not "claim 7, call 020 ..."
            return False
        if NANP.fullmatch(run):
            return True
        shape_ok = international or run.startswith(("0", "(")) or said == "phone" or (
            digits in (10, 11) and run.lstrip("(+1 ").strip()[:1] in "23456789")
        if not shape_ok:
            return False
        if budget[0] <= 0:
            return True  # a hostile ticket full of phone-shaped runs: masked unchecked, never slow
        if international:
            budget[0] -= 1
            return _valid("+" + run.lstrip("(+").removeprefix("00").replace("(0)", ""), None, loose=plus)
        regions = TRUNK_ZERO if run.lstrip("(").startswith("0") else AREA_CODE if run.startswith("(") else ("US",)
        if said == "phone":
            regions = regions + ANY_REGION
        for region in regions:
            budget[0] -= 1
            if _valid(run, region):
                return True
        return False
