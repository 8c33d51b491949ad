"""Control for the §5.2 warm-up ablation: how much of its gain the warm-up LoRA gives with no document at all.

Every document's LoRA in the warm-up kb starts from the warm-up LoRA, so prag's merged update carries it at the
eval's strength (merge weights sum to `scale`). This scores closed-book answers with only the warm-up LoRA applied
at that strength, on the same test questions, prompt and worked examples as the ablation, and writes a JSON.
    .venv/bin/python benchmarks/experiments/warmup_alone.py --limit 50
"""
import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, few_shot_examples, load_questions, split
from prag.encode import read_adapter
from prag.evaluate import score
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

ap = argparse.ArgumentParser()
ap.add_argument("--dataset", default="2wikimultihopqa-comparison")
ap.add_argument("--kb", default="runs/kb-2wikimultihopqa-comparison-smollm2-v2", help="any kb of the model")
ap.add_argument("--warmup", default="runs/abl-2wikimultihopqa-comparison-smollm2-warmup-lora")
ap.add_argument("--limit", type=int, default=100)
ap.add_argument("--few-shot", type=int, default=4)
ap.add_argument("--scale", type=float, default=0.25)
ap.add_argument("--json", default="benchmarks/results/ablations/warmup-alone-2wikimultihopqa-comparison-smollm2.json")
args = ap.parse_args()

pipe = Pipeline(KnowledgeBase.open(Path(args.kb)))
qs = load_questions(dataset_dir(args.dataset) / "questions.jsonl")
shots = few_shot_examples(qs, args.few_shot)
shown = {q.id for q in shots}
test = [q for q in split(qs, "test") if q.id not in shown][: args.limit]
pipe.examples = [(q.question, q.golden_answers[0]) for q in shots]
warm = read_adapter(Path(args.warmup))
rows = []
for q in test:  # closed-book prompt, the warm-up LoRA as the only adapter: the pipeline's own Update + Generate
    a = pipe.ask(q.question, "closed", planned=(pipe.prompt(q.question), [], [warm], [args.scale]))
    rows.append({"id": q.id, "prediction": a.answer, "golden_answers": q.golden_answers, "seconds": a.seconds,
                 **score(a.answer, q.golden_answers)})
n = len(rows)
res = {"method": "closed + warm-up LoRA only", "dataset": args.dataset, "split": "test", "limit": args.limit,
       "n": n, "scale": args.scale, "warmup": args.warmup, "few_shot": [q.id for q in shots],
       **{k: sum(r[k] for r in rows) / n for k in ("f1", "em")},
       "empty_answers": sum(not r["prediction"].strip() for r in rows), "rows": rows}
Path(args.json).write_text(json.dumps(res, indent=1))
print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
