"""Shared fixtures: a tiny random-initialised Llama-style model with a character-level tokenizer, saved as a
local Hugging Face directory, so unit tests exercise the real code paths without any download."""
from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FICTIONAL = ROOT / "tests" / "data" / "fictional"

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_tiny_model_dir(path: Path, seed: int = 0, chat: bool = True) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for c in string.printable:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="</s>")
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_tiny_gemma_dir(path: Path, seed: int = 1) -> Path:
    """A tiny Gemma 3 (the other bundled model's family) with the tiny tokenizer: scaled embeddings, a sliding
    window of 8 tokens on three of its four layers, tied embeddings."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    d = make_tiny_model_dir(path)
    for f in [*d.glob("*.safetensors"), d / "config.json"]:
        f.unlink()
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=103, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=8,
                           layer_types=["sliding_attention"] * 3 + ["full_attention"], max_position_embeddings=8192,
                           bos_token_id=1, eos_token_id=2, pad_token_id=2)
    Gemma3ForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from prag.models import load_model

    return load_model(str(tiny_model_dir))


def small_config(model, max_seq_len: int = 256, max_new_tokens: int | None = None):
    """The default config on a test model, made fast: rule augmentation, 1 epoch, short sequences."""
    from prag.config import default_config

    cfg = default_config("smollm2")
    cfg.model = str(model)
    cfg.augment.augmenter = "rule"
    cfg.lora.epochs = 1
    cfg.lora.max_seq_len = max_seq_len
    cfg.generation.adapters = "trained"  # a missing adapter is trained in the request: these tests see adapters
    if max_new_tokens is not None:
        cfg.generation.max_new_tokens = max_new_tokens
    return cfg


@pytest.fixture()
def tiny_kb(tmp_path, tiny_model_dir):
    """A kb over the fictional test corpus whose model is the tiny one (fast rule augmentation, 1 epoch)."""
    from prag.store import KnowledgeBase

    return KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", small_config(tiny_model_dir))


def make_translator(kb, lm, out: Path, seed: int = 1) -> Path:
    """A random translator for the tiny model, saved as `prag translator train` saves one (B projections drawn
    from `seed`, so that its adapters are not zero)."""
    from prag.translate import TranslatorConfig, new_translator, save_translator
    from prag.update import Injector

    inj = Injector(lm.model, kb.config.lora.target_modules)
    tr = new_translator(lm, inj, TranslatorConfig(model=kb.config.model, read_layer=1))
    with torch.no_grad():
        for p in tr.proj_b:
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
    inj.remove()
    save_translator(tr, out)
    return out


@pytest.fixture()
def translator_dir(tiny_kb, tiny_lm, tmp_path):
    return make_translator(tiny_kb, tiny_lm, tmp_path / "translator")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- helpers shared by several test files
def max_diff(a, b) -> float:
    """The largest difference between two adapters' factors."""
    return max((a.factors[n][i] - b.factors[n][i]).abs().max().item() for n in a.factors for i in (0, 1))


def random_adapter(inj, seed: int, r: int = 2, alpha: float = 32.0):
    """A random (non-zero) adapter for every projection the injector `inj` hooks."""
    from prag.update import Adapter

    g = torch.Generator().manual_seed(seed)
    return Adapter({n: (torch.randn(r, i, generator=g) * 0.1, torch.randn(o, r, generator=g) * 0.1)
                    for n, (i, o) in inj.shapes().items()}, r, alpha)


def save_peft(adapter, folder, base_name="tiny"):
    """Write `adapter` in PEFT's layout (adapter_model.safetensors + adapter_config.json) into a new `folder`."""
    from safetensors.torch import save_file

    from prag.config import LoraConfig
    from prag.encode import adapter_config, adapter_tensors

    folder.mkdir(parents=True)
    cfg = LoraConfig(r=adapter.r, alpha=adapter.alpha)
    save_file(adapter_tensors(adapter), str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config(cfg, base_name)))


WORDS = "amber basalt cobalt dune ember fjord garnet harbor indigo juniper kestrel lantern marble nectar".split()


def synthetic_corpus(path: Path, n: int) -> Path:
    """A corpus of `n` short made-up documents doc-00, doc-01, ... (seeded, so the same every run)."""
    import random

    rng = random.Random(0)
    rows = []
    for i in range(n):
        name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}{i}"
        rows.append({"id": f"doc-{i:02d}", "title": name,
                     "text": f"{name} was founded in {1800 + i} by {rng.choice(WORDS).title()} Vell. "
                             f"Its population is {1000 + 37 * i}. It lies on the {rng.choice(WORDS).title()} River."})
    return write_jsonl(path, rows)


def check_consistent(kb_dir: Path) -> dict[str, int]:
    """Every 'done' record names an adapter whose bytes match its checksum; returns done records per id."""
    from prag.store import KnowledgeBase, sha256_file
    from prag.update import ADAPTER_FILE

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
