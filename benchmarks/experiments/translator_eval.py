"""Issue 24's checks of a translator on the 68 fictional documents of benchmarks/data (never trained on):
translated top-1 F1 against closed-book and trained adapters, and how often another document's translated
adapter changes the answer (document dependence). Speed: `prag bench parameterize --translator DIR`.

    .venv/bin/python benchmarks/experiments/translator_eval.py --translator runs/translator-smollm2-v1 \
        --out benchmarks/results/translator/v1.json
`--checkpoint` first exports the training folder's latest checkpoint (a run still going) as the translator.
The kbs runs/kb-<set>-<model> (trained adapters made by auto_eval.sh) are reused; translated adapters are added.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from prag.config import default_config
from prag.corpus import load_questions
from prag.evaluate import score
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.translate import CHECKPOINT_FILE, Translator, TranslatorConfig, save_translator, translate

ROOT = Path(__file__).resolve().parents[2]
SETS = ["fictional30", "fictional-heldout"]


def export_checkpoint(folder: Path, out: Path) -> dict:
    state = torch.load(folder / CHECKPOINT_FILE, weights_only=False)
    tr = Translator(TranslatorConfig(**state["config"]))
    tr.load_state_dict(state["translator"])
    meta = {"partial": True, "step": state["step"], "train_seconds": round(state["seconds"], 1),
            "train": state["train"], "from": str(folder)}
    save_translator(tr, out, meta)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", type=Path, required=True)
    ap.add_argument("--checkpoint", action="store_true", help="export the folder's checkpoint first (to DIR-export)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--translated-only", action="store_true",
                    help="skip closed-book, trained adapters and the latency check (a sweep over translators)")
    a = ap.parse_args()
    meta = {}
    folder = a.translator
    if a.checkpoint:
        folder = a.translator.with_name(a.translator.name + "-export")
        meta = export_checkpoint(a.translator, folder)
    lm = load_model(a.model)
    res = {"translator": str(folder), "export": meta, "sets": {}}
    for name in SETS:
        kb_dir = ROOT / "runs" / f"kb-{name}-{a.model}"
        if not (kb_dir / "kb.toml").exists():
            KnowledgeBase.create(kb_dir, ROOT / "benchmarks/data" / name / "corpus.jsonl", default_config(a.model))
        kb = KnowledgeBase.open(kb_dir)
        qs = load_questions(ROOT / "benchmarks/data" / name / "questions.jsonl")
        cfg = kb.config.override({"generation.adapters": "translated", "generation.translator": str(folder),
                                  "generation.scale": 1.0, "generation.few_shot": 0, "generation.merge": "top1"})
        pipe = Pipeline(kb, lm, cfg)
        trained = Pipeline(kb, lm, kb.config.override({"generation.scale": 1.0, "generation.few_shot": 0,
                                                         "generation.merge": "top1"}))
        rng = random.Random(0)
        rows = []
        for q in qs:
            top = pipe.retrieve(q.question, 1)[0].doc.id
            other = rng.choice([d.id for d in kb.docs if d.id != top])
            closed = None if a.translated_only else pipe.ask(q.question, "closed").answer
            tr = pipe.ask(q.question, "prag", doc_ids=[top]).answer
            swapped = pipe.ask(q.question, "prag", doc_ids=[other]).answer
            row = {"id": q.id, "translated": tr, "swapped": swapped, "top1": top}
            if closed is not None:
                row["closed"] = closed
            if kb.is_done(top) and not a.translated_only:
                row["trained"] = trained.ask(q.question, "prag", doc_ids=[top]).answer
            rows.append(row)
        def f1(key: str, rows=rows, qs=qs) -> float | None:  # None: no row has this answer (no trained adapters)
            got = [score(r[key], q.golden_answers)["f1"] for r, q in zip(rows, qs) if key in r]
            return round(sum(got) / len(got), 3) if got else None
        res["sets"][name] = {"questions": len(qs), "closed_f1": f1("closed"), "translated_top1_f1": f1("translated"),
                             "trained_top1_f1": f1("trained"), "swapped_top1_f1": f1("swapped"),
                             "swap_changes_answer": round(sum(r["translated"] != r["swapped"] for r in rows) / len(rows), 3),
                             "rows": rows}
        print(name, {k: v for k, v in res["sets"][name].items() if k != "rows"}, flush=True)
    if a.translated_only:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
        return
    # a mode that stores nothing: the top-3 documents translated at question time, against loading stored ones
    kb = KnowledgeBase.open(ROOT / "runs" / f"kb-{SETS[0]}-{a.model}")
    pipe = Pipeline(kb, lm, kb.config.override({"generation.adapters": "translated",
                                                 "generation.translator": str(folder)}))
    tr, _ = pipe.translator
    qs = load_questions(ROOT / "benchmarks/data" / SETS[0] / "questions.jsonl")[:20]
    fresh, stored = [], []
    for q in qs:
        docs = [h.doc for h in pipe.retrieve(q.question, 3)]
        t0 = time.perf_counter()
        with pipe.injector.lock:
            translate(lm, pipe.injector, tr, [d.as_text() for d in docs])
        fresh.append(time.perf_counter() - t0)
        for d in docs:
            kb._uncache(d.id)
        t0 = time.perf_counter()
        for d in docs:
            kb.load_translated(d.id)
        stored.append(time.perf_counter() - t0)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    res["top3_latency_ms"] = {"translate_at_question_time": round(1000 * med(fresh), 1),
                              "load_stored": round(1000 * med(stored), 1), "threads": torch.get_num_threads()}
    print(res["top3_latency_ms"], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
