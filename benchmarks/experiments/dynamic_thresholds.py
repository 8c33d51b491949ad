"""Dev-split sweep of the FLARE and DRAGIN thresholds (θ) on one dataset: F1, retrieval rounds and seconds per
question for each value. Used to choose the documented defaults (dev only, never test).

    .venv/bin/python benchmarks/experiments/dynamic_thresholds.py --kb runs/kb-2wqa-smol \
        --dataset 2wikimultihopqa-comparison --limit 12 --flare 0.2,0.4 --dragin 0.2,0.35 \
        --out benchmarks/results/dynamic/dynamic-thresholds-2wqa-dev-smollm2.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, load_questions, split
from prag.evaluate import run_eval
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", type=Path, required=True)
    ap.add_argument("--dataset", default="2wikimultihopqa-comparison")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--flare", default="0.2,0.4")
    ap.add_argument("--dragin", default="0.2,0.35")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    qs = split(load_questions(dataset_dir(args.dataset) / "questions.jsonl"), "dev")[: args.limit]
    pipe = Pipeline(KnowledgeBase.open(args.kb))
    rows = []
    for method, values in (("flare", args.flare), ("dragin", args.dragin)):
        for theta in [float(v) for v in values.split(",") if v]:
            setattr(pipe.config.dynamic, f"{method}_threshold", theta)
            r = run_eval(pipe, qs, [method], 3, progress=False)["methods"][method]
            rows.append({"method": method, "threshold": theta, "f1": round(r["f1"], 4),
                         "retrieval_rounds": round(r["retrieval_rounds"], 3),
                         "sec_per_question": round(r["sec_per_question"], 3)})
            print(json.dumps(rows[-1]), flush=True)
    out = {"dataset": args.dataset, "split": "dev", "n": len(qs), "model": pipe.config.model, "rows": rows}
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
