"""Generation: greedy decoding with the base model (plus whatever adapters the Injector has applied), the
question prompt shared by every method (and the reasoning methods' worked examples), and answer extraction.

Two batched paths: `generate_batch` runs a fixed set of prompts to the end through `model.generate` (one prompt
with `generate`; also `prag bench batch`'s baseline); `generate_continuous`, what answers questions, is a
continuous batch, our own greedy loop over a KV cache in which rows join and leave
between decode steps, each with its own adapters (the Injector's per-row factors) and its own limit, stream and
cancel: a finished row's place goes to the next waiting prompt at once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .corpus import Document
from .models import INSTRUCTION, LoadedModel, sync

log = logging.getLogger(__name__)


def question_message(question: str, docs: list[Document] | None = None) -> str:
    """The user message for every method: the bare question, or the question after in-context documents."""
    parts = [INSTRUCTION]
    if docs:
        ctx = "\n".join(f"[{i}] {d.as_text()}" for i, d in enumerate(docs, 1))
        parts.append(f"Context:\n{ctx}")
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)


# Plain greedy decoding whatever the model's generation_config says: `generate_continuous` implements no logits
# processors, and `model.generate` must choose the same tokens.
PLAIN_GREEDY = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, "min_length": 0,
                "suppress_tokens": None, "begin_suppress_tokens": None, "bad_words_ids": None}


def greedy_kwargs(lm: LoadedModel, stop_at_newline: bool = True) -> dict:
    """Settings every greedy `model.generate` call shares: pad and end tokens (`LoadedModel.end_ids`: any special
    token ends an answer), no logits processors (as `PLAIN_GREEDY`), and for base models (no chat template) a stop
    at the first line break, where their answer ends."""
    tok = lm.tokenizer
    kw = {"do_sample": False, "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
          "eos_token_id": sorted(lm.end_ids) or None,
          **PLAIN_GREEDY}
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


@dataclass(eq=False)
class Row:
    """One prompt of a continuous batch. `done(text, update_seconds)` is called once when it ends (its end token,
    a line break for base models, its own `max_new_tokens`, or `cancel`), with its text and its share of the
    seconds the Update (installing the rows' factors) took while it ran; `done(error, 0.0)` if the batch failed
    (its stream is then left to the caller to end). `admit()` is called under the Injector's lock before the
    row's prefill and before every decode step: an exception it returns (the row's documents were deleted) ends
    the row with that exception."""
    prompt: str
    max_new_tokens: int
    adapters: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    streamer: object = None
    cancel: threading.Event | None = None
    done: Callable = lambda text, update_s: None
    admit: Callable[[], Exception | None] = lambda: None
    meta: object = None  # the caller's (the pipeline's plan)
    ids: list[int] = field(default_factory=list)  # generated so far
    update_s: float = 0.0
    finished: bool = False


_NEWLINE_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def newline_ids(tokenizer) -> frozenset[int]:
    """The token ids whose text holds a line break: a base model's answer ends with the first of them (what
    `model.generate`'s stop string "\n" does). Computed once per tokenizer."""
    ids = _NEWLINE_IDS.get(tokenizer)
    if ids is None:
        ids = frozenset(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))
        _NEWLINE_IDS[tokenizer] = ids
    return ids


def _join_caches(cache, mask: torch.Tensor | None, new_cache, new_mask: torch.Tensor):
    """The running batch's KV cache and mask with the new rows' appended: both left-padded to the wider."""
    if cache is None:
        return new_cache, new_mask
    width = max(mask.shape[1], new_mask.shape[1])
    for old, new in zip(cache.layers, new_cache.layers, strict=True):
        old.keys = torch.cat([F.pad(old.keys, (0, 0, width - old.keys.shape[-2], 0)),
                              F.pad(new.keys, (0, 0, width - new.keys.shape[-2], 0))])
        old.values = torch.cat([F.pad(old.values, (0, 0, width - old.values.shape[-2], 0)),
                                F.pad(new.values, (0, 0, width - new.values.shape[-2], 0))])
    return cache, torch.cat([F.pad(mask, (width - mask.shape[1], 0)), F.pad(new_mask, (width - new_mask.shape[1], 0))])


def _keep_rows(cache, mask: torch.Tensor, last: torch.Tensor, keep: list[int]):
    """The cache, mask and last tokens of the rows `keep` only, without the leading columns no remaining row uses;
    (None, None, None) when no row remains."""
    if not keep:
        return None, None, None
    with torch.inference_mode():
        idx = torch.tensor(keep, device=mask.device)
        mask = mask.index_select(0, idx)
        start = int((mask.sum(0) > 0).nonzero()[0])
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, start:]
            layer.values = layer.values.index_select(0, idx)[:, :, start:]
        return cache, mask[:, start:], last.index_select(0, idx)


def take_from(items: list) -> Callable[[int, bool], list]:
    """A `take` for `generate_continuous` (or `Pipeline.answer_jobs`) over a fixed list: up to n items per call,
    in order, until none are left."""
    items = list(items)

    def take(n: int, idle: bool) -> list:
        got = items[:n]
        del items[:n]
        return got
    return take


