"""Encoding-recipe experiments on a fictional corpus: augment once (cached), then train each document's adapter
with several recipes and score top-1 / top-3 P-RAG against closed-book.

    .venv/bin/python benchmarks/experiments/recipes.py --corpus tests/data/fictional --n-qa 6 \
        --out benchmarks/results/recipes-fictional.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from prag.augment import Augmentation
from prag.config import default_config
from prag.corpus import load_corpus, load_questions
from prag.encode import train_adapter
from prag.evaluate import score
from prag.generate import extract_answer, generate, question_message
from prag.models import load_model
from prag.pipeline import training_sequences
from prag.augment import RuleAugmenter
from prag.llm_augment import LocalCompleter, ModelAugmenter
from prag.retrieval import BM25Retriever
from prag.update import Injector, merge_weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="tests/data/fictional")
    ap.add_argument("--out", default="runs/recipes.json")
    ap.add_argument("--recipes", default="3e-4:1:concat,1e-3:3:concat,1e-3:3:separate,3e-3:3:separate",
                    help="comma-separated lr:epochs:layout[:rank]")
    ap.add_argument("--merges", default="top1,sum,softmax")
    ap.add_argument("--n-qa", type=int, default=3)
    ap.add_argument("--augmenter", default="model", choices=["model", "rule"])
    args = ap.parse_args()
    folder = Path(args.corpus)
    docs = load_corpus(folder / "corpus.jsonl")
    qs = load_questions(folder / "questions.jsonl")
    lm = load_model("smollm2")
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    cache = Path(args.out).with_suffix(f".aug{args.n_qa}{'-rule' if args.augmenter == 'rule' else ''}.json")
    if cache.exists():
        augs = {k: Augmentation.from_dict(v) for k, v in json.loads(cache.read_text()).items()}
    else:
        t0 = time.perf_counter()
        aug = ModelAugmenter(LocalCompleter(lm)) if args.augmenter == "model" else RuleAugmenter()
        augs = {d.id: aug.augment(d, 1, args.n_qa) for d in docs}
        print(f"augment: {(time.perf_counter() - t0) / len(docs):.2f} s/doc")
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({k: v.to_dict() for k, v in augs.items()}, indent=1))
    retr = BM25Retriever(docs)
    hits = {q.id: retr.retrieve(q.question, 3) for q in qs}

    def run(adapters, merge):
        f1 = 0.0
        for q in qs:
            hs = hits[q.id]
            ads = [adapters[h.doc.id] for h in hs] if adapters else []
            w = merge_weights([h.score for h in hs], merge, 1.0) if adapters else []
            inj.apply(ads, w)
            ans = extract_answer(generate(lm, lm.prompter.format(question_message(q.question)), 24))
            inj.clear()
            f1 += score(ans, q.golden_answers)["f1"]
        return round(f1 / len(qs), 3)

    results = {"closed": run(None, "sum"), "recipes": {}}
    print("closed", results["closed"])
    for rec in args.recipes.split(","):
        lr, ep, layout, *rank = rec.split(":")
        base = default_config("smollm2").lora
        cfg = dataclasses.replace(base, lr=float(lr), epochs=int(ep), layout=layout, r=int(rank[0]) if rank else base.r)
        t0 = time.perf_counter()
        adapters = {d.id: train_adapter(lm.model, inj, training_sequences(lm, augs[d.id], cfg.layout), cfg)[0] for d in docs}
        train_s = (time.perf_counter() - t0) / len(docs)
        row = {"train_s_per_doc": round(train_s, 2)}
        for mg in args.merges.split(","):
            row[mg] = run(adapters, mg)
        results["recipes"][rec] = row
        print(rec, row, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))  # after each recipe: a killed sweep keeps its rows


if __name__ == "__main__":
    main()
