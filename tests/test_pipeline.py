"""pipeline.py on the tiny model: what `plan` retrieves, prompts and applies for each method, every method
answering, DA-RAG's in-context augmentation, worked examples in the prompt, the augment.parts switch, and the
§5.2 warm-up adapter."""
import json

import pytest
import torch

import prag.pipeline as pipeline_mod
from conftest import FICTIONAL
from prag import PragError
from prag.config import PragConfig
from prag.corpus import load_questions, split
from prag.encode import read_adapter
from prag.errors import NotFound
from prag.evaluate import run_eval
from prag.methods import METHODS
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

Q = "What was Ostrander Pell's occupation?"


# ---------------------------------------------------------------- plan, per method
@pytest.fixture()
def pipe(tiny_kb, tiny_lm):
    return Pipeline(tiny_kb, tiny_lm)


# method: (retrieves, documents' text in the prompt, QA-pair lines in the prompt, adapters)
PLANS = {
    "closed": (False, False, False, False),
    "rag": (True, True, False, False),
    "da-rag": (True, None, True, False),  # None: its rewrites may repeat the text; not asserted
    "prag": (True, False, False, True),
    "combine": (True, True, False, True),
    "rag-cot": (True, True, False, False),
    "prag-cot": (True, False, False, True),
    "combine-cot": (True, True, False, True),
}


@pytest.mark.parametrize("method", list(PLANS))
def test_plan_per_method(pipe, method):
    retrieves, doc_text, qa_lines, adapts = PLANS[method]
    prompt, hits, adapters, weights, _ = pipe.plan(Q, method, top_k=2)
    retrieved = pipe.retrieve(Q, 2)
    assert Q in prompt
    assert [h.doc.id for h in hits] == ([h.doc.id for h in retrieved] if retrieves else [])
    if doc_text is not None:
        assert all((h.doc.text in prompt) == doc_text for h in retrieved), method
    assert ("\nQ: " in prompt and " A: " in prompt) == qa_lines, prompt
    if adapts:
        assert len(adapters) == len(weights) == len(hits) >= 1 and all(w > 0 for w in weights)
    else:
        assert adapters == [] and weights == []


@pytest.mark.parametrize("method, doc_ids", [
    ("rag", ["fic-03", "fic-05"]),
    ("da-rag", ["fic-05"]),  # one: two augmented documents overflow the tiny model's context
    ("prag", ["fic-03", "fic-05"]),
    ("combine", ["fic-05", "fic-03"]),
])
def test_plan_takes_the_given_doc_ids(pipe, method, doc_ids):
    prompt, hits, adapters, _, _ = pipe.plan(Q, method, doc_ids=doc_ids)
    assert [h.doc.id for h in hits] == doc_ids  # in the given order, not BM25's (which ranks fic-01 first)
    assert len(adapters) == (len(doc_ids) if PLANS[method][3] else 0)


@pytest.mark.parametrize("method, doc_ids, error, match", [
    ("flare", ["fic-01"], PragError, "doc_ids"),
    ("dragin", ["fic-01"], PragError, "doc_ids"),
    ("rag", ["fic-01", "nope"], NotFound, "nope"),
    ("da-rag", ["nope"], NotFound, "nope"),
    ("prag", ["nope"], NotFound, "nope"),
    ("combine", ["fic-01", "nope"], NotFound, "nope"),
])
def test_plan_refuses_bad_doc_ids(pipe, method, doc_ids, error, match):
    with pytest.raises(error, match=match):
        pipe.plan(Q, method, doc_ids=doc_ids)
    assert not any(pipe.kb.is_done(d.id) for d in pipe.kb.docs)  # refused before any encoding


