"""Adapter storage dtype: bytes per document and P-RAG F1 with the same adapters stored as float32, float16 and
bfloat16 (the factors are trained once in float32, then re-saved in each dtype; only the rounding differs).

    .venv/bin/python benchmarks/experiments/adapter_dtype.py --dataset 2wikimultihopqa-comparison --limit 15 \
        --kb runs/kb-2wqa-dtype --out benchmarks/results/adapter-dtype/adapter-dtype-2wqa-dev.json
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from prag.config import default_config
from prag.corpus import dataset_dir, load_questions, split
from prag.encode import TORCH_DTYPES as ADAPTER_DTYPES
from prag.evaluate import run_eval
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.update import ADAPTER_FILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="2wikimultihopqa-comparison")
    ap.add_argument("--limit", type=int, default=30, help="first N dev questions")
    ap.add_argument("--kb", type=Path, required=True, help="float32 kb (created and parameterized if needed)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    ds = dataset_dir(args.dataset)
    qs = split(load_questions(ds / "questions.jsonl"), "dev")[: args.limit]
    kb = (KnowledgeBase.open(args.kb) if (args.kb / "kb.toml").exists()
          else KnowledgeBase.create(args.kb, ds / "corpus.jsonl", default_config(args.model)))
    pipe = Pipeline(kb)
    need = pipe.parameterize_retrieved(qs, args.top_k)  # resumable: rerun after an interruption
    rows, preds = {}, {}
    for name, dtype in ADAPTER_DTYPES.items():
        root = args.kb.parent / f"{args.kb.name}-{name}"
        if name == "float32":
            kbd, p = kb, pipe
        else:  # same factors, re-saved in this dtype
            shutil.rmtree(root, ignore_errors=True)
            kbd = KnowledgeBase.create(root, ds / "corpus.jsonl", kb.config)
            for i in need:
                kbd.save_document(kbd.by_id[i], kb.load_adapter(i), kb.load_augmentation(i), 0.0, dtype)
            p = Pipeline(kbd, pipe.lm)
            p._injector = pipe.injector
        sizes = [(kbd.doc_dir(i) / ADAPTER_FILE).stat().st_size for i in need]
        log = args.out.with_suffix(f".{name}.log.jsonl")
        res = run_eval(p, qs, ["prag"], args.top_k, log)["methods"]["prag"]
        preds[name] = {r["id"]: r["prediction"] for r in map(json.loads, log.read_text().splitlines())}
        same = sum(preds[name][q.id] == preds["float32"][q.id] for q in qs)
        rows[name] = {"bytes_per_doc": round(sum(sizes) / len(sizes)), "f1": res["f1"], "em": res["em"],
                      "same_answer_as_float32": f"{same}/{len(qs)}"}
        print(name, rows[name], flush=True)
    out = {"dataset": args.dataset, "split": "dev", "n_questions": len(qs), "documents": len(need),
           "model": kb.config.model, "top_k": args.top_k, "merge": kb.config.generation.merge, "dtypes": rows}
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
