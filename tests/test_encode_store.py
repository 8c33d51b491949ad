"""Encoding, the knowledge-base store and the pipeline on the tiny model: determinism, PEFT compatibility,
atomic/checksummed writes, resume, and every method end to end."""
import json

import pytest
import torch

from prag import PragError
from prag.augment import RuleAugmenter
from prag.config import LoraConfig
from prag.corpus import load_corpus, load_questions
from prag.encode import train_adapter
from prag.evaluate import run_eval
from prag.pipeline import DYNAMIC, METHODS, Pipeline, training_sequences
from prag.store import ADAPTER_FILE, KnowledgeBase
from prag.update import Injector

from conftest import FICTIONAL

TARGETS = ["gate_proj", "up_proj", "down_proj"]


def _seqs(lm):
    doc = load_corpus(FICTIONAL / "corpus.jsonl")[0]
    return training_sequences(lm, RuleAugmenter().augment(doc, 1, 3))


def test_training_is_seeded_and_learns(tiny_lm):
    inj = Injector(tiny_lm.model, TARGETS)
    cfg = LoraConfig(lr=1e-2, epochs=2, max_seq_len=128)
    seqs = _seqs(tiny_lm)
    a1, l1 = train_adapter(tiny_lm.model, inj, seqs, cfg)
    a2, _ = train_adapter(tiny_lm.model, inj, seqs, cfg)
    a3, _ = train_adapter(tiny_lm.model, inj, seqs, LoraConfig(lr=1e-2, epochs=2, max_seq_len=128, seed=7))
    for n in a1.factors:
        assert torch.equal(a1.factors[n][0], a2.factors[n][0]) and torch.equal(a1.factors[n][1], a2.factors[n][1])
    assert any(not torch.equal(a1.factors[n][1], a3.factors[n][1]) for n in a1.factors)
    assert len(l1) == 2 * len(seqs) and l1[-1] < l1[0]
    assert all(not p.requires_grad for p in tiny_lm.model.parameters()), "base model must stay frozen"
    assert all(not t for t in inj.terms.values()), "training must leave no adapter applied"
    inj.remove()


def test_parameterize_writes_peft_adapters(tiny_kb, tiny_lm):
    from peft import PeftModel

    pipe = Pipeline(tiny_kb, tiny_lm)
    s = pipe.parameterize(progress=False)
    assert s["done"] == len(tiny_kb.docs) and not s["failed"]
    assert tiny_kb.summary()["parameterized"] == len(tiny_kb.docs)
    doc = tiny_kb.docs[0]
    folder = tiny_kb.doc_dir(doc.id)
    aug = json.loads((folder / "augmentation.json").read_text())
    assert aug["doc_id"] == doc.id and len(aug["qa"]) == tiny_kb.config.augment.n_qa and len(aug["rewrites"]) == 1
    # PEFT loads our adapter and computes what our Update computes.
    ids = torch.randint(3, 90, (1, 12))
    ad = tiny_kb.load_adapter(doc.id)
    with torch.no_grad(), pipe.injector.applied([ad]):
        ours = tiny_lm.model(input_ids=ids).logits
    import copy

    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(folder))
    with torch.no_grad():
        ref = peft_model(input_ids=ids).logits
    assert torch.allclose(ours, ref, atol=1e-5)
    # A second run skips everything.
    assert pipe.parameterize(progress=False)["skipped"] == len(tiny_kb.docs)
    pipe.injector.remove()


def test_corrupt_adapter_is_detected_and_redone(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[1]
    pipe.parameterize([doc.id], progress=False)
    path = tiny_kb.doc_dir(doc.id) / ADAPTER_FILE
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    kb2 = KnowledgeBase.open(tiny_kb.root)
    with pytest.raises(PragError, match="checksum"):
        kb2.load_adapter(doc.id)
    assert not kb2.is_done(doc.id)
    Pipeline(kb2, tiny_lm).parameterize([doc.id], progress=False)
    kb2.load_adapter(doc.id)  # verified again
    pipe.injector.remove()


def test_manifest_survives_a_torn_last_line(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.parameterize([tiny_kb.docs[0].id], progress=False)
    with open(tiny_kb.root / "manifest.jsonl", "a") as f:
        f.write('{"id": "fic-02", "status": "do')  # a crash in the middle of an append
    kb2 = KnowledgeBase.open(tiny_kb.root)
    assert kb2.is_done(tiny_kb.docs[0].id) and not kb2.is_done("fic-02")
    assert kb2.summary()["pending"] == len(tiny_kb.docs) - 1
    pipe.injector.remove()


def test_every_method_answers_and_eval_resumes(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.max_new_tokens = 4
    q = load_questions(FICTIONAL / "questions.jsonl")[:3]
    for m in METHODS:
        a = pipe.ask(q[0].question, method=m, top_k=2)
        if m in DYNAMIC:  # retrieve only when unsure (test_dynamic.py)
            assert isinstance(a.answer, str) and bool(a.hits) == (a.retrieval_rounds > 0)
            continue
        assert isinstance(a.answer, str) and (m == "closed") == (not a.hits)
    with pytest.raises(PragError, match="unknown method"):
        pipe.ask(q[0].question, method="nope")
    log = tmp_path / "log.jsonl"
    calls = []
    real_ask = pipe.ask
    pipe.ask = lambda *a, **k: calls.append(1) or real_ask(*a, **k)
    r1 = run_eval(pipe, q[:2], ["closed", "prag"], 2, log, progress=False)
    assert len(calls) == 4
    r2 = run_eval(pipe, q, ["closed", "prag"], 2, log, progress=False)
    assert len(calls) == 6, "the 4 logged answers must be reused"
    assert r2["methods"]["prag"]["n"] == 3 and set(r1["methods"]) == {"closed", "prag"}
    for k in ("f1", "em", "sec_per_question", "n"):
        assert k in r2["methods"]["closed"]
    pipe.injector.remove()
