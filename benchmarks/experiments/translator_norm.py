"""Issue 24: how hard a translated adapter pushes the model, on invented against real paragraphs, beside trained
adapters of the same documents. For each (document, its question) pair it runs the question's prompt once with no
adapter, hooks every target module, and reports ||delta|| / ||output|| per module kind: delta = scaling * B A x,
split into the fixed slots (the first r ranks) and the token memory (the rest). Nothing is trained.

    .venv/bin/python benchmarks/experiments/translator_norm.py --model gemma3-270m \
        --translator runs/translator-gemma3-270m-cpu --out benchmarks/results/translator/norm-gemma3-270m-g1.json
`--fresh` measures a new, untrained translator instead (what training starts from).

Invented: fictional30's questions and their top-1 documents (kb-fictional30-<model>, trained adapters there).
Real: the first test questions of HotpotQA whose top-1 document has a trained adapter in kb-hotpotqa-<model> (the
Table-1 kb): a measurement of adapters that exist, no training on anything.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from prag.config import default_config
from prag.corpus import load_questions, split
from prag.generate import question_message
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.translate import TranslatorConfig, load_translator, new_translator, translate
from prag.update import Injector

ROOT = Path(__file__).resolve().parents[2]


def module_inputs(lm, injector, prompt: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each target module's input and output on the prompt (no adapter installed)."""
    seen, handles = {}, []
    for name, mod in injector.modules.items():
        handles.append(mod.register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, (args[0][0].float(), out[0].float()))))
    try:
        ids = lm.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            lm.model(ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def push(adapter, seen: dict, r: int) -> dict[str, dict[str, float]]:
    """Module kind -> {slots, memory, total}: mean over that kind's modules of ||scaling * B A x|| / ||y||."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, (a, b) in adapter.factors.items():
        x, y = seen[name]
        kind = name.rsplit(".", 1)[-1]
        parts = {"total": (a, b), "slots": (a[:r], b[:, :r])}
        if a.shape[0] > r:
            parts["memory"] = (a[r:], b[:, r:])
        yn = y.norm().item()
        for part, (pa, pb) in parts.items():
            delta = adapter.scaling * (x @ pa.T) @ pb.T
            out.setdefault(kind, {}).setdefault(part, []).append(delta.norm().item() / yn)
    return {k: {p: statistics.mean(v) for p, v in parts.items()} for k, parts in out.items()}


def pairs(kb: KnowledgeBase, pipe: Pipeline, questions: list, n: int) -> list[tuple]:
    got = []
    for q in questions:
        top = pipe.retrieve(q.question, 1)[0].doc
        if kb.is_done(top.id):
            got.append((q, top))
        if len(got) == n:
            break
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--translator", type=Path, help="a trained translator folder")
    ap.add_argument("--fresh", action="store_true",
                    help="instead: a new (untrained) translator with memory layers 5-7, as training starts")
    ap.add_argument("--n", type=int, default=20, help="documents per set")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lm = load_model(a.model)
    if (a.translator is None) == (not a.fresh):
        ap.error("give --translator or --fresh")
    if a.fresh:
        injector = Injector(lm.model, default_config(a.model).lora.target_modules)
        translator = new_translator(lm, injector, TranslatorConfig(model=a.model, memory_layers=[5, 6, 7]))
        sha = None
        for h in injector._handles:
            h.remove()
    else:
        translator, sha = load_translator(a.translator, a.model)
    r = translator.cfg.r
    sets = {
        "fictional30": (ROOT / f"runs/kb-fictional30-{a.model}",
                        load_questions(ROOT / "benchmarks/data/fictional30/questions.jsonl")),
        "hotpotqa-test": (ROOT / f"runs/kb-hotpotqa-{a.model}",
                          split(load_questions(ROOT / "../shared/datasets/hotpotqa/questions.jsonl"), "test")),
    }
    res = {"model": a.model, "translator": str(a.translator or "fresh"), "sha256": sha, "sets": {}}
    for name, (kb_dir, qs) in sets.items():
        kb = KnowledgeBase.open(kb_dir)
        pipe = Pipeline(kb, lm, kb.config)
        rows = []
        for q, doc in pairs(kb, pipe, qs, a.n):
            prompt = lm.prompter.format(question_message(q.question))
            seen = module_inputs(lm, pipe.injector, prompt)
            tr = translate(lm, pipe.injector, translator, [doc.as_text()])[0]
            rows.append({"id": q.id, "doc": doc.id, "doc_tokens": len(lm.tokenizer(doc.as_text()).input_ids),
                         "translated": push(tr, seen, r), "trained": push(kb.load_adapter(doc.id), seen, r)})
        summary = {}
        for which in ("translated", "trained"):
            for kind in rows[0][which]:
                for part in rows[0][which][kind]:
                    summary[f"{which}.{kind}.{part}"] = round(statistics.mean(x[which][kind][part] for x in rows), 4)
        summary["doc_tokens"] = statistics.mean(x["doc_tokens"] for x in rows)
        res["sets"][name] = {"n": len(rows), "summary": summary, "rows": rows}
        print(name, json.dumps(summary, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
