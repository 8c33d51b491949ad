"""Generation backends: who runs the model for a planned question (`generation.backend`).

    transformers  the PyTorch model, the Update as forward hooks (update.Injector); exposes attention
    llamacpp      llama.cpp through llama-cpp-python (llamacpp.py): each document's adapter as a llama.cpp LoRA

A backend is a class registered with `@BACKENDS.register("name")`: a classmethod `check(config)` that rejects what
it cannot run before any model is loaded, `__init__(pipe)`, and the methods of `Backend`. Every backend answers
the same planned prompt with the same adapters and weights under a lock, so concurrent requests never see each
other's documents. A backend that also has `answer_rows` answers many planned questions as a continuous batch,
each row with its own documents' adapters (transformers); without it, they are answered one at a time
(llamacpp).
"""
from __future__ import annotations

import threading
from typing import Protocol

from .errors import PragError
from .generate import Row, generate_continuous, generate_scored, take_from
from .llamacpp import LlamaCppBackend, dequantized_gguf, generate_text, require_llama_cpp
from .models import cache_dir, is_gguf, resolve_gguf
from .registry import Registry
from .update import MERGES


class Backend(Protocol):
    attention: bool  # exposes attention weights (DRAGIN needs them)

    def start(self) -> None:
        """Load what answering needs, so the first timed question does not pay for it."""

    def device(self) -> str:
        """Where answers are computed, for result files: cpu, cuda:0, llamacpp..."""

    def context_tokens(self) -> int:
        """How many tokens the model reads at most: prompt and generated answer together."""

    def answer(self, prompt: str, hits: list, adapters: list, weights: list[float], max_new_tokens: int,
               streamer=None, cancel: threading.Event | None = None) -> tuple[str, float]:
        """Greedy answer to `prompt` with the hits' `adapters` applied at `weights`: (text, Update seconds). It
        stops early once `cancel` is set."""

    def scored(self, prompt: str, max_new_tokens: int) -> tuple[list[int], list]:
        """Greedy generation on the bare base model: the generated ids and each one's logits row (FLARE, DRAGIN)."""


BACKENDS: Registry[type] = Registry("backend")


@BACKENDS.register("transformers")
class TransformersBackend:
    attention = True

    def __init__(self, pipe):
        self.pipe = pipe

    @classmethod
    def check(cls, config) -> None:
        pass

    def start(self) -> None:
        self.pipe.lm

    def device(self) -> str:
        return str(self.pipe.lm.model.device)

    def context_tokens(self) -> int:
        return int(getattr(self.pipe.lm.model.config, "max_position_embeddings", None) or 2048)

    def answer(self, prompt, hits, adapters, weights, max_new_tokens, streamer=None, cancel=None):
        out = []
        self.answer_rows(take_from([Row(prompt, max_new_tokens, adapters, weights, streamer, cancel,
                                        lambda *res: out.append(res))]), 1)
        text, update_s = out[0]
        if isinstance(text, Exception):
            raise text
        return text, update_s

    def answer_rows(self, take, max_rows, min_join=1):
        """A continuous batch (`generate_continuous`): rows from `take` join and leave between decode steps, each
        with its own adapters at its own weights through the Injector's per-row factors. The model is loaded once
        a first row is ready (a request refused in planning before it needs the model does not load it); rows
        taken then hear of any failure to load it."""
        first = take(max_rows, True)
        if not first:
            return
        try:
            lm, injector = self.pipe.lm, self.pipe.injector
        except Exception as e:
            for r in first:
                r.done(e, 0.0)
            raise
        waiting = [first]
        generate_continuous(lm, injector, lambda n, idle: waiting.pop() if waiting else take(n, idle), max_rows,
                            min_join=min_join)

    def scored(self, prompt, max_new_tokens):
        with self.pipe.injector.lock:  # the bare base model
            return generate_scored(self.pipe.lm, prompt, max_new_tokens)


LLAMACPP_WEIGHTS = ("dequantized", "original")


@BACKENDS.register("llamacpp")
class LlamaCppGeneration:
    """The model's GGUF in llama.cpp, dequantized to float32 by default so it computes with the transformers
    backend's weights (`generation.llamacpp_weights`)."""
    attention = False

    def __init__(self, pipe):
        self.check(pipe.config)
        self.pipe = pipe
        self._engine: LlamaCppBackend | None = None

    @classmethod
    def check(cls, config) -> None:
        gcfg = config.generation
        if gcfg.llamacpp_weights not in LLAMACPP_WEIGHTS:
            raise PragError(f"unknown llamacpp_weights {gcfg.llamacpp_weights!r}: use {' or '.join(LLAMACPP_WEIGHTS)}")
        if MERGES.get(gcfg.merge).factors is not None:
            raise PragError(f"merge {gcfg.merge!r} rewrites the adapters' factors; the llamacpp backend applies each "
                            "document's own adapter file: use --backend transformers")
        require_llama_cpp()
        if not is_gguf(config.model):
            raise PragError(f"model {config.model!r} is not a GGUF model: the llamacpp backend needs one")

    @property
    def engine(self) -> LlamaCppBackend:
        if self._engine is None:
            gcfg = self.pipe.config.generation
            gguf = resolve_gguf(self.pipe.config.model)
            path = dequantized_gguf(gguf, cache_dir()) if gcfg.llamacpp_weights == "dequantized" else gguf
            self._engine = LlamaCppBackend(path, gcfg.llamacpp_ctx)
        return self._engine

    def start(self) -> None:
        self.engine

    def device(self) -> str:
        return "llamacpp"

    def context_tokens(self) -> int:
        return self.pipe.config.generation.llamacpp_ctx

    def answer(self, prompt, hits, adapters, weights, max_new_tokens, streamer=None, cancel=None):
        ggufs = [(self.pipe.kb.adapter_gguf(h.doc.id), w) for h, w in zip(hits, weights)] if adapters else []
        raw, _, update_s = generate_text(self.engine, self.pipe.lm, prompt, max_new_tokens, ggufs, streamer=streamer,
                                         cancel=cancel)
        return raw, update_s

    def scored(self, prompt, max_new_tokens):
        rows: list = []
        _, ids, _ = generate_text(self.engine, self.pipe.lm, prompt, max_new_tokens, scores=rows)
        return ids, rows
