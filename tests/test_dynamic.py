"""FLARE and DRAGIN: the decision rules and query formation on controlled probabilities and attentions, and
both methods on a tiny random model with thresholds that force or forbid retrieval."""
import pytest
import torch

from prag import PragError
from prag.dynamic import (
    attention_influence,
    first_trigger,
    flare_query,
    flare_triggers,
    is_content,
    qfs_query,
    rind,
    scored_generate,
    sentence_length,
)
from prag.evaluate import run_eval
from prag.pipeline import Pipeline


def test_flare_fires_exactly_below_threshold():
    assert flare_triggers([0.9, 0.39, 0.8], 0.4)
    assert not flare_triggers([0.9, 0.4, 0.8], 0.4)  # at θ is confident enough
    assert not flare_triggers([], 0.4)


def test_flare_query_masks_low_confidence_tokens():
    texts, probs = [" Paris", " is", " the", " capital", " of", " Zorblax"], [0.2, 0.9, 0.9, 0.95, 0.8, 0.1]
    assert flare_query(texts, probs, 0.5) == "is the capital of"
    assert flare_query(texts, probs, 0.5, question="Where is it?") == "Where is it? is the capital of"
    assert flare_query(texts, probs, 0.01) == "Paris is the capital of Zorblax"


def test_sentence_length():
    assert sentence_length([" It", " was", " 1912", ".", " Then", " more"]) == 4
    assert sentence_length([" Jane", " Austen"]) == 2
    assert sentence_length([" a", "\n", " b"]) == 2


def test_attention_influence_is_max_over_later_tokens():
    attn = torch.tensor([[1.0, 0, 0, 0, 0],
                         [0.5, 0.5, 0, 0, 0],
                         [0.2, 0.3, 0.5, 0, 0],
                         [0.1, 0.1, 0.7, 0.1, 0],
                         [0.1, 0.2, 0.3, 0.3, 0.1]])
    assert attention_influence(attn, 2) == pytest.approx([0.7, 0.3, 0.0])


def test_rind_and_trigger():
    scores = rind([2.0, 0.5, 3.0], [0.6, 0.9, 0.1], [True, True, False])
    assert scores == pytest.approx([1.2, 0.45, 0.0])
    assert first_trigger(scores, 1.0) == 0
    assert first_trigger(scores, 0.4) == 0
    assert first_trigger([0.1, 0.45, 2.0], 0.4) == 1
    assert first_trigger(scores, 1.5) is None


def test_stopwords_and_punctuation_are_not_content():
    assert [is_content(t) for t in [" the", " Paris", ",", " 1912", "▁of", "Ġcapital", "?"]] == \
        [False, True, False, True, False, True, False]


def test_qfs_picks_most_attended_candidates_in_order():
    texts = ["Who", " founded", " the", " Kessary", " glass", " works", "?", " It", " was"]
    row = [0.05, 0.3, 0.2, 0.25, 0.02, 0.1, 0.0, 0.05, 0.03]
    cands = [0, 1, 3, 4, 5, 7]
    assert qfs_query(texts, row, cands, 3) == "founded Kessary works"
    assert qfs_query(texts, row, cands, 1) == "founded"


# ---------------------------------------------------------------- on a tiny random model
@pytest.fixture()
def pipe(tiny_kb, tiny_lm, monkeypatch):
    p = Pipeline(tiny_kb, tiny_lm)
    p.queries = []
    real = p.retrieve

    def retrieve(query, top_k):
        p.queries.append(query)
        return real(query, top_k)

    monkeypatch.setattr(p, "retrieve", retrieve)
    return p


Q = "Who invented the tidal chime in Kessary?"


def test_flare_never_retrieves_at_zero_threshold(pipe):
    pipe.config.dynamic.flare_threshold = 0.0
    a = pipe.ask(Q, method="flare", max_new_tokens=12)
    assert a.retrieval_rounds == 0 and pipe.queries == [] and a.hits == []


def test_flare_retrieves_on_the_least_confident_token(pipe):
    from prag.dynamic import _prompt

    lm = pipe.lm
    look = scored_generate(lm, _prompt(pipe, Q, None, ""), 12)
    n = sentence_length(look.texts)
    theta = min(look.probs[:n]) + 1e-6  # only the least confident token is below θ
    pipe.config.dynamic.flare_threshold = theta
    pipe.config.dynamic.max_rounds = 1
    a = pipe.ask(Q, method="flare", max_new_tokens=12)
    assert a.retrieval_rounds == 1 and len(a.hits) == 3
    assert pipe.queries[0] == flare_query(look.texts[:n], look.probs[:n], theta, Q)
    assert len(pipe.queries[0]) < len(Q) + 1 + len("".join(look.texts[:n]).strip()) + 1, "a token was masked"


