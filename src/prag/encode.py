"""Encoding (paper §3.2.2): training one document's LoRA with the plain LM loss on its augmented sequences,
and reading/writing adapters in PEFT's format (adapter_model.safetensors + adapter_config.json).

Our own loop (transformers' Trainer refuses GGUF-loaded models). Seeded: the same document, config and
model give the same adapter bit for bit on the same machine.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .config import LoraConfig
from .update import Adapter, Injector

PEFT_PREFIX = "base_model.model."


def init_adapter(injector: Injector, cfg: LoraConfig, generator: torch.Generator) -> Adapter:
    """PEFT's default init: A ~ kaiming_uniform(a=sqrt(5)), B = 0, so the adapter starts as a no-op."""
    factors = {}
    for name, (d_in, d_out) in injector.shapes().items():
        bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform with a=sqrt(5) reduces to U(-1/sqrt(fan_in), +)
        a = (torch.rand(cfg.r, d_in, generator=generator) * 2 - 1) * bound
        factors[name] = (a, torch.zeros(d_out, cfg.r))
    return Adapter(factors, cfg.r, cfg.alpha)


def train_adapter(model: torch.nn.Module, injector: Injector, sequences: list[torch.Tensor], cfg: LoraConfig,
                  init: Adapter | None = None) -> tuple[Adapter, list[float]]:
    """Train a fresh LoRA on token sequences (1-D LongTensors), one optimizer step per sequence.

    Returns the adapter and the per-step losses. `init` (e.g. a warm-up LoRA) replaces the random start.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    start = init if init is not None else init_adapter(injector, cfg, gen)
    params = {n: (a.detach().clone().float().requires_grad_(True), b.detach().clone().float().requires_grad_(True))
              for n, (a, b) in start.factors.items()}
    opt = torch.optim.AdamW([p for ab in params.values() for p in ab], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaling = cfg.alpha / cfg.r
    losses: list[float] = []
    with injector.lock:
        injector.set_terms({n: [(a, b, scaling)] for n, (a, b) in params.items()})
        try:
            with torch.enable_grad():
                for _ in range(cfg.epochs):
                    order = torch.randperm(len(sequences), generator=gen).tolist()
                    for i in order:
                        ids = sequences[i][: cfg.max_seq_len].unsqueeze(0)
                        out = model(input_ids=ids, labels=ids)
                        opt.zero_grad(set_to_none=True)
                        out.loss.backward()
                        opt.step()
                        losses.append(out.loss.item())
        finally:
            injector.clear()
    factors = {n: (a.detach(), b.detach()) for n, (a, b) in params.items()}
    return Adapter(factors, cfg.r, cfg.alpha), losses


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
    import mmap
    import struct
    import warnings

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


def read_adapter(folder: Path) -> Adapter:
    """Load an adapter saved in PEFT's layout (ours or PEFT's own), memory-mapped: float32 factors are views
    of the file, not copies."""
    conf = json.loads((folder / "adapter_config.json").read_text())
    tensors = mmap_safetensors(folder / "adapter_model.safetensors")
    factors: dict[str, list] = {}
    for key, t in tensors.items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        for part, slot in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if name.endswith(part):
                factors.setdefault(name[: -len(part)], [None, None])[slot] = t.float()
    return Adapter({n: (a, b) for n, (a, b) in factors.items()}, int(conf["r"]), float(conf["lora_alpha"]))