# ---------------------------------------------------------------- ask
def test_every_method_answers_and_eval_resumes(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.max_new_tokens = pipe.config.generation.reasoning_tokens = 4
    q = load_questions(FICTIONAL / "questions.jsonl")[:3]
    for m in METHODS:
        a = pipe.ask(q[0].question, method=m, top_k=2)
        if METHODS.get(m).dynamic:  # retrieve only when unsure (test_dynamic.py)
            assert isinstance(a.answer, str) and bool(a.hits) == (a.retrieval_rounds > 0)
            continue
        assert isinstance(a.answer, str) and (m == "closed") == (not a.hits)
    with pytest.raises(PragError, match="unknown method"):
        pipe.ask(q[0].question, method="nope")
    log = tmp_path / "log.jsonl"
    calls = []
    real_ask = pipe.ask_batch
    pipe.ask_batch = lambda reqs, *a, **k: calls.extend(reqs) or real_ask(reqs, *a, **k)
    r1 = run_eval(pipe, q[:2], ["closed", "prag"], 2, log, progress=False)
    assert len(calls) == 4
    r2 = run_eval(pipe, q, ["closed", "prag"], 2, log, progress=False)
    assert len(calls) == 6, "the 4 logged answers must be reused"
    assert r2["methods"]["prag"]["n"] == 3 and set(r1["methods"]) == {"closed", "prag"}
    for k in ("f1", "em", "sec_per_question", "n"):
        assert k in r2["methods"]["closed"]
    pipe.injector.remove()


def test_da_rag_puts_the_augmentation_in_context_without_training(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "What was Ostrander Pell's occupation?"
    prompt, hits, adapters, _, _ = pipe.plan(q, "da-rag")
    rag_prompt, rag_hits, _, _, _ = pipe.plan(q, "rag")
    assert [h.doc.id for h in hits] == [h.doc.id for h in rag_hits] and not adapters
    aug = pipe._augment(hits[0].doc)
    assert f"Q: {aug.qa[0].question} A: {aug.qa[0].answer}" in prompt
    assert prompt != rag_prompt
    assert not any(tiny_kb.is_done(h.doc.id) for h in hits)  # nothing was trained for it
    ans = pipe.ask(q, method="da-rag")
    assert ans.prompt_tokens > pipe.ask(q, method="closed").prompt_tokens


def test_pipeline_prompt_shows_the_examples_for_every_method(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "What was Ostrander Pell's occupation?"
    bare = {m: pipe.plan(q, m)[0] for m in ("closed", "rag", "prag")}
    pipe.examples = [("Who wrote Zyx?", "Quentin Marsh")]
    for m in ("closed", "rag", "prag"):
        prompt = pipe.plan(q, m)[0]
        assert "Quentin Marsh" in prompt and prompt.endswith(bare[m][-40:]) and prompt != bare[m]


@pytest.mark.parametrize("method, with_documents", [("rag-cot", True), ("prag-cot", False), ("combine-cot", True)])
def test_a_method_that_reasons_shows_the_reasoning_examples_and_reads_the_answer_after_them(
        tiny_kb, tiny_lm, monkeypatch, method, with_documents):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.examples = [("Who wrote Zyx?", "Quentin Marsh")]  # the kb's worked examples: not for a reasoning method
    prompt = pipe.plan(Q, method, top_k=1)[0]
    assert "Quentin Marsh" not in prompt and "So the answer is:" in prompt
    assert ("She worked in Brisk Harbour" in prompt) == with_documents  # an example's own document, in context or not
    pipe.config.generation.reasoning_tokens = 7
    seen = []

    def answer_rows(self, rows, *args):  # a model that reasons in one line
        for r in rows(8, True):
            seen.append(r.max_new_tokens)
            r.done("Pell was a cartographer. So the answer is: cartographer.", 0.0)
    monkeypatch.setattr(type(pipe.backend), "answer_rows", answer_rows)
    ans = pipe.ask(Q, method=method, top_k=1)
    assert ans.answer == "cartographer" and seen == [7]
    assert pipe.new_tokens("prag") == pipe.config.generation.max_new_tokens and pipe.new_tokens(method, 3) == 3


def test_a_reasoning_methods_longer_answer_must_fit_the_context_too(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    room = pipe.backend.context_tokens() - pipe.count_tokens(pipe.plan(Q, "rag-cot", top_k=1)[0])
    pipe.config.generation.reasoning_tokens = room + 1  # the prompt fits with 24 tokens to generate, not with these
    pipe.plan(Q, "rag", top_k=1)
    with pytest.raises(PragError, match="tokens"):
        pipe.plan(Q, "rag-cot", top_k=1)


# ---------------------------------------------------------------- ablation switches (§5.2–5.3)
def test_parts_none_trains_on_the_document_only(tiny_kb, tiny_lm):
    tiny_kb.config.augment.parts = "none"
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[0]
    pipe.parameterize([doc.id], progress=False)
    aug = tiny_kb.load_augmentation(doc.id)
    assert aug.rewrites == [doc.as_text()] and aug.qa == []


def test_warmup_adapter_is_every_documents_starting_point(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    dev = split(load_questions(FICTIONAL / "questions.jsonl"), "dev")
    res = pipe.warmup(dev, tmp_path / "warm", lr=1e-3, epochs=2)  # its own recipe, not the kb's
    assert res["questions"] == len(dev) and res["steps"] == len(dev) * 2
    assert tiny_kb.config.lora.epochs != 2 and (res["lr"], res["epochs"]) == (1e-3, 2)
    saved = json.loads((tmp_path / "warm" / "warmup.json").read_text())  # the recipe and losses travel with it
    assert (saved["lr"], saved["epochs"], len(saved["losses"])) == (1e-3, 2, res["steps"])
    assert saved["diverged"] == (saved["final_loss"] >= saved["first_loss"])  # windows of min(10, steps // 2)
    warm = read_adapter(tmp_path / "warm")
    assert any(b.abs().max() > 0 for _, b in warm.factors.values())  # trained: B left zero
    # lr 0: a document's adapter must be exactly the warm-up LoRA (batched path and one-document loop)
    cfg = PragConfig.from_dict(tiny_kb.config.to_dict())
    cfg.lora.init_from, cfg.lora.lr = str(tmp_path / "warm"), 0.0
    for batch in (1, 4):
        cfg.lora.batch_docs = batch
        kb = KnowledgeBase.create(tmp_path / f"kb{batch}", FICTIONAL / "corpus.jsonl", cfg)
        Pipeline(kb, tiny_lm).parameterize([d.id for d in kb.docs[:2]], progress=False)
        for d in kb.docs[:2]:
            ad = kb.load_adapter(d.id)
            for name, (a, b) in warm.factors.items():
                assert torch.equal(ad.factors[name][0], a) and torch.equal(ad.factors[name][1], b)


def test_warmup_is_kept_only_when_it_is_the_same_warmup(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    calls = []
    real = pipeline_mod.train_adapter
    monkeypatch.setattr(pipeline_mod, "train_adapter", lambda *a, **k: calls.append(1) or real(*a, **k))
    pipe = Pipeline(tiny_kb, tiny_lm)
    dev = split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:4]
    out = tmp_path / "warm"
    assert not pipe.warmup(dev, out, lr=1e-3, epochs=1)["reused"] and len(calls) == 1
    again = pipe.warmup(dev, out, lr=1e-3, epochs=1)
    assert again["reused"] and len(calls) == 1 and again["adapter_sha256"]
    assert not pipe.warmup(dev, out, lr=1e-3, epochs=1, force=True)["reused"] and len(calls) == 2
    assert not pipe.warmup(dev, out, lr=3e-3, epochs=1)["reused"] and len(calls) == 3  # another recipe
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 4  # other questions
    (out / "adapter_model.safetensors").write_bytes(b"damaged")  # a checksum that no longer holds
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 5
    saved = json.loads((out / "warmup.json").read_text())
    saved.pop("key")  # a warm-up written before the key existed (as stop 16's diverged one) is retrained
    (out / "warmup.json").write_text(json.dumps(saved))
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 6


def test_a_document_deleted_between_plan_and_answer_is_not_used(tiny_kb, tiny_lm):
    from prag.errors import NotFound

    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "Who commands the Halvard Sorrel?"
    planned = pipe.plan(q, "prag", top_k=1)
    tiny_kb.remove_document(planned[1][0].doc.id)
    with pytest.raises(NotFound, match="deleted or changed while this question was planned"):
        pipe.ask(q, "prag", top_k=1, planned=planned)


def test_a_kb_whose_warmup_folder_moved_still_answers(tiny_kb, tiny_lm, tmp_path):
    from prag.errors import PragError

    cfg = tiny_kb.config.override({"lora.init_from": str(tmp_path / "moved-away")})  # reading needs no warm-up
    pipe = Pipeline(tiny_kb, tiny_lm, cfg)
    assert isinstance(pipe.ask("Who commands the Halvard Sorrel?", "rag", top_k=1).answer, str)
    with pytest.raises(PragError, match="no adapter_model.safetensors"):
        pipe.parameterize([tiny_kb.docs[0].id], progress=False)  # encoding does


def test_warmup_never_replaces_a_folder_that_is_not_a_warmup(tiny_kb, tiny_lm, tmp_path):
    from prag.errors import PragError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    with pytest.raises(PragError, match="not a warm-up folder"):
        Pipeline(tiny_kb, tiny_lm).warmup(qs, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ---------------------------------------------------------------- translated adapters (issue 24)
def _with(kb, lm, **gen):
    return Pipeline(kb, lm, kb.config.override({f"generation.{k}": v for k, v in gen.items()}))


def test_the_translator_says_which_documents_and_questions_it_trained_on(tiny_kb, tiny_lm, translator_dir):
    from prag.translate import SEEN_QUESTIONS_FILE, write_seen

    qs = load_questions(FICTIONAL / "questions.jsonl")[:3]
    ids = [d.id for d in tiny_kb.docs[:3]]
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir))
    assert pipe.translator_saw(ids, qs) is None  # it does not say
    write_seen(translator_dir, [tiny_kb.by_id[ids[0]].as_text(), "some other text"])
    assert pipe.translator_saw(ids + ids[:1], qs) == {"seen": 1, "of": 3, "questions_seen": None, "questions_of": 3}
    write_seen(translator_dir, [qs[1].question], SEEN_QUESTIONS_FILE)
    assert pipe.translator_saw(ids, qs) == {"seen": 1, "of": 3, "questions_seen": 1, "questions_of": 3}
    assert Pipeline(tiny_kb, tiny_lm).translator_saw(ids, qs) is None  # trained adapters answer


def test_translated_adapters_answer_without_training_and_say_so(tiny_kb, tiny_lm, translator_dir, monkeypatch):
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir))
    monkeypatch.setattr(pipe, "parameterize", lambda *a, **k: pytest.fail("trained a document"))
    ans = pipe.ask(Q, "prag", doc_ids=[d.id for d in tiny_kb.docs[:2]])
    assert ans.adapter_kinds == ["translated", "translated"]
    assert ans.to_dict()["adapters"] == ["translated", "translated"]
    for h in ans.hits:
        assert tiny_kb.has_translated(h.doc.id) and not tiny_kb.is_done(h.doc.id)
    rec = tiny_kb._translated[ans.hits[0].doc.id]
    assert rec["kind"] == "translated" and rec["recipe"].startswith("translator:")
    again = KnowledgeBase.open(tiny_kb.root)  # the manifest keeps the kinds apart
    assert again.has_translated(ans.hits[0].doc.id) and not again.is_done(ans.hits[0].doc.id)
    assert again.summary()["translated"] == 2 and again.summary()["parameterized"] == 0


def test_a_token_memory_translators_adapters_are_stored_with_their_per_module_ranks(tiny_kb, tiny_lm, tmp_path):
    """A translator with token memory: the stored adapter keeps each memory module's rank (one per document
    token, beyond r), PEFT's rank_pattern and alpha_pattern say so, and loading it back gives the same factors."""
    from prag.translate import TranslatorConfig, new_translator, save_translator
    from prag.update import Injector

    inj = Injector(tiny_lm.model, tiny_kb.config.lora.target_modules)
    tr = new_translator(tiny_lm, inj, TranslatorConfig(model=tiny_kb.config.model, read_layer=1, memory_layers=[0]))
    with torch.no_grad():  # weights that change the output (a new translator's B side starts near zero)
        tr.mem_val.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        tr.mem_scale.fill_(1.0)
    inj.remove()
    save_translator(tr, tmp_path / "mem")
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(tmp_path / "mem"))
    doc = tiny_kb.docs[0]
    pipe.ask(Q, "prag", doc_ids=[doc.id])
    conf = json.loads((tiny_kb.translated_dir(doc.id) / "adapter_config.json").read_text())
    [(name, rank)] = conf["rank_pattern"].items()
    assert name.endswith("layers.0.mlp.down_proj") and rank > conf["r"]
    assert conf["alpha_pattern"][name] / rank == conf["lora_alpha"] / conf["r"]
    tiny_kb._uncache(doc.id)
    back = tiny_kb.load_translated(doc.id)
    assert back.factors[name][0].shape[0] == rank and back.factors[name][1].shape[1] == rank
    # PEFT reads the same files to the same model (its per-module rank and alpha)
    import copy

    from peft import PeftModel
    ids = torch.randint(3, 60, (1, 9))
    with torch.no_grad():
        with pipe.injector.applied([back]):
            ours = tiny_lm.model(input_ids=ids).logits
        peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_lm.model), str(tiny_kb.translated_dir(doc.id)))
        ref = peft_model(input_ids=ids).logits
        base = tiny_lm.model(input_ids=ids).logits
    assert torch.allclose(ours, ref, atol=1e-4) and not torch.allclose(ours, base, atol=1e-4)


