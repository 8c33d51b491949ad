"""The one config object: `PragConfig`, its sections and defaults, how it is built and where it is checked.

A run's config is built once, in this order: the model's defaults (`default_config`, from the model registry, or
the paper's preset) <- the kb's kb.toml (or a --config TOML) <- command-line flags (`override`), then `validate()`
checks every field, before any model is loaded. A knowledge base stores the config it was built with (kb.toml), and
`recipe_key` fingerprints the part its adapters depend on, so adapters are never mixed across settings.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from .atomic import atomic_write
from .augment import AUGMENTERS, PARTS
from .backends import BACKENDS
from .errors import PragError
from .models import check_model, model_defaults
from .retrieval import RETRIEVERS
from .update import ADAPTER_FILE, MERGES

# The §5.2 warm-up LoRA's own recipe (`prag warmup`), chosen on 2WQA-comparison dev: the per-document recipe run
# over a whole dev split diverged (docs/results.md, "Warm-up").
WARMUP_LR, WARMUP_EPOCHS = 1e-3, 1

DTYPES = ("float32", "float16", "bfloat16")
TRAIN_DTYPES = ("float32", "bfloat16")
LAYOUTS = ("separate", "concat")
LOSSES = ("all", "answer")
PRESETS = ("default", "paper")
ADAPTER_SOURCES = ("trained", "translated", "trained-else-translated")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise PragError(message)


def _choice(value: Any, choices: tuple, what: str) -> None:
    _need(value in choices, f"unknown {what} {value!r}: use {' or '.join(choices)}")


def _positive(value: float, what: str, zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if zero else value > 0)
    _need(ok, f"{what} must be a finite number {'>=' if zero else '>'} 0, not {value!r}")


def _at_least(value: int, low: int, what: str) -> None:
    _need(isinstance(value, int) and value >= low, f"{what} must be at least {low}, not {value!r}")


@dataclass
class LoraConfig:
    """LoRA shape and the encoding (training) recipe. Paper: r=2, alpha=32, lr 3e-4, 1 epoch, FFN only."""
    r: int = 2
    alpha: float = 32.0
    target_modules: list[str] = field(default_factory=lambda: ["gate_proj", "up_proj", "down_proj"])
    lr: float = 3e-4
    epochs: int = 1
    seed: int = 42
    init_std: float = 0.02          # std of A's random init (B starts at zero, as in PEFT)
    max_seq_len: int = 384
    weight_decay: float = 0.0
    layout: str = "separate"        # training sequences: "separate" (rewrite; q+a) or "concat" (paper: rewrite+q+a)
    loss: str = "all"               # which tokens train: "all" (the paper's plain LM loss) or "answer" (a QA
                                    # sequence counts only its answer; rewrites count in full)
    batch_docs: int = 16            # documents trained together (1 = the one-at-a-time loop); same adapters either way
    batch_tokens: int = 2048        # padded tokens per forward pass when training batched (bounds memory)
    adapter_dtype: str = "float32"  # how adapters are stored: float32 | float16 | bfloat16
    train_dtype: str = "float32"    # the base model's dtype while encoding: float32 | bfloat16 (faster on AMX CPUs)
    init_from: str | None = None    # a PEFT adapter folder every document's LoRA starts from (the paper's §5.2
                                    # warm-up, made by `prag warmup`); None = random init

    def validate(self) -> None:
        _at_least(self.r, 1, "lora.r")
        _positive(self.alpha, "lora.alpha")
        _need(isinstance(self.target_modules, list) and self.target_modules
              and all(isinstance(m, str) and m for m in self.target_modules),
              "lora.target_modules must be a non-empty list of module names")
        _positive(self.lr, "lora.lr", zero=True)  # 0: the init (a warm-up) kept as it is
        _at_least(self.epochs, 1, "lora.epochs")
        _positive(self.init_std, "lora.init_std", zero=True)
        _positive(self.weight_decay, "lora.weight_decay", zero=True)
        _at_least(self.max_seq_len, 2, "lora.max_seq_len")
        _choice(self.layout, LAYOUTS, "lora.layout")
        _choice(self.loss, LOSSES, "lora.loss")
        _need(self.batch_docs >= 1 and self.batch_tokens >= 1, "lora.batch_docs and lora.batch_tokens must be at least 1")
        _choice(self.adapter_dtype, DTYPES, "adapter dtype")
        _choice(self.train_dtype, TRAIN_DTYPES, "train dtype")

    def validate_files(self) -> None:
        """What encoding reads besides the settings: the warm-up adapter."""
        _need(not self.init_from or (Path(self.init_from) / ADAPTER_FILE).is_file(),
              f"lora.init_from {self.init_from}: no {ADAPTER_FILE} there (make one with `prag warmup`)")


@dataclass
class AugmentConfig:
    """Document augmentation (paper §3.2.1): n rewrites and m grounded QA pairs per document."""
    n_rewrites: int = 1
    n_qa: int = 3
    augmenter: str = "model"        # a name in augment.AUGMENTERS: "model" (a local LLM: `model`, else the base
                                    # model), "openai" (an OpenAI-compatible endpoint at base_url serving `model`),
                                    # "rule", or "reference" (QA pairs from the JSONL file `reference`)
    parts: str = "both"             # what encoding trains on (§5.3 ablation): both | rewrite | qa | none;
                                    # without rewrites the original document stands in for them
    reference: str | None = None    # for augmenter "reference": JSONL of {doc_id, qa: [{question, answer}]}
    model: str | None = None        # augmentation model; None = the base model
    max_new_tokens: int = 160
    base_url: str | None = None     # for augmenter "openai", e.g. http://localhost:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the endpoint's key (never stored)
    concurrency: int = 8            # requests in flight (openai)
    batch_size: int = 16            # prompts per batched generate call (local model)

    def validate(self) -> None:
        _at_least(self.n_rewrites, 0, "augment.n_rewrites")
        _at_least(self.n_qa, 0, "augment.n_qa")
        AUGMENTERS.check(self.augmenter)
        _need(self.parts in PARTS, f"unknown augment.parts {self.parts!r}: use {', '.join(PARTS)}")
        _at_least(self.max_new_tokens, 1, "augment.max_new_tokens")
        _at_least(self.concurrency, 1, "--concurrency")
        _at_least(self.batch_size, 1, "augment.batch_size")

    def validate_files(self) -> None:
        """What augmentation reads besides the settings: the reference file."""
        _need(self.augmenter != "reference" or bool(self.reference and Path(self.reference).is_file()),
              f"augmenter 'reference' needs augment.reference, a JSONL file (got {self.reference!r})")


@dataclass
class RetrievalConfig:
    top_k: int = 3
    backend: str = "bm25"           # a name in retrieval.RETRIEVERS

    def validate(self) -> None:
        _at_least(self.top_k, 1, "retrieval.top_k")
        RETRIEVERS.check(self.backend)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 24
    reasoning_tokens: int = 96      # the same for the methods that reason first (rag-cot, prag-cot, combine-cot)
    merge: str = "sum"              # a name in update.MERGES: sum (paper), mean, softmax, top1
    temperature: float = 1.0        # for merge="softmax": softmax(score / temperature)
    scale: float = 1.0              # every merge weight times this: the strength of the injected update
    few_shot: int = 0               # worked examples (the kb's examples.jsonl, written by `prag tune`) in every prompt
    adapters: str = "trained-else-translated"  # which adapters answer: trained (made in the request if missing) |
                                    # translated | trained-else-translated (a translated one, or the document in
                                    # the prompt when no translator is set, where no trained one is ready)
    translator: str = ""            # a translator folder (`prag translator train`), or "default": the shipped one
    backend: str = "transformers"   # a name in backends.BACKENDS: transformers | llamacpp (`.[llamacpp]`)
    llamacpp_weights: str = "dequantized"  # llamacpp: "dequantized" (float32, the transformers backend's exact
                                    # weights) or "original" (the shipped quantized GGUF: faster, may differ)
    llamacpp_ctx: int = 4096        # llamacpp context length in tokens

    def validate(self) -> None:
        _at_least(self.max_new_tokens, 1, "generation.max_new_tokens")
        _at_least(self.reasoning_tokens, 1, "generation.reasoning_tokens")
        MERGES.check(self.merge)
        _positive(self.temperature, "generation.temperature")
        _positive(self.scale, "generation.scale", zero=True)
        _at_least(self.few_shot, 0, "generation.few_shot")
        _choice(self.adapters, ADAPTER_SOURCES, "generation.adapters")
        _need(isinstance(self.translator, str), "generation.translator must be a folder path or 'default'")
        _need(self.translator != "" or self.adapters != "translated",
              f"generation.adapters = {self.adapters!r} needs a translator: set generation.translator "
              "(--translator DIR or default)")
        BACKENDS.check(self.backend)
        _at_least(self.llamacpp_ctx, 64, "generation.llamacpp_ctx")


@dataclass
class DynamicConfig:
    """FLARE, DRAGIN and the chains (dynamic.py): when to retrieve during generation and how to form the query."""
    flare_threshold: float = 0.2    # θ: retrieve when a look-ahead token's probability is below it
    flare_query_with_question: bool = True  # prefix the masked look-ahead sentence with the question
    dragin_threshold: float = 0.35  # θ: retrieve at the first token whose RIND score exceeds it
    qfs_tokens: int = 8             # DRAGIN query length (tokens picked by attention)
    max_rounds: int = 3             # retrievals per question at most
    chain_hops: int = 2             # prag-chain, combine-chain, rag-chain: documents in the chain at most
    chain_carry: bool = False       # a later hop reads the previous hop's answer after the question

    def validate(self) -> None:
        _positive(self.flare_threshold, "dynamic.flare_threshold", zero=True)
        _positive(self.dragin_threshold, "dynamic.dragin_threshold", zero=True)
        _at_least(self.qfs_tokens, 1, "dynamic.qfs_tokens")
        _at_least(self.max_rounds, 0, "dynamic.max_rounds")
        _at_least(self.chain_hops, 1, "dynamic.chain_hops")


SECTIONS = ("lora", "augment", "retrieval", "generation", "dynamic")


@dataclass
class PragConfig:
    model: str = "smollm2"
    lora: LoraConfig = field(default_factory=LoraConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    dynamic: DynamicConfig = field(default_factory=DynamicConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "PragConfig":
        """Check every field (names against their registries); returns self. Backend-specific needs (llama.cpp
        installed, a GGUF model) are checked too, so a bad setting fails before any model is loaded. The files
        that only encoding reads are checked by `validate_encoding` (a kb whose warm-up folder moved still
        answers with the adapters it has)."""
        check_model(self.model)
        for name in SECTIONS:
            getattr(self, name).validate()
        BACKENDS.get(self.generation.backend).check(self)
        return self

    def validate_encoding(self) -> "PragConfig":
        """`validate`, and the files encoding reads (warm-up adapter, reference QA pairs) exist."""
        self.validate()
        self.lora.validate_files()
        self.augment.validate_files()
        return self

    def apply(self, data: dict[str, Any]) -> "PragConfig":
        """Override fields from a nested dict (as read from TOML); unknown keys and values of the wrong type are
        errors. Does not validate: call `validate()` when the config is complete."""
        for key, value in data.items():
            if key == "model":
                self.model = str(value)
                continue
            section = getattr(self, key, None) if key in SECTIONS else None
            if section is None or not isinstance(value, dict):
                raise PragError(f"config: unknown section {key!r}")
            known = {f.name: f for f in fields(section)}
            for k, v in value.items():
                if k not in known:
                    raise PragError(f"config: unknown key {key}.{k}")
                setattr(section, k, _typed(f"{key}.{k}", getattr(section, k), known[k], v))
        return self

    def override(self, flags: dict[str, Any]) -> "PragConfig":
        """A validated copy with `flags` ({"section.key": value}; None values are left out) applied."""
        nested: dict[str, Any] = {}
        for dotted, value in flags.items():
            if value is None:
                continue
            if "." in dotted:
                section, key = dotted.split(".", 1)
                nested.setdefault(section, {})[key] = value
            else:
                nested[dotted] = value
        return copy.deepcopy(self).apply(nested).validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PragConfig":
        return cls().apply(data)

    def save_toml(self, path: Path) -> None:
        atomic_write(Path(path), self.to_toml())

    def to_toml(self) -> str:
        data = {k: v for k, v in self.to_dict().items() if not isinstance(v, dict)}
        data |= {k: {kk: vv for kk, vv in v.items() if vv is not None}
                 for k, v in self.to_dict().items() if isinstance(v, dict)}
        return tomli_w.dumps(data)

    @classmethod
    def load_toml(cls, path: Path) -> "PragConfig":
        return cls.from_dict(read_toml(path))


def _typed(name: str, current: Any, f: dataclasses.Field, value: Any) -> Any:
    """`value` for the field `name` when its type fits the field's (an int for a float is widened), else an
    error; a field whose default is None takes a string or None."""
    if current is None or f.default is None:
        if value is None or isinstance(value, str):
            return value
        raise PragError(f"config: {name} must be a string, not {value!r}")
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise PragError(f"config: {name} must be of type {type(current).__name__}, not {value!r}")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PragError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise PragError(f"{path}: is a directory, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PragError(f"{path}: not a valid TOML config ({e})") from None


# The paper's exact encoding and merge settings (`prag index --preset paper`).
PAPER = {"lora": {"r": 2, "alpha": 32.0, "lr": 3e-4, "epochs": 1, "layout": "concat"}, "generation": {"merge": "sum"}}


def default_config(model: str = "smollm2", preset: str = "default") -> PragConfig:
    """The defaults for `model` (its registry entry's, docs/results.md says how they were chosen); preset "paper"
    gives the paper's exact encoding and merge settings. An unknown model or preset is an error."""
    check_model(model)
    _choice(preset, PRESETS, "preset")
    cfg = PragConfig(model=model)
    return cfg.apply(copy.deepcopy(PAPER if preset == "paper" else model_defaults(model)))


def build_config(model: str = "smollm2", preset: str = "default", toml: Path | None = None,
                 flags: dict[str, Any] | None = None) -> PragConfig:
    """A new kb's config: `model`'s defaults (or the preset) <- the TOML file <- `flags`, validated."""
    cfg = default_config(model, preset)
    if toml:
        cfg.apply(read_toml(toml))
    return cfg.override(flags or {}).validate_encoding()


_NOT_IN_RECIPE = {"lora": ("batch_docs", "batch_tokens"), "augment": ("concurrency", "batch_size", "api_key_env")}


def recipe_key(config: PragConfig) -> str:
    """A fingerprint of what a document's adapter depends on: the model, the LoRA recipe, the augmentation and,
    for a warm-up init, the warm-up file's bytes. Settings that leave adapters as they are (batch sizes,
    concurrency, the API key's variable) are left out."""
    parts = {s: {k: v for k, v in dataclasses.asdict(getattr(config, s)).items() if k not in _NOT_IN_RECIPE[s]}
             for s in ("lora", "augment")}
    init = Path(config.lora.init_from) / ADAPTER_FILE if config.lora.init_from else None
    if init is not None and init.is_file():
        parts["lora"]["init_from_sha256"] = hashlib.sha256(init.read_bytes()).hexdigest()
    blob = json.dumps({"model": config.model, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
