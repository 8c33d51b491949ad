"""Augmentation (paper §3.2.1): the `Augmenter` interface and its registry, n rewrites and m question-answer
pairs per document.

Augmenters (`augment.augmenter`): "rule" (deterministic rules only, rules.py), "reference" (QA pairs from a
JSONL file, rules elsewhere), "model" (a local LLM, batched) and "openai" (any OpenAI-compatible endpoint); the
last two are in llm_augment.py. Whatever writes them, every pair passes rules.py's grounding checks and rules fill
in what is missing. A new augmenter is a factory `(config, base_model) -> Augmenter` registered with
`@AUGMENTERS.register("name")`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

from .corpus import Document, read_jsonl
from .errors import PragError
from .llm_augment import LocalCompleter, ModelAugmenter, OpenAICompleter
from .models import LoadedModel, load_model
from .registry import Registry
from .rules import QA, Augmentation, complete, rule_rewrite


class Augmenter(Protocol):
    name: str
    needs_model: bool  # True: it runs a model, so it must not see a question's adapters (the pipeline locks)

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        """n rewrites and m QA pairs for each document."""


AugmenterFactory = Callable[..., Augmenter]  # (PragConfig, base_model: () -> LoadedModel) -> Augmenter
AUGMENTERS: Registry[AugmenterFactory] = Registry("augmenter")


class RuleAugmenter:
    name = "rule"
    needs_model = False

    def augment(self, doc: Document, n: int, m: int) -> Augmentation:
        return complete(doc, [], [], n, m, {"augmenter": self.name})

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        return [self.augment(d, n, m) for d in docs]


class ReferenceAugmenter:
    """QA pairs given in a JSONL file ({doc_id, qa: [{question, answer}]}, e.g. a dataset's
    augment-reference.jsonl written by a much larger model for the gold paragraphs), with rule rewrites.
    Documents the file does not cover get rule pairs; `notes["qa_source"]` says which."""
    name = "reference"
    needs_model = False

    def __init__(self, path: str | None):
        if not path:
            raise PragError("augmenter 'reference' needs augment.reference: a JSONL file of {doc_id, qa}")
        self.pairs: dict[str, list[QA]] = {}
        for n, row in read_jsonl(Path(path)):
            try:
                self.pairs[str(row["doc_id"])] = [QA(str(q["question"]), str(q["answer"]), "reference")
                                                  for q in row["qa"]]
            except (KeyError, TypeError):
                raise PragError(f"{path}: line {n}: expected {{doc_id, qa: [{{question, answer}}]}}") from None

    def augment(self, doc: Document, n: int, m: int) -> Augmentation:
        ref = self.pairs.get(doc.id)
        if ref is None:
            return complete(doc, [], [], n, m, {"augmenter": self.name, "qa_source": "rule"})
        rewrites = [rule_rewrite(doc, i) for i in range(n)]
        return Augmentation(rewrites, ref[:m], {"augmenter": self.name, "qa_source": "reference"})

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        return [self.augment(d, n, m) for d in docs]


AUGMENTERS.register("rule", lambda cfg, base_model: RuleAugmenter())
AUGMENTERS.register("reference", lambda cfg, base_model: ReferenceAugmenter(cfg.augment.reference))


@AUGMENTERS.register("model")
def _local_model(cfg, base_model: Callable[[], LoadedModel]) -> Augmenter:
    """The base model (augment.model unset) or another local model writes rewrites and questions."""
    acfg = cfg.augment
    lm = base_model() if acfg.model in (None, "", cfg.model) else load_model(acfg.model)
    return ModelAugmenter(LocalCompleter(lm, acfg.batch_size), acfg.max_new_tokens)


@AUGMENTERS.register("openai")
def _endpoint(cfg, base_model) -> Augmenter:
    """An OpenAI-compatible endpoint (augment.base_url) serving augment.model; its key from $augment.api_key_env."""
    acfg = cfg.augment
    completer = OpenAICompleter(acfg.base_url or "", acfg.model or "", os.environ.get(acfg.api_key_env),
                                acfg.concurrency)
    return ModelAugmenter(completer, acfg.max_new_tokens)


def build_augmenter(cfg, base_model: Callable[[], LoadedModel]) -> Augmenter:
    """The augmenter `cfg.augment.augmenter` names; `base_model` loads the base model if it needs one."""
    return AUGMENTERS.get(cfg.augment.augmenter)(cfg, base_model)


PARTS = ("both", "rewrite", "qa", "none")


def select_parts(aug: Augmentation, doc: Document, parts: str) -> Augmentation:
    """The augmentation restricted for the paper's §5.3 ablation: both (as is), rewrite (no QA pairs), qa (the
    original document instead of rewrites, plus the QA pairs), none (the original document only)."""
    if parts not in PARTS:
        raise PragError(f"unknown augment.parts {parts!r}: use {', '.join(PARTS)}")
    rewrites = aug.rewrites if parts in ("both", "rewrite") else [doc.as_text()]
    qa = aug.qa if parts in ("both", "qa") else []
    return Augmentation(rewrites, qa, {**aug.notes, "parts": parts})
