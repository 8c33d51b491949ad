"""The parameter translator: a document's hidden states to its LoRA factors in one forward pass (no training per
document).

A `Translator` reads the hidden states of every token of a document after `read_layer` decoder layers of the
frozen base model (the rest of the model never runs), and emits rank-r A and B for every target module. For each
target layer, module kind and rank slot it pools the document's tokens twice with its own learned queries
(attention pooling over all tokens, not the last token's state): one pooled vector is projected to the module's
input space (a row of A: what the slot responds to), the other to its output space (a column of B: what it
writes), through projections shared by the layers with a learned per-layer scale per coordinate. The factors
are an ordinary `Adapter`: the Update, merges and PEFT files treat them as they treat trained ones.

With a token memory (`memory_layers`), the adapter's rank also grows with the document: in those layers the memory
module (down_proj) gets one more rank per document token, its A row a key made from the document's own input to
that module at the token before, its B column a value written from the token itself (state and embedding), gated
per token. At question time a context like the one before a token writes that token: a document's names can be
copied, where fixed slots can only choose among what they were trained to pick.

Training (`train_translator`) needs no adapter trained per document: the loss is the LM loss of each document's
augmentation QA pairs (answer tokens only) with the document's generated adapter applied to the frozen model,
through per-row factors in the Injector's hooks, so one step serves many documents. It checkpoints atomically and
resumes where it stopped. A trained translator is a folder: translator.safetensors (float16) and translator.json
(its config, the weights' sha256 and what it was trained on); `load_translator` verifies the checksum, which is
part of the recipe of every adapter it makes.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .atomic import atomic_file, atomic_write
from .corpus import Document
from .encode import micro_batches, qa_texts, sequence_losses, shared_prefix
from .errors import PragError
from .generate import question_message
from .models import LoadedModel, fast_bf16
from .update import Adapter, Injector

WEIGHTS_FILE = "translator.safetensors"
CONFIG_FILE = "translator.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOSS_FILE = "loss.jsonl"
SEEN_FILE = "documents.sha256"  # the training documents' text fingerprints, one per line (text_fingerprint)
SEEN_QUESTIONS_FILE = "questions.sha256"  # the training QA pairs' questions, likewise


@dataclass
class TranslatorConfig:
    """What a translator is; `kinds` ([name, in, out] per target module kind) and `layers` come from the base
    model's Injector when a translator is created."""
    model: str = "smollm2"
    read_layer: int = 8             # hidden states after this many decoder layers are what the translator reads
    r: int = 2                      # rank of the emitted adapters
    alpha: float = 32.0             # their LoRA alpha (scaling alpha / r), as trained adapters have
    max_doc_tokens: int = 256       # a document's tokens read at most
    # Token memory: in these decoder layers (0-based, below read_layer) the `memory_module` also gets one rank per
    # document token, its key from the document's own input to that module at the token before and its value
    # from the token: the adapter's rank grows with the document. Empty: the pooled slots only (v6 and before).
    memory_layers: list = field(default_factory=list)
    memory_module: str = "down_proj"
    memory_key_rank: int = 128      # the learned low-rank correction of the keys (beside a per-layer diagonal)
    kinds: list = field(default_factory=list)
    layers: int = 0
    hidden: int = 0

    def validate(self) -> "TranslatorConfig":
        for name, value, low in (("read_layer", self.read_layer, 1), ("r", self.r, 1),
                                 ("max_doc_tokens", self.max_doc_tokens, 8)):
            if not isinstance(value, int) or value < low:
                raise PragError(f"translator.{name} must be an integer >= {low}, not {value!r}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise PragError(f"translator.alpha must be a finite number > 0, not {self.alpha!r}")
        m = self.memory_layers
        if not (isinstance(m, list) and all(isinstance(x, int) and 0 <= x < self.read_layer for x in m)
                and len(set(m)) == len(m)):
            raise PragError(f"translator.memory_layers must be distinct layer indices in [0, read_layer "
                            f"{self.read_layer}), not {m!r}: the document's pass stops at read_layer")
        if not isinstance(self.memory_key_rank, int) or self.memory_key_rank < 1:
            raise PragError(f"translator.memory_key_rank must be an integer >= 1, not {self.memory_key_rank!r}")
        return self

    def memory_kind(self) -> tuple | None:
        """The (name, in, out) module kind the token memory writes, or None without memory layers."""
        if not self.memory_layers:
            return None
        for k in self.kinds:
            if k[0] == self.memory_module:
                return tuple(k)
        raise PragError(f"translator.memory_module {self.memory_module!r} is not a target module "
                        f"({', '.join(k[0] for k in self.kinds)})")


@dataclass
class TrainConfig:
    """How `prag translator train` trains."""
    epochs: float = 1.0             # passes over the training documents (fractions allowed)
    batch_docs: int = 8             # documents per step
    qa_per_doc: int = 4             # QA pairs per document per step (the loss)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    checkpoint_every: int = 25      # steps
    bf16: bool | None = None        # bfloat16 autocast (2.3x faster on a CPU with avx512_bf16, 20x slower on one
                                    # without); None: the resumed run's, else models.fast_bf16. Master weights fp32
    contrast: float = 0.0           # weight of the margin term against another document's adapter (batch_loss)
    in_context: float = 0.0         # share of QA rows asked as combine asks: the document and another one in the
                                    # prompt, half of them with that other document's adapter (batch_loss)
    memory_push: float | None = None  # a new run's token memory starts writing this share of its module's output
                                    # on the first documents (calibrate_memory); None: mem_scale 0.1 (v7-v10, g1)

    def validate(self) -> "TrainConfig":
        for name in ("epochs", "lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise PragError(f"translator training: {name} must be a finite number > 0, not {v}")
        for name in ("batch_docs", "qa_per_doc", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise PragError(f"translator training: {name} must be at least 1, not {getattr(self, name)}")
        if not (math.isfinite(self.contrast) and self.contrast >= 0):
            raise PragError(f"translator training: contrast must be a finite number >= 0, not {self.contrast}")
        if not 0 <= self.in_context <= 1:
            raise PragError(f"translator training: in_context must be a share in [0, 1], not {self.in_context}")
        if self.memory_push is not None and not (math.isfinite(self.memory_push) and self.memory_push > 0):
            raise PragError(f"translator training: memory_push must be a finite number > 0, not {self.memory_push}")
        return self


def _normed(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`read_hidden`'s [.., 2d] split into the states and the input embeddings, each centred to unit variance."""
    d = hidden.shape[-1] // 2
    return (torch.nn.functional.layer_norm(hidden[..., :d].float(), (d,)),
            torch.nn.functional.layer_norm(hidden[..., d:].float(), (d,)))


class Translator(torch.nn.Module):
    def __init__(self, cfg: TranslatorConfig):
        super().__init__()
        self.cfg = cfg
        d, n_layers, r = cfg.hidden, cfg.layers, cfg.r
        kinds = [tuple(k) for k in cfg.kinds]
        if not kinds or not n_layers or not d:
            raise PragError("a translator needs the base model's module kinds, layer count and hidden size")
        g = torch.Generator().manual_seed(0)
        self.key = torch.nn.Parameter(torch.eye(d))
        # One query per (layer, module kind, slot). Unit-variance entries: scores of std ~1 at the start
        # (1/sqrt(d) leaves the pooling a plain mean for hundreds of steps: our first version).
        self.queries = torch.nn.Parameter(torch.randn(n_layers, len(kinds), r, d, generator=g))
        self.proj_a = torch.nn.ParameterList()
        self.proj_b = torch.nn.ParameterList()
        self.scale_a = torch.nn.ParameterList()
        self.scale_b = torch.nn.ParameterList()
        for _, d_in, d_out in kinds:
            # A starts like PEFT's (rows of norm ~0.6); B near zero, so a new translator changes little. Where B
            # writes the residual stream (out == d), its token-embedding half starts as a small identity: a slot
            # can write the embedding of the token it pooled (with tied embeddings, that token's logit).
            self.proj_a.append(torch.nn.Parameter(torch.randn(d, d_in, generator=g) / math.sqrt(3 * d_in)))
            pb = torch.randn(2 * d, d_out, generator=g) * 1e-3
            if d_out == d:
                pb[d:] += torch.eye(d) * 0.05
            self.proj_b.append(torch.nn.Parameter(pb))
            self.scale_a.append(torch.nn.Parameter(torch.ones(n_layers, d_in)))
            self.scale_b.append(torch.nn.Parameter(torch.ones(n_layers, d_out)))
        self.kinds = kinds
        mem = cfg.memory_kind()
        if mem is not None:
            _, d_in, d_out = mem
            n_mem = len(cfg.memory_layers)
            # keys: the document's normalised module input at the token before, times a per-layer diagonal
            # (starts at 1: the model's own feature similarity) plus a learned low-rank map (starts at 0)
            self.mem_diag = torch.nn.Parameter(torch.ones(n_mem, d_in))
            self.mem_u = torch.nn.Parameter(torch.randn(d_in, cfg.memory_key_rank, generator=g) / math.sqrt(d_in))
            self.mem_v = torch.nn.Parameter(torch.zeros(cfg.memory_key_rank, d_in))
            # values: the token's state and embedding; the embedding half starts as a small identity (where the
            # module writes the residual stream) so a memory row first writes its token's embedding
            pv = torch.randn(2 * d, d_out, generator=g) * 1e-3
            if d_out == d:
                pv[d:] += torch.eye(d) * 0.02
            self.mem_val = torch.nn.Parameter(pv)
            # per-layer output scale, starting at 0.1: at 1, SmolLM2's answer loss on new documents went from 3.8
            # to 8.5 nats before any training; at 0.1 it does not move (3.81 -> 3.80)
            self.mem_scale = torch.nn.Parameter(torch.full((n_mem, d_out), 0.1))
            # which tokens are stored: a gate from the token's state (starts at one half for every token)
            self.mem_gate = torch.nn.Parameter(torch.zeros(d))
            self.mem_bias = torch.nn.Parameter(torch.zeros(()))

    def memory(self, hidden: torch.Tensor, mask: torch.Tensor, inputs: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The token memory's factors: A [docs, mem layers, tokens - 1, in], B [docs, mem layers, out, tokens - 1].

        `inputs` [docs, mem layers, tokens, in] are the document's own inputs to the memory module in those
        layers. Row t's key is the input at token t-1 (the context that leads to t), its value is written from
        token t's state and embedding: at question time a context like the one before t writes t."""
        h, e = _normed(hidden)
        x = inputs.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)                    # unit RMS per token
        cue = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)           # the token before
        d_in = x.shape[-1]
        keys = (cue * self.mem_diag[None, :, None, :] + (cue @ self.mem_u) @ self.mem_v) / math.sqrt(d_in)
        gate = torch.where(mask.bool(), torch.sigmoid(h @ self.mem_gate + self.mem_bias), 0.0)  # [docs, tokens]
        vals = torch.cat([h, e], -1) @ self.mem_val                                     # [docs, tokens, out]
        vals = vals[:, None] * self.mem_scale[None, :, None, :] * gate[:, None, :, None]
        # the first token has no context before it: no row (a document of T tokens adds T - 1)
        return keys[:, :, 1:], vals[:, :, 1:].transpose(-1, -2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """hidden [docs, tokens, 2d]: each token's state after `read_layer` layers, then its input embedding
        (right-padded, `mask` 1 on real tokens) -> per module kind (A [docs, layers, r, in], B [docs, layers,
        out, r]).

        Each slot attends over the document's tokens t. Its B side (what it writes) pools token t's state and
        embedding; its A side (what it responds to) pools the state of the token before t, the context that
        leads to t: a slot stores "after this context comes this token", as a key and a value."""
        h, e = _normed(hidden)
        d = h.shape[-1]
        cue = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)          # the state of the token before
        scores = torch.einsum("lmsd,btd->blmst", self.queries, h @ self.key) / math.sqrt(d)
        usable = mask.bool().clone()
        usable[:, 0] = usable[:, 0] & (mask.sum(1) == 1)  # the first token has no context (unless it is alone)
        scores = scores.masked_fill(~usable[:, None, None, None, :], float("-inf"))
        weights = scores.softmax(-1)
        za = torch.einsum("blmst,btd->blmsd", weights, cue) / math.sqrt(d)
        zb = torch.einsum("blmst,btd->blmsd", weights, torch.cat([h, e], -1)) / math.sqrt(d)
        out = []
        for m in range(len(self.kinds)):
            a = (za[:, :, m] @ self.proj_a[m]) * self.scale_a[m][None, :, None, :]
            b = (zb[:, :, m] @ self.proj_b[m]) * self.scale_b[m][None, :, None, :]
            out.append((a, b.transpose(-1, -2)))
        return out

    def factors(self, injector: Injector, hidden: torch.Tensor, mask: torch.Tensor,
                inputs: torch.Tensor | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Module name -> (A [docs, r, in], B [docs, out, r]) for the injector's target modules; with token
        memory (`inputs` from `read_states`), the memory modules' rank is r + the batch's token count - 1 (padding
        tokens write nothing)."""
        if [tuple(k) for k in injector.groups] != self.kinds:
            raise PragError("this translator was made for other target modules than the model's injector has")
        named = {}
        for names, (a, b) in zip(injector.groups.values(), self(hidden, mask)):
            for i, name in enumerate(names):
                named[name] = (a[:, i], b[:, i])
        mem = self.cfg.memory_kind()
        if mem is not None:
            if inputs is None:
                raise PragError("this translator has a token memory: read the documents with read_states")
            keys, vals = self.memory(hidden, mask, inputs)
            for j, layer in enumerate(self.cfg.memory_layers):
                name = injector.groups[mem][layer]
                a, b = named[name]
                named[name] = (torch.cat([a, keys[:, j].to(a.dtype)], 1), torch.cat([b, vals[:, j].to(b.dtype)], 2))
        return named


def new_translator(lm: LoadedModel, injector: Injector, cfg: TranslatorConfig) -> Translator:
    """A fresh translator for this base model and injector (module kinds, layers and hidden size filled in)."""
    kinds = [list(k) for k in injector.groups]
    layers = {len(v) for v in injector.groups.values()}
    if len(layers) != 1:
        raise PragError("the translator needs every target module kind in every layer")
    cfg.kinds, cfg.layers, cfg.hidden = kinds, layers.pop(), int(lm.model.config.hidden_size)
    n_decoder = int(lm.model.config.num_hidden_layers)
    if cfg.read_layer > n_decoder:
        raise PragError(f"translator.read_layer {cfg.read_layer} is beyond the model's {n_decoder} layers")
    return Translator(cfg.validate())


def memory_push(lm: LoadedModel, injector: Injector, translator: Translator, texts: list[str]) -> torch.Tensor:
    """How hard the token memory writes, per memory layer: ||scaling * B_mem A_mem x|| / ||W x|| over the
    documents' own tokens x (each document read back through its own memory), the mean over `texts`; at
    generation strength s the write is s times this.

    Measured this way on 16 fictional documents: a new translator's memory (mem_scale 0.1) writes 0.44 of its
    module's output on SmolLM2 but 9-38x it on Gemma 3 270M (layers 5-7), whose down_proj inputs are far larger;
    SmolLM2's v10 writes 3-5x, Gemma's g1 37-210x, and g1's answers on real questions broke at every strength
    until its memory was scaled down (translator_norm.py, translator_memory_gain.py in benchmarks/experiments)."""
    cfg = translator.cfg
    kind = cfg.memory_kind()
    if kind is None:
        raise PragError("this translator has no token memory")
    with injector.lock:  # the documents are read with no adapter installed
        hidden, mask, inputs = read_states(lm, injector, cfg, texts)
    with torch.no_grad():
        keys, vals = translator.memory(hidden, mask, inputs)
        x = inputs.float()                                                       # [docs, layers, tokens, in]
        w = torch.stack([injector.modules[injector.groups[kind][layer]].weight.float()
                         for layer in cfg.memory_layers])                        # [layers, out, in]
        y = torch.einsum("blti,loi->blto", x, w)
        delta = torch.einsum("blrt,blro->blto", torch.einsum("blri,blti->blrt", keys, x),
                             vals.transpose(-1, -2)) * (cfg.alpha / cfg.r)      # [docs, layers, tokens, out]
        m = mask.to(x.dtype)[:, None, :, None]
        ratio = (delta * m).flatten(2).norm(dim=-1) / (y * m).flatten(2).norm(dim=-1).clamp(min=1e-12)
    return ratio.mean(0)


def calibrate_memory(lm: LoadedModel, injector: Injector, translator: Translator, texts: list[str],
                     target: float) -> list[float]:
    """Scale each memory layer's output (mem_scale) so that it writes `target` times its module's output on
    `texts` (`memory_push`), whatever the base model's activation sizes; returns the factors applied."""
    if not (math.isfinite(target) and target > 0):
        raise PragError(f"the memory's target write must be a finite number > 0, not {target}")
    push = memory_push(lm, injector, translator, texts)
    factors = (target / push.clamp(min=1e-12)).to(translator.mem_scale.dtype)
    with torch.no_grad():
        translator.mem_scale.mul_(factors[:, None].to(translator.mem_scale.device))
    return [round(float(f), 6) for f in factors]


class _Stop(Exception):
    pass


def _decoder_layers(model: torch.nn.Module):
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise PragError("the translator needs a decoder with a `layers` list (Llama, Gemma and the like)")
    return decoder, layers


def read_hidden(lm: LoadedModel, texts: list[str], read_layer: int, max_tokens: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The documents' hidden states after `read_layer` decoder layers and their input embeddings side by side,
    [docs, tokens, 2d] right-padded, and the mask. The layers above are never run (a hook stops the forward pass
    there). The caller makes sure no adapter is active (the Injector's lock, or training's own terms cleared)."""
    hidden, mask, _ = _read(lm, texts, read_layer, max_tokens, [])
    return hidden, mask


def read_states(lm: LoadedModel, injector: Injector, cfg: TranslatorConfig, texts: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`read_hidden`, and for a translator with token memory the inputs of the memory module in its memory
    layers, [docs, memory layers, tokens, in] (None without memory), from the same pass."""
    kind = cfg.memory_kind()
    names = [injector.groups[kind][layer] for layer in cfg.memory_layers] if kind else []
    return _read(lm, texts, cfg.read_layer, cfg.max_doc_tokens, names)


def _read(lm: LoadedModel, texts: list[str], read_layer: int, max_tokens: int, capture: list[str]):
    decoder, layers = _decoder_layers(lm.model)
    tok = lm.tokenizer
    enc = [tok(t, add_special_tokens=True)["input_ids"][:max_tokens] for t in texts]
    width = max(len(e) for e in enc)
    device = next(lm.model.parameters()).device
    ids = torch.full((len(enc), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e, dtype=torch.long)
        mask[i, :len(e)] = 1
    ids, mask = ids.to(device), mask.to(device)
    got, seen = {}, {}

    def grab(module, args, output):
        got["h"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    def keep(name):
        def hook(module, args):
            seen[name] = args[0]
        return hook

    handles = [layers[read_layer - 1].register_forward_hook(grab)]
    handles += [lm.model.get_submodule(n).register_forward_pre_hook(keep(n)) for n in capture]
    try:
        with torch.no_grad():
            embeds = lm.model.get_input_embeddings()(ids)
            decoder(input_ids=ids, attention_mask=mask)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    inputs = torch.stack([seen[n] for n in capture], 1) if capture else None
    return torch.cat([got["h"].to(embeds.dtype), embeds], dim=-1), mask, inputs


def translate(lm: LoadedModel, injector: Injector, translator: Translator, texts: list[str]) -> list[Adapter]:
    """One adapter per text, from one (partial) forward pass of the base model over the batch."""
    if not texts:
        return []
    cfg = translator.cfg
    hidden, mask, inputs = read_states(lm, injector, cfg, texts)
    with torch.no_grad():
        named = translator.factors(injector, hidden, mask, inputs)
    out = []
    for i in range(len(texts)):
        keep = cfg.r + int(mask[i].sum()) - 1  # a memory module's rows past this document's tokens are padding
        # a copy: a slice would keep the whole batch's (padded) factors alive for as long as this adapter lives
        out.append(Adapter({n: (a[i, :keep].to("cpu", torch.float32, copy=True),
                                b[i, :, :keep].to("cpu", torch.float32, copy=True))
                            for n, (a, b) in named.items()}, cfg.r, cfg.alpha))
    return out


# ---------------------------------------------------------------------------------------------- files

def save_translator(translator: Translator, out: Path, meta: dict | None = None) -> str:
    """Write translator.safetensors (float16) and translator.json (config, sha256 of the weights, `meta`);
    returns the sha256."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in translator.state_dict().items()}
    with atomic_file(out / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    sha = hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()
    atomic_write(out / CONFIG_FILE, json.dumps({"config": asdict(translator.cfg), "sha256": sha, **(meta or {})},
                                               indent=1))
    return sha


def text_fingerprint(text: str) -> str:
    """A document's text (whitespace-normalised) as 16 hex digits of its sha256: how a translator's training
    documents are recognised in another kb, whatever their ids there."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def write_seen(out: Path, texts, name: str = SEEN_FILE, inherited: set[str] | None = None) -> None:
    """Record the documents (or, with SEEN_QUESTIONS_FILE, the questions) a translator trains on: sorted
    fingerprints, one per line, with `inherited` ones (those of the translator it started from) added."""
    prints = {text_fingerprint(t) for t in texts} | (inherited or set())
    atomic_write(Path(out) / name, "".join(f + "\n" for f in sorted(prints)))


def seen_fingerprints(folder: Path, name: str = SEEN_FILE) -> set[str] | None:
    """The fingerprints of the documents (or, with SEEN_QUESTIONS_FILE, the questions) the translator in `folder`
    trained on, or None when it does not say. A translator answers questions it trained on far better than new ones
    (docs/results.md), so an eval or a tuning on them overstates it."""
    path = Path(folder) / name
    return set(path.read_text(encoding="utf-8").split()) if path.is_file() else None


def training_overlap(folder: Path, doc_texts: list[str], questions: list[str]) -> dict | None:
    """How many of these documents (one text per document) and questions the translator in `folder` trained on:
    {"seen", "of", "questions_seen", "questions_of"} (the question counts None when it lists no questions), or None
    when it does not list its training documents."""
    seen, asked = seen_fingerprints(folder), seen_fingerprints(folder, SEEN_QUESTIONS_FILE)
    if seen is None:
        return None
    return {"seen": sum(text_fingerprint(t) in seen for t in doc_texts), "of": len(doc_texts),
            "questions_seen": None if asked is None else sum(text_fingerprint(q) in asked for q in questions),
            "questions_of": len(questions)}


def translator_folder(name: str, model: str) -> Path:
    """The folder `generation.translator` (or --translator, --init-from) names: a path, or "default", the
    translator shipped for `model`."""
    return shipped_translator(model) if name == "default" else Path(name)


def translator_sha(name: str, model: str) -> str:
    """The sha256 its translator.json records for the weights (load_translator verifies it), without loading them."""
    return translator_info(translator_folder(name, model))["sha256"]


def has_shipped_translator(model: str) -> bool:
    return (Path(__file__).parent / "translators" / model / CONFIG_FILE).is_file()


def shipped_translator(model: str) -> Path:
    """The folder of the translator shipped for a registered model (`--translator default`)."""
    folder = Path(__file__).parent / "translators" / model
    if not (folder / CONFIG_FILE).is_file():
        raise PragError(f"no translator ships for model {model!r}; train one with `prag translator train`")
    return folder


def translator_info(folder: Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise PragError(f"{folder}: not a translator (no {CONFIG_FILE}); train one with `prag translator train`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PragError(f"{path}: not valid JSON ({e})") from None


def load_translator(folder: Path, model: str | None = None) -> tuple[Translator, str]:
    """The translator in `folder` (checksum-verified) and its sha256; `model`, when given, must be its base model."""
    folder = Path(folder)
    info = translator_info(folder)
    raw = (folder / WEIGHTS_FILE).read_bytes() if (folder / WEIGHTS_FILE).is_file() else b""
    sha = hashlib.sha256(raw).hexdigest()
    if sha != info.get("sha256"):
        raise PragError(f"{folder / WEIGHTS_FILE}: checksum mismatch (missing or corrupt translator weights)")
    cfg = TranslatorConfig(**info["config"]).validate()
    if model is not None and cfg.model != model:
        raise PragError(f"the translator in {folder} is for model {cfg.model!r}, not {model!r}")
    tr = Translator(cfg)
    tr.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()})
    tr.eval()
    return tr, sha


# ---------------------------------------------------------------------------------------------- training

@dataclass
class TrainItem:
    """One training document: its text and its QA pairs as (prompt, answer) strings in the answer-time layout;
    `questions`, the bare questions of `qa` in order, lets a row be asked with documents in the prompt instead
    (`TrainConfig.in_context`)."""
    doc_id: str
    text: str
    qa: list[tuple[str, str]]
    questions: list[str] = field(default_factory=list)


def train_item(lm: LoadedModel, doc_id: str, text: str, pairs: list[tuple[str, str]]) -> TrainItem:
    """A `TrainItem` from (question, answer) pairs."""
    return TrainItem(doc_id, text, qa_texts(lm, pairs), [q for q, _ in pairs])


MAX_QA_TOKENS = 256        # a bare QA row's tokens at most
MAX_CONTEXT_TOKENS = 1024  # a row with documents in the prompt: longer ones are asked bare instead


def answer_start(tok, prompt: str, full: list[int]) -> int:
    """Where the answer's tokens begin in `full` (the tokens of prompt + answer): at least 1, at most the last."""
    return min(max(shared_prefix(full, tok(prompt, add_special_tokens=False)["input_ids"]), 1), len(full) - 1)


def pad_rows(lm: LoadedModel, rows: list[tuple[list[int], int]]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, answer start) rows, right-padded: ids, mask, lengths, starts."""
    width = max(len(f) for f, _ in rows)
    ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (f, _) in enumerate(rows):
        ids[i, :len(f)] = torch.tensor(f)
        mask[i, :len(f)] = 1
    return ids, mask, torch.tensor([len(f) for f, _ in rows]), torch.tensor([st for _, st in rows])


def _qa_rows(lm: LoadedModel, items: list[TrainItem], per_doc: int, rng: random.Random, in_context: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded QA sequences (ids, mask, lengths, answer starts), each row's adapter owner (a document index)
    and whether the row has documents in its prompt. With `in_context` (and two documents or more) that share of
    rows is asked with the document and the next one in the prompt, in random order, and half of those rows take
    the next document's adapter: as in combine, where the top document's adapter may not be the one that holds
    the answer, and the prompt must win."""
    tok = lm.tokenizer
    rows = []
    for j, it in enumerate(items):
        for k in rng.sample(range(len(it.qa)), min(per_doc, len(it.qa))):
            prompt, answer = it.qa[k]
            owner, full = j, None
            if in_context > 0 and len(items) > 1 and k < len(it.questions) and rng.random() < in_context:
                other = (j + 1) % len(items)
                docs = [Document(it.doc_id, "", it.text), Document(items[other].doc_id, "", items[other].text)]
                rng.shuffle(docs)
                asked = lm.prompter.format(question_message(it.questions[k], docs))
                asked_full = tok(asked + answer, add_special_tokens=False)["input_ids"]
                if len(asked_full) <= MAX_CONTEXT_TOKENS:
                    prompt, full = asked, asked_full
                    owner = other if rng.random() < 0.5 else j
            ctx = full is not None
            if not ctx:
                full = tok(prompt + answer, add_special_tokens=False)["input_ids"][:MAX_QA_TOKENS]
            rows.append((full, answer_start(tok, prompt, full), owner, ctx))
    ids, mask, lengths, starts = pad_rows(lm, [(f, st) for f, st, _, _ in rows])
    owner = torch.tensor([r[2] for r in rows])
    ctx = torch.tensor([r[3] for r in rows], dtype=torch.bool)
    return ids, mask, lengths, starts, owner, ctx


def _length_chunks(lengths: torch.Tensor, budget: int = 8192) -> list[torch.Tensor]:
    """Row indices in `micro_batches` of `budget` padded tokens: in-context rows are about ten times longer than
    bare ones, and padding each chunk only to its own longest row keeps the activations near the real token count."""
    rows = sorted((int(n), i) for i, n in enumerate(lengths.tolist()))
    return [torch.tensor([i for _, i in chunk]) for chunk in micro_batches(rows, budget)]


def batch_loss(lm: LoadedModel, injector: Injector, translator: Translator, items: list[TrainItem],
               per_doc: int, rng: random.Random, contrast: float = 0.0, margin: float = 1.0,
               in_context: float = 0.0) -> torch.Tensor:
    """Mean answer-token LM loss of the items' QA pairs, each row with its own document's translated adapter.

    With `contrast` > 0 (and two documents or more) every bare row (no documents in its prompt) is also run with
    the next document's adapter, and `contrast` x relu(margin - (that loss - its own)) is added: an adapter that
    helps every document alike (a format adapter) earns nothing from this term; only what is specific to the
    document does. `in_context`: the share of rows asked with documents in the prompt (`_qa_rows`)."""
    cfg = translator.cfg
    injector.clear()
    hidden, mask, inputs = read_states(lm, injector, cfg, [it.text for it in items])
    named = translator.factors(injector, hidden, mask, inputs)
    ids, qmask, lengths, starts, owner, ctx = _qa_rows(lm, items, per_doc, rng, in_context)
    bare = (~ctx).nonzero().squeeze(1)
    contrasted = contrast > 0 and len(items) > 1 and len(bare) > 0
    if contrasted:  # the bare rows again, each with another document's adapter
        n = len(owner)
        ids, qmask, lengths, starts = (torch.cat([t, t[bare]]) for t in (ids, qmask, lengths, starts))
        owner = torch.cat([owner, (owner[bare] + 1) % len(items)])
    device = hidden.device
    scaling = cfg.alpha / cfg.r
    chunks, parts = _length_chunks(lengths), []  # in-context rows are ~10x longer than bare ones: pad them apart
    try:
        for idx in chunks:
            o, w = owner[idx].to(device), int(lengths[idx].max())
            injector.set_terms({n_: [(a[o], b[o], scaling)] for n_, (a, b) in named.items()})
            parts.append(sequence_losses(lm.model, ids[idx, :w].to(device), qmask[idx, :w].to(device),
                                         lengths[idx].to(device), starts[idx].to(device)))
    finally:
        injector.clear()
    losses = torch.cat(parts)[torch.argsort(torch.cat(chunks)).to(device)]  # back in row order
    if not contrasted:
        return losses.mean()
    own, other = losses[:n], losses[n:]
    return own.mean() + contrast * torch.relu(margin - (other - own[bare.to(device)])).mean()


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf  # a line cut short by a crash


def train_translator(lm: LoadedModel, injector: Injector, items: list[TrainItem], cfg: TranslatorConfig,
                     train: TrainConfig, out: Path, meta: dict | None = None, progress: bool = True,
                     budget_s: float | None = None, init: Translator | None = None,
                     questions: list[str] | None = None, init_folder: Path | None = None) -> dict:
    """Train (or resume) a translator on `items`; checkpoints in `out` every `train.checkpoint_every` steps and
    the finished translator in `out` at the end. Returns a summary (steps, seconds, first and last losses).

    `budget_s`: stop once this call has trained that many seconds, with a checkpoint and a usable translator
    in `out` marked partial (run again to go on). `init`: a translator of the same config whose weights a new
    run starts from (ignored when resuming a checkpoint).

    Once the settings are checked, `out` lists what the translator trains on: the items' texts (SEEN_FILE) and
    `questions` (SEEN_QUESTIONS_FILE; none given: not written), with those of `init_folder`, the translator it
    started from, added."""
    items = [it for it in items if it.qa]
    if not items:
        raise PragError("no training document has a QA pair")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = next(lm.model.parameters()).device
    translator = new_translator(lm, injector, cfg).to(device)  # beside the model (a GPU's, when it is on one)
    params = [p for p in translator.parameters()]
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    per_epoch = math.ceil(len(items) / train.batch_docs)
    total = max(1, math.ceil(per_epoch * train.epochs))
    step, seconds = 0, 0.0
    ckpt = out / CHECKPOINT_FILE
    state = torch.load(ckpt, weights_only=False, map_location=device) if ckpt.exists() else None
    if train.bf16 is None:  # auto: as the run being resumed was, else where bfloat16 is fast
        train = replace(train, bf16=state["train"]["bf16"] if state else fast_bf16(device))
    if state is not None:
        saved = asdict(TranslatorConfig(**state["config"]))  # settings added since then take their defaults
        trained = asdict(TrainConfig(**state["train"]))
        if saved != asdict(cfg) or trained != asdict(train) or state["n_items"] != len(items):
            raise PragError(f"{ckpt} was made with other settings or data; remove it or use another --out")
        translator.load_state_dict(state["translator"])
        opt.load_state_dict(state["optimizer"])
        step, seconds = state["step"], state["seconds"]
    elif init is not None:
        # a translator without token memory may seed one with it: the memory's parameters start fresh
        grows = not init.cfg.memory_layers and cfg.memory_layers
        ignore = {"memory_layers", "memory_module", "memory_key_rank"} if grows else set()
        differ = sorted(k for k, v in asdict(cfg).items() if k not in ignore and asdict(init.cfg).get(k) != v)
        if differ:
            raise PragError(f"--init-from: that translator differs in {', '.join(differ)}")
        missing, unexpected = translator.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith("mem_") for k in missing):
            raise PragError(f"--init-from: weights do not match ({sorted(unexpected + missing)[:5]})")
    calibrated = state.get("memory_calibration") if state is not None else None
    if train.memory_push is not None and not cfg.memory_layers:
        raise PragError("memory_push calibrates a token memory's start: this run has no memory layers")
    if train.memory_push is not None and init is not None and init.cfg.memory_layers:
        raise PragError("memory_push calibrates a new memory: the translator this run starts from has one already")
    if state is None and train.memory_push is not None:
        calibrated = calibrate_memory(lm, injector, translator, [it.text for it in items[:16]], train.memory_push)
    resumed = step > 0
    write_seen(out, [it.text for it in items], inherited=seen_fingerprints(init_folder) if init_folder else None)
    if questions is not None:
        write_seen(out, questions, SEEN_QUESTIONS_FILE,
                   inherited=seen_fingerprints(init_folder, SEEN_QUESTIONS_FILE) if init_folder else None)

    def sched(s: int) -> float:  # linear warm-up, then cosine to zero
        return min(1.0, (s + 1) / max(1, train.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * s / total))
    losses_path = out / LOSS_FILE
    if losses_path.exists():  # keep the curve up to the checkpoint: later steps are redone
        kept = [x for x in losses_path.read_text(encoding="utf-8").splitlines() if _step_of(x) <= step]
        atomic_write(losses_path, "".join(x + "\n" for x in kept))
    bar = tqdm(total=total, initial=step, desc="translator", unit="step", disable=not progress)
    translator.train()
    started, this_call, saved_at = step, 0.0, -1

    def save_checkpoint() -> None:
        nonlocal saved_at
        if saved_at == step:
            return
        saved_at = step
        with atomic_file(ckpt) as tmp:
            torch.save({"translator": translator.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "seconds": seconds, "config": asdict(cfg), "train": asdict(train),
                        "n_items": len(items), "memory_calibration": calibrated}, tmp)
    while step < total:
        if budget_s is not None and this_call >= budget_s:
            save_checkpoint()
            break
        epoch, pos = divmod(step, per_epoch)
        order = list(range(len(items)))
        random.Random(train.seed + epoch).shuffle(order)
        batch = [items[i] for i in order[pos * train.batch_docs:(pos + 1) * train.batch_docs]]
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = train.lr * sched(step)
        device_type = next(lm.model.parameters()).device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=train.bf16):
            loss = batch_loss(lm, injector, translator, batch, train.qa_per_doc,
                              random.Random(train.seed * 7919 + step), train.contrast,
                              in_context=train.in_context)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lv = loss.item()  # waits for the device to finish the step, so the time below is the step's
        dt = time.perf_counter() - t0
        seconds += dt
        this_call += dt
        step += 1
        with open(losses_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "loss": round(lv, 5), "seconds": round(seconds, 2)}) + "\n")
        bar.set_postfix(loss=f"{lv:.3f}")
        bar.update(1)
        if step % train.checkpoint_every == 0 or step == total:
            save_checkpoint()
    bar.close()
    curve = [json.loads(line) for line in losses_path.read_text().splitlines()] if losses_path.exists() else []
    summary = {"steps": step, "total_steps": total, "partial": step < total, "steps_this_call": step - started,
               "resumed": resumed, "init_used": init is not None and not resumed,
               **({"memory_calibration": calibrated} if calibrated else {}),
               "train_seconds": round(seconds, 1), "documents": len(items),
               "first_loss": curve[0]["loss"] if curve else None,
               "last_loss": sum(c["loss"] for c in curve[-20:]) / len(curve[-20:]) if curve else None}
    translator.eval()
    sha = save_translator(translator, out, {"train": asdict(train), **summary, **(meta or {})})
    return {**summary, "sha256": sha}
