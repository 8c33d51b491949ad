"""Training documents for the parameter translator (issue 24), and exactly which ones.

Real documents: every paragraph of the four shared datasets' corpora that no **test** question (second half of
its questions.jsonl) retrieves with BM25 top-K in its own corpus, and that is no test question's gold document;
duplicates (same text) are kept once, and a text excluded in one dataset is excluded everywhere. Their QA pairs
come from the kb's augmenter at training time.

Fictional documents: invented entities written here from templates (people, towns, companies, festivals,
buildings) with random names and facts, and a QA pair per fact. No name may share a word with the 68 fictional
evaluation documents of benchmarks/data (nor with tests/data), which the translator never sees.

    .venv/bin/python benchmarks/experiments/translator_data.py --out runs/translator-data
writes corpus.jsonl, qa.jsonl ({doc_id, question, answer}) and sources.json (counts, settings, the ids).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from pathlib import Path

from prag.corpus import Document, load_corpus, load_questions, split
from prag.retrieval import BM25Retriever

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ["2wikimultihopqa-comparison", "2wikimultihopqa", "hotpotqa", "popqa"]
HELD_OUT = [ROOT / "benchmarks/data/fictional30", ROOT / "benchmarks/data/fictional-heldout", ROOT / "tests/data/fictional"]

ONSETS = "b br c cl d dr f g gr h k l m n p pr r s st t th tr v w z sk qu".split()
VOWELS = "a e i o u ae ei ou ia".split()
CODAS = "n r l s th nd rk st m x ll ck rn".split()
FIRST = ["Alwin", "Berta", "Casimir", "Delphine", "Edrik", "Faye", "Gideon", "Hesper", "Ingram", "Juno", "Kestrel",
         "Lorcan", "Mirela", "Nico", "Odile", "Perrin", "Quill", "Rowena", "Sorrel", "Tamsin", "Ulric", "Vesna",
         "Wendell", "Yara", "Zeno"]
OCCUPATIONS = ["glassblower", "astronomer", "bookbinder", "shipwright", "botanist", "clockmaker", "violinist",
               "surveyor", "apothecary", "stonemason", "weaver", "architect", "sculptor", "beekeeper", "chemist",
               "lighthouse keeper", "printer", "tanner", "navigator", "composer"]
PRODUCTS = ["copper kettles", "wool blankets", "pocket watches", "glass lenses", "rope", "paper lanterns", "ink",
            "bicycles", "porcelain cups", "sailcloth", "candles", "telescopes", "pianos", "maps", "soap"]
SEASONS = ["spring", "summer", "autumn", "winter"]
FOODS = ["smoked trout", "honey cakes", "barley soup", "plum bread", "roasted chestnuts", "salted herring"]
MATERIALS = ["red granite", "white limestone", "dark basalt", "yellow brick", "grey slate", "pink marble"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + (rng.choice(CODAS) if rng.random() < 0.6 else "")
                   for _ in range(rng.choice([2, 2, 3]))).capitalize()


def _held_out_words() -> set[str]:
    words = set()
    for folder in HELD_OUT:
        for name in ("corpus.jsonl", "questions.jsonl"):
            path = folder / name
            if path.exists():
                words |= {w.lower() for w in re.findall(r"[A-Za-z]+", path.read_text(encoding="utf-8"))}
    return words


def fictional(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """n invented documents and their QA pairs."""
    rng = random.Random(seed)
    banned = _held_out_words()
    used: set[str] = set()

    def name() -> str:
        while True:
            w = _word(rng)
            if w.lower() not in banned and w not in used:
                used.add(w)
                return w

    first = [f for f in FIRST if f.lower() not in banned]
    docs, qa = [], []
    for i in range(n):
        kind = ["person", "town", "company", "festival", "building"][i % 5]
        doc_id = f"syn-{i:05d}"
        year, year2 = rng.randint(1500, 1950), rng.randint(1500, 1950)
        town, river = name(), name() + " River"
        if kind == "person":
            title = f"{rng.choice(first)} {name()}"
            occ, org = rng.choice(OCCUPATIONS), name() + " " + rng.choice(["Guild", "Society", "Academy", "Company"])
            text = (f"{title} was a {occ} born in the town of {town} in {year}. "
                    f"{rng.choice(['She', 'He'])} worked for the {org} for {rng.randint(3, 40)} years. "
                    f"{title.split()[0]} is best remembered for a collection of {rng.choice(PRODUCTS)}.")
            pairs = [(f"What was {title}'s occupation?", occ), (f"In which town was {title} born?", town),
                     (f"In which year was {title} born?", str(year)), (f"Which organisation did {title} work for?", org)]
        elif kind == "town":
            title = name()
            food = rng.choice(FOODS)
            text = (f"{title} is a market town on the banks of the {river}. It was founded in {year} by "
                    f"{rng.choice(first)} {name()}. The town is known for its {food}, and about "
                    f"{rng.randint(2, 90) * 100} people live there.")
            pairs = [(f"In which year was {title} founded?", str(year)), (f"On which river does {title} lie?", river),
                     (f"What is {title} known for?", food)]
        elif kind == "company":
            title = f"{name()} {rng.choice(['Works', 'Brothers', 'Manufactory', 'Trading Company'])}"
            founder, product = f"{rng.choice(first)} {name()}", rng.choice(PRODUCTS)
            text = (f"{title} is a maker of {product} headquartered in the city of {town}. "
                    f"It was founded in {year} by {founder}. Its workshops employ {rng.randint(12, 900)} people.")
            pairs = [(f"Who founded {title}?", founder), (f"In which city is {title} headquartered?", town),
                     (f"What does {title} make?", product), (f"In which year was {title} founded?", str(year))]
        elif kind == "festival":
            title = f"{name()} Festival"
            season, founder = rng.choice(SEASONS), f"{rng.choice(first)} {name()}"
            text = (f"The {title} is held every {season} in the city of {town}. "
                    f"It was first held in {year}, started by {founder}. Visitors eat {rng.choice(FOODS)} and "
                    f"release lanterns on the {river}.")
            pairs = [(f"In which city is the {title} held?", town), (f"In which season is the {title} held?", season),
                     (f"Who started the {title}?", founder), (f"When was the {title} first held?", str(year))]
        else:
            title = f"{name()} {rng.choice(['Tower', 'Bridge', 'Library', 'Observatory', 'Hall'])}"
            architect, material = f"{rng.choice(first)} {name()}", rng.choice(MATERIALS)
            text = (f"The {title} stands in the old quarter of {town}. It was designed by the architect "
                    f"{architect} and completed in {year2}. It is built of {material}.")
            pairs = [(f"Who designed the {title}?", architect), (f"In which year was the {title} completed?", str(year2)),
                     (f"What is the {title} built of?", material), (f"In which town is the {title}?", town)]
        docs.append({"id": doc_id, "title": title, "text": text})
        qa += [{"doc_id": doc_id, "question": q, "answer": a} for q, a in pairs]
    return docs, qa


def real(data_root: Path, top_k: int) -> tuple[list[dict], dict]:
    texts_out: set[str] = set()
    per = {}
    corpora = {}
    for name in DATASETS:
        folder = data_root / name
        docs = load_corpus(folder / "corpus.jsonl")
        test = split(load_questions(folder / "questions.jsonl"), "test")
        bm25 = BM25Retriever(docs)
        out = {d for q in test for d in q.gold_doc_ids}
        out |= {h.doc.id for q in test for h in bm25.retrieve(q.question, top_k)}
        by_id = {d.id: d for d in docs}
        texts_out |= {_key(by_id[i]) for i in out if i in by_id}
        corpora[name] = docs
        per[name] = {"corpus": len(docs), "test_questions": len(test), "excluded": len(out)}
    kept, seen = [], set()
    for name, docs in corpora.items():
        n = 0
        for d in docs:
            k = _key(d)
            if k in texts_out or k in seen:
                continue
            seen.add(k)
            kept.append({"id": f"{name}--{d.id}", "title": d.title, "text": d.text})
            n += 1
        per[name]["kept"] = n
    return kept, per


def _key(d: Document) -> str:
    return hashlib.sha256((d.title + "\n" + d.text).encode()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--top-k", type=int, default=10, help="a test question's BM25 hits excluded (eval uses 3)")
    ap.add_argument("--fictional", type=int, default=2000, help="invented documents")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    docs, per = real(a.data, a.top_k)
    syn, qa = fictional(a.fictional, a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in docs + syn:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(a.out / "qa.jsonl", "w", encoding="utf-8") as f:
        for q in qa:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    sources = {"real": per, "real_kept": len(docs), "fictional": len(syn), "fictional_qa": len(qa),
               "top_k_excluded": a.top_k, "seed": a.seed, "ids": [d["id"] for d in docs + syn]}
    (a.out / "sources.json").write_text(json.dumps(sources, indent=1))
    print(json.dumps({k: v for k, v in sources.items() if k != "ids"}, indent=1))


if __name__ == "__main__":
    main()