def test_trained_else_translated_prefers_a_trained_adapter(tiny_kb, tiny_lm, translator_dir):
    pipe = _with(tiny_kb, tiny_lm, adapters="trained-else-translated", translator=str(translator_dir))
    ids = [d.id for d in tiny_kb.docs[:2]]
    pipe.parameterize(ids[:1], progress=False)
    plan = pipe.plan(Q, "combine", doc_ids=ids)
    assert plan.kinds == ["trained", "translated"]
    assert pipe.plan(Q, "rag", doc_ids=ids).kinds == []


def test_a_translated_adapter_goes_with_its_document_and_a_corrupt_one_is_refused(tiny_kb, tiny_lm, translator_dir):
    from prag.update import ADAPTER_FILE
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir))
    doc = tiny_kb.docs[0]
    pipe.translate([doc])
    path = tiny_kb.translated_dir(doc.id) / ADAPTER_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PragError, match="checksum mismatch"):
        tiny_kb.load_translated(doc.id)
    tiny_kb.remove_document(doc.id)
    assert not tiny_kb.translated_dir(doc.id).exists() and not tiny_kb.has_translated(doc.id)
    assert not KnowledgeBase.open(tiny_kb.root).has_translated(doc.id)


def test_another_translator_redoes_the_translation(tiny_kb, tiny_lm, translator_dir, tmp_path):
    import shutil
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir))
    doc = tiny_kb.docs[0]
    assert pipe.translate([doc])["done"] == 1 and pipe.translate([doc])["done"] == 0
    other = tmp_path / "other"
    shutil.copytree(translator_dir, other)
    from prag.translate import load_translator, save_translator
    tr, _ = load_translator(other)
    with torch.no_grad():
        tr.proj_b[0].mul_(2)
    save_translator(tr, other)
    assert _with(tiny_kb, tiny_lm, adapters="translated", translator=str(other)).translate([doc])["done"] == 1