def test_flare_respects_max_rounds(pipe):
    pipe.config.dynamic.flare_threshold = 1.01  # every token is uncertain
    pipe.config.dynamic.max_rounds = 2
    a = pipe.ask(Q, method="flare", max_new_tokens=16)
    assert a.retrieval_rounds <= 2 and len(pipe.queries) == a.retrieval_rounds >= 1
    assert pipe.queries[0] == Q, "every look-ahead token is masked: the query is the question alone"


def test_dragin_never_retrieves_at_huge_threshold(pipe):
    pipe.config.dynamic.dragin_threshold = 1e9
    a = pipe.ask(Q, method="dragin", max_new_tokens=8)
    assert a.retrieval_rounds == 0 and pipe.queries == []


def test_dragin_retrieves_every_round_at_negative_threshold(pipe):
    pipe.config.dynamic.dragin_threshold = -1.0  # the first generated token always triggers
    pipe.config.dynamic.max_rounds = 2
    pipe.config.dynamic.qfs_tokens = 5
    a = pipe.ask(Q, method="dragin", max_new_tokens=8)
    assert a.retrieval_rounds == 2
    # triggered at the first generated token: the query is made of the question's own content tokens (single
    # characters with this tokenizer: they match no document, so each retrieval falls back to the question)
    formed = [q for q in pipe.queries if q != Q]
    assert len(formed) == 2
    for q in formed:
        assert 1 <= len(q.replace(" ", "")) <= 5 and all(c in Q for c in q.replace(" ", ""))


def test_eval_reports_retrieval_rounds(pipe, tiny_kb):
    from conftest import FICTIONAL
    from prag.corpus import load_questions

    pipe.config.dynamic.dragin_threshold = -1.0
    pipe.config.dynamic.max_rounds = 1
    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    res = run_eval(pipe, qs, ["flare", "dragin"], 3, progress=False)["methods"]
    assert res["dragin"]["retrieval_rounds"] == 1.0
    assert 0.0 <= res["flare"]["retrieval_rounds"] <= pipe.config.dynamic.max_rounds


def test_dynamic_methods_refuse_doc_ids(pipe):
    with pytest.raises(PragError, match="doc_ids"):
        pipe.ask(Q, method="flare", doc_ids=[pipe.kb.docs[0].id])


def test_chain_query_carries_hop_one_answer_and_answers_as_prag_on_its_documents(pipe):
    pipe.config.dynamic.chain_hops = 2
    a = pipe.ask(Q, method="prag-chain", max_new_tokens=8)
    ids = [h.doc.id for h in a.hits]
    assert 1 <= a.retrieval_rounds == len(ids) == len(set(ids)) <= 2
    assert pipe.queries[0] == Q
    if len(pipe.queries) > 1:
        assert pipe.queries[1].startswith(Q + " ") and len(pipe.queries[1]) > len(Q) + 1
    # the chain's answer is prag's with the chain's documents given
    assert pipe.ask(Q, method="prag", doc_ids=ids, max_new_tokens=8).raw == a.raw


@pytest.mark.parametrize("base", ["prag", "combine", "rag"])
def test_one_hop_chain_is_the_base_method_on_the_top_document(pipe, base):
    pipe.config.dynamic.chain_hops = 1
    a = pipe.ask(Q, method=f"{base}-chain", max_new_tokens=8)
    top = pipe.retrieve(Q, 1)[0].doc.id
    assert [h.doc.id for h in a.hits] == [top] and a.retrieval_rounds == 1
    assert pipe.ask(Q, method=base, doc_ids=[top], max_new_tokens=8).raw == a.raw


def test_chain_hops_must_be_positive():
    from prag.config import DynamicConfig

    with pytest.raises(PragError, match="chain_hops"):
        DynamicConfig(chain_hops=0).validate()


def test_eval_settings_record_changed_dynamic_config(pipe):
    from prag.evaluate import _setting

    assert "dynamic" not in _setting(pipe, 3, "prag-chain")
    pipe.config.dynamic.chain_hops = 3
    assert _setting(pipe, 3, "prag-chain")["dynamic"]["chain_hops"] == 3
    assert "dynamic" not in _setting(pipe, 3, "prag")


def test_chain_carry_asks_the_last_hop_with_the_first_answer(pipe):
    from prag.dynamic import chain_question

    pipe.config.dynamic.chain_hops = 2
    pipe.config.dynamic.chain_carry = True
    asked = []
    real = pipe.plan
    pipe.plan = lambda q, *a, **k: (asked.append(q), real(q, *a, **k))[1]
    a = pipe.ask(Q, method="prag-chain", max_new_tokens=8)
    last = asked[-1]
    first = pipe.ask(Q, method="prag", doc_ids=[a.hits[0].doc.id], max_new_tokens=8).raw
    assert a.retrieval_rounds == 2, "the tiny kb has more than one document that matches"
    assert last == chain_question(Q, first) and last.startswith(Q)
    ids = [h.doc.id for h in a.hits]
    assert pipe.ask(chain_question(Q, first), method="prag", doc_ids=ids, max_new_tokens=8).raw == a.raw
