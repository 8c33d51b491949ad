"""Retrieval: the `Retriever` interface and its BM25 implementation (bm25s, English stopwords, Snowball
stemming), persisted in a knowledge base's `index/` folder and reloaded from it."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import PragError
from .corpus import Document


@dataclass(frozen=True)
class Hit:
    doc: Document
    score: float


class BM25Retriever:
    def __init__(self, docs: list[Document], bm25=None):
        import bm25s
        import Stemmer

        self.docs = docs
        self._stemmer = Stemmer.Stemmer("english")
        if bm25 is None:
            bm25 = bm25s.BM25()
            tokens = self._tokenize([d.as_text() for d in docs])
            bm25.index(tokens, show_progress=False)
        self.bm25 = bm25

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)

    def retrieve(self, query: str, k: int = 3) -> list[Hit]:
        """The top-k documents with a positive BM25 score (possibly fewer than k; empty if no term matches)."""
        if k < 1:
            raise PragError(f"top-k must be at least 1, got {k}")
        vocab = self.bm25.vocab_dict
        terms = [t for t in self._tokenize([query])[0] if t in vocab]
        if not terms:
            return []
        k = min(k, len(self.docs))
        idx, scores = self.bm25.retrieve([terms], k=k, show_progress=False, n_threads=1)
        return [Hit(self.docs[int(i)], float(s)) for i, s in zip(idx[0], scores[0]) if s > 0]

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (a temporary sibling folder, then a rename)."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.bm25.save(str(tmp), show_progress=False)
        (tmp / "doc_ids.json").write_text(json.dumps([d.id for d in self.docs]))
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path, docs: list[Document]) -> "BM25Retriever":
        import bm25s

        ids = json.loads((folder / "doc_ids.json").read_text())
        if ids != [d.id for d in docs]:
            raise PragError(f"{folder}: index does not match the corpus; run `prag index` again")
        return cls(docs, bm25s.BM25.load(str(folder)))