def test_by_default_no_question_waits_for_training(tiny_kb, tiny_lm, monkeypatch):
    """The default (trained-else-translated) without a translator: a document with no trained adapter goes in
    the prompt instead, and the answer says so; once trained, its adapter answers."""
    from prag.config import GenerationConfig
    assert GenerationConfig().adapters == "trained-else-translated"
    pipe = _with(tiny_kb, tiny_lm, adapters="trained-else-translated")
    ids = [d.id for d in tiny_kb.docs[:2]]
    pipe.parameterize(ids[:1], progress=False)
    monkeypatch.setattr(pipe, "parameterize", lambda *a, **k: pytest.fail("trained in the request"))
    plan = pipe.plan(Q, "prag", doc_ids=ids)
    assert plan.kinds == ["trained", "in-context"] and len(plan.adapters) == 1
    assert tiny_kb.by_id[ids[1]].text in plan.prompt and tiny_kb.by_id[ids[0]].text not in plan.prompt
    assert pipe.ask(Q, "prag", doc_ids=ids).to_dict()["adapters"] == ["trained", "in-context"]


def test_the_llamacpp_backend_refuses_translated_adapters(tiny_kb, tiny_lm, translator_dir, monkeypatch):
    pipe = _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir))
    pipe.config.generation.backend = "llamacpp"  # unvalidated: the tiny model is no GGUF
    monkeypatch.setattr(pipe, "check_generation_config", lambda method=None: None)
    with pytest.raises(PragError, match="trained adapters only"):
        pipe.plan(Q, "prag", doc_ids=[tiny_kb.docs[0].id])


