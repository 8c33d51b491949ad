"""encode.py on the tiny model: seeded training that learns, the batched trainer equal to the one-document loop,
answer-only loss, bfloat16 training, the chunked output-layer loss, and adapters in PEFT's layout."""
import json

import pytest
import torch

from conftest import FICTIONAL, make_tiny_model_dir, random_adapter, save_peft
from conftest import max_diff as _max_diff
from prag import PragError
from prag.augment import RuleAugmenter
from prag.config import LoraConfig
from prag.corpus import load_corpus
from prag.encode import (
    _decoder_and_head,
    _LinearCrossEntropy,
    init_adapter,
    loss_starts,
    mmap_safetensors,
    read_adapter,
    sequence_losses,
    train_adapter,
    train_adapters,
    training_sequences,
)
from prag.models import load_model
from prag.pipeline import Pipeline
from prag.update import Injector

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


def test_batched_training_equals_one_document_at_a_time(tiny_lm):
    docs = load_corpus(FICTIONAL / "corpus.jsonl")[:4]
    # unequal numbers of sequences (3 or 4 QA pairs), so documents finish at different passes; a small token
    # budget splits each pass into several micro-batches; weight decay on, as AdamW applies it.
    seqs = [training_sequences(tiny_lm, RuleAugmenter().augment(d, 1, 3 + i % 2)) for i, d in enumerate(docs)]
    inj = Injector(tiny_lm.model, TARGETS)
    cfg = LoraConfig(lr=1e-2, epochs=2, max_seq_len=128, batch_tokens=300, weight_decay=0.01)
    try:
        loop = [train_adapter(tiny_lm.model, inj, s, cfg) for s in seqs]
        batched = train_adapters(tiny_lm.model, inj, seqs, cfg, pad_id=tiny_lm.tokenizer.pad_token_id)
    finally:
        inj.remove()
    for (a1, l1), (a2, l2), s in zip(loop, batched, seqs):
        assert len(l1) == len(l2) == 2 * len(s)
        assert max(abs(x - y) for x, y in zip(l1, l2)) < 1e-4
        scale = max(a1.factors[n][1].abs().max().item() for n in a1.factors)
        assert scale > 1e-2, "the adapters must have learned something for the comparison to mean anything"
        assert _max_diff(a1, a2) < 5e-3 * scale
    assert _max_diff(batched[0][0], batched[1][0]) > 0.1 * scale, "each row must train its own document"
    assert _decoder_and_head(tiny_lm.model) is not None  # the batched side took the chunked output-layer loss


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("layout", ["separate", "concat"])
def test_answer_loss_starts_at_the_answer(tiny_lm, tmp_path, layout, chat):
    lm = tiny_lm if chat else load_model(str(make_tiny_model_dir(tmp_path / "base", chat=False)))
    doc = load_corpus(FICTIONAL / "corpus.jsonl")[0]
    aug = RuleAugmenter().augment(doc, 1, 3)
    seqs = training_sequences(lm, aug, layout)
    assert loss_starts(lm, aug, layout, "all") is None
    starts = loss_starts(lm, aug, layout, "answer")
    assert len(starts) == len(seqs)
    answers = [("" if chat else " ") + q.answer + lm.prompter.end_of_answer for q in aug.qa]
    counted = [lm.tokenizer.decode(s[i:]) for s, i in zip(seqs, starts)]
    if layout == "separate":
        assert starts[0] == 0, "a rewrite counts in full"
        counted = counted[1:]
    assert counted == answers


