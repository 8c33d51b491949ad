"""Benchmarks run from the CLI (`prag bench ...`), each printing one JSON line with a baseline measured in the
same run. `update`: our low-rank Update (apply + restore) for the top-k adapters, warm (adapters in memory) and
cold (read from disk), against the reference PEFT path (PeftModel.from_pretrained + load_adapter + 
add_weighted_adapter "cat" + set_adapter, then unload)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000.0


def bench_update(lm, k: int = 3, repeats: int = 30, peft_repeats: int = 5, r: int = 2, alpha: float = 32.0) -> dict:
    """Time one Update (apply k adapters, then restore) on `lm`'s FFN, ours vs PEFT, in the same process."""
    from peft import PeftModel
    from safetensors.torch import save_file

    from .config import LoraConfig
    from .encode import adapter_config, adapter_tensors, read_adapter
    from .update import Adapter, Injector

    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    g = torch.Generator().manual_seed(0)
    adapters = [Adapter({n: (torch.randn(r, i, generator=g) * 0.01, torch.randn(o, r, generator=g) * 0.01)
                         for n, (i, o) in inj.shapes().items()}, r, alpha) for _ in range(k)]
    ids = torch.tensor([[1, 2, 3, 4]])
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for j, ad in enumerate(adapters):
            d = Path(tmp) / f"doc{j}"
            d.mkdir()
            save_file(adapter_tensors(ad), str(d / "adapter_model.safetensors"))
            import json

            (d / "adapter_config.json").write_text(json.dumps(adapter_config(LoraConfig(r=r, alpha=alpha), lm.spec)))
            dirs.append(d)
        warm, cold = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            inj.apply(adapters, [1.0] * k)
            inj.clear()
            warm.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = [read_adapter(d) for d in dirs]
            inj.apply(loaded, [1.0] * k)
            inj.clear()
            cold.append(time.perf_counter() - t0)
        inj.remove()
        with torch.no_grad():
            base = lm.model(input_ids=ids).logits
        peft_times = []
        for _ in range(peft_repeats):
            t0 = time.perf_counter()
            pm = PeftModel.from_pretrained(lm.model, str(dirs[0]), adapter_name="d0")
            for j, d in enumerate(dirs[1:], 1):
                pm.load_adapter(str(d), adapter_name=f"d{j}")
            names = [f"d{j}" for j in range(k)]
            pm.add_weighted_adapter(names, [1.0] * k, "merged", combination_type="cat")
            pm.set_adapter("merged")
            for n in names:
                pm.delete_adapter(n)
            lm.model = pm.unload()
            peft_times.append(time.perf_counter() - t0)
        with torch.no_grad():
            assert torch.equal(lm.model(input_ids=ids).logits, base), "PEFT path did not restore the model"
    ours, ours_cold, peft = _p50(warm), _p50(cold), _p50(peft_times)
    return {"ours_ms_p50": round(ours, 3), "ours_cold_ms_p50": round(ours_cold, 3), "peft_ms_p50": round(peft, 1),
            "speedup": round(peft / ours, 1), "speedup_cold": round(peft / ours_cold, 1), "k": k,
            "model": lm.spec, "threads": torch.get_num_threads()}


def bench_question(pipe, questions, methods=("closed", "rag", "prag"), top_k: int = 3) -> dict:
    """p50 seconds per question for each method on the same questions, same process. Adapters of the retrieved
    documents are built first (not timed), as a deployed P-RAG system has them ready."""
    need = sorted({h.doc.id for q in questions for h in pipe.kb.retriever.retrieve(q.question, top_k)})
    pipe.parameterize(need, progress=True)
    for h in need:  # adapters in memory, as in serving
        pipe.kb.load_adapter(h)
    pipe.ask(questions[0].question, method="closed")  # warm-up
    out: dict = {}
    for m in methods:
        secs, upd, toks = [], [], []
        for q in questions:
            a = pipe.ask(q.question, method=m, top_k=top_k)
            secs.append(a.seconds)
            upd.append(a.update_seconds)
            toks.append(a.prompt_tokens)
        out[m] = round(statistics.median(secs), 4)
        out[f"{m}_update_ms_p50"] = round(_p50(upd), 3)
        out[f"{m}_prompt_tokens_mean"] = round(sum(toks) / len(toks), 1)
    if "prag" in out and "rag" in out:
        out["prag_over_rag"] = round(out["prag"] / out["rag"], 3)
    out["n"] = len(questions)
    out["threads"] = torch.get_num_threads()
    return out


def bench_parameterize(lm, corpus: Path, docs: int = 32, loop_docs: int | None = None, batch_docs: int = 16,
                       train_dtype: str | None = None) -> dict:
    """Documents per hour, augmentation included, for the batched path and the one-document loop, on the first
    `docs` documents of `corpus` (the loop on the first `loop_docs` of them), same model, same process.
    Also reports how far apart the two paths' adapters are for the documents both did."""
    from .config import default_config
    from .pipeline import Pipeline
    from .store import KnowledgeBase

    out: dict = {}
    adapters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in (("batched", batch_docs), ("loop", 1)):
            cfg = default_config(lm.spec)
            cfg.lora.batch_docs = size
            if train_dtype:
                cfg.lora.train_dtype = train_dtype
            kb = KnowledgeBase.create(Path(tmp) / name, corpus, cfg)
            ids = [d.id for d in kb.docs[:docs]]
            loop_docs = min(loop_docs or max(2, len(ids) // 4), len(ids))
            if name == "loop":
                ids = ids[:loop_docs]
            pipe = Pipeline(kb, lm)
            t0 = time.perf_counter()
            s = pipe.parameterize(ids, progress=False)
            secs = time.perf_counter() - t0
            if s["failed"]:
                raise RuntimeError(f"{name}: {len(s['failed'])} documents failed: {s['failed']}")
            out[f"{name}_seconds_per_doc"] = round(secs / len(ids), 3)
            adapters[name] = [kb.load_adapter(i) for i in ids[:loop_docs]]
            pipe.injector.remove()
            pipe.trainer[1].remove()
    diff = max((a.factors[m][j] - b.factors[m][j]).abs().max().item()
               for a, b in zip(adapters["batched"], adapters["loop"]) for m in a.factors for j in (0, 1))
    dph = 3600.0 / out["batched_seconds_per_doc"]
    loop_dph = 3600.0 / out["loop_seconds_per_doc"]
    return {"docs_per_hour": round(dph, 1), "loop_docs_per_hour": round(loop_dph, 1),
            "speedup": round(dph / loop_dph, 2), **out, "docs": min(docs, len(kb.docs)), "loop_docs": loop_docs,
            "batch_docs": batch_docs, "max_abs_diff_vs_loop": diff, "model": lm.spec,
            "augmenter": cfg.augment.augmenter, "threads": torch.get_num_threads()}
