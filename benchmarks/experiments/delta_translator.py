"""Closed-form translation (issue 24, an experiment): a document's adapter computed from forward passes, no training.

For each probe (question, answer) about the document, the model reads the probe twice: with the document in
context, and bare. At the positions that predict the answer's tokens, the bare run's residual stream is pulled
toward the in-context run's, layer by layer (sequentially, as MEMIT does): at layer l the down projection's
inputs K (n x d_ff) and the gap D (n x d) give the ridge solution dW = D^T (K K^T + lam I)^-1 K, a rank-n LoRA
(B = D^T, A = (K K^T + lam I)^-1 K). Nothing is learned across documents; the cost is (1 + layers) forwards of
a few short sequences.

    .venv/bin/python benchmarks/experiments/delta_translator.py --probes rule --out /tmp/delta.json
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from prag.augment import RuleAugmenter
from prag.config import default_config
from prag.corpus import load_questions
from prag.encode import qa_texts
from prag.evaluate import score
from prag.generate import generate, generate_batch, question_message
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.update import Adapter

ROOT = Path(__file__).resolve().parents[2]


def layers_of(model):
    return model.model.layers


def capture(model, ids, mask, layers, positions):
    """Run the model; return per layer (down_proj inputs, layer outputs) at `positions` (list of index tensors)."""
    keys, outs, hs = {}, {}, []
    for li in layers:
        lay = layers_of(model)[li]
        hs.append(lay.mlp.down_proj.register_forward_pre_hook(
            lambda m, a, li=li: keys.__setitem__(li, a[0].detach())))
        hs.append(lay.register_forward_hook(
            lambda m, a, o, li=li: outs.__setitem__(li, (o[0] if isinstance(o, tuple) else o).detach())))
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        for h in hs:
            h.remove()
    pick = lambda t: torch.cat([t[i, p] for i, p in enumerate(positions)])  # noqa: E731
    return {li: pick(keys[li]) for li in layers}, {li: pick(outs[li]) for li in layers}


def pad(tok, seqs, pad_id):
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):  # right padding: positions count from the start
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


SHOTS = []
DEBUG = bool(__import__('os').environ.get('DEBUG'))


def ctx_prompt(lm, q, doc):
    """The teacher's prompt: the document in context, after worked examples that show the answer's form."""
    return lm.prompter.format(question_message(q, [doc]), shots=[(question_message(u), a) for u, a in SHOTS])


def delta_adapter(lm, pipe, doc, probes, layers, lam, rank, frac, target="ctx"):
    tok = lm.tokenizer
    bare, ctx, pos_b, pos_c = [], [], [], []
    if target == "ctx":  # the in-context run's own answers, closed by the end token
        gens = generate_batch(lm, [ctx_prompt(lm, q, doc) for q, _ in probes],
                              [24] * len(probes))
        probes = [(q, g) for (q, _), g in zip(probes, gens)]
        if DEBUG:
            print("  teacher:", probes, flush=True)
    for q, a in probes:
        p_b = lm.prompter.format(question_message(q))
        p_c = ctx_prompt(lm, q, doc)
        ans = (a + lm.prompter.end_of_answer) if target == "ctx" else qa_texts(lm, [(q, a)])[0][1]
        ids_b = tok(p_b + ans, add_special_tokens=False)["input_ids"]
        ids_c = tok(p_c + ans, add_special_tokens=False)["input_ids"]
        n_ans = len(ids_b) - len(tok(p_b, add_special_tokens=False)["input_ids"])
        # positions predicting each answer token: the last prompt token .. the second-to-last answer token
        pos_b.append(torch.arange(len(ids_b) - n_ans - 1, len(ids_b) - 1))
        pos_c.append(torch.arange(len(ids_c) - n_ans - 1, len(ids_c) - 1))
        bare.append(ids_b)
        ctx.append(ids_c)
    model = lm.model
    ids_c, m_c = pad(tok, ctx, lm.pad_id)
    ids_b, m_b = pad(tok, bare, lm.pad_id)
    _, target = capture(model, ids_c, m_c, layers, pos_c)
    factors = {}
    inj = pipe.injector
    names = {li: f"model.layers.{li}.mlp.down_proj" for li in layers}
    for j, li in enumerate(layers):
        with inj.applied([as_adapter(factors)], [1.0]) if factors else nullcontext():
            keys, outs = capture(model, ids_b, m_b, [li], pos_b)
        k, gap = keys[li].float(), (target[li] - outs[li]).float()
        share = frac if frac > 0 else 1.0 / (len(layers) - j)
        gap = gap * share
        gram = k @ k.T
        lam_abs = lam * gram.diagonal().mean()
        a_mat = torch.linalg.solve(gram + lam_abs * torch.eye(len(k)), k)  # n x d_ff
        b_mat = gap.T  # d x n
        if rank and rank < len(k):
            u, s, vh = torch.linalg.svd(b_mat @ a_mat, full_matrices=False)
            b_mat, a_mat = u[:, :rank] * s[:rank], vh[:rank]
        factors[names[li]] = (a_mat, b_mat)
    return as_adapter(factors)


def as_adapter(factors):
    """An Adapter of scaling 1 from per-module factors of different ranks (zero-padded to the largest)."""
    r = max(f[0].shape[0] for f in factors.values())
    padded = {n: (torch.cat([a, a.new_zeros(r - a.shape[0], a.shape[1])]),
                  torch.cat([b, b.new_zeros(b.shape[0], r - b.shape[1])], 1)) for n, (a, b) in factors.items()}
    return Adapter(padded, r=r, alpha=float(r))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="fictional30")
    ap.add_argument("--probes", default="rule", choices=["rule", "oracle"])
    ap.add_argument("--layers", default="8-29")
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--frac", type=float, default=0.0, help="share of the gap closed per layer (0: 1/remaining)")
    ap.add_argument("--m", type=int, default=8)
    ap.add_argument("--target", default="ctx", choices=["ctx", "gold"])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--shots", type=int, default=2, help="generic worked examples in the teacher's prompt")
    a = ap.parse_args()
    SHOTS[:] = [("What is the capital of France?", "Paris"), ("Who wrote the novel Pride and Prejudice?", "Jane Austen"),
                ("In which year did the Berlin Wall fall?", "1989")][:a.shots]
    lo, hi = map(int, a.layers.split("-"))
    layers = list(range(lo, hi + 1))
    lm = load_model("smollm2")
    kb_dir = Path("/tmp") / f"kb-{a.set}"
    if not (kb_dir / "kb.toml").exists():
        KnowledgeBase.create(kb_dir, ROOT / "benchmarks/data" / a.set / "corpus.jsonl", default_config("smollm2"))
    kb = KnowledgeBase.open(kb_dir)
    cfg = kb.config.override({"generation.scale": a.scale, "generation.few_shot": 0, "generation.merge": "top1"})
    pipe = Pipeline(kb, lm, cfg)
    qs = load_questions(ROOT / "benchmarks/data" / a.set / "questions.jsonl")
    if a.limit:
        qs = qs[:a.limit]
    docs = {d.id: d for d in kb.docs}
    aug = RuleAugmenter()
    cache, rows, secs = {}, [], []
    for q in qs:
        did = q.gold_doc_ids[0]
        if did not in cache:
            if a.probes == "oracle":
                probes = [(x.question, x.golden_answers[0]) for x in qs if x.gold_doc_ids[0] == did]
            else:
                probes = [(x.question, x.answer) for x in aug.augment(docs[did], 1, a.m).qa][:a.m]
            t0 = time.perf_counter()
            cache[did] = delta_adapter(lm, pipe, docs[did], probes, layers, a.lam, a.rank, a.frac, a.target)
            secs.append(time.perf_counter() - t0)
        ad = cache[did]
        prompt = pipe.prompt(q.question)
        closed = generate(lm, prompt)
        with pipe.injector.applied([ad], [a.scale]):
            got = generate(lm, prompt)
        others = [k for k in cache if k != did]
        swapped = None
        if others:
            with pipe.injector.applied([cache[others[len(rows) % len(others)]]], [a.scale]):
                swapped = generate(lm, prompt)
        f = score(got, q.golden_answers)["f1"]
        rows.append({"id": q.id, "doc": did, "gold": q.golden_answers[0], "answer": got, "closed": closed,
                     "swapped": swapped, "f1": f, "closed_f1": score(closed, q.golden_answers)["f1"]})
        print(q.id, repr(got), "| gold", q.golden_answers[0], "| closed", repr(closed), "| swapped", repr(swapped),
              flush=True)
    mean = lambda k: round(sum(r[k] for r in rows) / len(rows), 3)  # noqa: E731
    res = {"args": {k: str(v) for k, v in vars(a).items()}, "f1": mean("f1"), "closed_f1": mean("closed_f1"),
           "swap_changes": round(sum(r["swapped"] is not None and r["swapped"] != r["answer"] for r in rows) / len(rows), 3),
           "sec_per_doc": round(sum(secs) / len(secs), 3), "rows": rows}
    print({k: v for k, v in res.items() if k != "rows"})
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
