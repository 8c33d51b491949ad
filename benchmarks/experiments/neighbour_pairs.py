"""Issue 26: how often a two-document question's gold pair are BM25 neighbours of each other in the corpus.

A set-level adapter (one LoRA trained on two documents joined, `pair_adapter.py`) composes better than two merged
ones, but it is trained per question. It could be trained offline instead, for each document with its nearest
neighbours (the document's own text as the BM25 query), if the pairs that questions need are among them. This counts,
on the dev split, the questions whose gold pair is such a pair (either document among the other's k neighbours).
No model is loaded.
    .venv/bin/python benchmarks/experiments/neighbour_pairs.py --out benchmarks/results/oracle/neighbour-pairs-dev.json
"""
import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, load_corpus, load_questions, split
from prag.retrieval import BM25Retriever


def nearest(bm25: BM25Retriever, doc, k: int, query_chars: int = 1000) -> list[str]:
    """The ids of `doc`'s k nearest documents by BM25, its own first `query_chars` characters as the query."""
    return [h.doc.id for h in bm25.retrieve(doc.as_text()[:query_chars], k + 1) if h.doc.id != doc.id][:k]


def coverage(dataset: str, which: str, ks: list[int], query_chars: int) -> dict:
    src = dataset_dir(dataset)
    docs = load_corpus(src / "corpus.jsonl")
    by_id = {d.id: d for d in docs}
    bm25 = BM25Retriever(docs)
    qs = [q for q in split(load_questions(src / "questions.jsonl"), which) if len(q.gold_doc_ids) == 2]
    near = {}
    for i in {d for q in qs for d in q.gold_doc_ids}:
        near[i] = nearest(bm25, by_id[i], max(ks), query_chars)
    out = {"questions": len(qs), "types": {}}
    for t in sorted({q.type for q in qs}) + ["all"]:
        sub = [q for q in qs if t in ("all", q.type)]
        out["types"][t] = {"n": len(sub)} | {
            f"k{k}": round(sum(a in near[b][:k] or b in near[a][:k] for a, b in (q.gold_doc_ids for q in sub))
                           / len(sub), 3) for k in ks}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="2wikimultihopqa,hotpotqa")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--query-chars", type=int, default=1000, help="characters of a document used as its query")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = {d: coverage(d, a.split, [1, 2, 3], a.query_chars) for d in a.datasets.split(",")}
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