def generate_continuous(lm: LoadedModel, injector, take: Callable[[int, bool], list[Row]], max_rows: int,
                        stop_at_newline: bool = True, min_join: int = 1) -> None:
    """Greedy decoding of a stream of prompts, at most `max_rows` at a time. Between decode steps, finished rows
    leave (their `done` is called) and `take(free, idle)` is asked for up to `free` new rows (`idle`: no row is
    running, so the caller may wait for one); new rows are prefilled together, left-padded, and join the running
    batch's KV cache. The loop ends when `take` returns nothing while no row runs. Each forward pass holds the
    Injector's lock and installs the running rows' adapters (per-row factors), so no row sees another's documents
    and other users of the model (training) run between steps. Row i's text is the one `generate` gives its
    prompt alone, up to float rounding in the padded batch's kernels.

    `min_join`: while rows run, new ones are taken only once that many places are free. Each join is a forward pass
    of its own, which on a CPU costs about as much as a decode step of the whole batch; `min_join` = `max_rows`
    refills only when the batch is empty (static batches whose finished rows still leave)."""
    if not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, not {max_rows!r}")
    if not isinstance(min_join, int) or not 1 <= min_join <= max_rows:
        raise ValueError(f"min_join must be an integer from 1 to max_rows ({max_rows}), not {min_join!r}")
    from transformers import DynamicCache  # here: importing prag must not import transformers

    tok, model = lm.tokenizer, lm.model
    kw = greedy_kwargs(lm, stop_at_newline)
    pad, ends = kw["pad_token_id"], frozenset(kw["eos_token_id"] or [])
    stops = ends | (newline_ids(tok) if "stop_strings" in kw else frozenset())
    device = model.device
    running: list[Row] = []
    owed: list[Row] = []  # taken and not yet told how they ended: on any failure, each hears once
    cache = mask = last = None
    installed = None  # (factors, Injector.version) as we installed them for `running`; None after a change

    def step(row: Row, token: int) -> None:
        row.ids.append(token)
        if row.streamer is not None and len(row.ids) <= row.max_new_tokens:
            row.streamer.put(torch.tensor([token]))
        row.finished = (token in stops or len(row.ids) >= row.max_new_tokens
                        or (row.cancel is not None and row.cancel.is_set()))

    def install(rows: list[Row]) -> None:
        t0 = time.perf_counter()
        injector.apply_rows([(r.adapters, r.weights) for r in rows])
        sync(injector.device)  # the Update's queued GPU work counts as Update, not generation
        share = (time.perf_counter() - t0) / len(rows)
        for r in rows:
            r.update_s += share

    def settle(row: Row, result) -> None:
        if row.streamer is not None and not isinstance(result, Exception):  # an error's stream: the caller's
            row.streamer.end()
        owed.remove(row)
        try:
            row.done(result, 0.0 if isinstance(result, Exception) else row.update_s)
        except Exception:  # noqa: BLE001 - one caller's failing callback must not cost the other rows theirs
            log.exception("a row's done callback failed")

    try:
        while True:
            free = max_rows - len(running)
            new = take(free, not running) if free >= (min_join if running else 1) else []
            owed += new
            if not new and not running:
                return
            ended: list[tuple[Row, object]] = []
            with injector.lock:  # the factors are installed outside inference mode: adapters cache their packing
                # A document deleted since its row joined (deletion takes this lock) ends that row here: no answer
                # goes on from a deleted document's adapter or text.
                gone = {id(r): err for r in running + new if (err := r.admit()) is not None}
                ended += [(r, gone[id(r)]) for r in new if id(r) in gone]
                new = [r for r in new if id(r) not in gone]
                if any(id(r) in gone for r in running):
                    keep = [i for i, r in enumerate(running) if id(r) not in gone]
                    ended += [(r, gone[id(r)]) for r in running if id(r) in gone]
                    running, installed = [running[i] for i in keep], None
                    cache, mask, last = _keep_rows(cache, mask, last, keep)
                try:
                    if new:  # prefill the new rows together; they join with their first token
                        ids = [tok(r.prompt, add_special_tokens=False)["input_ids"] for r in new]
                        width = max(map(len, ids))
                        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
                        new_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
                        install(new)
                        # alone in the batch, the new rows' factors are the batch's: the next step reuses them
                        installed = None if running else (injector.active, injector.version)
                        with torch.inference_mode():
                            new_cache = DynamicCache()
                            logits = model(input_ids=input_ids, attention_mask=new_mask,
                                           position_ids=(new_mask.cumsum(-1) - 1).masked_fill(new_mask == 0, 1),
                                           cache=new_cache, use_cache=True, logits_to_keep=1).logits[:, -1]
                            first = logits.argmax(-1)
                            cache, mask = _join_caches(cache, mask, new_cache, new_mask)
                            last = first if last is None else torch.cat([last, first])
                        running, new = running + new, []
                        for i, r in enumerate(running[len(running) - len(first):]):
                            if r.streamer is not None:
                                r.streamer.put(input_ids[i:i + 1])
                            step(r, int(first[i]))
                    elif running:  # one decode step for every running row
                        if installed is not None and injector.version == installed[1]:
                            injector.active = installed[0]  # nobody installed anything since our last step
                        else:
                            install(running)
                            installed = (injector.active, injector.version)
                        with torch.inference_mode():
                            mask = F.pad(mask, (0, 1), value=1)
                            logits = model(input_ids=last[:, None], attention_mask=mask,
                                           position_ids=mask.sum(-1, keepdim=True) - 1, cache=cache,
                                           use_cache=True).logits[:, -1]
                            last = logits.argmax(-1)
                        for r, t in zip(running, last.tolist()):
                            step(r, t)
                finally:
                    injector.clear()  # between steps the model is the base model, for whoever takes the lock next
                keep = [i for i, r in enumerate(running) if not r.finished]
                if len(keep) < len(running):
                    ended += [(r, tok.decode(r.ids[:r.max_new_tokens], skip_special_tokens=True))
                              for r in running if r.finished]
                    running, installed = [running[i] for i in keep], None
                    cache, mask, last = _keep_rows(cache, mask, last, keep)
            for r, result in ended:
                settle(r, result)
    except Exception as e:
        for r in list(owed):
            settle(r, tok.decode(r.ids[:r.max_new_tokens], skip_special_tokens=True) if r.finished else e)
        raise


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
_REASONED = re.compile(r"answer is\s*:?\s*", re.I)

