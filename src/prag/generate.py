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
    """A stopping criterion for `model.generate`: stop a row once its event is set (its client went away, the
    server is shutting down). One event per batch row; None for a row that cannot be cancelled."""

    def __init__(self, events: list[threading.Event | None]):
        self.events = events

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor([e is not None and e.is_set() for e in self.events], dtype=torch.bool,
                            device=input_ids.device)


class RowStreamers:
    """One streamer per batch row behind `model.generate`'s single streamer: the prompt, then each step's new token
    of row i goes to streamer i (None: that row is not streamed), up to that row's own token limit."""

    def __init__(self, streamers: list, limits: list[int]):
        self.streamers, self.limits, self.step = streamers, limits, -1  # the first put is the prompt

    def put(self, value: torch.Tensor) -> None:
        for i, s in enumerate(self.streamers):
            if s is not None and self.step < self.limits[i]:
                s.put(value[i:i + 1])
        self.step += 1

    def end(self) -> None:
        for s in self.streamers:
            if s is not None:
                s.end()


@torch.inference_mode()
def generate(lm: LoadedModel, prompt: str, max_new_tokens: int = 24, stop_at_newline: bool = True,
             streamer=None, cancel: threading.Event | None = None) -> str:
    """Greedy continuation of `prompt` (already formatted), special tokens removed; it stops early once `cancel`
    is set."""
    return generate_batch(lm, [prompt], [max_new_tokens], stop_at_newline, [streamer], [cancel])[0]


@torch.inference_mode()
def generate_batch(lm: LoadedModel, prompts: list[str], max_new_tokens: list[int], stop_at_newline: bool = True,
                   streamers: list | None = None, cancels: list[threading.Event | None] | None = None) -> list[str]:
    """Greedy continuations of several prompts in one batch: left-padded with an attention mask (positions
    follow the mask), a KV cache, each row stopping on its own (end token, line break) and cut to its own
    `max_new_tokens`. Row i's text is the one `generate` gives for prompts[i] alone, up to float rounding in
    the padded batch's kernels. Whatever per-row adapters the Injector holds apply row by row."""
    tok = lm.tokenizer
    kw = greedy_kwargs(lm, stop_at_newline)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    pad = kw["pad_token_id"]
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=lm.model.device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=lm.model.device)
    if cancels is not None and any(c is not None for c in cancels):
        kw["stopping_criteria"] = [Cancelled(cancels)]
    streamers = streamers if streamers is not None and any(s is not None for s in streamers) else None
    if streamers is not None:
        kw["streamer"] = streamers[0] if len(streamers) == 1 else RowStreamers(streamers, max_new_tokens)
    out = lm.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max(max_new_tokens), **kw)
    return [tok.decode(row[width:width + n], skip_special_tokens=True) for row, n in zip(out, max_new_tokens)]


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
