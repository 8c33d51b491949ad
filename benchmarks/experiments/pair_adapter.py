"""Issue 26, a set-level adapter in the oracle: one LoRA trained on a question's gold documents *together*.

The oracle (`prag eval --doc-source gold`) merges one adapter per gold document; they do not compose. This asks
whether one adapter that has seen both documents in the same training text (rewrites of the two paragraphs joined,
and QA pairs from both) answers the two-hop question better than the merge and than either document alone. It
writes a "pair" dataset folder: every question of the dataset in file order (so the dev/test split and the worked
examples are the dataset's own), the first LIMIT of SPLIT pointing at one pair document each.

  .venv/bin/python benchmarks/experiments/pair_adapter.py build --dataset 2wikimultihopqa --split dev --limit 20
  .venv/bin/python benchmarks/experiments/pair_adapter.py table --dataset 2wikimultihopqa --split dev --limit 20
(`pair_adapter.sh` runs both around the eval.)

`--source bm25` is the deployable form, with no gold documents: pair adapters are made offline for each document
and its 2 nearest BM25 neighbours (its own text as the query, as in neighbour_pairs.py). A question whose BM25 top-3
(Table 1's SmolLM2 run, the same questions) holds such a pair answers with that pair's adapter (the best-ranked pair);
the others keep Table 1's answers. Only the pairs the first LIMIT questions reach are trained (a full offline store
holds them too). The folder's questions are the dataset's, with the paired questions moved to the front of their
split, so `--split SPLIT --limit <paired>` answers exactly those and the worked examples stay the dataset's own.
"""
import argparse
import json
from pathlib import Path

from neighbour_pairs import nearest  # a sibling script

from prag.corpus import dataset_dir, load_corpus, load_questions, read_jsonl, split
from prag.evaluate import composition
from prag.retrieval import BM25Retriever

ROOT = Path(__file__).resolve().parents[2]


def folder(dataset: str, split_: str, limit: int, source: str = "gold") -> Path:
    return ROOT / "runs" / f"pairs-{'' if source == 'gold' else source + '-'}{dataset}-{split_}{limit}"


def table1_hits(dataset: str) -> dict[str, list[str]]:
    """BM25 top-3 document ids per question, as Table 1's SmolLM2 run retrieved them."""
    return {r["id"]: r["doc_ids"] for _, r in read_jsonl(ROOT / f"benchmarks/results/table1/{dataset}-smollm2-v2.log.jsonl")
            if r["method"] == "prag"}


def bm25_pairs(dataset: str, split_: str, limit: int, k: int = 2) -> dict[str, tuple[str, str]]:
    """Question id -> the best-ranked pair of its BM25 top-3 that an offline store would hold (one document among
    the other's k nearest BM25 neighbours, the document's first 1,000 characters as the query)."""
    src = dataset_dir(dataset)
    docs = load_corpus(src / "corpus.jsonl")
    by_id, bm25 = {d.id: d for d in docs}, BM25Retriever(docs)
    near: dict[str, list[str]] = {}

    def neighbours(i: str) -> list[str]:
        if i not in near:
            near[i] = nearest(bm25, by_id[i], k)
        return near[i]

    hits, out = table1_hits(dataset), {}
    for q in split(load_questions(src / "questions.jsonl"), split_)[:limit]:
        ids = hits[q.id]
        for a, b in ((i, j) for i in range(len(ids)) for j in range(i + 1, len(ids))):
            if ids[b] in neighbours(ids[a]) or ids[a] in neighbours(ids[b]):
                out[q.id] = (ids[a], ids[b])
                break
    return out


