"""Issue 26: can the bundled models break a two-hop question into two single-hop ones?

Iterative parametric retrieval needs hop 1 to ask for the bridge entity ("Who directed X?") and hop 2 to ask about
it ("Where was #1 born?"). The chains (dynamic.chain) let hop 1 answer the whole question instead, and hop 1 then
guesses the final answer rather than naming the bridge (docs/results.md, "Chains on real questions"). This probe
asks the model itself for the two sub-questions, with four invented worked examples (no dataset text), on the
first dev questions of 2WQA, and writes every decomposition to --out for reading. No adapters, no documents.

    .venv/bin/python benchmarks/experiments/decompose_probe.py --model smollm2 --out .../decompose-smollm2.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, load_questions, split
from prag.generate import generate
from prag.models import load_model

INSTRUCTION = "Break the question into two simpler questions."
SHOTS = [
    ("Where was the director of film The Glass Orchard born?",
     "Q1: Who is the director of film The Glass Orchard?\nQ2: Where was #1 born?"),
    ("What is the capital of the country where Lake Morrow is?",
     "Q1: In which country is Lake Morrow?\nQ2: What is the capital of #1?"),
    ("Who is the mother of the founder of Tessel Mills?",
     "Q1: Who is the founder of Tessel Mills?\nQ2: Who is the mother of #1?"),
    ("When did the author of Winter at Harlow die?",
     "Q1: Who is the author of Winter at Harlow?\nQ2: When did #1 die?"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--dataset", default="2wikimultihopqa")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lm = load_model(a.model)
    shots = [(f"{INSTRUCTION}\nQuestion: {q}", d) for q, d in SHOTS]
    rows = []
    for q in split(load_questions(dataset_dir(a.dataset) / "questions.jsonl"), "dev")[:a.limit]:
        out = generate(lm, lm.prompter.format(f"{INSTRUCTION}\nQuestion: {q.question}", shots=shots), 48,
                       stop_at_newline=False)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()][:2]
        rows.append({"id": q.id, "type": q.type, "question": q.question, "decomposition": lines})
        print(q.type, "|", q.question, "->", " || ".join(lines), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"model": a.model, "dataset": a.dataset, "split": "dev", "shots": SHOTS,
                                 "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
