"""The Update's memory with token-memory adapters (the shipped SmolLM2 translator's): the packed copy each adapter
keeps and the tensors one batched Update installs, the update.py of a given commit (before per-layer extra
columns) against the working tree's, same adapters, same run, and the logits of both compared.

    .venv/bin/python benchmarks/experiments/update_memory.py a8bfe79 \
        > benchmarks/results/translator/update-memory.json
"""
import importlib.util
import json
import subprocess
import sys
import tempfile
import time

import torch

import prag
from prag.corpus import load_corpus
from prag.models import load_model
from prag.translate import load_translator, translate
from prag.update import Injector

ROWS, K, TOKENS = 8, 3, 64
before_rev = sys.argv[1] if len(sys.argv) > 1 else "a8bfe79"


def module_at(rev: str):
    """prag.update as it was at `rev`, imported beside today's (it imports prag's errors and registry only)."""
    src = subprocess.run(["git", "show", f"{rev}:src/prag/update.py"], check=True, capture_output=True,
                         text=True).stdout
    path = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    path.write(src)
    path.close()
    spec = importlib.util.spec_from_file_location("prag._update_at_rev", path.name,
                                                  submodule_search_locations=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "prag"
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def active_bytes(active: dict) -> int:
    """Bytes of the tensors an Update installed (a view counts its storage, once: a reused buffer is all held)."""
    tensors = []
    for v in active.values():
        for x in v:
            if isinstance(x, torch.Tensor):
                tensors.append(x)
            elif isinstance(x, dict):
                tensors += [t for ab in x.values() for t in ab]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


torch.set_num_threads(2)
lm = load_model("smollm2", threads=2)
targets = ["gate_proj", "up_proj", "down_proj"]
docs = [d.as_text() for d in load_corpus("benchmarks/data/fictional30/corpus.jsonl")][:ROWS * K]
now_inj = Injector(lm.model, targets)
tr, sha = load_translator(prag.__path__[0] + "/translators/smollm2")
made = translate(lm, now_inj, tr, docs)
now_inj.remove()
ids = torch.randint(100, 1000, (ROWS, TOKENS))
out = {"translator_sha256": sha[:16], "rows": ROWS, "k": K, "tokens": TOKENS, "before": before_rev,
       "ranks": sorted({a.shape[0] for ad in made for a, _ in ad.factors.values()})}
logits = {}
for name, mod in (("before", module_at(before_rev)), ("now", sys.modules["prag.update"])):
    inj = mod.Injector(lm.model, targets)
    ads = [mod.Adapter(ad.factors, ad.r, ad.alpha) for ad in made]
    for ad in ads:
        ad.packed(inj)
    factor_bytes = sum(t.numel() * t.element_size() for ad in ads for ab in ad.factors.values() for t in ab)
    rows = [(ads[i * K:(i + 1) * K], [1 / K] * K) for i in range(ROWS)]
    times = []
    with torch.no_grad(), inj.lock:
        for _ in range(3):
            t0 = time.perf_counter()
            inj.apply_rows(rows)
            logits[name] = lm.model(input_ids=ids).logits
            times.append(time.perf_counter() - t0)
            installed = active_bytes(inj.active)
            inj.clear()
        inj.apply(*rows[0])
        single = active_bytes(inj.active)
        inj.clear()
    inj.remove()
    out[name] = {"adapter_MB_with_packed_copy": round(sum(ad.nbytes() for ad in ads) / len(ads) / 1e6, 2),
                 "adapter_factors_MB": round(factor_bytes / len(ads) / 1e6, 2),
                 "batch_update_installed_MB": round(installed / 1e6, 1),
                 "one_question_update_MB": round(single / 1e6, 1),
                 "batch_update_and_forward_s_median": round(sorted(times)[1], 3)}
out["packed_ratio"] = round(out["before"]["adapter_MB_with_packed_copy"] / out["now"]["adapter_MB_with_packed_copy"], 1)
out["batch_update_ratio"] = round(out["before"]["batch_update_installed_MB"] / out["now"]["batch_update_installed_MB"], 1)
out["max_abs_logit_difference"] = float((logits["before"] - logits["now"]).abs().max())
print(json.dumps(out, indent=1))
