"""Same answers on both backends: greedy answers of the transformers backend and the llama.cpp backend (float32
weights dequantized from the same GGUF, same adapters as llama.cpp LoRA GGUFs) on the first N dev questions of
a dataset, per method, with every difference listed.

    .venv/bin/python benchmarks/experiments/backend_agreement.py --kb runs/kb-2wqa-dtype --limit 50 \
        --methods closed,prag --out benchmarks/results/backend-agreement/backend-agreement-2wqa-dev.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from prag.config import default_config
from prag.corpus import dataset_dir, load_questions, split
from prag.evaluate import score
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="2wikimultihopqa-comparison")
    ap.add_argument("--limit", type=int, default=50, help="first N dev questions")
    ap.add_argument("--kb", type=Path, required=True, help="kb (created and parameterized if needed)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--methods", default="closed,prag")
    ap.add_argument("--weights", default="dequantized", help="llama.cpp weights: dequantized | original")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    ds = dataset_dir(args.dataset)
    qs = split(load_questions(ds / "questions.jsonl"), "dev")[: args.limit]
    kb = (KnowledgeBase.open(args.kb) if (args.kb / "kb.toml").exists()
          else KnowledgeBase.create(args.kb, ds / "corpus.jsonl", default_config(args.model)))
    pipe = Pipeline(kb, config=kb.config.override({"generation.llamacpp_weights": args.weights}))
    pipe.parameterize_retrieved(qs, args.top_k)  # resumable: rerun after an interruption
    pipe.lm  # both backends loaded before anything is timed
    for backend in ("transformers", "llamacpp"):
        pipe.config.generation.backend = backend
        pipe.backend.start()
    out: dict = {"dataset": args.dataset, "split": "dev", "n": len(qs), "top_k": args.top_k,
                 "llamacpp_weights": args.weights, "model": kb.config.model, "merge": kb.config.generation.merge,
                 "methods": {}}
    for method in args.methods.split(","):
        answers, secs = {}, {}
        for backend in ("transformers", "llamacpp"):
            pipe.config.generation.backend = backend
            t0 = time.perf_counter()
            answers[backend] = [pipe.ask(q.question, method=method, top_k=args.top_k).answer for q in qs]
            secs[backend] = (time.perf_counter() - t0) / len(qs)
        same = [a == b for a, b in zip(answers["transformers"], answers["llamacpp"])]
        f1 = {b: sum(score(a, q.golden_answers)["f1"] for a, q in zip(answers[b], qs)) / len(qs) for b in answers}
        out["methods"][method] = {
            "same_answer_rate": sum(same) / len(qs), "f1": f1, "sec_per_question": secs,
            "differences": [{"id": q.id, "question": q.question, "transformers": a, "llamacpp": b}
                            for q, a, b, s in zip(qs, answers["transformers"], answers["llamacpp"], same) if not s]}
        print(method, json.dumps({k: v for k, v in out["methods"][method].items() if k != "differences"}))
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
