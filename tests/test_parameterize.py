"""Offline parameterization at scale: the batched trainer equals the one-document loop, storage dtypes, the
manifest surviving a torn write, and a real `prag parameterize` job killed with SIGKILL again and again."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prag import PragError
from prag.augment import RuleAugmenter
from prag.config import LoraConfig
from prag.corpus import load_corpus
from prag.encode import train_adapter, train_adapters
from prag.pipeline import Pipeline, loss_starts, training_sequences
from prag.store import ADAPTER_FILE, KnowledgeBase, sha256_file
from prag.update import Injector

from conftest import FICTIONAL, write_jsonl

TARGETS = ["gate_proj", "up_proj", "down_proj"]


def _max_diff(a, b) -> float:
    return max((a.factors[n][i] - b.factors[n][i]).abs().max().item() for n in a.factors for i in (0, 1))


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
    from prag.encode import _decoder_and_head
    assert _decoder_and_head(tiny_lm.model) is not None  # the batched side took the chunked output-layer loss


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("layout", ["separate", "concat"])
def test_answer_loss_starts_at_the_answer(tiny_lm, tmp_path, layout, chat):
    from conftest import make_tiny_model_dir
    from prag.models import load_model

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


@pytest.mark.parametrize("dtype, itemsize", [("float16", 2), ("bfloat16", 2), ("float32", 4)])
def test_adapter_dtype_on_disk(tiny_kb, tiny_lm, dtype, itemsize):
    tiny_kb.config.lora.adapter_dtype = dtype
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[0]
    pipe.parameterize([doc.id], progress=False)
    raw = (tiny_kb.doc_dir(doc.id) / ADAPTER_FILE).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes == {{"float16": "F16", "bfloat16": "BF16", "float32": "F32"}[dtype]}
    ad = tiny_kb.load_adapter(doc.id)
    n_params = sum(a.numel() + b.numel() for a, b in ad.factors.values())
    assert len(raw) < n_params * itemsize + 20_000
    assert all(a.dtype == torch.float32 for a, _ in ad.factors.values()), "loaded factors are float32"


def test_manifest_survives_a_torn_last_line(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    a, b = tiny_kb.docs[0].id, tiny_kb.docs[1].id
    pipe.parameterize([a], progress=False)
    with open(tiny_kb.root / "manifest.jsonl", "a") as f:
        f.write('{"id": "' + b + '", "status": "do')  # the process died mid-write
    kb2 = KnowledgeBase.open(tiny_kb.root)
    assert kb2.is_done(a) and kb2.status(b) == "pending"
    Pipeline(kb2, tiny_lm).parameterize([b], progress=False)
    kb3 = KnowledgeBase.open(tiny_kb.root)
    assert kb3.is_done(a) and kb3.is_done(b)
    assert all(json.loads(line) for line in (tiny_kb.root / "manifest.jsonl").read_text().splitlines())


def test_stale_temporary_folders_are_removed(tiny_kb, tiny_lm):
    dead = tiny_kb.root / "docs" / ".x-123.tmp999999999"
    live = tiny_kb.root / "docs" / f".y-456.tmp{os.getpid()}"
    dead.mkdir()
    live.mkdir()
    Pipeline(tiny_kb, tiny_lm).parameterize([tiny_kb.docs[0].id], progress=False)
    assert not dead.exists() and live.exists(), "only a dead process's leftovers may go"


def test_status_reports_failures_with_reasons(tiny_kb, tiny_lm, monkeypatch):
    pipe = Pipeline(tiny_kb, tiny_lm)
    bad = tiny_kb.docs[1].id
    real = pipe._augment_many

    def augment_many(docs):
        if any(d.id == bad for d in docs):
            raise ValueError("no usable sentence")
        return real(docs)

    monkeypatch.setattr(pipe, "_augment_many", augment_many)
    s = pipe.parameterize([d.id for d in tiny_kb.docs[:3]], progress=False)
    assert s["done"] == 2 and list(s["failed"]) == [bad]
    st = KnowledgeBase.open(tiny_kb.root).summary()
    assert (st["parameterized"], st["failed"], st["pending"]) == (2, 1, len(tiny_kb.docs) - 3)
    assert "no usable sentence" in st["failures"][bad]


# ---------------------------------------------------------------- a real job, killed with SIGKILL
WORDS = "amber basalt cobalt dune ember fjord garnet harbor indigo juniper kestrel lantern marble nectar".split()


def _synthetic_corpus(path: Path, n: int) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}{i}"
        rows.append({"id": f"doc-{i:02d}", "title": name,
                     "text": f"{name} was founded in {1800 + i} by {rng.choice(WORDS).title()} Vell. "
                             f"Its population is {1000 + 37 * i}. It lies on the {rng.choice(WORDS).title()} River."})
    return write_jsonl(path, rows)


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "prag.cli", *map(str, args)]


def _manifest_lines(kb_dir: Path) -> int:
    path = kb_dir / "manifest.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _check_consistent(kb_dir: Path) -> dict[str, int]:
    """Every 'done' record names an adapter whose bytes match its checksum; returns done records per id."""
    done: dict[str, int] = {}
    kb = KnowledgeBase.open(kb_dir)
    for line in (kb_dir / "manifest.jsonl").read_text().splitlines() if (kb_dir / "manifest.jsonl").exists() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec["status"] == "done":
            done[rec["id"]] = done.get(rec["id"], 0) + 1
    for i in done:
        if kb.is_done(i):
            assert sha256_file(kb.doc_dir(i) / ADAPTER_FILE) == kb._manifest[i]["sha256"], f"corrupt adapter {i}"
    return done


def test_sigkill_and_resume_leaves_every_document_done_once(tmp_path, tiny_model_dir):
    n = 40
    corpus = _synthetic_corpus(tmp_path / "corpus.jsonl", n)
    conf = tmp_path / "conf.toml"
    conf.write_text("[lora]\nepochs = 6\nbatch_docs = 2\nmax_seq_len = 160\n")  # ~0.4 s per document
    kb = tmp_path / "kb"
    subprocess.run(_cli("index", "--corpus", corpus, "--kb", kb, "--model", tiny_model_dir, "--config", conf),
                   check=True, capture_output=True)
    rng = random.Random(1234)
    kills, progress = 0, []
    for _ in range(8):
        before = _manifest_lines(kb)
        proc = subprocess.Popen(_cli("parameterize", "--kb", kb), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60  # wait for the job to finish something (start-up speed varies), then kill it
        while _manifest_lines(kb) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))  # at a random point of the next batch: training, writing or appending
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        done = _check_consistent(kb)
        assert all(c == 1 for c in done.values()), done
        progress.append(len(done))
        if len(done) == n:
            break
    assert kills >= 5, f"only {kills} kills happened before the job finished: make the job longer"
    res = subprocess.run(_cli("parameterize", "--kb", kb), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    done = _check_consistent(kb)
    assert sorted(done) == [f"doc-{i:02d}" for i in range(n)] and set(done.values()) == {1}, done
    status = json.loads(subprocess.run(_cli("status", "--kb", kb, "--json"), capture_output=True, text=True,
                                       check=True).stdout)
    assert (status["parameterized"], status["pending"], status["failed"]) == (n, 0, 0)
    assert not [p for p in (kb / "docs").iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert progress == sorted(progress) and progress[-1] > 0, f"documents done after each kill: {progress}"


def test_parameterize_on_a_local_ray_instance(tmp_path, tiny_model_dir, tiny_lm):
    from prag.config import default_config

    corpus = _synthetic_corpus(tmp_path / "corpus.jsonl", 10)
    cfg = default_config(str(tiny_model_dir))
    cfg.lora.epochs, cfg.lora.batch_docs, cfg.lora.max_seq_len = 2, 3, 160
    kb = KnowledgeBase.create(tmp_path / "kb", corpus, cfg)
    s = Pipeline(kb).parameterize(ray="auto", workers=2, progress=False)  # the driver loads no model
    assert s["done"] == 10 and not s["failed"], s
    assert kb.summary()["parameterized"] == 10, "the driver's kb must see what the workers wrote"
    done = _check_consistent(kb.root)
    assert sorted(done) == [f"doc-{i:02d}" for i in range(10)] and set(done.values()) == {1}
    # Ray workers compute what a local job computes.
    local = KnowledgeBase.create(tmp_path / "local", corpus, cfg)
    Pipeline(local, tiny_lm).parameterize(progress=False)
    for d in kb.docs:
        assert _max_diff(kb.load_adapter(d.id), local.load_adapter(d.id)) < 1e-4


def test_chunked_output_loss_matches_the_full_logits():
    """The fused output layer + cross-entropy (chunks of 3 tokens) gives the full-logits loss and gradient."""
    from prag.encode import _LinearCrossEntropy

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

    from prag.encode import _decoder_and_head

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
    from prag.encode import sequence_losses

    seen = []
    handle = tiny_lm.model.lm_head.register_forward_hook(lambda m, a, out: seen.append(1))
    try:
        ids = torch.randint(3, 20, (2, 6))
        sequence_losses(tiny_lm.model, ids, torch.ones_like(ids), torch.tensor([6, 4]))
    finally:
        handle.remove()
    assert seen


def test_kb_refuses_adapters_of_another_recipe(tiny_kb, tiny_lm, tmp_path):
    """Adapters record their recipe; a kb never mixes them: a warm-up retrained in place, or kb.toml changed,
    makes further encoding an error."""
    from prag.corpus import split, load_questions

    pipe = Pipeline(tiny_kb, tiny_lm)
    warm = tmp_path / "warm"
    pipe.warmup(split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:3], warm, lr=1e-3, epochs=1)
    tiny_kb.config.lora.init_from = str(warm)
    pipe.parameterize([tiny_kb.docs[0].id], progress=False)
    assert len(tiny_kb.recipes()) == 1
    pipe.parameterize([tiny_kb.docs[1].id], progress=False)  # the same recipe: fine
    pipe.warmup(split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:3], warm, lr=3e-3, epochs=1)
    with pytest.raises(PragError, match="other encoding settings"):
        pipe.parameterize([tiny_kb.docs[2].id], progress=False)
    assert not tiny_kb.is_done(tiny_kb.docs[2].id)


def test_parameterize_options_become_the_kbs_settings(tiny_kb, tiny_lm, monkeypatch):
    """--train-dtype on a kb without adapters rewrites kb.toml (so it keeps describing the adapters); on a kb
    that holds adapters made otherwise it is refused."""
    from typer.testing import CliRunner

    import prag.cli as cli
    from prag.cli import app
    from prag.config import PragConfig

    monkeypatch.setattr(cli, "_pipeline", lambda kb_dir: Pipeline(KnowledgeBase.open(kb_dir), tiny_lm))
    first = tiny_kb.docs[0].id
    r = CliRunner().invoke(app, ["parameterize", "--kb", str(tiny_kb.root), "--ids", first, "--train-dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert PragConfig.load_toml(tiny_kb.root / "kb.toml").lora.train_dtype == "bfloat16"
    r = CliRunner().invoke(app, ["parameterize", "--kb", str(tiny_kb.root), "--ids", tiny_kb.docs[1].id,
                                 "--train-dtype", "float32"])
    assert r.exit_code != 0 and "need a new --kb" in str(r.exception or r.output)
    assert PragConfig.load_toml(tiny_kb.root / "kb.toml").lora.train_dtype == "bfloat16"
