"""Dynamic (multi-round) RAG baselines: retrieval decided while the answer is being generated.

FLARE (Jiang et al., 2023, "Active Retrieval Augmented Generation", FLARE-direct): generate a look-ahead
sentence without documents; if any of its tokens has probability below θ, retrieve with that sentence minus
its low-confidence tokens (prefixed by the question, `flare_query_with_question`) and regenerate the sentence
with the retrieved documents in context; accept the sentence and go on until the answer ends.

DRAGIN (Su et al., 2024, "Dynamic Retrieval Augmented Generation based on the Information Needs of LLMs"):
generate; score every generated token by RIND = entropy × (max attention any later token pays it, last layer,
mean over heads) × (0 for stopwords and punctuation, else 1); at the first token whose RIND exceeds θ, cut the
output before it, form the query by QFS (the `qfs_tokens` content tokens of the question and the output so
far that the cut token attends to most, in their original order), retrieve, and continue generating from the
cut with the documents in context.

Chains (issue 26; prag-chain, combine-chain, rag-chain): iterative retrieval for multi-hop questions, parametric
when the base method applies adapters. Hop 1 answers with the question's best document; the question followed by
that answer is hop 2's query, whose best document not yet in the chain joins it (its adapter beside the first,
merged as `generation.merge` says); the chain answers again, for `chain_hops` hops or until no new document
comes. A bridge entity that hop 1 names ("designed by Ermina Tolvane") thus fetches the second document. With
`chain_carry`, each later hop also reads the previous hop's answer after the question.

FLARE and DRAGIN use the same BM25 top-k as every other method, at most `max_rounds` retrievals per question. The rules
and query formation are pure functions of token texts, probabilities, entropies and attentions (tested with
controlled values); `flare()` and `dragin()` run them on a model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import PragError
from .generate import generate_scored
from .rules import STOP

_SENTENCE_END = re.compile(r"[.!?](\s|$)|\n")


@dataclass
class Scored:
    """Generated tokens with the model's confidence in each."""
    ids: list[int]
    texts: list[str]
    probs: list[float]
    entropies: list[float]
    ended: bool  # the model stopped (end token or line end), rather than hitting the token limit


def is_content(token_text: str) -> bool:
    """A token that can carry information: has a letter or digit and is not a stopword."""
    t = token_text.strip().lower().lstrip("▁Ġ")
    return bool(re.search(r"[a-z0-9]", t)) and t not in STOP


# ---------------------------------------------------------------- the rules (pure functions)
def sentence_length(texts: list[str]) -> int:
    """Tokens in the first sentence of `texts` (all of them when no sentence end occurs)."""
    acc = ""
    for i, t in enumerate(texts):
        acc += t
        if _SENTENCE_END.search(acc.lstrip()):
            return i + 1
    return len(texts)


def flare_triggers(probs: list[float], theta: float) -> bool:
    """FLARE retrieves when any token of the look-ahead sentence has probability below θ."""
    return any(p < theta for p in probs)


def flare_query(texts: list[str], probs: list[float], theta: float, question: str | None = None) -> str:
    """The look-ahead sentence with its low-confidence tokens masked out (FLARE's masked query)."""
    kept = "".join(t for t, p in zip(texts, probs) if p >= theta)
    kept = " ".join(kept.split())
    return f"{question} {kept}".strip() if question else kept


def attention_influence(attn: torch.Tensor, start: int) -> list[float]:
    """For each generated position i >= start: the largest attention a later token pays to it (attn is the
    [L, L] attention matrix, rows attend to columns). The last token has no later token: 0."""
    n = attn.shape[0]
    return [float(attn[i + 1:, i].max()) if i + 1 < n else 0.0 for i in range(start, n)]


def rind(entropies: list[float], influence: list[float], content: list[bool]) -> list[float]:
    """DRAGIN's Real-time Information Needs Detection score per generated token."""
    return [h * a * (1.0 if c else 0.0) for h, a, c in zip(entropies, influence, content)]


def first_trigger(scores: list[float], theta: float) -> int | None:
    return next((i for i, s in enumerate(scores) if s > theta), None)


def qfs_query(texts: list[str], attn_row: list[float], candidates: list[int], n: int) -> str:
    """DRAGIN's Query Formulation based on Self-attention: among the `candidates` positions (content tokens
    of the question and the output so far), the n the triggering token attends to most, in their order."""
    top = sorted(candidates, key=lambda j: -attn_row[j])[:n]
    return " ".join("".join(texts[j] for j in sorted(top)).split())


# ---------------------------------------------------------------- running them on a model
def _scored(tok, ids: list[int], logit_rows, max_new_tokens: int, ends: frozenset[int]) -> Scored:
    """Scored tokens from generated ids and the logits row that produced each (generation stops at a token in
    `ends`)."""
    out_ids, texts, probs, ents = [], [], [], []
    for t, row in zip(ids, logit_rows):
        if t in ends:
            break
        logp = torch.log_softmax(torch.as_tensor(row).float().reshape(-1), dim=-1)
        out_ids.append(t)
        texts.append(tok.decode([t], skip_special_tokens=True))
        probs.append(float(logp[t].exp()))
        ents.append(float(-(logp.exp() * logp).sum()))
    ended = len(out_ids) < len(ids) or len(ids) < max_new_tokens or "\n" in "".join(texts)
    return Scored(out_ids, texts, probs, ents, ended)


def scored_generate(lm, prompt: str, max_new_tokens: int, backend=None) -> Scored:
    """Greedy generation with each token's probability and entropy: on `backend` (backends.Backend.scored), else
    on the transformers model."""
    ids, rows = backend.scored(prompt, max_new_tokens) if backend is not None else generate_scored(lm, prompt,
                                                                                                 max_new_tokens)
    return _scored(lm.tokenizer, ids, rows, max_new_tokens, lm.end_ids)


