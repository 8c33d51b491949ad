"""The one typed config object that flows through every stage, with per-model defaults and TOML I/O.

`PragConfig` groups the LoRA/encoding, augmentation, retrieval and generation settings. A knowledge base
stores the config it was built with (`kb.toml`) so adapters are never mixed across incompatible settings.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import PragError


# The §5.2 warm-up LoRA's own recipe, chosen on 2WQA-comparison dev with SmolLM2 (trained on 100 dev questions,
# scored closed-book on the 46 others with the warm-up applied at the eval strength 0.25; no warm-up: F1 0.392):
# lr 3e-4 x 1 epoch 0.469, 1e-3 x 1 0.522, 3e-3 x 1 0.450, 3e-3 x 4 (the per-document recipe) 0.637. That last
# one diverged on the whole dev split (150 questions, 600 steps: loss 4.27 -> 5.67) and then answered nothing,
# so the default is the best recipe that stays far from it.
WARMUP_LR, WARMUP_EPOCHS = 1e-3, 1


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


@dataclass
class AugmentConfig:
    """Document augmentation (paper §3.2.1): n rewrites and m grounded QA pairs per document."""
    n_rewrites: int = 1
    n_qa: int = 3
    augmenter: str = "model"        # "model" (a local LLM: `model`, else the base model), "openai" (an
                                    # OpenAI-compatible endpoint at base_url serving `model`), "rule", or
                                    # "reference" (QA pairs from the JSONL file `reference`; rules elsewhere)
    parts: str = "both"             # what encoding trains on (§5.3 ablation): both | rewrite | qa | none;
                                    # without rewrites the original document stands in for them
    reference: str | None = None    # for augmenter "reference": JSONL of {doc_id, qa: [{question, answer}]}
    model: str | None = None        # augmentation model; None = the base model
    max_new_tokens: int = 160
    base_url: str | None = None     # for augmenter "openai", e.g. http://localhost:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the endpoint's key (never stored)
    concurrency: int = 8            # requests in flight (openai)
    batch_size: int = 16            # prompts per batched generate call (local model)


@dataclass
class RetrievalConfig:
    top_k: int = 3


@dataclass
class GenerationConfig:
    max_new_tokens: int = 24
    merge: str = "sum"              # how the top-k adapters are weighted: sum (paper), mean, softmax, top1
    temperature: float = 1.0        # for merge="softmax": softmax(score / temperature)
    scale: float = 1.0              # every merge weight times this: the strength of the injected update
    backend: str = "transformers"   # who generates: transformers | llamacpp (llama-cpp-python, `.[llamacpp]`)
    llamacpp_weights: str = "dequantized"  # llamacpp: "dequantized" (float32, the transformers backend's exact
                                    # weights) or "original" (the shipped quantized GGUF: faster, may differ)
    llamacpp_ctx: int = 4096        # llamacpp context length in tokens


@dataclass
class DynamicConfig:
    """FLARE and DRAGIN (dynamic.py): when to retrieve during generation and how to form the query."""
    flare_threshold: float = 0.2    # θ: retrieve when a look-ahead token's probability is below it
    flare_query_with_question: bool = True  # prefix the masked look-ahead sentence with the question
    dragin_threshold: float = 0.35  # θ: retrieve at the first token whose RIND score exceeds it
    qfs_tokens: int = 8             # DRAGIN query length (tokens picked by attention)
    max_rounds: int = 3             # retrievals per question at most


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

    def apply(self, data: dict[str, Any]) -> "PragConfig":
        """Override fields from a nested dict (as read from TOML); unknown keys are errors."""
        for key, value in data.items():
            if key == "model":
                self.model = str(value)
                continue
            section = getattr(self, key, None)
            if section is None or not isinstance(value, dict) or not dataclasses.is_dataclass(section):
                raise PragError(f"config: unknown section {key!r}")
            known = {f.name for f in fields(section)}
            for k, v in value.items():
                if k not in known:
                    raise PragError(f"config: unknown key {key}.{k}")
                setattr(section, k, v)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PragConfig":
        return cls().apply(data)

    def save_toml(self, path: Path) -> None:
        path.write_text(_to_toml(self.to_dict()), encoding="utf-8")

    @classmethod
    def load_toml(cls, path: Path) -> "PragConfig":
        return cls.from_dict(read_toml(path))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PragError(f"{path}: file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PragError(f"{path}: not a valid TOML config ({e})") from None


# Per-model defaults, chosen by measurement on fictional documents (README, "Measured"): the paper's recipe
# (lr 3e-4 x 1 epoch, rewrite+question+answer in one sequence) injects nothing into SmolLM2-135M; separate
# sequences, lr 3e-3 and 6 grounded QA pairs make one document's adapter recall its facts. 4 epochs beat 3 on
# both fictional sets (0.583 vs 0.472 on fictional30, 0.458 vs 0.385 on the held-out 32), for 1.4x the time.
# The plain sum of three such adapters degrades answers (0.16 vs 0.58 top-1); softmax(BM25 score) weights keep
# the top-1 result. The 135M model's own questions hurt: rule-only augmentation gave top-1 0.41 vs 0.19 on 36
# fictional documents (0.50 vs 0.47 on 8), so "rule" is the default augmenter; "model" stays an option.
# Gemma 3 270M: lr 3e-3 fails there (P-RAG top-3 F1 0.05 on fictional30, degenerate answers); lr 1e-3 gives 0.565
# (closed-book 0.000; README, "Measured").
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "smollm2": {"lora": {"lr": 3e-3, "epochs": 4, "layout": "separate"}, "augment": {"n_qa": 6, "augmenter": "rule"},
                "generation": {"merge": "softmax"}},
    "gemma3-270m": {"lora": {"lr": 1e-3, "epochs": 4, "layout": "separate"},
                    "augment": {"n_qa": 6, "augmenter": "rule"}, "generation": {"merge": "softmax"}},
}

PAPER = {"lora": {"r": 2, "alpha": 32.0, "lr": 3e-4, "epochs": 1, "layout": "concat"}, "generation": {"merge": "sum"}}


def default_config(model: str = "smollm2", preset: str = "default") -> PragConfig:
    """The defaults for `model`; preset "paper" gives the paper's exact encoding and merge settings."""
    cfg = PragConfig(model=model)
    overrides = PAPER if preset == "paper" else MODEL_DEFAULTS.get(model, MODEL_DEFAULTS["smollm2"])
    for section, values in overrides.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg


def _to_toml(data: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    top = [f"{k} = {fmt(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    out = top + [""]
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(f"[{k}]")
            out += [f"{kk} = {fmt(vv)}" for kk, vv in v.items() if vv is not None]
            out.append("")
    return "\n".join(out)