@pytest.mark.parametrize("gen, message", [
    ({"adapters": "translated"}, "needs a translator"),
    ({"adapters": "distilled", "translator": "x"}, "unknown generation.adapters"),
])
def test_bad_adapter_settings_are_refused(tiny_kb, gen, message):
    with pytest.raises(PragError, match=message):
        tiny_kb.config.override({f"generation.{k}": v for k, v in gen.items()})


def test_a_translator_for_another_model_is_refused(tiny_kb, tiny_lm, translator_dir):
    info = json.loads((translator_dir / "translator.json").read_text())
    info["config"]["model"] = "smollm2"
    (translator_dir / "translator.json").write_text(json.dumps(info))
    with pytest.raises(PragError, match="is for model 'smollm2'"):
        _with(tiny_kb, tiny_lm, adapters="translated", translator=str(translator_dir)).translator


# ---------------------------------------------------------------- batches: each row as it is alone
BATCH = [("What was Ostrander Pell's occupation?", "prag", 2, None),
         ("Who commands the Halvard Sorrel?", "combine", 3, None),
         ("Who commands the Halvard Sorrel?", "closed", None, None),
         ("Which river runs through Wrenmoor Gate?", "rag", 1, None),
         ("What was Ostrander Pell's occupation?", "prag", None, ["fic-05", "fic-01"]),
         ("Who commands the Halvard Sorrel?", "flare", 2, None)]


