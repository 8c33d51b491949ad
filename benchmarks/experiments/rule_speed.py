"""Seconds the rule augmenter takes on documents without sentence breaks (one "sentence" of the whole text), by
size: the case that was quadratic (issue 27, row 9). Prints one JSON object.

    .venv/bin/python benchmarks/experiments/rule_speed.py > benchmarks/results/rules/rule-speed.json
"""
from __future__ import annotations

import json
import random
import time

from prag.augment import RuleAugmenter
from prag.corpus import Document

WORDS = ["alpha", "Beta", "gamma", "Delta", "river", "1923", "mountain", "Harlow", "was", "built", "in", "the", "of"]


def main() -> None:
    rng = random.Random(0)
    rows = []
    for chars in (50_000, 200_000, 500_000, 1_000_000):
        text = " ".join(rng.choice(WORDS) for _ in range(chars // 6))
        t0 = time.perf_counter()
        aug = RuleAugmenter().augment(Document("a", "T", text), 1, 6)
        rows.append({"chars": len(text), "seconds": round(time.perf_counter() - t0, 2), "qa": len(aug.qa)})
    print(json.dumps({"n_rewrites": 1, "n_qa": 6, "rows": rows}))


if __name__ == "__main__":
    main()
