"""Issue 26's set-level adapter through the translator (issue 24's machinery): one adapter translated from a
question's documents together, against the same documents translated one by one and merged.

For each question with two or more gold documents, with the gold documents instead of BM25 hits (the oracle's
conditions, `prag eval --doc-source gold`), in one run on the same questions:
  closed, rag@gold (the documents in context);
  prag with each gold document's translated adapter alone (`single-i`);
  prag with all of them translated one by one and merged as the kb says (`separate`: softmax gives each 1/k of
  the strength) and with each at full strength (`separate-sum`);
  prag with one adapter translated from the documents joined into one text (`joint`), at the full strength;
and combine (the documents also in the prompt) with `separate` and `joint`. The composition gain is a condition
minus the best single document, per question type.

    .venv/bin/python benchmarks/experiments/joint_translation.py --set fictional-twohop \
        --translator benchmarks/results/translator/v8 --out benchmarks/results/oracle/joint-fictional-twohop-v8.json
    .venv/bin/python benchmarks/experiments/joint_translation.py --set 2wikimultihopqa --split dev --limit 20 \
        --few-shot 4 --scale 0.25 --translator benchmarks/results/translator/v8 \
        --out benchmarks/results/oracle/joint-2wikimultihopqa-dev20-v8.json
Rows are written as they are made (OUT.log.jsonl); a rerun resumes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from prag.config import default_config
from prag.corpus import dataset_dir, load_questions, split
from prag.evaluate import score
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.translate import translate

ROOT = Path(__file__).resolve().parents[2]


def source(name: str) -> tuple[Path, Path]:
    """A set of benchmarks/data, else a shared dataset as `prag eval --dataset` finds it ($PRAG_DATASETS too)."""
    own = ROOT / "benchmarks/data" / name
    folder = own if own.is_dir() else dataset_dir(name)
    return folder / "corpus.jsonl", folder / "questions.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, help="benchmarks/data/NAME or ../shared/datasets/NAME")
    ap.add_argument("--split", default=None, help="dev | test (default: every question)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--translator", required=True)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--few-shot", type=int, default=0, help="worked examples: the dev ones of runs/kb-SET-MODEL")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    corpus, qfile = source(a.set)
    qs = load_questions(qfile)
    if a.split:
        qs = split(qs, a.split)
    qs = [q for q in qs if len(q.gold_doc_ids or []) >= 2][:a.limit]
    kb_dir = ROOT / "runs" / f"kb-joint-{a.set}-{a.model}"  # its own kb: translated adapters only
    if not (kb_dir / "kb.toml").exists():
        KnowledgeBase.create(kb_dir, corpus, default_config(a.model))
    examples = ROOT / "runs" / f"kb-{a.set}-{a.model}" / "examples.jsonl"
    if a.few_shot and examples.exists():
        shutil.copy(examples, kb_dir / "examples.jsonl")
    kb = KnowledgeBase.open(kb_dir)
    lm = load_model(a.model)
    over = {"generation.adapters": "translated", "generation.translator": a.translator,
            "generation.scale": a.scale, "generation.few_shot": a.few_shot, "generation.merge": "softmax"}
    pipe = Pipeline(kb, lm, kb.config.override(over))
    summed = Pipeline(kb, lm, kb.config.override({**over, "generation.merge": "sum"}))
    tr, sha = pipe.translator
    log = a.out.with_suffix(".log.jsonl")
    done = {json.loads(x)["id"]: json.loads(x) for x in log.read_text().splitlines()} if log.exists() else {}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for q in qs:
        if q.id in done:
            continue
        gold = list(q.gold_doc_ids)
        texts = [kb.by_id[g].as_text() for g in gold]
        with pipe.injector.lock:
            [joint] = translate(lm, pipe.injector, tr, ["\n\n".join(texts)])
        ans = {"closed": pipe.ask(q.question, "closed").answer,
               "rag@gold": pipe.ask(q.question, "rag", doc_ids=gold).answer}
        for i, g in enumerate(gold, 1):
            ans[f"prag single-{i}"] = pipe.ask(q.question, "prag", doc_ids=[g]).answer
            ans[f"combine single-{i}"] = pipe.ask(q.question, "combine", doc_ids=[g]).answer
        for m in ("prag", "combine"):
            ans[f"{m} separate"] = pipe.ask(q.question, m, doc_ids=gold).answer
            ans[f"{m} separate-sum"] = summed.ask(q.question, m, doc_ids=gold).answer
            plan = pipe.plan(q.question, m, doc_ids=gold)
            ans[f"{m} joint"] = pipe.ask(q.question, m, doc_ids=gold,
                                         planned=plan._replace(adapters=[joint], weights=[a.scale])).answer
        row = {"id": q.id, "type": q.type, "golden": q.golden_answers, "answers": ans,
               "f1": {k: round(score(v, q.golden_answers)["f1"], 4) for k, v in ans.items()}}
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        done[q.id] = row
        print(q.id, {k: v for k, v in row["f1"].items() if v}, flush=True)
    rows = [done[q.id] for q in qs]

    def table(rows: list[dict]) -> dict:
        out = {}
        for m in ("prag", "combine"):
            best = [max(v for k, v in r["f1"].items() if k.startswith(f"{m} single-")) for r in rows]
            mean = [statistics.mean(v for k, v in r["f1"].items() if k.startswith(f"{m} single-")) for r in rows]
            out[m] = {"best_single": round(statistics.mean(best), 3), "mean_single": round(statistics.mean(mean), 3)}
            for c in ("separate", "separate-sum", "joint"):
                got = [r["f1"][f"{m} {c}"] for r in rows]
                out[m][c] = round(statistics.mean(got), 3)
                out[m][f"{c}_gain"] = round(statistics.mean(g - b for g, b in zip(got, best)), 3)
        for c in ("closed", "rag@gold"):
            out[c] = round(statistics.mean(r["f1"][c] for r in rows), 3)
        return {"n": len(rows), **out}
    types = sorted({r["type"] for r in rows if r["type"]})
    res = {"set": a.set, "split": a.split, "limit": a.limit, "translator": a.translator, "translator_sha256": sha,
           "scale": a.scale, "few_shot": a.few_shot, "all": table(rows),
           "by_type": {t: table([r for r in rows if r["type"] == t]) for t in types}}
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("all", "by_type")}, indent=1))


if __name__ == "__main__":
    main()
