"""Reading and validating JSONL corpora (`id`, `title`, `text`) and question sets (`id`, `question`,
`golden_answers`), and dataset folders (questions.jsonl + corpus.jsonl) with their line-order dev/test split.

Every problem in a user's file becomes a `PragError` naming the file and line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NotFound, PragError


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    def as_text(self) -> str:
        return f"{self.title}: {self.text}" if self.title else self.text


@dataclass
class Question:
    id: str
    question: str
    golden_answers: list[str]
    type: str = ""
    gold_doc_ids: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; clear errors for missing, non-UTF-8 or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: file not found")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = path.read_bytes()[: e.start].count(b"\n") + 1
        raise PragError(f"{path}, line {line_no}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    rows = []
    # split on "\n" only: str.splitlines() also splits on U+2028/U+2029/U+0085, legal inside JSON strings
    for n, line in enumerate(raw.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PragError(f"{path}, line {n}: malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise PragError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
        rows.append((n, obj))
    if not rows:
        raise PragError(f"{path}: no records")
    return rows


def _str_field(path: Path, n: int, obj: dict, key: str, required: bool = True) -> str:
    v = obj.get(key)
    if v is None and not required:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and key == "id":
        v = str(v)
    if not isinstance(v, str) or (required and not v.strip()):
        what = "missing" if v is None else ("empty" if isinstance(v, str) else f"not a string ({type(v).__name__})")
        raise PragError(f"{path}, line {n}: field {key!r} is {what}")
    return v.strip()


def _check_unique(path: Path, ids: list[tuple[int, str]]) -> None:
    seen: dict[str, int] = {}
    for n, i in ids:
        if i in seen:
            raise PragError(f"{path}, line {n}: duplicate id {i!r} (first on line {seen[i]})")
        seen[i] = n


def load_corpus(path: Path) -> list[Document]:
    rows = read_jsonl(path)
    docs = [Document(_str_field(path, n, o, "id"), _str_field(path, n, o, "title", required=False),
                     _str_field(path, n, o, "text")) for n, o in rows]
    _check_unique(path, [(n, d.id) for (n, _), d in zip(rows, docs)])
    return docs


def load_questions(path: Path) -> list[Question]:
    rows = read_jsonl(path)
    out = []
    for n, o in rows:
        answers = o.get("golden_answers", o.get("answers"))
        if isinstance(answers, str):
            answers = [answers]
        if (not isinstance(answers, list) or not answers
                or not all(isinstance(a, str) and a.strip() for a in answers)):
            raise PragError(f"{path}, line {n}: field 'golden_answers' must be a non-empty list of strings, none of them blank")
        gold = o.get("gold_doc_ids") or []
        if isinstance(gold, (str, int)) and not isinstance(gold, bool):
            gold = [gold]
        if not isinstance(gold, list) or not all(isinstance(g, (str, int)) and not isinstance(g, bool) for g in gold):
            raise PragError(f"{path}, line {n}: field 'gold_doc_ids' must be a list of document ids")
        out.append(Question(_str_field(path, n, o, "id"), _str_field(path, n, o, "question"), answers,
                            str(o.get("type") or ""), [str(g) for g in gold]))
    _check_unique(path, [(n, q.id) for (n, _), q in zip(rows, out)])
    return out


def split(questions: list[Question], which: str) -> list[Question]:
    """Line-order split: the first half is dev, the second half test ('all' keeps every question)."""
    half = len(questions) // 2
    if which == "dev":
        return questions[:half]
    if which == "test":
        return questions[half:]
    if which == "all":
        return questions
    raise PragError(f"unknown split {which!r}: use dev, test or all")


def few_shot_examples(questions: list[Question], n: int) -> list[Question]:
    """`n` worked examples for a dataset's prompt, drawn from its dev split only: from the end of dev, so the
    first dev questions (those tuned on) are not among them, one question type after another so each type is
    shown. Returned in file order; an evaluation must leave them out of the questions it scores."""
    if n < 0:
        raise PragError(f"few-shot examples: {n} is negative")
    pool = list(reversed(split(questions, "dev")))
    if n > len(pool):
        raise PragError(f"few-shot examples: {n} asked for, the dev split has {len(pool)} questions")
    types = list(dict.fromkeys(q.type for q in pool))
    by_type = {t: [q for q in pool if q.type == t] for t in types}
    picked: list[Question] = []
    while len(picked) < n:
        for t in types:
            if by_type[t] and len(picked) < n:
                picked.append(by_type[t].pop(0))
    order = {q.id: i for i, q in enumerate(questions)}
    return sorted(picked, key=lambda q: order[q.id])


def dataset_dir(name_or_path: str) -> Path:
    """A dataset folder by path, or by name under ../shared/datasets or $PRAG_DATASETS."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    roots = [os.environ.get("PRAG_DATASETS", ""), "../shared/datasets", "../../shared/datasets"]
    for root in roots:
        if root and (Path(root) / name_or_path / "questions.jsonl").exists():
            return Path(root) / name_or_path
    raise NotFound(f"dataset {name_or_path!r} not found (a folder with questions.jsonl and corpus.jsonl)")
