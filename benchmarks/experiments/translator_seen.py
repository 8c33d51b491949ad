"""Write a translator folder's documents.sha256 and questions.sha256 (fingerprints of the documents and questions
it trained on) from the training-documents*.json lists and a qa.jsonl of translator_data.py, for translators trained
before `prag translator train` wrote those files itself. Real paragraphs (ids "<dataset>--<doc id>") are looked up in
../shared/datasets; the invented documents (ids "syn-...") and their questions are left out: no user's kb holds
them. The real QA rows (the natural dev questions of --dev-qa) are the same in data versions 3 to 5 (the same kept
paragraphs, and dev_qa depends on nothing else).

    .venv/bin/python benchmarks/experiments/translator_seen.py --translator src/prag/translators/smollm2 \
        benchmarks/results/translator/training-documents.json benchmarks/results/translator/training-documents-v2.json \
        benchmarks/results/translator/training-documents-v4.json --qa runs/translator-data-v5/qa.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prag.corpus import dataset_dir, load_corpus
from prag.translate import SEEN_QUESTIONS_FILE, write_seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translator", type=Path, required=True)
    ap.add_argument("lists", nargs="+", type=Path, help="training-documents*.json of every run in its lineage")
    ap.add_argument("--qa", type=Path, required=True, help="the data's qa.jsonl (its real documents' rows are used)")
    a = ap.parse_args()
    ids = sorted({i for p in a.lists for i in json.loads(p.read_text())["ids"] if "--" in i})
    texts, corpora = [], {}
    for i in ids:
        d, doc = i.split("--", 1)
        if d not in corpora:
            corpora[d] = {x.id: x for x in load_corpus(dataset_dir(d) / "corpus.jsonl")}
        texts.append(corpora[d][doc].as_text())
    write_seen(a.translator, texts)
    rows = [json.loads(line) for line in a.qa.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = {r["question"] for r in rows if "--" in r["doc_id"]}
    write_seen(a.translator, questions, SEEN_QUESTIONS_FILE)
    print(json.dumps({"real_documents": len(texts), "questions": len(questions), "by_dataset": {d: sum(i.startswith(d + "--") for i in ids)
                                                                  for d in corpora}}))


if __name__ == "__main__":
    main()