def test_answer_loss_trains_only_on_answers(tiny_lm):
    """Batched and one-at-a-time training agree with answer-only loss, and it is not the all-token loss."""
    docs = load_corpus(FICTIONAL / "corpus.jsonl")[:3]
    augs = [RuleAugmenter().augment(d, 1, 3) for d in docs]
    seqs = [training_sequences(tiny_lm, a) for a in augs]
    starts = [loss_starts(tiny_lm, a, "separate", "answer") for a in augs]
    inj = Injector(tiny_lm.model, TARGETS)
    cfg = LoraConfig(lr=1e-2, epochs=1, max_seq_len=128, batch_tokens=300)
    try:
        loop = [train_adapter(tiny_lm.model, inj, s, cfg, loss_from=st) for s, st in zip(seqs, starts)]
        batched = train_adapters(tiny_lm.model, inj, seqs, cfg, pad_id=tiny_lm.tokenizer.pad_token_id, loss_from=starts)
        full = train_adapter(tiny_lm.model, inj, seqs[0], cfg)
    finally:
        inj.remove()
    for (a1, l1), (a2, l2) in zip(loop, batched):
        assert max(abs(x - y) for x, y in zip(l1, l2)) < 1e-4
        scale = max(a1.factors[n][1].abs().max().item() for n in a1.factors)
        assert scale > 1e-2, "the adapters must have learned something for the comparison to mean anything"
        assert _max_diff(a1, a2) < 5e-3 * scale
    scale0 = max(loop[0][0].factors[n][1].abs().max().item() for n in loop[0][0].factors)
    assert _max_diff(loop[0][0], full[0]) > 0.1 * scale0, "answer-only loss must change what is learned"


def test_bad_loss_setting_is_rejected(tiny_kb, tiny_lm):
    tiny_kb.config.lora.loss = "prompt"
    with pytest.raises(PragError, match="lora.loss"):
        Pipeline(tiny_kb, tiny_lm).check_encoding_config()


def test_bfloat16_training_learns(tiny_kb, tiny_lm):
    tiny_kb.config.lora.train_dtype = "bfloat16"
    tiny_kb.config.lora.lr = 1e-2
    pipe = Pipeline(tiny_kb, tiny_lm)
    model, inj = pipe.trainer
    assert model is not tiny_lm.model and inj.dtype == torch.bfloat16
    assert next(tiny_lm.model.parameters()).dtype == torch.float32, "the serving model must stay float32"
    doc = tiny_kb.docs[0]
    seqs = training_sequences(tiny_lm, RuleAugmenter().augment(doc, 1, 3))
    (ad, losses), = train_adapters(model, inj, [seqs], tiny_kb.config.lora, pad_id=2)
    assert losses[-1] < losses[0] and all(a.dtype == torch.float32 for a, _ in ad.factors.values())
    inj.remove()


# ---------------------------------------------------------------- the output layer's loss
def test_chunked_output_loss_matches_the_full_logits():
    """The fused output layer + cross-entropy (chunks of 3 tokens) gives the full-logits loss and gradient."""
    torch.manual_seed(0)
    h = torch.randn(10, 8, requires_grad=True)
    w = torch.randn(50, 8)
    t = torch.randint(0, 50, (10,))
    g = torch.rand(10)  # a weight per token, as per-row means give
    ref = torch.nn.functional.cross_entropy(h @ w.T, t, reduction="none")
    (ref * g).sum().backward()
    want, h.grad = h.grad.clone(), None
    mine = _LinearCrossEntropy.apply(h, w, t, 3)
    (mine * g).sum().backward()
    assert torch.allclose(mine, ref, atol=1e-5) and torch.allclose(h.grad, want, atol=1e-5)


