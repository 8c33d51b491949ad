"""Does a translated adapter pull against the prompt? Issue 24's combine question, measured as the answer's loss.

On the 68 fictional documents (never trained on), for each question and its gold document d, with another
document o drawn at random, the mean answer-token loss (nats) with the question asked
  bare (no documents), with no adapter and with d's translated adapter;
  with d and o in the prompt (combine's layout, random order), with no adapter, d's adapter and o's adapter;
at strength 1 (the fictional setting) and 0.25 (Table 1's). If o's adapter raises the loss well above no adapter
while the answer sits in the prompt, the adapter overrides its context: what `prag translator train
--in-context` trains against.

    .venv/bin/python benchmarks/experiments/translator_context_probe.py --translators \
        src/prag/translators/smollm2 benchmarks/results/translator/v7 benchmarks/results/translator/v8 \
        --out benchmarks/results/translator/context-probe.json
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from prag.corpus import Document, load_corpus, load_questions
from prag.encode import qa_texts, sequence_losses
from prag.generate import question_message
from prag.models import load_model
from prag.translate import answer_start, load_translator, pad_rows, read_states
from prag.update import Injector

ROOT = Path(__file__).resolve().parents[2]
SETS = ["fictional30", "fictional-heldout"]
CONDITIONS = ["bare none", "bare own", "ctx none", "ctx own", "ctx other"]


def rows_for(lm, sets: list[str], seed: int = 0) -> tuple[list[Document], list[tuple]]:
    """Documents, and per question (prompt, answer, adapter index or None, condition) rows."""
    rng = random.Random(seed)
    docs: list[Document] = []
    rows = []
    for name in sets:
        corpus = load_corpus(ROOT / "benchmarks/data" / name / "corpus.jsonl")
        by = {d.id: d for d in corpus}
        base = len(docs)
        docs += corpus
        index = {d.id: base + i for i, d in enumerate(corpus)}
        for q in load_questions(ROOT / "benchmarks/data" / name / "questions.jsonl"):
            gold = q.gold_doc_ids[0]
            other = rng.choice([d.id for d in corpus if d.id != gold])
            (bare, answer), = qa_texts(lm, [(q.question, q.golden_answers[0])])
            pair = [by[gold], by[other]]
            rng.shuffle(pair)
            ctx = lm.prompter.format(question_message(q.question, pair))
            own, oth = index[gold], index[other]
            rows += [(bare, answer, None, "bare none"), (bare, answer, own, "bare own"), (ctx, answer, None, "ctx none"),
                     (ctx, answer, own, "ctx own"), (ctx, answer, oth, "ctx other")]
    return docs, rows


@torch.no_grad()
def probe(lm, folder: Path, docs: list[Document], rows: list[tuple], strengths: list[float]) -> dict:
    tr, sha = load_translator(folder, "smollm2")
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])  # the modules every translator here targets
    try:
        named = {}
        for i in range(0, len(docs), 8):  # factors per document, a zero adapter appended as the last index
            part = [d.as_text() for d in docs[i:i + 8]]
            hidden, mask, inputs = read_states(lm, inj, tr.cfg, part)
            for n, (a, b) in tr.factors(inj, hidden, mask, inputs).items():
                named.setdefault(n, []).append((a, b))
        factors = {}
        for n, parts in named.items():  # token memory: ranks differ by batch; pad to the widest
            width = max(a.shape[1] for a, _ in parts)
            a = torch.cat([torch.nn.functional.pad(a, (0, 0, 0, width - a.shape[1])) for a, _ in parts])
            b = torch.cat([torch.nn.functional.pad(b, (0, width - b.shape[2])) for _, b in parts])
            factors[n] = (torch.cat([a, torch.zeros_like(a[:1])]), torch.cat([b, torch.zeros_like(b[:1])]))
        none = len(docs)
        tok = lm.tokenizer
        out = {}
        for s in strengths:
            losses: dict[str, list[float]] = {c: [] for c in CONDITIONS}
            for i in range(0, len(rows), 16):
                chunk = rows[i:i + 16]
                seqs = []
                for prompt, answer, _, _ in chunk:
                    full = tok(prompt + answer, add_special_tokens=False)["input_ids"]
                    seqs.append((full, answer_start(tok, prompt, full)))
                ids, mask, lengths, starts = pad_rows(lm, seqs)
                owner = torch.tensor([none if o is None else o for _, _, o, _ in chunk])
                scaling = tr.cfg.alpha / tr.cfg.r * s
                inj.set_terms({n: [(a[owner], b[owner], scaling)] for n, (a, b) in factors.items()})
                try:
                    got = sequence_losses(lm.model, ids, mask, lengths, starts)
                finally:
                    inj.clear()
                for (_, _, _, c), v in zip(chunk, got.tolist()):
                    losses[c].append(v)
            out[str(s)] = {c: round(sum(v) / len(v), 3) for c, v in losses.items()}
            print(folder, s, out[str(s)], flush=True)
        return {"sha256": sha, "loss": out}
    finally:
        for h in inj._handles:
            h.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--translators", nargs="+", type=Path, required=True)
    ap.add_argument("--strengths", nargs="+", type=float, default=[1.0, 0.25])
    ap.add_argument("--sets", nargs="+", default=SETS)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lm = load_model("smollm2")
    docs, rows = rows_for(lm, a.sets)
    res = {"sets": a.sets, "questions": len(rows) // len(CONDITIONS), "conditions": CONDITIONS,
           "translators": {str(f): probe(lm, f, docs, rows, a.strengths) for f in a.translators}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
