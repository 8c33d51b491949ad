"""Encoding (paper §3.2.2): a document's augmentation as training sequences (`training_sequences`), its LoRA
trained on them with the plain LM loss (or, with `loss_from`, on the answer tokens only), and adapters read and
written in PEFT's format (adapter_model.safetensors + adapter_config.json).

Two trainers, same result (tested): `train_adapter`, one document at a time (torch AdamW, the reference), and
`train_adapters`, many documents per forward pass. The batched one shares the frozen base model's matmuls across
documents while each batch row updates only its own document's A and B (per-row adapters, as multi-LoRA training
systems do), with each document's own step sequence, seed and Adam state, so it equals the loop up to float
rounding. Our own loops: transformers' Trainer refuses GGUF-loaded models. The batched trainer takes its loss
through the output layer a chunk of tokens at a time (`_LinearCrossEntropy`): with Gemma's 262k-entry vocabulary
the full logits and their log-softmax cost more than the rest of the model.
"""
from __future__ import annotations

import json
import math
import mmap
import re
import struct
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from .atomic import atomic_dir
from .config import LOSSES, LoraConfig
from .errors import PragError
from .generate import question_message
from .models import LoadedModel
from .rules import Augmentation
from .update import ADAPTER_CONFIG_FILE, ADAPTER_FILE, Adapter, Injector