# The worked examples of the methods that reason (rag-cot, prag-cot, combine-cot): invented questions whose answer
# line states each fact it uses, then "So the answer is: ...". Two bridge questions (the second document's subject
# is named in the first), one comparison; one line each (a base model's generation stops at a line break). With documents
# in context each example shows its own; without (prag-cot), only the question and the reasoning. Every name is
# invented and occurs in none of the bundled or benchmark corpora (test_generate.py checks the fictional ones).
_D = Document
REASONING_SHOTS: list[tuple[str, list[Document], str]] = [
    ("Where was the director of film The Amber Causeway born?",
     [_D("shot-1", "The Amber Causeway", "The Amber Causeway is a 1958 drama film directed by Ilse Marrow."),
      _D("shot-2", "Ilse Marrow", "Ilse Marrow (1911-1979) was a film director, born in Vardenholt. She worked in "
                                  "Brisk Harbour.")],
     "The Amber Causeway was directed by Ilse Marrow. Ilse Marrow was born in Vardenholt. So the answer is: "
     "Vardenholt"),
    ("Who is the mother of the founder of Tolland Weirs?",
     [_D("shot-3", "Osric Vayle", "Osric Vayle was an industrialist, the son of Hedda Vayle and the shipwright Jory "
                                  "Vayle."),
      _D("shot-4", "Tolland Weirs", "Tolland Weirs is a textile company founded in 1882 by Osric Vayle in Elmsworth "
                                    "Quay.")],
     "Tolland Weirs was founded by Osric Vayle. The mother of Osric Vayle is Hedda Vayle. So the answer is: Hedda "
     "Vayle"),
    ("Which film came out first, Saltgrass Hollow or The Pewter Lamp?",
     [_D("shot-5", "Saltgrass Hollow", "Saltgrass Hollow is a 1961 film about a fishing village."),
      _D("shot-6", "The Pewter Lamp", "The Pewter Lamp is a 1954 comedy film set in Corbin Lade.")],
     "Saltgrass Hollow came out in 1961. The Pewter Lamp came out in 1954. So the answer is: The Pewter Lamp"),
]


def reasoning_shots(with_documents: bool) -> list[tuple[str, str]]:
    """REASONING_SHOTS as (user message, answer) worked examples, with their documents in context or without."""
    return [(question_message(q, docs if with_documents else None), a) for q, docs, a in REASONING_SHOTS]


REASONED_RULE = 2  # how extract_reasoned reads an answer; 1 read the first line only


def reasoning_shots_key() -> str:
    """A digest of REASONING_SHOTS and REASONED_RULE, which eval logs record: answers made with other examples, or
    read by another rule, are never reused."""
    text = json.dumps([REASONED_RULE] + [(q, [d.as_text() for d in docs], a) for q, docs, a in REASONING_SHOTS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def extract_reasoned(text: str) -> str:
    """The answer of a reasoning line: what follows the last "answer is" that something follows (to the end of
    that line, or the next line when it ends there; a chat model's generation need not stop at a line break), in
    the text before any echoed "Question:"; a text without one is read as `extract_answer` reads any answer."""
    body = re.split(r"\n\s*Question:", text, maxsplit=1)[0]
    ends = [m.end() for m in _REASONED.finditer(body) if body[m.end():].strip()]
    if not ends:
        return extract_answer(text)
    return body[ends[-1]:].strip().splitlines()[0].rstrip(" .").strip()


def extract_answer(text: str) -> str:
    """The answer part of a generation: the first non-empty line, without an 'Answer:' prefix or final period."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines and not lines[0].lower().startswith("question:") else ""
    line = _PREFIX.sub("", line)
    return line.rstrip(" .").strip()
