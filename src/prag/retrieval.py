"""Retrieval: the `Retriever` interface, its registry (`retrieval.backend` in the config) and BM25, the default
(bm25s, English stopwords, Snowball stemming). A retriever is built from the corpus, saved in a knowledge base's
`index/` folder and loaded from it.

A new retriever is a class with `__init__(self, docs)`, `retrieve(query, k)`, `save(folder)` and a classmethod
`load(folder, docs)`, registered with `@RETRIEVERS.register("name")`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bm25s
import Stemmer

from .atomic import atomic_dir
from .corpus import Document
from .errors import PragError
from .registry import Registry


@dataclass(frozen=True)
class Hit:
    doc: Document
    score: float


class Retriever(Protocol):
    docs: list[Document]

    def retrieve(self, query: str, k: int = 3) -> list[Hit]:
        """The best k documents for `query`, best first (fewer, or none, when fewer match)."""

    def save(self, folder: Path) -> None:
        """Persist the index into `folder` (replaced whole)."""

    @classmethod
    def load(cls, folder: Path, docs: list[Document]) -> "Retriever":
        """The index saved in `folder`, for exactly these documents."""


RETRIEVERS: Registry[type] = Registry("retriever")


def check_top_k(k: int) -> int:
    if k < 1:
        raise PragError(f"top-k must be at least 1, got {k}")
    return k


def check_index_ids(folder: Path, docs: list[Document]) -> None:
    """Refuse an index saved for other documents than `docs` (its doc_ids.json lists them)."""
    try:
        ids = json.loads((Path(folder) / "doc_ids.json").read_text())
    except (OSError, json.JSONDecodeError):
        ids = None
    if ids != [d.id for d in docs]:
        raise PragError(f"{folder}: index does not match the corpus; run `prag index` again")


@RETRIEVERS.register("bm25")
class BM25Retriever:
    def __init__(self, docs: list[Document], bm25=None):
        self.docs = docs
        self._stemmer = Stemmer.Stemmer("english")
        if bm25 is None:
            bm25 = bm25s.BM25()
            tokens = self._tokenize([d.as_text() for d in docs])
            bm25.index(tokens, show_progress=False)
        self.bm25 = bm25

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)

    def retrieve(self, query: str, k: int = 3) -> list[Hit]:
        """The top-k documents with a positive BM25 score (possibly fewer than k; empty if no term matches)."""
        check_top_k(k)
        vocab = self.bm25.vocab_dict
        terms = [t for t in self._tokenize([query])[0] if t in vocab]
        if not terms:
            return []
        k = min(k, len(self.docs))
        idx, scores = self.bm25.retrieve([terms], k=k, show_progress=False, n_threads=1)
        return [Hit(self.docs[int(i)], float(s)) for i, s in zip(idx[0], scores[0]) if s > 0]

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically."""
        with atomic_dir(folder) as tmp:
            self.bm25.save(str(tmp), show_progress=False)
            (tmp / "doc_ids.json").write_text(json.dumps([d.id for d in self.docs]))

    @classmethod
    def load(cls, folder: Path, docs: list[Document]) -> "BM25Retriever":
        check_index_ids(folder, docs)
        return cls(docs, bm25s.BM25.load(str(folder)))
