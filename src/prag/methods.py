"""Methods as data: what each way of answering puts in the prompt, whether it applies the documents' adapters,
and whether it retrieves during generation. The pipeline reads these flags; it never tests a method's name.

    closed    the bare question
    rag       the retrieved documents in context (standard RAG)
    da-rag    the documents' augmentation (rewrites and QA pairs) in context (the paper's §4.2 baseline)
    flare     FLARE: retrieval triggered by low-probability look-ahead tokens (dynamic.py)
    dragin    DRAGIN: retrieval triggered by uncertain, attended tokens (dynamic.py)
    prag      P-RAG: the documents' adapters merged into the FFN, the bare question
    combine   P-RAG and the documents in context
    rag-cot, prag-cot, combine-cot
              the same, with worked examples that reason first (one line: each fact used, then "So the answer
              is: ..."; generate.REASONING_SHOTS) in place of the kb's, and up to generation.reasoning_tokens
              (a request's own max_tokens bounds the reasoning line as well)
    prag-chain, combine-chain, rag-chain
              iterative retrieval for multi-hop questions: hop 1's answer joins the question as hop 2's query
              and the new document joins the chain (its adapter beside the first's, for the parametric ones)

A new method is one `METHODS.register(name, Method(...))`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

from . import dynamic
from .generate import extract_answer, extract_reasoned
from .registry import Registry


@dataclass(frozen=True)
class Method:
    context: str = "none"   # what goes in the prompt before the question: none | documents | augmented
    adapters: bool = False  # apply the retrieved documents' adapters (the Update)
    dynamic: Callable | None = None  # retrieves while generating: (pipe, question, top_k, max_new) -> (raw, hits, rounds)
    needs_attention: bool = False    # reads attention weights (a backend must expose them)
    reasoning: bool = False          # reasons before answering (generate.REASONING_SHOTS); the answer follows it

    def extract(self, raw: str) -> str:
        """The answer in a generation: after the reasoning for a method that reasons, else its first line."""
        return extract_reasoned(raw) if self.reasoning else extract_answer(raw)

    @property
    def retrieves(self) -> bool:
        """Whether the method retrieves before generating (and so accepts given document ids)."""
        return self.dynamic is None and (self.context != "none" or self.adapters)


METHODS: Registry[Method] = Registry("method")
METHODS.register("closed", Method())
METHODS.register("rag", Method(context="documents"))
METHODS.register("da-rag", Method(context="augmented"))
METHODS.register("flare", Method(dynamic=dynamic.flare))
METHODS.register("dragin", Method(dynamic=dynamic.dragin, needs_attention=True))
METHODS.register("prag", Method(adapters=True))
METHODS.register("combine", Method(context="documents", adapters=True))
for _base in ("prag", "combine", "rag"):
    METHODS.register(f"{_base}-cot", replace(METHODS.get(_base), reasoning=True))
    METHODS.register(f"{_base}-chain", Method(dynamic=partial(dynamic.chain, base=_base),
                                              adapters=METHODS.get(_base).adapters))


def parametric(methods: list[str]) -> list[str]:
    """The methods among `methods` that apply adapters (their documents must be parameterized)."""
    return [m for m in methods if METHODS.get(m).adapters]
