"""The parameter translator on the tiny model: what it reads, what it emits, its files, and training (loss falls,
a killed run resumes to the same translator)."""
from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest
import torch

from conftest import max_diff
from prag.errors import PragError
from prag.translate import (
    CHECKPOINT_FILE,
    WEIGHTS_FILE,
    TrainConfig,
    TrainItem,
    TranslatorConfig,
    load_translator,
    new_translator,
    read_hidden,
    save_translator,
    train_translator,
    translate,
)
from prag.update import Injector

MODULES = ["gate_proj", "up_proj", "down_proj"]
DOCS = ["Quorvel Hane was a glassblower born in Tessik.", "The Ambry Bridge was built of red granite in 1802.",
        "Pellow Works makes copper kettles in the city of Draun."]


@pytest.fixture()
def parts(tiny_lm):
    inj = Injector(tiny_lm.model, MODULES)
    yield tiny_lm, inj, new_translator(tiny_lm, inj, TranslatorConfig(model="tiny", read_layer=1, r=2))
    for h in inj._handles:
        h.remove()


def _trained_like(tr):
    """B starts near zero (a no-op); give it weight so that differences are visible."""
    with torch.no_grad():
        for p in tr.proj_b:
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return tr


def test_it_emits_an_adapter_for_every_target_module_in_the_injector_shapes(parts):
    lm, inj, tr = parts
    [ad] = translate(lm, inj, tr, DOCS[:1])
    assert set(ad.factors) == set(inj.modules)
    for name, (d_in, d_out) in inj.shapes().items():
        a, b = ad.factors[name]
        assert a.shape == (2, d_in) and b.shape == (d_out, 2)
    assert (ad.r, ad.alpha) == (2, 32.0)


def test_different_documents_give_different_adapters(parts):
    lm, inj, tr = parts
    _trained_like(tr)
    ads = translate(lm, inj, tr, DOCS)
    for i in range(len(DOCS)):
        for j in range(i + 1, len(DOCS)):
            assert max_diff(ads[i], ads[j]) > 1e-3


def test_the_adapter_depends_on_tokens_other_than_the_last(parts):
    lm, inj, tr = parts
    _trained_like(tr)
    hidden, mask = read_hidden(lm, DOCS[:1], 1, 256)
    changed = hidden.clone()
    changed[0, 1] += torch.randn(changed.shape[-1], generator=torch.Generator().manual_seed(0))  # token 2 only
    a = tr.factors(inj, hidden, mask)
    b = tr.factors(inj, changed, mask)
    assert max(float((a[n][1] - b[n][1]).abs().max().detach()) for n in a) > 1e-4


def test_padding_in_a_batch_does_not_change_a_documents_adapter(parts):
    lm, inj, tr = parts
    _trained_like(tr)
    alone = translate(lm, inj, tr, DOCS[:1])[0]
    batched = translate(lm, inj, tr, DOCS[:1] + ["a much longer document " * 6])[0]
    assert max_diff(alone, batched) < 1e-4


