"""Issue 26, a set-level adapter in the oracle: one LoRA trained on a question's gold documents *together*.

The oracle (`prag eval --doc-source gold`) merges one adapter per gold document; they do not compose. This asks
whether one adapter that has seen both documents in the same training text (rewrites of the two paragraphs joined,
and QA pairs from both) answers the two-hop question better than the merge and than either document alone. It
writes a "pair" dataset folder: every question of the dataset in file order (so the dev/test split and the worked
examples are the dataset's own), the first LIMIT of SPLIT pointing at one pair document each.

  .venv/bin/python benchmarks/experiments/pair_adapter.py build --dataset 2wikimultihopqa --split dev --limit 20
  .venv/bin/python benchmarks/experiments/pair_adapter.py table --dataset 2wikimultihopqa --split dev --limit 20
(`pair_adapter.sh` runs both around the eval.)
"""
import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, load_corpus, load_questions, read_jsonl, split
from prag.evaluate import composition

ROOT = Path(__file__).resolve().parents[2]


def folder(dataset: str, split_: str, limit: int) -> Path:
    return ROOT / "runs" / f"pairs-{dataset}-{split_}{limit}"


def build(dataset: str, split_: str, limit: int) -> None:
    src = dataset_dir(dataset)
    docs = {d.id: d for d in load_corpus(src / "corpus.jsonl")}
    qs = load_questions(src / "questions.jsonl")
    chosen = {q.id for q in split(qs, split_)[:limit] if len(q.gold_doc_ids) > 1}
    out = folder(dataset, split_, limit)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w") as c, open(out / "questions.jsonl", "w") as f:
        for q in qs:
            row = {"id": q.id, "question": q.question, "golden_answers": q.golden_answers, "type": q.type,
                   "gold_doc_ids": list(q.gold_doc_ids)}
            if q.id in chosen:
                pid = f"pair-{q.id}"
                # the paragraphs joined, each led by its title (what the model reads of one document in context)
                text = "\n".join(docs[d].as_text() for d in q.gold_doc_ids)
                c.write(json.dumps({"id": pid, "title": "", "text": text}) + "\n")
                row["gold_doc_ids"] = [pid]
            f.write(json.dumps(row) + "\n")
    print(f"{out}: {len(chosen)} pair documents")


def _rows(path: Path) -> dict[str, list[dict]]:
    """An eval log's rows by method label."""
    rows: dict[str, list[dict]] = {}
    for _, r in read_jsonl(path):  # not splitlines(): a prediction may hold U+2028
        rows.setdefault(r["method"], []).append(r)
    return rows


def table(dataset: str, split_: str, limit: int, merge: str) -> None:
    """Pair adapter against the committed oracle run on the same questions (separate adapters merged, each alone):
    the oracle's composition table with the pair's answers standing in for "together"."""
    res = ROOT / "benchmarks" / "results" / "oracle"
    base = _rows(res / f"oracle-{dataset}-smollm2-{split_}{limit}-{merge}.log.jsonl")
    pair = _rows(res / f"pair-{dataset}-smollm2-{split_}{limit}.log.jsonl")
    out = {}
    for m in ("prag", "combine"):
        merged = composition(base, m)
        paired = composition({**base, f"{m}@gold": pair[f"{m}@gold"]}, m)
        for t, p, b in [("all", paired, merged)] + [(t, paired["by_type"][t], merged["by_type"][t])
                                                     for t in paired.get("by_type", {})]:
            out[f"{m}/{t}"] = {"n": p["n"], "merged": round(b["together"], 3), "pair": round(p["together"], 3),
                               "best_single": round(p["best_single"], 3), "pair_gain": round(p["gain"], 3),
                               "pair_minus_merged": round(p["together"] - b["together"], 3)}
    rag = [r["f1"] for r in pair.get("rag@gold", [])]
    out["rag@pair"] = round(sum(rag) / max(len(rag), 1), 3)
    path = res / f"pair-{dataset}-smollm2-{split_}{limit}-summary.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "table"])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--merge", default="softmax", help="the oracle run compared with (softmax or sum)")
    a = ap.parse_args()
    build(a.dataset, a.split, a.limit) if a.what == "build" else table(a.dataset, a.split, a.limit, a.merge)
