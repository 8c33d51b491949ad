"""What an augmenter actually wrote for a kb: how many of its rewrites and QA pairs passed the grounding checks,
how many final pairs come from the model and how many from the rule fallback, and a sample of the augmentations
to read. Reads each finished document's augmentation.json; changes nothing.

    .venv/bin/python benchmarks/experiments/augmentation_stats.py runs/abl-2wikimultihopqa-comparison-smollm2-aug-self \
        --out benchmarks/results/ablations/augmentation/2wikimultihopqa-comparison-smollm2-aug-self.json
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def stats(kb_dir: Path, sample: int = 20) -> dict:
    from prag.store import KnowledgeBase

    kb = KnowledgeBase.open(kb_dir)
    done = [d for d in kb.docs if kb.is_done(d.id)]  # finished adapters only: no temp, stale or failed folders
    if not done:
        raise SystemExit(f"{kb_dir}: no parameterized document yet")
    notes, sources, augmenters, docs = Counter(), Counter(), Counter(), []
    for doc in done:
        aug = json.loads((kb.doc_dir(doc.id) / "augmentation.json").read_text(encoding="utf-8"))
        n = aug.get("notes", {})
        augmenters[n.get("augmenter", "?")] += 1
        for key in ("rewrites_generated", "rewrites_kept", "qa_generated", "qa_kept"):
            notes[key] += n.get(key, 0)
        sources.update(qa.get("source", "?") for qa in aug.get("qa", []))
        docs.append({"title": doc.title, "text": doc.text, **aug})
    pairs = sum(sources.values())
    return {  # "examined": the model's outputs looked at (it stops asking once it has m good questions)
        "kb": str(kb_dir), "documents": len(done), "augmenters": dict(augmenters),
        "rewrites": {"examined": notes["rewrites_generated"], "kept": notes["rewrites_kept"]},
        "qa": {"examined": notes["qa_generated"], "kept_from_model": notes["qa_kept"],
               "final_pairs_by_source": dict(sources),
               "model_share_of_final_pairs": round(sources.get("model", 0) / pairs, 3) if pairs else None},
        "sample": docs[:sample],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb", type=Path)
    ap.add_argument("--out", type=Path, help="Write the JSON here (default: print it all).")
    ap.add_argument("--sample", type=int, default=20, help="Documents' augmentations included to read.")
    a = ap.parse_args()
    if a.sample < 0:
        ap.error("--sample must be 0 or more")
    res = stats(a.kb, a.sample)
    text = json.dumps(res, indent=2, ensure_ascii=False)
    if not a.out:
        print(text)
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k != "sample"}, indent=2))


if __name__ == "__main__":
    main()
