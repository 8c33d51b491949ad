"""Control for issue 24's real-data table: does translated prag's F1 come from the retrieved document, or from the
adapter alone? Each question is answered with the translated adapter of one random document of its corpus that
BM25 did not retrieve for it (strength and worked examples as in translator_real.sh), beside the run's own prag.

    .venv/bin/python benchmarks/experiments/translator_control.py --translator runs/translator-smollm2-v5-export \
        --tag v5 --out benchmarks/results/translator/real/control-smollm2-v5.json

With --split dev --scale S --few-shot N --kb-suffix=-translated it checks a dev tuning's questions instead (those
the kb's tuning.json lists); the retrieved side is then that tuning's row for S and N.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from shared_sets import DATASETS, TABLE1_FEW_SHOT, table1_scale

from prag.corpus import dataset_dir, few_shot_examples, load_questions, split
from prag.evaluate import score
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", choices=["test", "dev"], default="test")
    ap.add_argument("--scale", type=float, default=None, help="default: Table 1's (PopQA 0.5, else 0.25)")
    ap.add_argument("--few-shot", type=int, default=TABLE1_FEW_SHOT)
    ap.add_argument("--kb-suffix", default="", help="runs/kb-<dataset>-<model><suffix>")
    a = ap.parse_args()
    lm = load_model(a.model)
    res = {"translator": a.translator, "datasets": {}}
    for d in a.datasets:
        kb = KnowledgeBase.open(ROOT / "runs" / f"kb-{d}-{a.model}{a.kb_suffix}")
        all_qs = load_questions(dataset_dir(d) / "questions.jsonl")
        cfg = kb.config.override({"generation.adapters": "translated", "generation.translator": a.translator,
                                  "generation.scale": a.scale if a.scale is not None else table1_scale(d)})
        pipe = Pipeline(kb, lm, cfg)
        shots = few_shot_examples(all_qs, TABLE1_FEW_SHOT)  # shown or not, never scored (as in prag tune and eval)
        pipe.examples = [(q.question, q.golden_answers[0]) for q in shots[: a.few_shot]]
        shown = {q.id for q in shots} | {q.question for q in shots}
        qs = [q for q in split(all_qs, a.split) if q.id not in shown and q.question not in shown][: a.limit]
        tuned = kb.tuning() if a.split == "dev" else None
        if a.split == "dev":
            if tuned is None:
                raise SystemExit(f"{kb.root} has no tuning.json: --split dev checks a dev tuning's questions")
            qs = [q for q in all_qs if q.id in set(tuned["questions"])]
        rng = random.Random(0)
        ids = [doc.id for doc in kb.docs]
        f1s = []
        for q in qs:
            near = {h.doc.id for h in pipe.retrieve(q.question, 3)}
            other = rng.choice([i for i in ids if i not in near])
            f1s.append(score(pipe.ask(q.question, "prag", doc_ids=[other]).answer, q.golden_answers)["f1"])
        res["datasets"][d] = {"n": len(qs), "split": a.split, "scale": pipe.config.generation.scale,
                              "few_shot": len(pipe.examples),
                              "random_document_prag_f1": round(sum(f1s) / len(f1s), 3)}
        if a.split == "test":
            run = json.loads((ROOT / f"benchmarks/results/translator/real/{d}-{a.model}-{a.tag}-test{a.limit}.json")
                             .read_text())
            res["datasets"][d] |= {"retrieved_prag_f1": round(run["methods"]["prag"]["f1"], 3),
                                   "rag_f1": round(run["methods"]["rag"]["f1"], 3)}
        else:
            rows = [r for r in tuned["table"] if (r["scale"], r["few_shot"], r.get("temperature", 1.0))
                    == (pipe.config.generation.scale, len(pipe.examples), pipe.config.generation.temperature)]
            if not rows:
                raise SystemExit(f"{kb.root}/tuning.json has no row for strength {pipe.config.generation.scale}, "
                                 f"{len(pipe.examples)} examples")
            res["datasets"][d] |= {"retrieved_prag_f1": rows[0]["f1"]}
        print(d, res["datasets"][d], flush=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
