"""Does a translator's adapter depend on its document? The answer-token loss of QA pairs with the right document's
translated adapter, with another document's, and with none (B set to zero).

    # a checkpoint of a run still training, on the 36 fictional30 documents (never trained on)
    .venv/bin/python benchmarks/experiments/translator_probe.py --checkpoint runs/translator-smollm2-v4/checkpoint.pt
    # ... and on the training distribution: --sets fictional30,invented,cloze,natural
    #   invented-new / prose-new: 36 new invented documents (data version 2 / 4's generator, another seed: never
    #             trained on); prose-new-{name,number,closed}: the same, questions whose answer is of that type;
    #   invented: 36 random invented training documents (a checkpoint at step s has seen s x 8 of 11,426) and their
    #             template questions; cloze: 36 random real training paragraphs and their rule (cloze) QA pairs;
    #   natural: PopQA and HotpotQA dev questions about real training paragraphs that contain the answer
    # capacity: train on N invented training documents until it overfits, then probe those same documents
    .venv/bin/python benchmarks/experiments/translator_probe.py --overfit 16 --contrast 1.0 --epochs 40
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from prag.corpus import dataset_dir, load_corpus, load_questions, split
from prag.encode import qa_texts
from prag.models import fast_bf16, load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.translate import (
    TrainConfig,
    TrainItem,
    Translator,
    TranslatorConfig,
    batch_loss,
    load_translator,
    train_translator,
)
from prag.update import Injector

ROOT = Path(__file__).resolve().parents[2]


def _silenced(tr: Translator, slots: bool, memory: bool) -> Translator:
    """A copy of `tr` whose pooled slots and/or token memory write nothing (their B side zeroed)."""
    t = Translator(tr.cfg)
    t.load_state_dict(tr.state_dict())
    with torch.no_grad():
        for p in t.proj_b if slots else []:
            p.zero_()
        if memory and hasattr(t, "mem_val"):
            t.mem_val.zero_()
    return t.eval()


def probe(lm, inj, tr: Translator, items: list[TrainItem]) -> dict:
    other = [TrainItem(it.doc_id, items[(i + 3) % len(items)].text, it.qa) for i, it in enumerate(items)]
    runs = [("own", tr, items), ("other", tr, other), ("none", _silenced(tr, True, True), items)]
    if tr.cfg.memory_layers:  # the token memory's share: own without it, and only it
        only = _silenced(tr, True, False)
        runs += [("own-no-memory", _silenced(tr, False, True), items), ("own-memory-only", only, items),
                 ("other-memory-only", only, other)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast_bf16(torch.device("cpu"))):
        return {k: round(float(batch_loss(lm, inj, t, its, 4, random.Random(0))), 3) for k, t, its in runs}


def probe_set(name: str, lm, a) -> list[TrainItem]:
    """36 documents (or fewer) with one or two QA pairs each, for `probe`."""
    if name == "fictional30":
        docs = {d.id: d for d in load_corpus(ROOT / "benchmarks/data/fictional30/corpus.jsonl")}
        qs = load_questions(ROOT / "benchmarks/data/fictional30/questions.jsonl")
        return [TrainItem(q.gold_doc_ids[0], docs[q.gold_doc_ids[0]].as_text(),
                          qa_texts(lm, [(q.question, q.golden_answers[0])])) for q in qs]
    if name in ("invented-new", "prose-new") or name.startswith("prose-new-"):
        # another seed: documents no translator has seen; prose-new-{name,number,closed}: only questions whose
        # answer is a name, a number, or a value from a short fixed list (CLOSED_TYPES)
        sys.path.insert(0, str(Path(__file__).parent))
        import translator_data as td
        kind = name[len("prose-new-"):] if name.startswith("prose-new-") else None
        docs, pairs = td.fictional(36 if kind is None else 150, seed=4242, prose=name != "invented-new")
        closed = {v for values in td.CLOSED_VALUES.values() for v in values}
        by = {d["id"]: d for d in docs}
        first = {}
        for r in pairs:
            got = "closed" if r["answer"] in closed else "number" if r["answer"].isdigit() else "name"
            if kind in (None, got):
                first.setdefault(r["doc_id"], (r["question"], r["answer"]))
        return [TrainItem(i, f"{by[i]['title']}: {by[i]['text']}", qa_texts(lm, [first[i]])) for i in first][:36]
    kb = KnowledgeBase.open(a.kb)
    if name == "invented":
        qa: dict[str, list] = {}
        for x in open(a.data / "qa.jsonl"):
            r = json.loads(x)
            qa.setdefault(r["doc_id"], []).append((r["question"], r["answer"]))
        pick = random.Random(1).sample([d for d in kb.docs if d.id.startswith("syn-") and d.id in qa], 36)
        return [TrainItem(d.id, d.as_text(), qa_texts(lm, qa[d.id][:1])) for d in pick]
    if name == "cloze":
        pick = random.Random(2).sample([d for d in kb.docs if not d.id.startswith("syn-")], 36)
        augs = Pipeline(kb, lm, kb.config).augment_many(pick)
        return [TrainItem(d.id, d.as_text(), qa_texts(lm, [(q.question, q.answer) for q in g.qa][:2]))
                for d, g in zip(pick, augs) if g.qa]
    if name == "natural":
        sys.path.insert(0, str(Path(__file__).parent))
        from translator_data import answer_in
        items, used = [], set()
        for ds in ("popqa", "hotpotqa"):
            qs = split(load_questions(dataset_dir(ds) / "questions.jsonl"), "dev")
            for q in qs:
                for g in q.gold_doc_ids:
                    d = kb.by_id.get(f"{ds}--{g}")
                    if d is None or d.id in used:
                        continue
                    ans = answer_in(d.title + "\n" + d.text, q.golden_answers)  # the data's rule: whole words
                    if ans:
                        items.append(TrainItem(d.id, d.as_text(), qa_texts(lm, [(q.question, ans)])))
                        used.add(d.id)
                        break
        return items[:18] + items[-18:]  # PopQA's first, HotpotQA's last
    raise SystemExit(f"unknown probe set {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="a run's checkpoint.pt, or a translator folder")
    ap.add_argument("--overfit", type=int)
    ap.add_argument("--contrast", type=float, default=1.0)
    ap.add_argument("--epochs", type=float, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data", type=Path, default=ROOT / "runs/translator-data")
    ap.add_argument("--sets", default="fictional30",
                    help="with --checkpoint: fictional30,invented-new,prose-new[-name|-number|-closed],invented,cloze,natural")
    ap.add_argument("--kb", type=Path, default=ROOT / "runs/kb-translator-smollm2-v2", help="the training kb")
    a = ap.parse_args()
    lm = load_model("smollm2")
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    if a.checkpoint:
        if a.checkpoint.is_dir():  # a translator folder (a finished run, or a shipped one)
            tr, _ = load_translator(a.checkpoint)
            out = {"step": json.loads((a.checkpoint / "translator.json").read_text()).get("step"),
                   "translator": str(a.checkpoint)}
        else:
            state = torch.load(a.checkpoint, weights_only=False)
            tr = Translator(TranslatorConfig(**state["config"]))
            tr.load_state_dict(state["translator"])
            out = {"step": state["step"]}
        for name in a.sets.split(","):
            items = probe_set(name, lm, a)
            out[name] = {"n": len(items), **probe(lm, inj, tr.eval(), items)}
        print(json.dumps(out))
        return
    rows = [json.loads(x) for x in open(a.data / "corpus.jsonl")]
    docs = {r["id"]: r for r in rows if r["id"].startswith("syn-")}
    qa: dict[str, list] = {}
    for x in open(a.data / "qa.jsonl"):
        r = json.loads(x)
        qa.setdefault(r["doc_id"], []).append((r["question"], r["answer"]))
    ids = sorted(qa)[: a.overfit]
    items = [TrainItem(i, docs[i]["title"] + "\n" + docs[i]["text"], qa_texts(lm, qa[i])) for i in ids]
    out = ROOT / "runs" / f"translator-overfit-{a.overfit}-{a.contrast}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    s = train_translator(lm, inj, items, TranslatorConfig(read_layer=8),
                         TrainConfig(epochs=a.epochs, batch_docs=8, qa_per_doc=4, lr=a.lr, contrast=a.contrast,
                                     warmup_steps=5), out, progress=False)
    tr, _ = load_translator(out)
    print(json.dumps({"documents": len(items), "steps": s["steps"], "seconds": round(time.time() - t0),
                      "contrast": a.contrast, "train_docs": probe(lm, inj, tr, items)}))


if __name__ == "__main__":
    main()