def _retrieve(pipe, query: str, question: str, top_k: int) -> list:
    """BM25 with the formed query; a query that matches no document falls back to the question."""
    try:
        return pipe.retrieve(query or question, top_k)
    except PragError:
        return pipe.retrieve(question, top_k)


def _prompt(pipe, question: str, docs, answer: str) -> str:
    return pipe.prompt(question, docs) + answer


def flare(pipe, question: str, top_k: int, max_new_tokens: int) -> tuple[str, list, int]:
    """Answer with FLARE-direct; returns (raw answer text, the last retrieval's hits, retrieval rounds)."""
    cfg, lm = pipe.config.dynamic, pipe.lm
    backend = pipe.backend
    answer, hits, rounds = "", [], 0
    while (left := max_new_tokens - len(lm.tokenizer(answer, add_special_tokens=False)["input_ids"])) > 0:
        look = scored_generate(lm, _prompt(pipe, question, None, answer), left, backend)
        n = sentence_length(look.texts)
        if n == 0:
            break
        if rounds < cfg.max_rounds and flare_triggers(look.probs[:n], cfg.flare_threshold):
            query = flare_query(look.texts[:n], look.probs[:n], cfg.flare_threshold,
                                question if cfg.flare_query_with_question else None)
            hits = _retrieve(pipe, query, question, top_k)
            rounds += 1
            look = scored_generate(lm, _prompt(pipe, question, [h.doc for h in hits], answer), left, backend)
            n = sentence_length(look.texts)
        answer += lm.tokenizer.decode(look.ids[:n], skip_special_tokens=True)
        if n == len(look.ids) and look.ended or "\n" in answer or n == 0:
            break
    return answer, hits, rounds


@torch.inference_mode()
def last_layer_attention(lm, ids: list[int]) -> torch.Tensor:
    """[L, L] attention of the last layer (mean over heads) over the token ids."""
    model = lm.model
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")  # sdpa does not return attention weights
    try:
        out = model(input_ids=torch.tensor([ids], device=model.device), output_attentions=True)
    finally:
        model.set_attn_implementation(impl)
    return out.attentions[-1][0].float().mean(0).cpu()


def chain(pipe, question: str, top_k: int, max_new_tokens: int, base: str = "prag") -> tuple[str, list, int]:
    """Answer by a retrieval chain with `base`'s form (prag: the chain's adapters; combine: adapters and the
    documents in context; rag: the documents in context); returns (raw answer, the chain's hits, hops). Each hop
    looks for its new document among the query's top-k."""
    cfg = pipe.config.dynamic
    hits: list = []
    query, asked, raw = question, question, ""
    for _ in range(cfg.chain_hops):
        seen = {h.doc.id for h in hits}
        new = next((h for h in _retrieve(pipe, query, question, top_k) if h.doc.id not in seen), None)
        if new is None:
            break
        hits.append(new)
        plan = pipe.plan(asked, base, doc_ids=[h.doc.id for h in hits], max_new_tokens=max_new_tokens)
        raw, _ = pipe.backend.answer(plan.prompt, plan.hits, plan.adapters, plan.weights, max_new_tokens)
        query = f"{question} {raw.strip()}"
        if cfg.chain_carry:  # the next hop reads this hop's answer (often the bridge entity) after the question
            asked = chain_question(question, raw)
    return raw, hits, len(hits)


def chain_question(question: str, answer: str) -> str:
    """The question a later hop asks when `chain_carry` is on: the question, then the previous hop's answer."""
    return f"{question}\nKnown so far: {answer.strip()}"


def dragin(pipe, question: str, top_k: int, max_new_tokens: int) -> tuple[str, list, int]:
    """Answer with DRAGIN; returns (raw answer text, the last retrieval's hits, retrieval rounds)."""
    cfg, lm = pipe.config.dynamic, pipe.lm
    tok = lm.tokenizer
    answer, hits, rounds = "", [], 0
    while True:
        prompt = _prompt(pipe, question, [h.doc for h in hits] or None, answer)
        left = max(1, max_new_tokens - len(tok(answer, add_special_tokens=False)["input_ids"]))
        gen = scored_generate(lm, prompt, left, pipe.backend)
        if rounds >= cfg.max_rounds or not gen.ids:
            return answer + tok.decode(gen.ids, skip_special_tokens=True), hits, rounds
        enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
        start = len(enc["input_ids"])
        attn = last_layer_attention(lm, enc["input_ids"] + gen.ids)
        scores = rind(gen.entropies, attention_influence(attn, start), [is_content(t) for t in gen.texts])
        i = first_trigger(scores, cfg.dragin_threshold)
        if i is None:
            return answer + tok.decode(gen.ids, skip_special_tokens=True), hits, rounds
        # QFS candidates: content tokens of the question (located by character offsets) and of the output so far
        q0 = prompt.rfind(question)
        texts = [tok.decode([t]) for t in enc["input_ids"]] + gen.texts
        in_question = [j for j, (b, e) in enumerate(enc["offset_mapping"])
                       if q0 >= 0 and b >= q0 and e <= q0 + len(question)]
        candidates = [j for j in in_question + list(range(start, start + i)) if is_content(texts[j])]
        query = qfs_query(texts, attn[start + i].tolist(), candidates, cfg.qfs_tokens)
        hits = _retrieve(pipe, query, question, top_k)
        rounds += 1
        answer += tok.decode(gen.ids[:i], skip_special_tokens=True)  # keep what came before the uncertain token