def test_a_batch_answers_each_row_as_it_is_answered_alone(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.max_new_tokens = 6
    reqs = BATCH
    alone = [pipe.ask(*r) for r in reqs]
    batched = pipe.ask_batch(reqs)
    assert [a.raw for a in batched] == [a.raw for a in alone]
    assert [[h.doc.id for h in a.hits] for a in batched] == [[h.doc.id for h in a.hits] for a in alone]
    assert [a.weights for a in batched] == [a.weights for a in alone]
    assert len({a.raw for a in alone}) > 1, "the rows must differ, or the test shows nothing"
    # a bad request gets its own error; the others are answered
    out = pipe.ask_batch([reqs[0], ("", "prag"), (reqs[1][0], "nope"), reqs[2]])
    assert out[0].raw == alone[0].raw and out[3].raw == alone[2].raw
    assert isinstance(out[1], PragError) and "empty question" in str(out[1])
    assert isinstance(out[2], PragError) and "unknown method" in str(out[2])
    # eval in batches: the same predictions as one at a time
    qs = load_questions(FICTIONAL / "questions.jsonl")[:5]
    one = run_eval(pipe, qs, ["closed", "prag"], 2, tmp_path / "one.jsonl", progress=False)
    four = run_eval(pipe, qs, ["closed", "prag"], 2, tmp_path / "four.jsonl", progress=False, batch_size=4)
    rows = [{(r["method"], r["id"]): r["prediction"] for r in map(json.loads, (tmp_path / f).read_text().splitlines())}
            for f in ("one.jsonl", "four.jsonl")]  # in another order: a batch's questions are sorted by prompt length
    assert len(rows[0]) == 10 and rows[0] == rows[1] and one["methods"]["prag"]["f1"] == four["methods"]["prag"]["f1"]
    with pytest.raises(PragError, match="batch size"):
        run_eval(pipe, qs, ["closed"], 2, None, progress=False, batch_size=0)
    pipe.injector.remove()
