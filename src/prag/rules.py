"""Deterministic augmentation: the `Augmentation` and `QA` types, the grounding checks every generated pair must
pass (its answer's words occur in the document, it is short, it does not appear in its own question, its
question's wh-word fits it), and the rules that write rewrites and cloze-style QA pairs from a document's own
sentences. `complete` keeps what passes and fills up to n rewrites and m pairs with rules, so every document
gets exactly that many, whichever augmenter (augment.py) wrote them.
"""
from __future__ import annotations

import bisect
import functools
import re
from dataclasses import asdict, dataclass, field

from .corpus import Document
from .text import normalize_answer
from .text import words as _words

STOP = set("a an the of in on at to for from by with and or is was were are be been as that this it its "
           "which who whom what when where why how did does do has have had his her their there into over under above "
           "below across through along around among against".split())
PRONOUNS = set("he she it they its their his her this these those".split())


@dataclass
class QA:
    question: str
    answer: str
    source: str = "model"  # "model" or "rule"


@dataclass
class Augmentation:
    rewrites: list[str]
    qa: list[QA]
    notes: dict = field(default_factory=dict)  # counts of generated / rejected items, for a reader

    def to_dict(self) -> dict:
        return {"rewrites": self.rewrites, "qa": [asdict(q) for q in self.qa], "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> "Augmentation":
        return cls(list(d["rewrites"]), [QA(**q) for q in d["qa"]], d.get("notes", {}))


@functools.lru_cache(maxsize=64)
def _doc_words(text: str) -> frozenset[str]:
    return frozenset(_words(text))


def is_grounded(qa: QA, doc: Document) -> bool:
    """A pair is kept only if its answer comes from the document and the question is about it."""
    ans, q = _words(qa.answer), _words(qa.question)
    doc_words = _doc_words(doc.as_text())
    if not ans or len(ans) > 8 or not qa.question.strip().endswith("?"):
        return False
    if not all(w in doc_words for w in ans):
        return False
    if normalize_answer(qa.answer) in normalize_answer(qa.question):
        return False
    if not _type_matches(qa):
        return False
    return any(w in doc_words and w not in STOP for w in q)


_YEARLIKE = re.compile(r"^(1[0-9]{3}|20[0-9]{2})$")


def _type_matches(qa: QA) -> bool:
    """The question's wh-word must fit the answer: years for 'when'/'what year', numbers for 'how many'."""
    q, a = qa.question.lower(), qa.answer.strip()
    asks_year = "year" in q or q.startswith("when")
    asks_count = "how many" in q or "how much" in q or "number of" in q or "population" in q
    if _YEARLIKE.match(a):
        return asks_year
    if re.fullmatch(r"[\d.,]+", a):
        return asks_count or "how tall" in q or "how long" in q or "how old" in q or "height" in q
    return not asks_year and not asks_count


def is_faithful_rewrite(text: str, doc: Document) -> bool:
    """A rewrite must keep most of the document's content words and not ramble."""
    src = {w for w in _words(doc.text) if w not in STOP}
    got = [w for w in _words(text) if w not in STOP]
    if not src or not got or len(text) > 2.5 * len(doc.text) + 50:
        return False
    return len(src & set(got)) / len(src) >= 0.5


def on_topic(qa: QA, sentence: str, doc: Document) -> bool:
    """A generated question must reuse a content word of its source sentence beyond the title and the answer
    (small models otherwise ask about something else and pair it with the given answer)."""
    skip = set(_words(doc.title)) | set(_words(qa.answer)) | STOP
    src = {w for w in _words(sentence) if w not in skip}
    return any(w in src for w in _words(qa.question))


# ---------------------------------------------------------------- deterministic rules
# Recorded in every augmentation's notes, so a kb shows which rules wrote its pairs. 2: linking-verb statements
# and dates first, objects of past-tense verbs, verbs no longer asked for (the rules without a version: 1).
RULE_VERSION = 2
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NUM = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(rf"\b(?:\d{{1,2}}\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}},\s+\d{{4}})\b")  # '11 July 1977'
_NAME = re.compile(r"\b([A-Z][a-z'\-]+(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][a-z'\-]+)*)\b")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


# the predicate of a linking verb: 'was a beekeeper', 'was painted indigo', 'are amber'
_COMPLEMENT = re.compile(r"\b(?:is|are|was|were|became|becomes|remains|remained)\s+(?:[a-z]+ed\s+(?:of\s+|from\s+)?)?"
                         r"(?:(?:a|an|the)\s+)?([A-Za-z][a-z\-]{2,}(?:\s+[a-z][a-z\-]{2,})?)\b")
_VOBJ = re.compile(r"\b[a-z]{3,}ed\s+([a-z][a-z\-]{3,}(?:\s+[a-z][a-z\-]{3,})?)\b")  # 'produced silver'
_OBJ = re.compile(r"\b(?:a|an|the|of|on|with|as|in|from|by|into)\s+([a-z][a-z\-]{3,}(?:\s+[a-z][a-z\-]{3,})?)\b")
COMMON = set("other another many most more some such very also only known famous traditional traditionally until "
             "later years year still each every first second third large small local several made used called "
             "named began begun often once well because after before since during about near now whose instead".split())
# past participles that do not end in -ed, and words that never answer a question
VERBISH = set("born made built known held kept sold grown found seen worn given taken cast wound drawn written "
              "thrown shown lost won rung hung sung led told woven chosen broken frozen hidden stolen spoken driven "
              "beaten eaten fallen risen shaken sworn torn sewn without within than rather between".split())
_WORD = re.compile(r"\b[a-z][a-z\-]{4,}\b")
_TAIL = re.compile(r"([A-Za-z][A-Za-z'\-]+(?:\s+[A-Za-z][A-Za-z'\-]+)?)\W*$")


def _span(s: str, a: int, b: int) -> re.Match:
    """A match object covering exactly s[a:b] (spans are passed around as matches)."""
    return re.compile(re.escape(s[a:b])).search(s, a)


def _bounds(m: re.Match) -> tuple[int, int, str]:
    """(start, end, text) of a span match: its first group when the pattern has one."""
    g = 1 if m.re.groups else 0
    return m.start(g), m.end(g), m.group(g)


def _trim(m: re.Match) -> tuple[int, int, str]:
    """A two-word span whose second word is a function word, a filler or looks like a verb keeps only its first
    ('beekeeper from', 'cartographer born')."""
    a, b, text = _bounds(m)
    ws = text.split()
    if len(ws) == 2 and (ws[1].lower() in STOP | COMMON or _verbish(ws[1]) or ws[1].endswith("ing")):
        return a, a + len(ws[0]), ws[0]
    return a, b, text


def _verbish(word: str) -> bool:
    """Looks like a verb form: a listed participle or any '-ed' word (so a few adjectives, 'red', 'sacred', are
    taken for verbs too and not asked for)."""
    w = word.lower()
    return w in VERBISH or (w.endswith("ed") and not w.endswith("eed"))


def _is_content(words: str) -> bool:
    ws = words.lower().split()
    return bool(ws) and ws[0] not in STOP | COMMON and ws[-1] not in STOP | COMMON \
        and not any(w.endswith(("ly", "ing")) for w in ws)


class _Taken:
    """Disjoint character ranges [a, b) of a sentence, sorted: whether a new range overlaps one is a binary search
    (a plain scan made a document without sentence breaks quadratic)."""

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, a: int, b: int) -> bool:
        i = bisect.bisect_left(self.starts, b) - 1  # the last range starting before b: disjoint, so its end is the max
        return i >= 0 and self.ends[i] > a

    def add(self, a: int, b: int) -> None:
        i = bisect.bisect_left(self.starts, a)
        self.starts.insert(i, a)
        self.ends.insert(i, b)


