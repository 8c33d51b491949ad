"""How much of each shared dataset's dev tuning questions (the first 30 `prag tune` scores) and test questions (the
first 100) a translator trained on: their questions, and the documents BM25 retrieves for them (top-3), matched
by text against the translator's documents.sha256 / questions.sha256. Builds each dataset's BM25 kb if missing.

    .venv/bin/python benchmarks/experiments/translator_overlap.py --translator src/prag/translators/smollm2 \
        --out benchmarks/results/translator/real/translator-overlap-v6.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared_sets import DATASETS

from prag.config import default_config
from prag.corpus import dataset_dir, few_shot_examples, load_questions, split
from prag.store import KnowledgeBase
from prag.translate import training_overlap

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", type=Path, required=True)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = {"translator": str(a.translator), "datasets": {}}
    for d in DATASETS:
        kb_dir = ROOT / "runs" / f"kb-{d}-{a.model}"
        if not (kb_dir / "kb.toml").exists():
            KnowledgeBase.create(kb_dir, dataset_dir(d) / "corpus.jsonl", default_config(a.model))
        kb = KnowledgeBase.open(kb_dir)
        qs = load_questions(dataset_dir(d) / "questions.jsonl")
        shown = {q.id for q in few_shot_examples(qs, 4)}  # never scored, as in prag tune and eval
        row = {}
        for name, part, n in (("dev30", "dev", 30), ("test100", "test", 100)):
            sel = [q for q in split(qs, part) if q.id not in shown][:n]
            ids = {h.doc.id for q in sel for h in kb.retriever.retrieve(q.question, 3)}
            row[name] = training_overlap(a.translator, [kb.by_id[i].as_text() for i in ids], [q.question for q in sel])
        res["datasets"][d] = row
        print(d, row, flush=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