@pytest.mark.parametrize("model, read_layer", [("tiny_lm", 1), ("tiny_gemma", 2)])
def test_reading_stops_at_the_read_layer_and_matches_the_full_pass(model, read_layer, request):
    """Also on Gemma 3: its sliding window (the character-level document is longer) and scaled embeddings."""
    lm = request.getfixturevalue(model)
    hidden, mask = read_hidden(lm, DOCS[:1], read_layer, 256)
    ids = lm.tokenizer(DOCS[0], return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 16                                # beyond Gemma's window
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
    d = out[0].shape[-1]
    assert torch.allclose(hidden[0, :ids.shape[1], :d], out[read_layer][0], atol=1e-5)   # after the read layer
    assert torch.allclose(hidden[0, :ids.shape[1], d:], out[0][0], atol=1e-6)            # the input embeddings


def test_a_saved_translator_loads_with_its_checksum_and_refuses_corruption_and_other_models(parts, tmp_path):
    lm, inj, tr = parts
    _trained_like(tr)
    sha = save_translator(tr, tmp_path / "t", {"note": "x"})
    back, sha2 = load_translator(tmp_path / "t", model="tiny")
    assert sha == sha2
    assert max_diff(translate(lm, inj, tr, DOCS[:1])[0], translate(lm, inj, back, DOCS[:1])[0]) < 5e-2  # float16
    with pytest.raises(PragError, match="for model 'tiny', not 'smollm2'"):
        load_translator(tmp_path / "t", model="smollm2")
    raw = bytearray((tmp_path / "t" / WEIGHTS_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "t" / WEIGHTS_FILE).write_bytes(bytes(raw))
    with pytest.raises(PragError, match="checksum mismatch"):
        load_translator(tmp_path / "t")
    with pytest.raises(PragError, match="not a translator"):
        load_translator(tmp_path)


@pytest.mark.parametrize("field, value", [("read_layer", 0), ("r", 0), ("max_doc_tokens", 2), ("alpha", -1.0),
                                          ("alpha", float("nan"))])
def test_bad_translator_settings_are_refused(field, value):
    with pytest.raises(PragError, match=f"translator.{field}"):
        TranslatorConfig(**{field: value}).validate()


def test_a_read_layer_beyond_the_model_is_refused(tiny_lm):
    inj = Injector(tiny_lm.model, MODULES)
    with pytest.raises(PragError, match="beyond the model's 2 layers"):
        new_translator(tiny_lm, inj, TranslatorConfig(read_layer=3))


def _items(lm):
    from prag.encode import qa_texts
    facts = [("Who is Quorvel Hane?", "a glassblower"), ("What is the Ambry Bridge built of?", "red granite"),
             ("Where is Pellow Works?", "Draun")]
    return [TrainItem(str(i), d, qa_texts(lm, [facts[i]])) for i, d in enumerate(DOCS)]


def test_training_lowers_the_qa_loss(tiny_lm, tmp_path):
    """The same question, a different answer per document: only the document can tell the answer."""
    from prag.encode import qa_texts
    inj = Injector(tiny_lm.model, MODULES)
    items = [TrainItem(str(i), f"The secret code of this vault is {c}.", qa_texts(tiny_lm, [("What is the code?", c)]))
             for i, c in enumerate("QZK")]
    summary = train_translator(tiny_lm, inj, items, TranslatorConfig(model="tiny", read_layer=2),
                               TrainConfig(epochs=100, batch_docs=3, lr=1e-2, warmup_steps=1, bf16=False),
                               tmp_path / "t", progress=False)
    curve = [json.loads(x)["loss"] for x in (tmp_path / "t" / "loss.jsonl").read_text().splitlines()]
    assert summary["steps"] == 100 and len(curve) == 100
    assert sum(curve[-5:]) / 5 < 0.9 * curve[0]
    load_translator(tmp_path / "t", model="tiny")
    from prag.translate import seen_fingerprints, text_fingerprint
    assert seen_fingerprints(tmp_path / "t") == {text_fingerprint(it.text) for it in items}  # what it trained on
    assert text_fingerprint("a  b\n") == text_fingerprint("a b") and seen_fingerprints(tmp_path) is None


def test_a_killed_training_run_resumes_to_the_same_translator(tiny_lm, tmp_path, monkeypatch):
    import prag.translate as T

    inj = Injector(tiny_lm.model, MODULES)
    cfg = lambda: TranslatorConfig(model="tiny", read_layer=1)  # noqa: E731
    train = TrainConfig(epochs=6, batch_docs=2, lr=1e-2, warmup_steps=1, bf16=False, checkpoint_every=2)
    whole = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "a", progress=False)

    real, calls = T.batch_loss, {"n": 0}

    def dies_at_step_6(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kw)
    monkeypatch.setattr(T, "batch_loss", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / CHECKPOINT_FILE).exists() and not (tmp_path / "b" / WEIGHTS_FILE).exists()
    monkeypatch.setattr(T, "batch_loss", real)
    resumed = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False)
    assert resumed["steps"] == whole["steps"]
    a, _ = load_translator(tmp_path / "a")
    b, _ = load_translator(tmp_path / "b")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k
    lines = (tmp_path / "b" / "loss.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, whole["steps"] + 1))


def test_a_time_budget_stops_with_a_usable_translator_and_the_next_call_goes_on(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    cfg = lambda: TranslatorConfig(model="tiny", read_layer=1)  # noqa: E731
    train = TrainConfig(epochs=3, batch_docs=2, lr=1e-2, warmup_steps=1, bf16=False, checkpoint_every=100)
    whole = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "a", progress=False)
    # a budget of a nanosecond: the first step runs, then the call stops
    first = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False,
                             budget_s=1e-9)
    assert not first["resumed"]
    assert first["steps"] == 1 and first["partial"] and first["total_steps"] == whole["steps"] > 1
    assert json.loads((tmp_path / "b" / "translator.json").read_text())["partial"] is True
    load_translator(tmp_path / "b", model="tiny")  # usable as it is
    rest = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False)
    assert rest["steps"] == whole["steps"] and rest["steps_this_call"] == whole["steps"] - 1 and not rest["partial"]
    assert rest["resumed"]
    lines = (tmp_path / "b" / "loss.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, whole["steps"] + 1))
    a, _ = load_translator(tmp_path / "a")
    b, _ = load_translator(tmp_path / "b")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k


def test_a_new_run_starts_from_the_init_translators_weights(parts, tmp_path):
    lm, inj, start = parts
    _trained_like(start)
    train = TrainConfig(epochs=1, batch_docs=3, lr=0.0, warmup_steps=1, bf16=False)  # lr 0: nothing moves
    train_translator(lm, inj, _items(lm), TranslatorConfig(model="tiny", read_layer=1, r=2), train,
                     tmp_path / "t", progress=False, init=start)
    got, _ = load_translator(tmp_path / "t")
    for (k, x), (_, y) in zip(start.state_dict().items(), got.state_dict().items()):
        assert torch.allclose(x.half().float(), y), k
    with pytest.raises(PragError, match="differs in r"):
        train_translator(lm, inj, _items(lm), TranslatorConfig(model="tiny", read_layer=1, r=3), train,
                         tmp_path / "u", progress=False, init=start)


def test_a_translator_lists_its_own_and_its_starts_training_data(parts, tmp_path):
    """What a run trains on, and what the translator it started from trained on, both count as seen."""
    from prag.translate import SEEN_QUESTIONS_FILE, seen_fingerprints, text_fingerprint, write_seen
    lm, inj, start = parts
    save_translator(start, tmp_path / "parent")
    write_seen(tmp_path / "parent", ["an older document"])
    write_seen(tmp_path / "parent", ["An older question?"], SEEN_QUESTIONS_FILE)
    items = _items(lm)
    train = TrainConfig(epochs=1, batch_docs=3, lr=0.0, warmup_steps=1, bf16=False)
    train_translator(lm, inj, items, TranslatorConfig(model="tiny", read_layer=1, r=2), train, tmp_path / "t",
                     progress=False, init=start, questions=["What is new?"], init_folder=tmp_path / "parent")
    assert seen_fingerprints(tmp_path / "t") == {text_fingerprint(t) for t in [it.text for it in items]
                                                 + ["an older document"]}
    assert seen_fingerprints(tmp_path / "t", SEEN_QUESTIONS_FILE) == {text_fingerprint("What is new?"),
                                                                      text_fingerprint("An older question?")}


def test_a_checkpoint_from_other_settings_is_refused(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    train = TrainConfig(epochs=1, batch_docs=3, bf16=False)
    train_translator(tiny_lm, inj, _items(tiny_lm), TranslatorConfig(model="tiny", read_layer=1), train,
                     tmp_path / "t", progress=False)
    listed = (tmp_path / "t" / "documents.sha256").read_text()
    with pytest.raises(PragError, match="other settings or data"):
        train_translator(tiny_lm, inj, _items(tiny_lm)[:2], TranslatorConfig(model="tiny", read_layer=2), train,
                         tmp_path / "t", progress=False, questions=["Not trained on?"])
    assert (tmp_path / "t" / "documents.sha256").read_text() == listed  # a refused run rewrites nothing
    assert not (tmp_path / "t" / "questions.sha256").exists()


def test_documents_without_qa_pairs_cannot_train(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    with pytest.raises(PragError, match="no training document has a QA pair"):
        train_translator(tiny_lm, inj, [TrainItem("x", "text", [])], TranslatorConfig(model="tiny", read_layer=1),
                         TrainConfig(bf16=False), tmp_path / "t", progress=False)


def test_rows_use_their_own_documents_adapter(parts):
    """batch_loss gives each QA row its own document's factors: the loss of a batch equals the mean of each
    document's loss alone (same rows)."""
    from prag.translate import batch_loss
    lm, inj, tr = parts
    _trained_like(tr)
    items = _items(lm)
    with torch.no_grad():
        together = float(batch_loss(lm, inj, tr, items, 1, random.Random(0)))
        alone = [float(batch_loss(lm, inj, tr, [it], 1, random.Random(0))) for it in items]
    assert abs(together - sum(alone) / len(alone)) < 1e-4


def test_the_contrast_term_is_zero_only_when_the_own_adapter_wins_by_the_margin(parts):
    from prag.translate import batch_loss
    lm, inj, tr = parts
    _trained_like(tr)
    items = _items(lm)
    with torch.no_grad():
        plain = float(batch_loss(lm, inj, tr, items, 1, random.Random(0)))
        with_term = float(batch_loss(lm, inj, tr, items, 1, random.Random(0), contrast=1.0, margin=1.0))
        huge = float(batch_loss(lm, inj, tr, items, 1, random.Random(0), contrast=1.0, margin=100.0))
        alone = float(batch_loss(lm, inj, tr, items[:1], 1, random.Random(0), contrast=1.0))
        alone_plain = float(batch_loss(lm, inj, tr, items[:1], 1, random.Random(0)))
    assert with_term >= plain and abs(huge - plain - 100.0) < 5.0  # random adapters: no document-specific gain
    assert abs(alone - alone_plain) < 1e-6  # one document: no term


def _ctx_items(lm):
    from prag.translate import train_item
    facts = [("Who is Quorvel Hane?", "a glassblower"), ("What is the Ambry Bridge built of?", "red granite"),
             ("Where is Pellow Works?", "Draun")]
    return [train_item(lm, str(i), d, [facts[i]]) for i, d in enumerate(DOCS)]


def test_in_context_rows_hold_their_document_and_another_and_half_take_the_others_adapter(tiny_lm):
    from prag.translate import _qa_rows
    items = _ctx_items(tiny_lm) * 20  # 60 rows: the owner split is random
    bare = _qa_rows(tiny_lm, items, 1, random.Random(0))
    assert not bare[5].any() and bare[4].tolist() == list(range(len(items)))
    ids, mask, lengths, starts, owner, ctx = _qa_rows(tiny_lm, items, 1, random.Random(0), in_context=1.0)
    assert ctx.all()
    for j, it in enumerate(items):
        text = tiny_lm.tokenizer.decode(ids[j, :lengths[j]])
        other = items[(j + 1) % len(items)]
        assert it.text in text and other.text in text and it.questions[0] in text
        assert text.endswith(it.qa[0][1].strip()) or it.qa[0][1].strip() in text[-40:]  # its own answer
        assert owner[j] in (j, (j + 1) % len(items))
    took_other = sum(int(owner[j]) != j for j in range(len(items))) / len(items)
    assert 0.25 < took_other < 0.75
    assert (lengths > bare[2]).all()  # the documents make the rows longer
    half = _qa_rows(tiny_lm, items, 1, random.Random(0), in_context=0.5)[5].float().mean()
    assert 0.25 < half < 0.75


def test_in_context_needs_the_bare_questions_and_two_documents(tiny_lm):
    from prag.translate import _qa_rows
    no_questions = _items(tiny_lm)  # built without questions: always bare
    assert not _qa_rows(tiny_lm, no_questions, 1, random.Random(0), in_context=1.0)[5].any()
    assert not _qa_rows(tiny_lm, _ctx_items(tiny_lm)[:1], 1, random.Random(0), in_context=1.0)[5].any()


def test_the_contrast_term_skips_rows_with_documents_in_the_prompt(parts):
    from prag.translate import batch_loss
    lm, inj, tr = parts
    _trained_like(tr)
    items = _ctx_items(lm)
    with torch.no_grad():
        plain = float(batch_loss(lm, inj, tr, items, 1, random.Random(0), in_context=1.0))
        with_term = float(batch_loss(lm, inj, tr, items, 1, random.Random(0), contrast=1.0, margin=100.0,
                                     in_context=1.0))
        bare = float(batch_loss(lm, inj, tr, items, 1, random.Random(0)))
    assert plain == with_term  # every row has documents in its prompt: no contrast term
    assert abs(plain - bare) > 1e-3  # and the rows are not the bare ones


def test_rows_padded_in_length_chunks_give_the_one_batch_loss(parts, monkeypatch):
    """batch_loss pads in-context rows apart from bare ones (_length_chunks); each row keeps its own adapter, so
    the loss equals that of one batch padded to the longest row."""
    import prag.translate as T
    lm, inj, tr = parts
    _trained_like(tr)
    items = _ctx_items(lm) * 2
    lengths = T._qa_rows(lm, items, 1, random.Random(0), in_context=0.5)[2]
    chunks = T._length_chunks(lengths, budget=int(lengths.max()) * 2)
    assert len(chunks) > 1 and sorted(torch.cat(chunks).tolist()) == list(range(len(lengths)))
    assert all(len(c) * int(lengths[c].max()) <= int(lengths.max()) * 2 for c in chunks)
    one_by_one = T._length_chunks
    with torch.no_grad():
        monkeypatch.setattr(T, "_length_chunks", lambda n: one_by_one(n, 16))  # each row a chunk alone
        chunked = float(T.batch_loss(lm, inj, tr, items, 1, random.Random(0), contrast=1.0, in_context=0.5))
        monkeypatch.setattr(T, "_length_chunks", lambda n: [torch.arange(len(n))])
        whole = float(T.batch_loss(lm, inj, tr, items, 1, random.Random(0), contrast=1.0, in_context=0.5))
    assert abs(chunked - whole) < 1e-4


def test_training_with_documents_in_the_prompt_lowers_its_loss(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    summary = train_translator(tiny_lm, inj, _ctx_items(tiny_lm), TranslatorConfig(model="tiny", read_layer=1),
                               TrainConfig(epochs=40, batch_docs=3, lr=1e-2, warmup_steps=1, bf16=False,
                                           in_context=0.5), tmp_path / "t", progress=False)
    assert summary["last_loss"] < summary["first_loss"]
    assert json.loads((tmp_path / "t" / "translator.json").read_text())["train"]["in_context"] == 0.5


@pytest.mark.parametrize("field, value, needle", [
    ("epochs", 0.0, "epochs must be a finite number > 0"), ("lr", float("nan"), "lr must be a finite number > 0"),
    ("batch_docs", 0, "batch_docs must be at least 1"), ("qa_per_doc", 0, "qa_per_doc must be at least 1"),
    ("checkpoint_every", 0, "checkpoint_every must be at least 1"), ("contrast", -1.0, "contrast must be"),
    ("in_context", 1.5, "in_context must be a share in [0, 1]"), ("in_context", -0.1, "in_context must be"),
    ("memory_push", 0.0, "memory_push must be a finite number > 0"), ("memory_push", float("inf"), "memory_push"),
])
def test_a_bad_training_setting_is_refused(field, value, needle):
    with pytest.raises(PragError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        replace(TrainConfig(), **{field: value}).validate()
    TrainConfig().validate()


SHIPPED = {"smollm2": (5453, 759), "gemma3-270m": (5449, 697)}  # model: real documents and questions it trained on


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_a_shipped_translator_verifies_and_names_its_training_documents(model):
    import hashlib
    from pathlib import Path

    from prag.translate import has_shipped_translator, shipped_translator, translator_info
    folder = shipped_translator(model)
    tr, sha = load_translator(folder, model)
    info = translator_info(folder)
    assert sha == info["sha256"] and tr.cfg.model == model
    assert (folder / WEIGHTS_FILE).stat().st_size < 50 * 2**20  # half precision, tens of MB at most
    for seen in [info] + ([info["init_from"]] if "init_from" in info else []):  # its data, and its start's
        path = Path(__file__).resolve().parents[1] / seen["trained_on"].split(" ")[0]
        ids = json.loads(path.read_text())["ids"]
        assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == seen["trained_on_sha256"]
        assert not any(i.startswith("f30-") or i.startswith("fh-") for i in ids)  # never the fictional evaluation sets
        if "trained_on_corpus_sha256" in seen:  # data versions share ids (syn-00000...): the texts tell them apart
            listed = json.loads(path.read_text())
            assert (listed["corpus_sha256"], listed["qa_sha256"]) == (seen["trained_on_corpus_sha256"],
                                                                       seen["trained_on_qa_sha256"])
    assert has_shipped_translator(model) and not has_shipped_translator("tiny")


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_a_shipped_translator_lists_its_training_data_and_no_test_question_is_in_it(model):
    """documents.sha256 / questions.sha256 (benchmarks/experiments/translator_seen.py) let eval and tune flag
    questions it trained on; the shared datasets' test questions (second half) must not be among them, and PopQA's
    dev questions are (its data's --dev-qa)."""
    from prag.corpus import dataset_dir, load_questions, split
    from prag.translate import SEEN_QUESTIONS_FILE, seen_fingerprints, shipped_translator, text_fingerprint
    folder = shipped_translator(model)
    docs, asked = seen_fingerprints(folder), seen_fingerprints(folder, SEEN_QUESTIONS_FILE)
    assert (len(docs), len(asked)) == SHIPPED[model]
    found = {}
    for name in ("2wikimultihopqa-comparison", "2wikimultihopqa", "hotpotqa", "popqa"):
        try:
            found[name] = load_questions(dataset_dir(name) / "questions.jsonl")
        except PragError:
            continue  # not on this machine
        assert not {text_fingerprint(q.question) for q in split(found[name], "test")} & asked, name
    if not found:
        pytest.skip("no shared datasets here")
    if "popqa" in found:
        assert sum(text_fingerprint(q.question) in asked for q in split(found["popqa"], "dev")) > 100


def test_no_shipped_translator_for_a_model_without_one_is_a_clear_error():
    from prag.translate import shipped_translator
    with pytest.raises(PragError, match="no translator ships for model 'tiny'"):
        shipped_translator("tiny")


# ---------------------------------------------------------------------------------------------- token memory

@pytest.fixture()
def memory_parts(tiny_lm):
    inj = Injector(tiny_lm.model, MODULES)
    cfg = TranslatorConfig(model="tiny", read_layer=2, r=2, memory_layers=[0, 1])
    tr = new_translator(tiny_lm, inj, cfg)
    with torch.no_grad():
        tr.mem_val.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    yield tiny_lm, inj, _trained_like(tr)
    for h in inj._handles:
        h.remove()


def _n_tokens(lm, text):
    return len(lm.tokenizer(text, add_special_tokens=True)["input_ids"])


def test_token_memory_gives_the_memory_modules_one_rank_per_document_token(memory_parts):
    lm, inj, tr = memory_parts
    ads = translate(lm, inj, tr, DOCS[:2])
    down = inj.groups[tr.cfg.memory_kind()]
    for ad, doc in zip(ads, DOCS):
        for name, (a, b) in ad.factors.items():
            want = 2 + _n_tokens(lm, doc) - 1 if name in down else 2  # no row for the first token (no context)
            assert a.shape[0] == b.shape[1] == want, name


def test_a_memory_rows_key_is_the_modules_input_at_the_token_before(tiny_lm):
    """Row t's key: the document's own input to the memory module at token t-1 (unit RMS, over sqrt(in)); a
    fresh translator adds nothing to it (diagonal 1, low-rank part 0)."""
    from prag.translate import read_states

    inj = Injector(tiny_lm.model, MODULES)
    tr = new_translator(tiny_lm, inj, TranslatorConfig(model="tiny", read_layer=2, r=2, memory_layers=[1]))
    [ad] = translate(tiny_lm, inj, tr, DOCS[:1])
    _, _, inputs = read_states(tiny_lm, inj, tr.cfg, DOCS[:1])
    x = inputs[0, 0]                                    # [tokens, in], layer 1's down_proj input
    want = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() / x.shape[-1] ** 0.5
    keys = ad.factors[inj.groups[tr.cfg.memory_kind()][1]][0][2:]
    assert torch.allclose(keys, want[:-1], atol=1e-5)    # row t (t >= 1) holds token t-1's input
    assert not torch.allclose(keys, want[1:], atol=1e-3)
    for h in inj._handles:
        h.remove()


def test_token_memory_rows_depend_on_their_own_tokens_and_ignore_padding(memory_parts):
    lm, inj, tr = memory_parts
    alone = translate(lm, inj, tr, DOCS[:1])[0]
    batched = translate(lm, inj, tr, DOCS[:1] + ["a much longer document " * 6])[0]
    assert max_diff(alone, batched) < 1e-4
    other = translate(lm, inj, tr, [DOCS[0].replace("Tessik", "Varnholm")])[0]
    down = inj.groups[tr.cfg.memory_kind()][0]
    keys_a, keys_b = alone.factors[down][0], other.factors[down][0]
    assert torch.allclose(keys_a[2:4], keys_b[2:4], atol=1e-5), "rows before the change are the same"
    assert not torch.allclose(keys_a[-2:], keys_b[-2:], atol=1e-3), "rows after it are not"


def test_a_translated_adapter_holds_its_own_factors_not_its_batchs(memory_parts):
    """Each factor owns exactly its bytes: a view into the batch's padded output would keep every document's
    factors alive as long as any one adapter is cached."""
    lm, inj, tr = memory_parts
    for ad in translate(lm, inj, tr, DOCS[:1] + ["a much longer document " * 6]):
        for a, b in ad.factors.values():
            for t in (a, b):
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_a_memory_adapter_round_trips_the_store_files_with_per_module_ranks(memory_parts, tmp_path):
    from prag.config import LoraConfig
    from prag.encode import read_adapter, save_adapter

    lm, inj, tr = memory_parts
    ad = translate(lm, inj, tr, DOCS[:1])[0]
    save_adapter(ad, tmp_path / "a", LoraConfig(), "tiny")
    back = read_adapter(tmp_path / "a")
    assert max_diff(ad, back) < 1e-6
    ids = torch.randint(3, 90, (1, 9))
    with torch.no_grad():
        with inj.applied([ad]):
            x = lm.model(input_ids=ids).logits
        with inj.applied([back]):
            y = lm.model(input_ids=ids).logits
    assert torch.allclose(x, y, atol=1e-5)


def test_a_translator_without_memory_seeds_one_with_it(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    plain = _trained_like(new_translator(tiny_lm, inj, TranslatorConfig(model="tiny", read_layer=2, r=2)))
    items = [TrainItem(f"d{i}", d, [("Q: what? A:", " x")]) for i, d in enumerate(DOCS)]
    cfg = TranslatorConfig(model="tiny", read_layer=2, r=2, memory_layers=[1])
    train_translator(tiny_lm, inj, items, cfg, TrainConfig(epochs=0.0001, batch_docs=3, lr=0.0, bf16=False),
                     tmp_path / "t", progress=False, init=plain)
    grown, _ = load_translator(tmp_path / "t")
    assert grown.cfg.memory_layers == [1]
    for k, v in plain.state_dict().items():
        assert torch.allclose(grown.state_dict()[k], v, atol=2e-3), k  # float16 files; lr 0
    with pytest.raises(PragError, match="differs in r"):
        train_translator(tiny_lm, inj, items, TranslatorConfig(model="tiny", read_layer=2, r=3, memory_layers=[1]),
                         TrainConfig(epochs=0.0001, batch_docs=3, bf16=False), tmp_path / "u", progress=False,
                         init=plain)
    for h in inj._handles:
        h.remove()


@pytest.mark.parametrize("layers", [[2], [-1], [0, 0], "0"])
def test_bad_memory_layers_are_refused(layers):
    with pytest.raises(PragError, match="memory_layers"):
        TranslatorConfig(read_layer=2, memory_layers=layers).validate()


def test_a_run_from_before_the_token_memory_resumes(tiny_lm, tmp_path):
    """A checkpoint whose config predates settings added since (memory_*) resumes: they take their defaults."""
    inj = Injector(tiny_lm.model, MODULES)
    items = [TrainItem(f"d{i}", d, [("Q: what? A:", " x")]) for i, d in enumerate(DOCS)]
    cfg = TranslatorConfig(model="tiny", read_layer=1, r=2)
    train = TrainConfig(epochs=4, batch_docs=3, lr=1e-2, warmup_steps=1, bf16=False, checkpoint_every=2)
    train_translator(tiny_lm, inj, items, cfg, train, tmp_path / "t", progress=False, budget_s=0.0001)
    ckpt = tmp_path / "t" / CHECKPOINT_FILE
    state = torch.load(ckpt, weights_only=False)
    for k in ("memory_layers", "memory_module", "memory_key_rank"):
        del state["config"][k]
    torch.save(state, ckpt)
    out = train_translator(tiny_lm, inj, items, cfg, TrainConfig(**{**train.__dict__, "bf16": None}),
                           tmp_path / "t", progress=False)
    assert out["resumed"] and out["steps"] == 4
    for h in inj._handles:
        h.remove()


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    from conftest import make_tiny_gemma_dir
    from prag.models import load_model

    return load_model(str(make_tiny_gemma_dir(tmp_path_factory.mktemp("gemma"), seed=3)))


def test_a_gemma_translator_differs_per_document_and_trains(tiny_gemma, tmp_path):
    """The translator is written against the decoder-layer interface, not Llama: on Gemma 3 (its partial pass is
    checked above) a memory translator's adapters differ per document, and training lowers the QA loss."""
    from prag.encode import qa_texts

    lm = tiny_gemma
    inj = Injector(lm.model, MODULES)
    cfg = TranslatorConfig(model="tiny-gemma", read_layer=2, r=2, memory_layers=[1])
    ads = translate(lm, inj, _trained_like(new_translator(lm, inj, cfg)), DOCS)
    slots = [n for n in ads[0].factors if ads[0].factors[n][0].shape[0] == 2]  # the memory's ranks differ
    assert slots and max(float((ads[0].factors[n][1] - ads[1].factors[n][1]).abs().max()) for n in slots) > 1e-3
    items = [TrainItem(str(i), f"The secret code of this vault is {c}.", qa_texts(lm, [("What is the code?", c)]))
             for i, c in enumerate("QZK")]
    cfg = replace(cfg, memory_layers=[])  # trained without the memory: at lr 1e-2 it first raises this loss
    train_translator(lm, inj, items, cfg, TrainConfig(epochs=30, batch_docs=3, lr=1e-2, warmup_steps=1, bf16=False),
                     tmp_path / "t", progress=False)
    curve = [json.loads(x)["loss"] for x in (tmp_path / "t" / "loss.jsonl").read_text().splitlines()]
    # slower than the tiny Llama's (near-uniform start, 4.6 nats; -0.27 in 100 steps measured): a fall, not a fit
    assert all(math.isfinite(x) for x in curve) and sum(curve[-5:]) / 5 < curve[0] - 0.05
    tr, _ = load_translator(tmp_path / "t", model="tiny-gemma")
    assert len(translate(lm, inj, tr, DOCS[:1])) == 1
    for h in inj._handles:
        h.remove()


@pytest.mark.parametrize("model", ["tiny_lm", "tiny_gemma"])
@pytest.mark.parametrize("target", [0.05, 0.4])
def test_calibration_makes_the_memory_write_its_target_share_of_the_modules_output(model, target, request):
    """Per memory layer, whatever the model's activation sizes (Gemma 3's memory wrote 25x its module's output
    from the fixed start, SmolLM2's 0.26x): the push is linear in mem_scale, so one rescale lands on the target."""
    from prag.translate import calibrate_memory, memory_push

    lm = request.getfixturevalue(model)
    inj = Injector(lm.model, MODULES)
    tr = new_translator(lm, inj, TranslatorConfig(model="tiny", read_layer=2, r=2, memory_layers=[0, 1]))
    before = memory_push(lm, inj, tr, DOCS)
    factors = calibrate_memory(lm, inj, tr, DOCS, target)
    after = memory_push(lm, inj, tr, DOCS)
    assert torch.allclose(after, torch.full_like(after, target), rtol=1e-3), (before, after)
    assert factors == pytest.approx((target / before).tolist(), rel=1e-4)
    assert torch.allclose(tr.mem_scale, 0.1 * torch.tensor(factors)[:, None].expand_as(tr.mem_scale), rtol=1e-3)  # factors: 6 decimals
    with pytest.raises(PragError, match="finite number > 0"):
        calibrate_memory(lm, inj, tr, DOCS, 0.0)
    for h in inj._handles:
        h.remove()


def test_memory_push_needs_a_memory(parts):
    from prag.translate import memory_push

    lm, inj, tr = parts
    with pytest.raises(PragError, match="no token memory"):
        memory_push(lm, inj, tr, DOCS)


def test_a_new_run_calibrates_its_memory_once_and_a_resumed_run_keeps_that(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, MODULES)
    cfg = lambda: TranslatorConfig(model="tiny", read_layer=2, memory_layers=[1])  # noqa: E731
    train = TrainConfig(epochs=2, batch_docs=2, lr=1e-2, warmup_steps=1, bf16=False, memory_push=0.3)
    whole = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "a", progress=False)
    first = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False,
                             budget_s=1e-9)
    rest = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), train, tmp_path / "b", progress=False)
    assert len(whole["memory_calibration"]) == 1
    assert first["memory_calibration"] == rest["memory_calibration"] == whole["memory_calibration"]
    a, _ = load_translator(tmp_path / "a")
    b, _ = load_translator(tmp_path / "b")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), k
    plain = train_translator(tiny_lm, inj, _items(tiny_lm), cfg(), replace(train, memory_push=None), tmp_path / "c",
                             progress=False)
    assert "memory_calibration" not in plain
    for h in inj._handles:
        h.remove()


@pytest.mark.parametrize("model", ["tiny_lm", "tiny_gemma"])
def test_memory_push_is_what_the_installed_adapter_adds_to_its_module(model, request):
    """Measured apart from memory_push's own arithmetic: install the translated adapter (slots silenced, one memory
    layer) through the Injector and compare the memory module's output with and without it."""
    from prag.translate import memory_push

    lm = request.getfixturevalue(model)
    inj = Injector(lm.model, MODULES)
    tr = new_translator(lm, inj, TranslatorConfig(model="tiny", read_layer=2, r=2, memory_layers=[1]))
    with torch.no_grad():
        tr.mem_val.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
        for p in tr.proj_b:
            p.zero_()                                     # the fixed slots write nothing
    name = inj.groups[tr.cfg.memory_kind()][1]
    out = {}
    handle = inj.modules[name].register_forward_hook(lambda m, args, y: out.__setitem__("y", y[0].detach().clone()))
    ids = torch.tensor([lm.tokenizer(DOCS[0], add_special_tokens=True)["input_ids"]])
    with torch.no_grad():
        lm.model(ids)
        base = out["y"]
        [ad] = translate(lm, inj, tr, DOCS[:1])
        inj.apply([ad])
        lm.model(ids)
        inj.clear()
    handle.remove()
    want = (out["y"] - base).norm() / base.norm()
    assert want > 1e-3
    assert memory_push(lm, inj, tr, DOCS[:1]).item() == pytest.approx(want.item(), rel=1e-3)
    for h in inj._handles:
        h.remove()


@pytest.mark.parametrize("layers, init_memory, needle", [
    ([], False, "this run has no memory layers"),
    ([1], True, "starts from has one already"),
])
def test_memory_push_is_refused_where_there_is_no_new_memory_to_calibrate(tiny_lm, tmp_path, layers, init_memory,
                                                                          needle):
    inj = Injector(tiny_lm.model, MODULES)
    cfg = TranslatorConfig(model="tiny", read_layer=2, memory_layers=layers)
    init = new_translator(tiny_lm, inj, cfg) if init_memory else None
    with pytest.raises(PragError, match=needle):
        train_translator(tiny_lm, inj, _items(tiny_lm), cfg, TrainConfig(epochs=1, bf16=False, memory_push=0.3),
                         tmp_path / "t", progress=False, init=init)
    for h in inj._handles:
        h.remove()


def test_a_memory_grown_on_a_translator_without_one_is_calibrated(parts, tmp_path):
    from prag.translate import memory_push

    lm, inj, start = parts                                # read_layer 1, no memory
    cfg = TranslatorConfig(model="tiny", read_layer=1, r=2, memory_layers=[0])
    summary = train_translator(lm, inj, _items(lm), cfg, TrainConfig(epochs=1, batch_docs=3, lr=1e-9, warmup_steps=1,
                                                                     bf16=False, memory_push=0.3),
                               tmp_path / "t", progress=False, init=start)
    assert summary["init_used"] and len(summary["memory_calibration"]) == 1
    tr, _ = load_translator(tmp_path / "t")
    assert memory_push(lm, inj, tr, [it.text for it in _items(lm)]).item() == pytest.approx(0.3, rel=0.02)  # fp16
