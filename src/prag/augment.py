"""Augmentation (paper §3.2.1): n rewrites and m question-answer pairs per document.

Small models write wrong or ungrounded pairs, so every generated pair passes a grounding check (its answer's
words occur in the document, it is short, it does not appear in its own question) and a deterministic
rule-based generator fills whatever is missing: every document gets exactly m grounded pairs and n rewrites.
Augmenters: `RuleAugmenter` (rules only, here) and `ModelAugmenter` (an LLM: local and batched, or any
OpenAI-compatible endpoint; in llm_augment.py).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .corpus import Document
from .evaluate import normalize_answer

STOP = set("a an the of in on at to for from by with and or is was were are be been as that this it its "
           "which who whom what when where why how did does do has have had his her their there into".split())
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


def _words(text: str) -> list[str]:
    return normalize_answer(text).split()


def is_grounded(qa: QA, doc: Document) -> bool:
    """A pair is kept only if its answer comes from the document and the question is about it."""
    ans, q = _words(qa.answer), _words(qa.question)
    doc_words = set(_words(doc.as_text()))
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


def _on_topic(qa: QA, sentence: str, doc: Document) -> bool:
    """A generated question must reuse a content word of its source sentence beyond the title and the answer
    (small models otherwise ask about something else and pair it with the given answer)."""
    skip = set(_words(doc.title)) | set(_words(qa.answer)) | STOP
    src = {w for w in _words(sentence) if w not in skip}
    return any(w in src for w in _words(qa.question))


# ---------------------------------------------------------------- deterministic rules
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NUM = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_NAME = re.compile(r"\b([A-Z][a-z'\-]+(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][a-z'\-]+)*)\b")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


_OBJ = re.compile(r"\b(?:a|an|the|of|on|with|as|in|from|by|into)\s+([a-z][a-z\-]{3,}(?:\s+[a-z][a-z\-]{3,})?)\b")
COMMON = set("other another many most more some such very also only known famous traditional traditionally until "
             "later years year still each every first second third large small local several made used called "
             "named began begun often once well because after before since during about near".split())
VERBISH = set("born made built known held kept sold grown found seen worn given taken".split())
_WORD1 = re.compile(r"[a-z][a-z\-]{3,}")
_WORD = re.compile(r"\b[a-z][a-z\-]{4,}\b")
_TAIL = re.compile(r"([A-Za-z][A-Za-z'\-]+(?:\s+[A-Za-z][A-Za-z'\-]+)?)\W*$")


def _bounds(m: re.Match) -> tuple[int, int, str]:
    """(start, end, text) of a span match: its first group when the pattern has one."""
    g = 1 if m.re.groups else 0
    return m.start(g), m.end(g), m.group(g)


def _is_content(words: str) -> bool:
    ws = words.lower().split()
    return bool(ws) and ws[0] not in STOP | COMMON and ws[-1] not in STOP | COMMON \
        and not any(w.endswith(("ly", "ing")) for w in ws)


def answer_spans(doc: Document) -> list[tuple[str, re.Match, str, str]]:
    """Candidate answers, as (sentence, match, wh-phrase, answer). Per sentence: years, numbers, names, then
    lower-case phrases after an article or preposition ('feeds on lichen', 'a wooden hoop'), the sentence's
    last words, then other content words. Ordered for coverage: every sentence's first span, then every
    sentence's second, and so on."""
    per_sentence = []
    title = doc.title.lower()
    for s in sentences(doc.text):
        spans = [(m, "what year") for m in _YEAR.finditer(s)]
        spans += [(m, "how many") for m in _NUM.finditer(s) if not _YEAR.fullmatch(m.group())]
        spans += [(m, "what") for m in _NAME.finditer(s) if m.start() > 0 and m.group() not in doc.title]
        spans = sorted(spans, key=lambda x: x[0].start())
        for pattern in (_OBJ, _TAIL, _WORD):
            taken = [_bounds(m)[:2] for m, _ in spans]
            for m in pattern.finditer(s.rstrip(" .!?") if pattern is _TAIL else s):
                a, b, text = _bounds(m)
                if pattern is _OBJ and " " in text and (text.endswith(("ed", "ing")) or text.split()[1] in VERBISH):
                    m = _WORD1.search(s, a)  # 'cartographer born' -> 'cartographer'
                    a, b, text = _bounds(m)
                if _is_content(text) and text.lower() not in title and not any(x < b and a < y for x, y in taken):
                    spans.append((m, "what"))
                    taken.append((a, b))
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
    notes.update(rewrites_generated=len(rewrites), rewrites_kept=sum(1 for r in good_rw if r in rewrites),
                 qa_generated=len(qa), qa_kept=sum(1 for q in good_qa if q.source != "rule"))
    return Augmentation(good_rw, good_qa, notes)


class RuleAugmenter:
    name = "rule"

    def augment(self, doc: Document, n: int, m: int) -> Augmentation:
        return complete(doc, [], [], n, m, {"augmenter": self.name})

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        return [self.augment(d, n, m) for d in docs]


PARTS = ("both", "rewrite", "qa", "none")


def select_parts(aug: Augmentation, doc: Document, parts: str) -> Augmentation:
    """The augmentation restricted for the paper's §5.3 ablation: both (as is), rewrite (no QA pairs), qa (the
    original document instead of rewrites, plus the QA pairs), none (the original document only)."""
    if parts not in PARTS:
        from . import PragError

        raise PragError(f"unknown augment.parts {parts!r}: use {', '.join(PARTS)}")
    rewrites = aug.rewrites if parts in ("both", "rewrite") else [doc.as_text()]
    qa = aug.qa if parts in ("both", "qa") else []
    return Augmentation(rewrites, qa, {**aug.notes, "parts": parts})


class ReferenceAugmenter:
    """QA pairs given in a JSONL file ({doc_id, qa: [{question, answer}]}, e.g. a dataset's
    augment-reference.jsonl written by a much larger model for the gold paragraphs), with rule rewrites.
    Documents the file does not cover get rule pairs; `notes["qa_source"]` says which."""
    name = "reference"

    def __init__(self, path: str | None):
        from . import PragError
        from .corpus import read_jsonl

        if not path:
            raise PragError("augmenter 'reference' needs augment.reference: a JSONL file of {doc_id, qa}")
        self.pairs: dict[str, list[QA]] = {}
        for n, row in read_jsonl(Path(path)):
            try:
                self.pairs[str(row["doc_id"])] = [QA(str(q["question"]), str(q["answer"]), "reference")
                                                  for q in row["qa"]]
            except (KeyError, TypeError):
                raise PragError(f"{path}: line {n}: expected {{doc_id, qa: [{{question, answer}}]}}") from None

    def augment(self, doc: Document, n: int, m: int) -> Augmentation:
        ref = self.pairs.get(doc.id)
        if ref is None:
            return complete(doc, [], [], n, m, {"augmenter": self.name, "qa_source": "rule"})
        rewrites = [rule_rewrite(doc, i) for i in range(n)]
        return Augmentation(rewrites, ref[:m], {"augmenter": self.name, "qa_source": "reference"})

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        return [self.augment(d, n, m) for d in docs]
