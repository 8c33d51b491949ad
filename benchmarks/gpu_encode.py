"""Batched encoding vs the one-document loop on a GPU, at SmolLM2-135M's shape with random weights (no
download): seconds per document for `train_adapters` (B documents per pass) and `train_adapter`, same run.
Sequences mimic the default recipe per document: 1 rewrite (~150 tokens) + 6 QA pairs (~65 tokens), 3 epochs.

    python3 benchmarks/gpu_encode.py --docs 64 --loop-docs 8 --out benchmarks/results/gpu/gpu-encode-h100.json   # PYTHONPATH=src
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prag.config import LoraConfig
from prag.encode import train_adapter, train_adapters
from prag.update import Injector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--loop-docs", type=int, default=8)
    ap.add_argument("--batch", default="16,64")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    docs = [[torch.randint(0, 49152, (int(140 + 20 * torch.rand(1, generator=g)),), generator=g)]
            + [torch.randint(0, 49152, (int(55 + 20 * torch.rand(1, generator=g)),), generator=g) for _ in range(6)]
            for _ in range(args.docs)]
    lcfg = LoraConfig(lr=3e-3, epochs=3)
    results = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "docs": args.docs,
               "loop_docs": args.loop_docs, "rows": []}
    for dname in args.dtypes.split(","):
        dtype = getattr(torch, dname)
        model = base.to(device=dev, dtype=dtype)
        model.set_attn_implementation("eager" if dtype != torch.float32 else "sdpa")
        inj = Injector(model, ["gate_proj", "up_proj", "down_proj"])
        train_adapters(model, inj, docs[:2], LoraConfig(epochs=1), pad_id=0)  # warm-up
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        loop = [train_adapter(model, inj, d, lcfg)[0] for d in docs[: args.loop_docs]]
        sync()
        loop_s = (time.perf_counter() - t0) / args.loop_docs
        row = {"dtype": dname, "loop_seconds_per_doc": round(loop_s, 4)}
        for b in [int(x) for x in args.batch.split(",")]:
            lcfg.batch_tokens = 64 * 1024
            sync()
            t0 = time.perf_counter()
            out = []
            for s in range(0, args.docs, b):
                out += [a for a, _ in train_adapters(model, inj, docs[s:s + b], lcfg, pad_id=0)]
            sync()
            secs = (time.perf_counter() - t0) / args.docs
            diff = max((loop[i].factors[n][j] - out[i].factors[n][j]).abs().max().item()
                       for i in range(args.loop_docs) for n in loop[i].factors for j in (0, 1))
            row[f"batch{b}_seconds_per_doc"] = round(secs, 4)
            row[f"batch{b}_speedup"] = round(loop_s / secs, 2)
            row[f"batch{b}_docs_per_hour"] = round(3600 / secs)
            row[f"batch{b}_max_abs_diff_vs_loop"] = diff
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        inj.remove()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