PEFT_PREFIX = "base_model.model."
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def qa_texts(lm: LoadedModel, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(prompt, answer) strings for (question, answer) pairs, laid out as the question is asked at answer time."""
    spacer = "" if lm.prompter.chat else " "  # on the answer's side: " Paris" is one token, "Answer: " + "Paris" two
    return [(lm.prompter.format(question_message(q)), spacer + a + lm.prompter.end_of_answer) for q, a in pairs]


def _training_texts(lm: LoadedModel, aug: Augmentation, layout: str) -> list[tuple[str, str]]:
    """(text, prefix) per training sequence: prefix is the part before the answer ("" for a rewrite alone)."""
    qa = qa_texts(lm, [(q.question, q.answer) for q in aug.qa])
    rewrites = [r for r in aug.rewrites if r]
    if layout == "concat":
        return [(r + "\n\n" + p + a, r + "\n\n" + p) for r in rewrites or [""] for p, a in qa] or \
            [(r, "") for r in rewrites]
    if layout == "separate":
        return [(r, "") for r in rewrites] + [(p + a, p) for p, a in qa]
    raise PragError(f"unknown training layout {layout!r}: use separate or concat")


def training_sequences(lm: LoadedModel, aug: Augmentation, layout: str = "separate") -> list[torch.Tensor]:
    """Token sequences for encoding. Questions are asked exactly as at answer time (same prompt layout).

    layout "concat" is the paper's §3.2.2: one sequence per (rewrite, QA pair), rewrite ⊕ question ⊕ answer.
    layout "separate" (our default): each rewrite alone, and each question ⊕ answer alone. With the rewrite in
    the same sequence the answer can be copied from context, so the adapter need not store it (docs/results.md,
    "Encoding recipe on fictional documents").
    """
    tok = lm.tokenizer
    return [torch.tensor(tok(t, add_special_tokens=False)["input_ids"], dtype=torch.long)
            for t, _ in _training_texts(lm, aug, layout)]


def check_loss(loss: str) -> str:
    """`loss` if it is a known lora.loss setting, else a clear error."""
    if loss not in LOSSES:
        raise PragError(f"unknown lora.loss {loss!r}: use {' or '.join(LOSSES)}")
    return loss


def shared_prefix(full: list[int], head: list[int]) -> int:
    """How many leading tokens `head` (a prompt) shares with `full` (prompt + answer): where the answer starts
    (a token merged across the boundary counts as the answer's)."""
    n = 0
    while n < min(len(full), len(head)) and full[n] == head[n]:
        n += 1
    return n


def loss_starts(lm: LoadedModel, aug: Augmentation, layout: str, loss: str) -> list[int] | None:
    """Where each of `training_sequences`' sequences starts counting in the loss: None for loss "all" (every
    token, the paper), else for loss "answer" the first answer token of a QA sequence (0 for a rewrite), so
    training spends nothing on reproducing the prompt."""
    if check_loss(loss) == "all":
        return None
    tok = lm.tokenizer
    starts = []
    for text, prefix in _training_texts(lm, aug, layout):
        full, head = (tok(t, add_special_tokens=False)["input_ids"] for t in (text, prefix))
        starts.append(shared_prefix(full, head))
    return starts


def init_adapter(injector: Injector, cfg: LoraConfig, generator: torch.Generator) -> Adapter:
    """PEFT's default init: A ~ kaiming_uniform(a=sqrt(5)), B = 0, so the adapter starts as a no-op."""
    factors = {}
    for name, (d_in, d_out) in injector.shapes().items():
        bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform with a=sqrt(5) reduces to U(-1/sqrt(fan_in), +)
        a = (torch.rand(cfg.r, d_in, generator=generator) * 2 - 1) * bound
        factors[name] = (a, torch.zeros(d_out, cfg.r))
    return Adapter(factors, cfg.r, cfg.alpha)


def train_adapter(model: torch.nn.Module, injector: Injector, sequences: list[torch.Tensor], cfg: LoraConfig,
                  init: Adapter | None = None, loss_from: list[int] | None = None) -> tuple[Adapter, list[float]]:
    """Train a fresh LoRA on token sequences (1-D LongTensors), one optimizer step per sequence.

    Returns the adapter and the per-step losses. `init` (e.g. a warm-up LoRA) replaces the random start.
    `loss_from[i]` is the first token of sequence i that counts in its loss (default: all of them).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    start = init if init is not None else init_adapter(injector, cfg, gen)
    order = _schedule(len(sequences), cfg, gen)
    device = next(model.parameters()).device
    params = {n: (a.detach().clone().float().to(device).requires_grad_(True),
                  b.detach().clone().float().to(device).requires_grad_(True)) for n, (a, b) in start.factors.items()}
    opt = torch.optim.AdamW([p for ab in params.values() for p in ab], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaling = cfg.alpha / cfg.r
    losses: list[float] = []
    with injector.lock:
        dtype = injector.dtype  # factors stay float32; the forward runs in the model's dtype
        try:
            with torch.enable_grad():
                for i in order:
                    injector.set_terms({n: [(a.to(dtype), b.to(dtype), scaling)] for n, (a, b) in params.items()})
                    ids = sequences[i][: cfg.max_seq_len].unsqueeze(0).to(device)
                    labels = ids.clone()
                    labels[:, : _start(loss_from, i, ids.shape[1])] = -100
                    out = model(input_ids=ids, labels=labels)
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                    opt.step()
                    losses.append(out.loss.item())
        finally:
            injector.clear()
    factors = {n: (a.detach().cpu(), b.detach().cpu()) for n, (a, b) in params.items()}
    return Adapter(factors, cfg.r, cfg.alpha), losses


def _schedule(n_seqs: int, cfg: LoraConfig, gen: torch.Generator) -> list[int]:
    return [i for _ in range(cfg.epochs) for i in torch.randperm(n_seqs, generator=gen).tolist()]


class _RowAdam:
    """AdamW over stacked per-document parameters [B, ...], stepping only the rows given: each document keeps
    its own step count, so a document that sits out a pass is not touched (torch.optim would decay it)."""

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], dtype=torch.float64)  # on the CPU, like `rows`

    @torch.no_grad()
    def step(self, rows: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps[rows] += 1
        t = self.steps[rows]
        dev = self.params[0].device
        bc1 = (1 - b1 ** t).float().to(dev)
        bc2_sqrt = (1 - b2 ** t).sqrt().float().to(dev)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad[rows]
            shape = (-1,) + (1,) * (p.dim() - 1)
            pr = p[rows]
            if self.wd:
                pr.mul_(1 - self.lr * self.wd)
            mr = m[rows].mul_(b1).add_(g, alpha=1 - b1)
            vr = v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (vr.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
            pr.addcdiv_(mr, denom * bc1.view(shape), value=-self.lr)
            p[rows], m[rows], v[rows] = pr, mr, vr
            p.grad = None


def _start(loss_from: list[int] | None, i: int, length: int) -> int:
    """The first counted token of sequence i: at least 1 (token 0 is never predicted), and one token is always
    left to count even when truncation cut the answer off."""
    return min(max(loss_from[i], 1), length - 1) if loss_from else 0


def row_losses(logits: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor,
               starts: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's mean next-token loss over its own tokens (right padding ignored): HF's loss, per row.
    With `starts`, row j counts only the tokens from position starts[j] on (as HF does for labels of -100)."""
    pred, target = logits[:, :-1].float(), ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    pos = torch.arange(target.shape[1], device=target.device).unsqueeze(0)
    mask = pos < (lengths - 1).unsqueeze(1)
    if starts is not None:
        mask &= pos >= (starts - 1).unsqueeze(1)
    return (nll.view_as(target) * mask).sum(1) / mask.sum(1).clamp(min=1)


FUSED_OUTPUT_LOSS = True  # False: the batched trainer's loss from the full logits (the benchmark's baseline)


class _LinearCrossEntropy(torch.autograd.Function):
    """Each token's next-token loss from its final hidden state through the frozen output matrix, a chunk of
    tokens at a time, so the [tokens x vocab] logits never exist whole (Gemma's vocabulary has 262k entries). Each
    chunk's gradient, (softmax - one-hot) @ W, is formed in the forward pass while its logits are at hand: the
    backward only scales it. The output matrix gets no gradient (it is frozen)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int) -> torch.Tensor:
        nll = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        grad = torch.empty(h.shape, dtype=torch.float32, device=h.device)  # small: tokens x hidden
        for s in range(0, h.shape[0], chunk):
            logits = (h[s:s + chunk] @ weight.T).float()
            t = target[s:s + chunk]
            picked = logits.gather(1, t[:, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            probs = logits.sub_(top).exp_()  # softmax, in place: fewer passes over the chunk than logsumexp's
            total = probs.sum(dim=-1, keepdim=True)
            nll[s:s + chunk] = (top + total.log()).squeeze(1) - picked
            probs.div_(total)
            probs[torch.arange(len(t), device=t.device), t] -= 1.0
            grad[s:s + chunk] = probs.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        ctx.h_dtype = h.dtype
        return nll

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return (grad * g.float()[:, None]).to(ctx.h_dtype), None, None, None


_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")  # config fields that alter logits


def _decoder_and_head(model: torch.nn.Module):
    """(decoder, output layer) when the model's logits are exactly its decoder's last hidden state times the
    output matrix (no bias, soft-capping or scaling: its config says none and a check on a few tokens agrees),
    else None. Cached on the model."""
    if not hasattr(model, "_prag_decoder_and_head"):
        parts = None
        decoder = getattr(model, "model", None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        plain = all(getattr(model.config, k, None) in (None, 1, 1.0) for k in _LOGIT_TRANSFORMS)
        if plain and decoder is not None and isinstance(head, torch.nn.Linear) and head.bias is None:
            try:
                ids = (torch.arange(1, 6) % head.weight.shape[0]).unsqueeze(0).to(head.weight.device)
                with torch.no_grad():
                    ref = model(input_ids=ids).logits.float()
                    mine = (decoder(input_ids=ids).last_hidden_state @ head.weight.T).float()
                if torch.allclose(mine, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max())):
                    parts = (decoder, head)
            except (AttributeError, TypeError, RuntimeError, ValueError):  # not the layout this expects
                parts = None
        model._prag_decoder_and_head = parts
    return model._prag_decoder_and_head


def sequence_losses(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
                    starts: torch.Tensor | None = None) -> torch.Tensor:
    """`row_losses` of the model's forward pass on right-padded `ids`: through `_LinearCrossEntropy` when the model
    allows it (only counted tokens reach the output layer, never the whole logits), else from the full logits."""
    parts = _decoder_and_head(model) if FUSED_OUTPUT_LOSS else None
    if parts is not None and (parts[1]._forward_hooks or parts[1]._forward_pre_hooks):
        parts = None  # something hooks the output layer (a LoRA on lm_head): its forward must run
    if parts is None:
        return row_losses(model(input_ids=ids, attention_mask=mask).logits, ids, lengths, starts)
    decoder, weight = parts[0], parts[1].weight
    h = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    pos = torch.arange(ids.shape[1] - 1, device=ids.device).unsqueeze(0)
    keep = pos < (lengths - 1).unsqueeze(1)
    if starts is not None:
        keep &= pos >= (starts - 1).unsqueeze(1)
    chunk = max(16, (1 << 26) // weight.shape[0])  # at most ~256 MB of float32 logits at a time
    nll = _LinearCrossEntropy.apply(h[:, :-1][keep], weight, ids[:, 1:][keep], chunk)
    rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1).expand_as(keep)[keep]
    sums = torch.zeros(ids.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)
    return sums / keep.sum(1).clamp(min=1)


def micro_batches(rows: list[tuple[int, int]], budget: int):
    """Split (length, doc) rows, sorted by length, into consecutive chunks whose padded size (rows x longest)
    fits `budget` tokens; a single row always forms a chunk."""
    while rows:
        take = 1
        while take < len(rows) and rows[take][0] * (take + 1) <= budget:
            take += 1
        yield rows[:take]
        rows = rows[take:]


def train_adapters(model: torch.nn.Module, injector: Injector, sequences: list[list[torch.Tensor]], cfg: LoraConfig,
                   pad_id: int = 0, inits: list[Adapter | None] | None = None,
                   max_tokens: int | None = None,
                   loss_from: list[list[int] | None] | None = None) -> list[tuple[Adapter, list[float]]]:
    """Train one LoRA per document in `sequences` (each a list of 1-D LongTensors) together.

    Every pass advances each unfinished document by one optimizer step on its next sequence (its own seeded
    order, as `train_adapter` draws it). A pass is split into length-sorted micro-batches of at most
    `max_tokens` padded tokens, which bounds memory (logits are tokens x vocab) and wastes little on padding.
    `loss_from` (per document, as for `train_adapter`) limits each sequence's loss to its answer.
    Returns, per document, its adapter and per-step losses, as `train_adapter` would.
    """
    n = len(sequences)
    if n == 0:
        return []
    inits = inits or [None] * n
    gens = [torch.Generator().manual_seed(cfg.seed) for _ in range(n)]
    starts = [init if init is not None else init_adapter(injector, cfg, g) for init, g in zip(inits, gens)]
    seqs = [[s[: cfg.max_seq_len] for s in doc] for doc in sequences]
    orders = [_schedule(len(doc), cfg, g) for doc, g in zip(seqs, gens)]
    names = list(injector.modules)
    device = next(model.parameters()).device
    a_all = {nm: torch.stack([st.factors[nm][0] for st in starts]).float().to(device).requires_grad_(True)
             for nm in names}
    b_all = {nm: torch.stack([st.factors[nm][1] for st in starts]).float().to(device).requires_grad_(True)
             for nm in names}
    opt = _RowAdam([*a_all.values(), *b_all.values()], cfg.lr, cfg.weight_decay)
    scaling = cfg.alpha / cfg.r
    dtype = injector.dtype  # factors are kept in float32; the forward runs in the model's dtype
    budget = max_tokens or cfg.batch_tokens
    losses: list[list[float]] = [[] for _ in range(n)]
    with injector.lock:
        _decoder_and_head(model)  # its one-time check runs before any adapter is set
        try:
            with torch.enable_grad():
                for step in range(max(map(len, orders))):
                    todo = sorted((len(seqs[d][orders[d][step]]), d) for d in range(n) if step < len(orders[d]))
                    for chunk in micro_batches(todo, budget):
                        rows = torch.tensor([d for _, d in chunk])
                        lengths = torch.tensor([ln for ln, _ in chunk])
                        ids = torch.full((len(chunk), int(lengths.max())), pad_id, dtype=torch.long)
                        for j, (ln, d) in enumerate(chunk):
                            ids[j, :ln] = seqs[d][orders[d][step]]
                        mask = (torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).long()
                        ids, mask, lengths = ids.to(device), mask.to(device), lengths.to(device)
                        injector.set_terms({nm: [(a_all[nm][rows].to(dtype), b_all[nm][rows].to(dtype), scaling)]
                                            for nm in names})
                        first = None if not loss_from else torch.tensor(
                            [_start(loss_from[d], orders[d][step], ln) for ln, d in chunk], device=device)
                        per_row = sequence_losses(model, ids, mask, lengths, first)
                        per_row.sum().backward()
                        opt.step(rows)
                        for j, (_, d) in enumerate(chunk):
                            losses[d].append(per_row[j].item())
        finally:
            injector.clear()
    return [(Adapter({nm: (a_all[nm][i].detach().cpu().clone(), b_all[nm][i].detach().cpu().clone()) for nm in names},
                     cfg.r, cfg.alpha), losses[i]) for i in range(n)]


def adapter_config(cfg: LoraConfig, base_model: str) -> dict:
    """adapter_config.json as PEFT writes it for a LoRA on `target_modules`."""
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": 0.0, "target_modules": list(cfg.target_modules),
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "use_rslora": False, "use_dora": False, "modules_to_save": None,
    }


def adapter_tensors(adapter: Adapter, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    out = {}
    for name, (a, b) in adapter.factors.items():
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.to(dtype).contiguous()
        out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b.to(dtype).contiguous()
    return out


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def mmap_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file as zero-copy views of a read-only memory map (the format is an 8-byte
    header length, a JSON header of dtype/shape/offsets, then raw little-endian data)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (n,) = struct.unpack("<Q", mm[:8])
    header = json.loads(mm[8:8 + n])
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: unsupported dtype {info['dtype']} for {key}")
        start, end = info["data_offsets"]
        with warnings.catch_warnings():  # the map is read-only; we never write through these views
            warnings.simplefilter("ignore", UserWarning)
            t = torch.frombuffer(mm, dtype=dtype, count=(end - start) // dtype.itemsize, offset=8 + n + start)
        out[key] = t.view(info["shape"])
    return out


def save_adapter(adapter: Adapter, folder: Path, cfg: LoraConfig, base_model: str,
                 dtype: torch.dtype = torch.float32) -> None:
    """Write an adapter in PEFT's layout into `folder` (built aside, then swapped in whole)."""
    with atomic_dir(Path(folder)) as tmp:
        save_file(adapter_tensors(adapter, dtype), str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG_FILE).write_text(json.dumps(adapter_config(cfg, base_model), indent=2))


def read_adapter(folder: Path) -> Adapter:
    """Load an adapter saved in PEFT's layout (ours or PEFT's own), memory-mapped: float32 factors are views
    of the file, not copies."""
    conf = json.loads((folder / ADAPTER_CONFIG_FILE).read_text())
    tensors = mmap_safetensors(folder / ADAPTER_FILE)
    factors: dict[str, list] = {}
    for key, t in tensors.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        for part, slot in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if name.endswith(part):
                factors.setdefault(name[: -len(part)], [None, None])[slot] = t.float()
    r, alpha = int(conf["r"]), float(conf["lora_alpha"])
    for n, (_a, b) in factors.items():  # PEFT's per-module rank and alpha: fold alpha_m / r_m into B
        r_m = _pattern(conf.get("rank_pattern"), n, r)
        alpha_m = _pattern(conf.get("alpha_pattern"), n, alpha)
        if alpha_m / r_m != alpha / r:
            factors[n][1] = b * ((alpha_m / r_m) / (alpha / r))
    return Adapter({n: (a, b) for n, (a, b) in factors.items()}, r, alpha)


def _pattern(patterns: dict | None, module: str, default: float) -> float:
    """PEFT's rank_pattern / alpha_pattern lookup: a key names the module, or a regex for the end of its name."""
    for key, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default
