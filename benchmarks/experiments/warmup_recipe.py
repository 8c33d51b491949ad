"""Choose the §5.2 warm-up LoRA's recipe on DEV only (the numbers behind config.WARMUP_LR / WARMUP_EPOCHS).

Trains a warm-up LoRA per (lr, epochs) on the first 100 dev questions (few-shot examples left out) and scores
closed-book F1 on the other dev questions with the warm-up applied alone, at full strength and at the eval's
strength 0.25, against no warm-up. Uses the Table-1 kb for the model and prompt.
    .venv/bin/python benchmarks/experiments/warmup_recipe.py [--dataset 2wikimultihopqa-comparison]
The committed output, benchmarks/results/warmup/2wikimultihopqa-comparison-smollm2.txt, came from a scratch copy
of this script with the same logic (see its header).
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
ap.add_argument("--kb", default="runs/kb-2wikimultihopqa-comparison-smollm2-v2")
ap.add_argument("--train", type=int, default=100, help="dev questions trained on; the rest of dev is scored")
ap.add_argument("--out", default="runs/warmup-recipe")
args = ap.parse_args()

pipe = Pipeline(KnowledgeBase.open(Path(args.kb)))
qs = load_questions(dataset_dir(args.dataset) / "questions.jsonl")
shots = few_shot_examples(qs, 4)
dev = [q for q in split(qs, "dev") if q not in shots]
train, held = dev[: args.train], dev[args.train:]
pipe.examples = [(q.question, q.golden_answers[0]) for q in shots]


def closed_f1(adapter, weight: float) -> dict:
    f1s, empty = [], 0
    for q in held:  # closed-book prompt, the warm-up LoRA (if any) as the only adapter
        adapters, weights = ([adapter], [weight]) if adapter is not None else ([], [])
        answer = pipe.ask(q.question, "closed", planned=(pipe.prompt(q.question), [], adapters, weights)).answer
        empty += not answer.strip()
        f1s.append(score(answer, q.golden_answers)["f1"])
    return {"f1": round(sum(f1s) / len(f1s), 3), "empty": empty}


rows = [{"recipe": "no warm-up", "at 1.0": closed_f1(None, 0.0)}]
print(json.dumps(rows[-1]), flush=True)
for lr, epochs in [(3e-4, 1), (1e-3, 1), (3e-3, 1), (3e-3, 4)]:
    out = Path(args.out) / f"lr{lr}-ep{epochs}"
    res = pipe.warmup(train, out, lr, epochs)
    ad = read_adapter(out)
    rows.append({"recipe": f"lr {lr} x {epochs}", "loss": [round(res["first_loss"], 2), round(res["final_loss"], 2)],
                 "at 1.0": closed_f1(ad, 1.0), "at 0.25": closed_f1(ad, 0.25)})
    print(json.dumps(rows[-1]), flush=True)
print(json.dumps({"dataset": args.dataset, "train": len(train), "scored": len(held), "rows": rows}, indent=2))