def test_soft_capped_logits_fall_back_to_the_full_logits():
    """A model whose logits are not hidden @ W (Gemma 2 soft-caps them) trains through its own logits, and the
    batched trainer still equals the one-document loop; the tiny Llama takes the fused path."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                           final_logit_softcapping=2.0)).eval()
    assert _decoder_and_head(model) is None
    seqs = [[torch.randint(3, 40, (n,)) for n in (9, 12, 7)], [torch.randint(3, 40, (n,)) for n in (11, 6)]]
    inj = Injector(model, TARGETS)
    cfg = LoraConfig(lr=1e-2, epochs=2, max_seq_len=64, batch_tokens=40)
    try:
        loop = [train_adapter(model, inj, s, cfg) for s in seqs]
        batched = train_adapters(model, inj, seqs, cfg, pad_id=0)
    finally:
        inj.remove()
    for (a1, l1), (a2, l2) in zip(loop, batched):
        assert max(abs(x - y) for x, y in zip(l1, l2)) < 1e-4
        assert _max_diff(a1, a2) < 5e-3 * max(a1.factors[n][1].abs().max().item() for n in a1.factors)


def test_a_hooked_output_layer_runs_its_forward(tiny_lm):
    """A hook on lm_head (e.g. a LoRA there) must see the training forward: the chunked loss steps aside."""
    seen = []
    handle = tiny_lm.model.lm_head.register_forward_hook(lambda m, a, out: seen.append(1))
    try:
        ids = torch.randint(3, 20, (2, 6))
        sequence_losses(tiny_lm.model, ids, torch.ones_like(ids), torch.tensor([6, 4]))
    finally:
        handle.remove()
    assert seen


# ---------------------------------------------------------------- adapters: initialisation and PEFT's layout
def test_zero_init_adapter_is_noop(tiny_lm):
    inj = Injector(tiny_lm.model, TARGETS)
    ad = init_adapter(inj, LoraConfig(), torch.Generator().manual_seed(0))
    ids = torch.randint(3, 90, (1, 9))
    with torch.no_grad():
        base = tiny_lm.model(input_ids=ids).logits
        with inj.applied([ad]):
            assert torch.allclose(tiny_lm.model(input_ids=ids).logits, base)
    inj.remove()


def test_adapter_roundtrip_peft_layout(tiny_lm, tmp_path):
    inj = Injector(tiny_lm.model, TARGETS)
    ad = random_adapter(inj, 3)
    save_peft(ad, tmp_path / "x")
    back = read_adapter(tmp_path / "x")
    assert back.r == ad.r and back.alpha == ad.alpha and set(back.factors) == set(ad.factors)
    for n, (a, b) in ad.factors.items():
        assert torch.equal(back.factors[n][0], a) and torch.equal(back.factors[n][1], b)
    inj.remove()


def test_mmap_safetensors_matches_the_reference_reader(tmp_path):
    from safetensors.torch import load_file, save_file

    ts = {"a": torch.randn(2, 5), "b": torch.randn(3, 2).half(), "c": torch.randn(4).bfloat16()}
    save_file(ts, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    got, ref = mmap_safetensors(tmp_path / "x.safetensors"), load_file(str(tmp_path / "x.safetensors"))
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k])


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


def test_a_peft_adapter_with_per_module_rank_and_alpha_reads_with_its_own_scaling(tiny_lm, tmp_path):
    """PEFT's rank_pattern / alpha_pattern: a module whose alpha_m / r_m differs from alpha / r has that ratio
    folded into its B, so our single scaling (alpha / r) gives PEFT's ΔW."""
    from prag.encode import read_adapter
    from prag.update import Injector

    inj = Injector(tiny_lm.model, ["gate_proj", "up_proj", "down_proj"])
    ad = random_adapter(inj, 0)
    name = next(n for n in ad.factors if n.endswith("layers.1.mlp.down_proj"))
    save_peft(ad, tmp_path / "a")
    conf = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    conf["alpha_pattern"] = {"layers.1.mlp.down_proj": 8.0}   # a regex for the end of the name, as PEFT allows
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(conf))
    back = read_adapter(tmp_path / "a")
    ratio = (8.0 / 2) / (32.0 / 2)
    assert torch.allclose(back.factors[name][1], ad.factors[name][1] * ratio)
    other = next(n for n in ad.factors if n.endswith("layers.0.mlp.down_proj"))
    assert torch.allclose(back.factors[other][1], ad.factors[other][1])
    inj.remove()
