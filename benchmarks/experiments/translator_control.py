"""Control for issue 24's real-data table: does translated prag's F1 come from the retrieved document, or from the
adapter alone? Each question is answered with the translated adapter of one random document of its corpus that
BM25 did not retrieve for it (strength and worked examples as in translator_real.sh), beside the run's own prag.

    .venv/bin/python benchmarks/experiments/translator_control.py --translator runs/translator-smollm2-v5-export \
        --tag v5 --out benchmarks/results/translator/real/control-smollm2-v5.json
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from prag.corpus import dataset_dir, few_shot_examples, load_questions, split
from prag.evaluate import score
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ["2wikimultihopqa-comparison", "2wikimultihopqa", "hotpotqa", "popqa"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lm = load_model(a.model)
    res = {"translator": a.translator, "datasets": {}}
    for d in a.datasets:
        kb = KnowledgeBase.open(ROOT / "runs" / f"kb-{d}-{a.model}")
        all_qs = load_questions(dataset_dir(d) / "questions.jsonl")
        cfg = kb.config.override({"generation.adapters": "translated", "generation.translator": a.translator,
                                  "generation.scale": 0.5 if d == "popqa" else 0.25})
        pipe = Pipeline(kb, lm, cfg)
        shots = few_shot_examples(all_qs, 4)
        pipe.examples = [(q.question, q.golden_answers[0]) for q in shots]
        shown = {q.id for q in shots} | {q.question for q in shots}
        qs = [q for q in split(all_qs, "test") if q.id not in shown and q.question not in shown][: a.limit]
        rng = random.Random(0)
        ids = [doc.id for doc in kb.docs]
        f1s = []
        for q in qs:
            near = {h.doc.id for h in pipe.retrieve(q.question, 3)}
            other = rng.choice([i for i in ids if i not in near])
            f1s.append(score(pipe.ask(q.question, "prag", doc_ids=[other]).answer, q.golden_answers)["f1"])
        run = json.loads((ROOT / f"benchmarks/results/translator/real/{d}-{a.model}-{a.tag}-test{a.limit}.json")
                         .read_text())
        res["datasets"][d] = {"n": len(qs), "random_document_prag_f1": round(sum(f1s) / len(f1s), 3),
                              "retrieved_prag_f1": round(run["methods"]["prag"]["f1"], 3),
                              "rag_f1": round(run["methods"]["rag"]["f1"], 3)}
        print(d, res["datasets"][d], flush=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
