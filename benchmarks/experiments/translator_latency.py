"""Top-3 translation latency, stored bytes per document and a forward pass with three adapters applied: v6 (the
shipped translator) against v7 (token memory), same documents, same run.

    .venv/bin/python benchmarks/experiments/translator_latency.py > benchmarks/results/translator/latency-v6-v7.json
"""
import json
import time

import torch
from safetensors.torch import save as st_save

from prag.corpus import load_corpus
from prag.encode import adapter_tensors
from prag.models import load_model
from prag.translate import load_translator, translate
from prag.update import Injector

torch.set_num_threads(2)
lm = load_model("smollm2", threads=2)
inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
docs = [d.as_text() for d in load_corpus("benchmarks/data/fictional30/corpus.jsonl")]
out = {}
for name, folder in (("v6", "src/prag/translators/smollm2"), ("v7", "benchmarks/results/translator/v7")):
    tr, _ = load_translator(folder)
    translate(lm, inj, tr, docs[:3])
    times = []
    for i in range(0, 30, 3):
        t0 = time.perf_counter()
        translate(lm, inj, tr, docs[i:i + 3])
        times.append(time.perf_counter() - t0)
    nbytes = [len(st_save(adapter_tensors(a, torch.float16))) for a in translate(lm, inj, tr, docs[:30])]
    # the Update and one generation-sized forward with 3 adapters, against v6's
    ids = torch.randint(100, 1000, (1, 64))
    gen = []
    for i in range(0, 15, 3):
        ads = translate(lm, inj, tr, docs[i:i + 3])
        with torch.no_grad():
            t0 = time.perf_counter()
            with inj.applied(ads):
                for _ in range(3):
                    lm.model(input_ids=ids)
            gen.append((time.perf_counter() - t0) / 3)
    out[name] = {"top3_translate_ms": round(1000 * sorted(times)[len(times) // 2], 1),
                 "bytes_per_doc_fp16": int(sum(nbytes) / len(nbytes)),
                 "forward_64_tokens_with_3_adapters_ms": round(1000 * sorted(gen)[len(gen) // 2], 1)}
with torch.no_grad():
    t0 = time.perf_counter()
    for _ in range(5):
        lm.model(input_ids=ids)
out["base_forward_64_tokens_ms"] = round(1000 * (time.perf_counter() - t0) / 5, 1)
print(json.dumps(out))
