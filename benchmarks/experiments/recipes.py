"""Encoding-recipe experiments on a fictional corpus: augment once (cached), then train each document's adapter
with several recipes and score top-1 / top-3 P-RAG against closed-book.

    .venv/bin/python benchmarks/experiments/recipes.py --corpus tests/data/fictional --n-qa 6 \
        --out benchmarks/results/fictional/recipes/recipes-fictional.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from prag.augment import RuleAugmenter
from prag.config import default_config
from prag.corpus import load_corpus, load_questions
from prag.encode import loss_starts, read_adapter, save_adapter, train_adapters, training_sequences
from prag.evaluate import score
from prag.generate import extract_answer, generate, question_message
from prag.llm_augment import LocalCompleter, ModelAugmenter
from prag.models import load_model
from prag.retrieval import BM25Retriever
from prag.rules import Augmentation
from prag.update import Injector, merge_weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="tests/data/fictional")
    ap.add_argument("--out", default="runs/recipes.json")
    ap.add_argument("--recipes", default="3e-4:1:concat,1e-3:3:concat,1e-3:3:separate,3e-3:3:separate",
                    help="comma-separated lr:epochs:layout[:rank[:loss]] (loss: all | answer)")
    ap.add_argument("--merges", default="top1,sum,softmax")
    ap.add_argument("--n-qa", type=int, default=3)
    ap.add_argument("--n-rewrites", type=int, default=1)
    ap.add_argument("--augmenter", default="model", choices=["model", "rule"])
    ap.add_argument("--shots", default="none", choices=["none", "generic"],
                    help="worked examples before each question: none, or the generic two (never fictional facts)")
    ap.add_argument("--adapters", default="runs/recipe-adapters",
                    help="trained adapters are kept here per recipe, so other prompts or merges reuse them")
    args = ap.parse_args()
    folder = Path(args.corpus)
    docs = load_corpus(folder / "corpus.jsonl")
    qs = load_questions(folder / "questions.jsonl")
    lm = load_model("smollm2")
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    rw = f"-rw{args.n_rewrites}" if args.n_rewrites != 1 else ""
    cache = Path(args.out).with_suffix(f".aug{args.n_qa}{rw}{'-rule' if args.augmenter == 'rule' else ''}.json")
    if cache.exists():
        augs = {k: Augmentation.from_dict(v) for k, v in json.loads(cache.read_text()).items()}
    else:
        t0 = time.perf_counter()
        aug = ModelAugmenter(LocalCompleter(lm)) if args.augmenter == "model" else RuleAugmenter()
        augs = {d.id: aug.augment(d, args.n_rewrites, args.n_qa) for d in docs}
        print(f"augment: {(time.perf_counter() - t0) / len(docs):.2f} s/doc")
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({k: v.to_dict() for k, v in augs.items()}, indent=1))
    retr = BM25Retriever(docs)
    hits = {q.id: retr.retrieve(q.question, 3) for q in qs}

    shots = [(question_message(u.removeprefix("Question: ")), a) for u, a in lm.prompter.GENERIC_SHOTS] \
        if args.shots == "generic" else None
    preds: dict[str, dict[str, str]] = {}

    def run(adapters, merge, key="closed"):
        f1 = 0.0
        for q in qs:
            hs = hits[q.id]
            ads = [adapters[h.doc.id] for h in hs] if adapters else []
            w = merge_weights([h.score for h in hs], merge, 1.0) if adapters else []
            inj.apply(ads, w)
            ans = extract_answer(generate(lm, lm.prompter.format(question_message(q.question), shots), 24))
            inj.clear()
            preds.setdefault(key, {})[q.id] = ans
            f1 += score(ans, q.golden_answers)["f1"]
        return round(f1 / len(qs), 3)

    results = {"shots": args.shots, "closed": run(None, "sum"), "recipes": {}}
    print("closed", results["closed"])
    for rec in args.recipes.split(","):
        lr, ep, layout, *rest = rec.split(":")
        base = default_config("smollm2").lora
        cfg = dataclasses.replace(base, lr=float(lr), epochs=int(ep), layout=layout,
                                  r=int(rest[0]) if rest and rest[0] else base.r, loss=rest[1] if len(rest) > 1 else "all")
        key = f"{rec.replace(':', '_')}-a{cfg.alpha:g}-s{cfg.seed}-L{cfg.max_seq_len}"  # what else shapes them
        adapters, train_s = _trained(lm, inj, docs, augs, cfg, Path(args.adapters) / cache.stem / key)
        row = {"train_s_per_doc": round(train_s, 2)}
        for mg in args.merges.split(","):
            row[mg] = run(adapters, mg, f"{rec}/{mg}")
        results["recipes"][rec] = row
        print(rec, row, flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))  # after each recipe: a killed sweep keeps its rows
        Path(args.out).with_suffix(".predictions.json").write_text(json.dumps(preds, indent=1))


def _trained(lm, inj, docs, augs, cfg, folder: Path):
    """Each document's adapter for one recipe: read from `folder` if a previous run trained it, else trained
    (batched) and saved. Returns the adapters and the training seconds per document (as first measured)."""
    timing = folder / "train_s_per_doc.json"
    if timing.exists() and all((folder / d.id).is_dir() for d in docs):
        return {d.id: read_adapter(folder / d.id) for d in docs}, json.loads(timing.read_text())
    t0 = time.perf_counter()
    trained = train_adapters(lm.model, inj, [training_sequences(lm, augs[d.id], cfg.layout) for d in docs], cfg,
                             lm.pad_id,
                             loss_from=[loss_starts(lm, augs[d.id], cfg.layout, cfg.loss) for d in docs])
    secs = (time.perf_counter() - t0) / len(docs)
    for d, (ad, _) in zip(docs, trained):
        save_adapter(ad, folder / d.id, cfg, "smollm2")
    timing.write_text(json.dumps(secs))
    return {d.id: ad for d, (ad, _) in zip(docs, trained)}, secs


if __name__ == "__main__":
    main()