def _without_overlaps(spans: list[tuple[re.Match, str]]) -> list[tuple[re.Match, str]]:
    """The spans that overlap no earlier span in the list."""
    kept, taken = [], _Taken()
    for m, wh in spans:
        if not taken.overlaps(m.start(), m.end()):
            kept.append((m, wh))
            taken.add(m.start(), m.end())
    return kept


def answer_spans(doc: Document) -> list[tuple[str, re.Match, str, str]]:
    """Candidate answers, as (sentence, match, wh-phrase, answer). Per sentence: what a linking verb says the
    subject is ('was a beekeeper', 'is a Danish screenwriter', 'was painted indigo'), then dates, years, numbers
    and names in order, then lower-case phrases after a past-tense verb ('produced silver'), an article or a
    preposition ('feeds on lichen', 'a wooden hoop'), the sentence's last words, then other content words (not
    verbs such as 'painted'). Ordered for coverage: every sentence's first span, then every sentence's second,
    and so on."""
    per_sentence = []
    title = doc.title.lower()
    for s in sentences(doc.text):
        statements = []
        for m in _COMPLEMENT.finditer(s):
            a, b, text = _trim(m)
            if _is_content(text) and text.lower() not in title and not _verbish(text.split()[0]):
                statements.append((_span(s, a, b), "what"))
        facts = [(m, "when") for m in _DATE.finditer(s)]
        facts += [(m, "what year") for m in _YEAR.finditer(s)]
        facts += [(m, "how many") for m in _NUM.finditer(s) if not _YEAR.fullmatch(m.group())]
        facts += [(m, "what") for m in _NAME.finditer(s) if m.start() > 0 and m.group() not in doc.title]
        # a statement beats a name in it, a date its year and day; statements never overlap one another, so all are
        # kept, first, and the facts that remain follow in sentence order
        spans = _without_overlaps(statements + facts)
        spans[len(statements):] = sorted(spans[len(statements):], key=lambda x: x[0].start())
        for pattern in (_VOBJ, _OBJ, _TAIL, _WORD):
            taken = _Taken()
            for m, _ in spans:  # disjoint: each is a part of a match that overlaps no other
                taken.add(*_bounds(m)[:2])
            for m in pattern.finditer(s.rstrip(" .!?") if pattern is _TAIL else s):
                a, b, text = _trim(m) if pattern in (_VOBJ, _OBJ) else _bounds(m)
                if pattern is _WORD and _verbish(text):
                    continue  # 'painted', 'invented': verbs, not facts
                if _is_content(text) and text.lower() not in title and not taken.overlaps(a, b):
                    spans.append((_span(s, a, b), "what"))
                    taken.add(a, b)
        per_sentence.append([(s, m, wh, _bounds(m)[2]) for m, wh in spans])
    out, seen = [], set()
    for rank in range(max((len(p) for p in per_sentence), default=0)):
        for p in per_sentence:
            if rank < len(p) and p[rank][3].lower() not in seen:
                seen.add(p[rank][3].lower())
                out.append(p[rank])
    return out


