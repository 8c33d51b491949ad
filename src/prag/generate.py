"""Generation: greedy decoding with the base model (plus whatever adapters the Injector has applied), the
question prompt shared by every method, and answer extraction."""
from __future__ import annotations

import re
import threading

import torch

from .corpus import Document
from .models import INSTRUCTION, LoadedModel


def question_message(question: str, docs: list[Document] | None = None) -> str:
    """The user message for every method: the bare question, or the question after in-context documents."""
    parts = [INSTRUCTION]
    if docs:
        ctx = "\n".join(f"[{i}] {d.as_text()}" for i, d in enumerate(docs, 1))
        parts.append(f"Context:\n{ctx}")
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)


def greedy_kwargs(lm: LoadedModel, stop_at_newline: bool = True) -> dict:
    """Settings every greedy `model.generate` call shares: pad and end tokens, and for base models (no chat
    template) a stop at the first line break, where their answer ends."""
    tok = lm.tokenizer
    kw = {"do_sample": False, "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
          "eos_token_id": [tok.eos_token_id] if tok.eos_token_id is not None else None}
    if stop_at_newline and not lm.prompter.chat:
        kw.update(stop_strings=["\n"], tokenizer=tok)
    return kw


class Cancelled:
    """A stopping criterion for `model.generate`: stop every row once `event` is set (the client went away, the
    server is shutting down)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def generate(lm: LoadedModel, prompt: str, max_new_tokens: int = 24, stop_at_newline: bool = True,
             streamer=None, cancel: threading.Event | None = None) -> str:
    """Greedy continuation of `prompt` (already formatted), special tokens removed; it stops early once `cancel`
    is set."""
    tok = lm.tokenizer
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(lm.model.device)
    kw = greedy_kwargs(lm, stop_at_newline)
    if cancel is not None:
        kw["stopping_criteria"] = [Cancelled(cancel)]
    out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, streamer=streamer, **kw)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


@torch.inference_mode()
def generate_scored(lm: LoadedModel, prompt: str, max_new_tokens: int) -> tuple[list[int], torch.Tensor]:
    """Greedy continuation of `prompt`: the generated ids and the logits row that produced each."""
    tok = lm.tokenizer
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(lm.model.device)
    out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, output_logits=True, return_dict_in_generate=True,
                            **greedy_kwargs(lm))
    gen = out.sequences[0, enc["input_ids"].shape[1]:].tolist()
    return gen, torch.stack([lg[0] for lg in out.logits]).cpu().float()  # one device-to-host copy, not one per token


_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:short\s+)?answer\s*(?:is)?\s*[:\-]?\s*", re.I)


def extract_answer(text: str) -> str:
    """The answer part of a generation: the first non-empty line, without an 'Answer:' prefix or final period."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines and not lines[0].lower().startswith("question:") else ""
    line = _PREFIX.sub("", line)
    return line.rstrip(" .").strip()