def build(dataset: str, split_: str, limit: int, source: str = "gold") -> None:
    src = dataset_dir(dataset)
    docs = {d.id: d for d in load_corpus(src / "corpus.jsonl")}
    qs = load_questions(src / "questions.jsonl")
    if source == "gold":
        members = {q.id: tuple(q.gold_doc_ids) for q in split(qs, split_)[:limit] if len(q.gold_doc_ids) > 1}
    else:
        if split_ != "test":  # reordering dev would change its worked examples (drawn from the end of dev)
            raise SystemExit("--source bm25 reorders the split it answers: use --split test")
        members = bm25_pairs(dataset, split_, limit)
        part = {q.id for q in split(qs, split_)}  # the paired questions first within their half
        half = [q for q in qs if q.id in part]
        at = qs.index(half[0])
        qs[at:at + len(half)] = [q for q in half if q.id in members] + [q for q in half if q.id not in members]
    out = folder(dataset, split_, limit, source)
    out.mkdir(parents=True, exist_ok=True)
    written = set()
    with open(out / "corpus.jsonl", "w") as c, open(out / "questions.jsonl", "w") as f:
        for q in qs:
            row = {"id": q.id, "question": q.question, "golden_answers": q.golden_answers, "type": q.type,
                   "gold_doc_ids": list(q.gold_doc_ids)}
            if q.id in members:
                ids = members[q.id] if source == "gold" else sorted(members[q.id])  # a stored pair: one order
                pid = f"pair-{q.id}" if source == "gold" else "pair-" + "+".join(ids)
                if pid not in written:  # the paragraphs joined, each led by its title (as one document reads in context)
                    text = "\n".join(docs[d].as_text() for d in ids)
                    c.write(json.dumps({"id": pid, "title": "", "text": text}) + "\n")
                    written.add(pid)
                row["gold_doc_ids"] = [pid]
            f.write(json.dumps(row) + "\n")
    print(f"{out}: {len(members)} questions, {len(written)} pair documents")


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


def table_bm25(dataset: str, split_: str, limit: int) -> None:
    """The deployable form against Table 1 on the same questions: each method with the pair adapter where BM25's
    top-3 holds a stored pair and Table 1's answer elsewhere, beside Table 1's own rows, by question type."""
    res = ROOT / "benchmarks" / "results" / "oracle"
    base = {m: {r["id"]: r for r in rows} for m, rows in
            _rows(ROOT / f"benchmarks/results/table1/{dataset}-smollm2-v2.log.jsonl").items()}
    pair = {m.split("@")[0]: {r["id"]: r for r in rows} for m, rows in
            _rows(res / f"pair-bm25-{dataset}-smollm2-{split_}{limit}.log.jsonl").items()}
    qs = split(load_questions(dataset_dir(dataset) / "questions.jsonl"), split_)[:limit]
    out = {}
    for t in ["all"] + sorted({q.type for q in qs}):
        sub = [q for q in qs if t in ("all", q.type)]
        paired = [q for q in sub if q.id in pair.get("prag", {})]
        row = {"n": len(sub), "paired": len(paired)}
        for m in ("rag", "prag", "combine"):
            row[m] = round(sum(base[m][q.id]["f1"] for q in sub) / len(sub), 3)
        for m in ("prag", "combine"):
            row[f"{m}+pair"] = round(sum(pair[m][q.id]["f1"] if q.id in pair[m] else base[m][q.id]["f1"]
                                         for q in sub) / len(sub), 3)
            row[f"{m}+pair - rag"] = round(row[f"{m}+pair"] - row["rag"], 3)
        if paired:  # on the paired questions alone: Table 1 against the pair adapter, and rag reading the pair
            for m in ("rag", "prag", "combine"):
                row[f"paired {m}"] = round(sum(base[m][q.id]["f1"] for q in paired) / len(paired), 3)
                row[f"paired {m}@pair"] = round(sum(pair[m][q.id]["f1"] for q in paired) / len(paired), 3)
        out[t] = row
    path = res / f"pair-bm25-{dataset}-smollm2-{split_}{limit}-summary.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "table"])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--merge", default="softmax", help="the oracle run compared with (softmax or sum)")
    ap.add_argument("--source", choices=["gold", "bm25"], default="gold",
                    help="gold: the question's gold pair; bm25: a stored neighbour pair among BM25's top-3")
    a = ap.parse_args()
    if a.what == "build":
        build(a.dataset, a.split, a.limit, a.source)
    elif a.source == "bm25":
        table_bm25(a.dataset, a.split, a.limit)
    else:
        table(a.dataset, a.split, a.limit, a.merge)