def cloze(doc: Document, sentence: str, m: re.Match, wh: str, answer: str) -> QA:
    """'It was built in 1847.' -> 'Brelloway Lighthouse: it was built in what year?' / '1847'."""
    start, end, _ = _bounds(m)
    body = (sentence[:start] + wh + sentence[end:]).rstrip(" .!")
    if doc.title and doc.title.lower() not in body.lower():
        first = body.split(" ", 1)[0]
        body = f"{doc.title}: {first.lower() if first.lower() in STOP | PRONOUNS else first}{body[len(first):]}"
    return QA(body + "?", answer, "rule")


def rule_qa(doc: Document, limit: int) -> list[QA]:
    """Cloze questions over `answer_spans`: grounded by construction."""
    out: list[QA] = []
    for s, m, wh, ans in answer_spans(doc):
        if len(out) >= limit:
            break
        qa = cloze(doc, s, m, wh, ans)
        if is_grounded(qa, doc):
            out.append(qa)
    return out


def rule_rewrite(doc: Document, i: int) -> str:
    """A deterministic rewrite: the title-led text, with sentences rotated by i so rewrites differ."""
    s = sentences(doc.text)
    i = i % max(len(s), 1)
    text = " ".join(s[i:] + s[:i])
    return text if doc.title in doc.text else f"{doc.title}. {text}"


def complete(doc: Document, rewrites: list[str], qa: list[QA], n: int, m: int, notes: dict) -> Augmentation:
    """Keep the grounded items (deduplicated) and fill up to n rewrites and m pairs with rules."""
    good_rw = [r for r in rewrites if is_faithful_rewrite(r, doc)][:n]
    good_qa, answers = [], set()
    for q in qa:
        if is_grounded(q, doc) and normalize_answer(q.answer) not in answers:
            good_qa.append(q)
            answers.add(normalize_answer(q.answer))
    good_qa = good_qa[:m]
    for q in rule_qa(doc, m + len(good_qa)):
        if len(good_qa) >= m:
            break
        if normalize_answer(q.answer) not in answers:
            good_qa.append(q)
            answers.add(normalize_answer(q.answer))
    while len(good_rw) < n:
        good_rw.append(rule_rewrite(doc, len(good_rw)))
    notes.update(rule_version=RULE_VERSION, rewrites_generated=len(rewrites),
                 rewrites_kept=sum(1 for r in good_rw if r in rewrites),
                 qa_generated=len(qa), qa_kept=sum(1 for q in good_qa if q.source != "rule"))
    return Augmentation(good_rw, good_qa, notes)
