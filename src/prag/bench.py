"""Benchmarks run from the CLI (`prag bench ...`), each printing one JSON line with a baseline measured in the
same run. `update`: our low-rank Update (apply + restore) for the top-k adapters, warm (adapters in memory) and
cold (read from disk), against the reference PEFT path (PeftModel.from_pretrained + load_adapter +
add_weighted_adapter "cat" + set_adapter, then unload). `serve`: requests per second of the real server,
one request at a time against batched. `batch`: a queue of planned questions answered as static batches (the
previous path: `model.generate` per batch, every row to the end of the longest) against the continuous batch
(rows join and leave between decode steps), with the same adapters."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from . import encode
from .config import LoraConfig, default_config
from .encode import adapter_config, adapter_tensors, read_adapter
from .errors import PragError
from .evaluate import run_device
from .generate import Row, generate, generate_batch, generate_continuous, greedy_kwargs, question_message, take_from
from .llamacpp import LlamaCppBackend, dequantized_gguf, generate_text, gguf_architecture, write_adapter_gguf
from .methods import METHODS
from .models import cache_dir, resolve_gguf, sync
from .pipeline import Pipeline
from .store import KnowledgeBase
from .update import Adapter, Injector


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000.0


def bench_update(lm, k: int = 3, repeats: int = 30, peft_repeats: int = 5, r: int = 2, alpha: float = 32.0) -> dict:
    """Time one Update (apply k adapters, then restore) on `lm`'s FFN, ours vs PEFT, in the same process."""
    from peft import PeftModel
    from safetensors.torch import save_file


    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    g = torch.Generator().manual_seed(0)
    adapters = [Adapter({n: (torch.randn(r, i, generator=g) * 0.01, torch.randn(o, r, generator=g) * 0.01)
                         for n, (i, o) in inj.shapes().items()}, r, alpha) for _ in range(k)]
    ids = torch.tensor([[1, 2, 3, 4]], device=lm.model.device)
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
            sync(lm.model.device)
            warm.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = [read_adapter(d) for d in dirs]
            inj.apply(loaded, [1.0] * k)
            inj.clear()
            sync(lm.model.device)
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
            sync(lm.model.device)
            peft_times.append(time.perf_counter() - t0)
        with torch.no_grad():
            assert torch.equal(lm.model(input_ids=ids).logits, base), "PEFT path did not restore the model"
    ours, ours_cold, peft = _p50(warm), _p50(cold), _p50(peft_times)
    return {"ours_ms_p50": round(ours, 3), "ours_cold_ms_p50": round(ours_cold, 3), "peft_ms_p50": round(peft, 1),
            "speedup": round(peft / ours, 1), "speedup_cold": round(peft / ours_cold, 1), "k": k,
            "model": lm.spec, "threads": torch.get_num_threads(), "device": str(lm.model.device)}


def bench_question(pipe, questions, methods=("closed", "rag", "prag"), top_k: int = 3) -> dict:
    """p50 seconds per question for each method on the same questions, same process. Adapters of the retrieved
    documents are built first (not timed), as a deployed P-RAG system has them ready."""
    for h in pipe.parameterize_retrieved(questions, top_k):  # adapters in memory, as in serving
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
    out["device"] = run_device(pipe)  # "llamacpp" when that backend answers
    return out


def bench_parameterize(lm, corpus: Path, docs: int = 32, loop_docs: int | None = None, batch_docs: int = 16,
                       train_dtype: str | None = None, translator: str | None = None,
                       translated_docs: int | None = None) -> dict:
    """Documents per hour, augmentation included, for the batched path and the one-document loop, on the first
    `docs` documents of `corpus` (the loop on the first `loop_docs` of them), same model, same process; and the
    batched path once more with its loss taken from the full logits (`encode.FUSED_OUTPUT_LOSS` off), the
    baseline of the chunked output-layer loss. Also reports how far apart the paths' adapters are for the
    documents all of them did."""

    out: dict = {}
    adapters = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, fused in (("batched", batch_docs, True), ("full_logits", batch_docs, False), ("loop", 1, True)):
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
            encode.FUSED_OUTPUT_LOSS = fused
            try:
                s = pipe.parameterize(ids, progress=False)
            finally:
                encode.FUSED_OUTPUT_LOSS = True
            secs = time.perf_counter() - t0
            if s["failed"]:
                raise RuntimeError(f"{name}: {len(s['failed'])} documents failed: {s['failed']}")
            out[f"{name}_seconds_per_doc"] = round(secs / len(ids), 3)
            adapters[name] = [kb.load_adapter(i) for i in ids[:loop_docs]]
            if name == "batched":
                out["trained_bytes_per_doc"] = _stored_bytes([kb.doc_dir(i) for i in ids])
            pipe.injector.remove()
            pipe.trainer[1].remove()
        if translator:
            out.update(_bench_translated(lm, corpus, Path(tmp) / "translated", translator, translated_docs or docs))
    def diff(other: str) -> float:
        return max((a.factors[m][j] - b.factors[m][j]).abs().max().item()
                   for a, b in zip(adapters["batched"], adapters[other]) for m in a.factors for j in (0, 1))

    dph = 3600.0 / out["batched_seconds_per_doc"]
    loop_dph = 3600.0 / out["loop_seconds_per_doc"]
    if translator:
        out["translated_speedup"] = round(out["translated_docs_per_hour"] / dph, 1)
    return {"docs_per_hour": round(dph, 1), "loop_docs_per_hour": round(loop_dph, 1),
            "speedup": round(dph / loop_dph, 2),
            "fused_loss_speedup": round(out["full_logits_seconds_per_doc"] / out["batched_seconds_per_doc"], 2),
            **out, "docs": min(docs, len(kb.docs)), "loop_docs": loop_docs, "batch_docs": batch_docs,
            "max_abs_diff_vs_loop": diff("loop"), "max_abs_diff_vs_full_logits": diff("full_logits"), "model": lm.spec,
            "augmenter": cfg.augment.augmenter, "threads": torch.get_num_threads(), "device": str(lm.model.device)}


def _stored_bytes(folders: list[Path]) -> int:
    """Mean bytes of the adapter files per document folder."""
    sizes = [sum(f.stat().st_size for f in d.iterdir() if f.name.startswith("adapter_model")) for d in folders]
    return round(sum(sizes) / max(1, len(sizes)))


def _bench_translated(lm, corpus: Path, root: Path, translator: str, n: int) -> dict:
    """Seconds per document of `Pipeline.translate` (read, translate, store), the translator loaded first."""
    cfg = default_config(lm.spec)
    cfg.generation.adapters, cfg.generation.translator = "translated", translator
    kb = KnowledgeBase.create(root, corpus, cfg)
    pipe = Pipeline(kb, lm)
    t0 = time.perf_counter()
    pipe.translator  # loaded (and checksum-verified) once per process: not a per-document cost
    load = time.perf_counter() - t0
    docs = kb.docs[:n]
    t0 = time.perf_counter()
    pipe.translate(docs)
    secs = (time.perf_counter() - t0) / len(docs)
    pipe.injector.remove()
    return {"translated_seconds_per_doc": round(secs, 4), "translated_docs_per_hour": round(3600.0 / secs, 1),
            "translated_docs": len(docs), "translator_load_seconds": round(load, 2),
            "translated_bytes_per_doc": _stored_bytes([kb.translated_dir(d.id) for d in docs])}


def bench_generate(lm, tokens: int = 64, repeats: int = 3, k: int = 3, original: bool = True) -> dict:
    """Decode tokens/s of the transformers and llama.cpp backends, closed-book and with k random adapters of
    the real shape active (P-RAG), plus seconds per question (Update + greedy answer) for 5 questions.
    Same model, same prompts, same process. `original` also times llama.cpp on the shipped quantized GGUF."""

    gguf = resolve_gguf(lm.spec)
    if gguf is None:
        raise PragError(f"model {lm.spec!r} is not a GGUF model: llama.cpp needs one")
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    g = torch.Generator().manual_seed(0)
    adapters = [Adapter({n: (torch.randn(2, i, generator=g) * 0.01, torch.randn(o, 2, generator=g) * 0.01)
                         for n, (i, o) in inj.shapes().items()}, 2, 32.0) for _ in range(k)]
    weights = [1.0 / k] * k
    questions = ["Who was born first, Ada Lovelace or Charles Babbage?", "What is the capital of the country "
                 "where the Danube ends?", "Which film came out first, Metropolis or Nosferatu?",
                 "Where was the director of Casablanca born?", "Are the Rhine and the Elbe in the same country?"]
    prompts = [lm.prompter.format(question_message(q)) for q in questions]
    ids = lm.tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False)["input_ids"].to(lm.model.device)
    kw = greedy_kwargs(lm, stop_at_newline=False) | {"eos_token_id": None, "min_new_tokens": tokens}

    def tf_tok_s(ads) -> float:
        times = []
        with inj.applied(ads, weights[: len(ads)]), torch.inference_mode():
            lm.model.generate(ids, max_new_tokens=4, **kw | {"min_new_tokens": 4})  # warm-up
            for _ in range(repeats):
                t0 = time.perf_counter()
                lm.model.generate(ids, max_new_tokens=tokens, **kw)
                times.append(time.perf_counter() - t0)
        return tokens / statistics.median(times)

    def tf_question_s() -> float:
        times = []
        for p in prompts:
            t0 = time.perf_counter()
            with inj.applied(adapters, weights):
                generate(lm, p)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    out = {"transformers_tok_s": tf_tok_s([]), "transformers_prag_tok_s": tf_tok_s(adapters),
           "transformers_prag_question_s": tf_question_s()}
    inj.remove()
    arch = gguf_architecture(gguf)
    variants = [("llamacpp", dequantized_gguf(gguf, cache_dir()))] + ([("llamacpp_q", gguf)] if original else [])
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for j, ad in enumerate(adapters):
            paths.append(Path(tmp) / f"doc{j}.gguf")
            write_adapter_gguf(ad, arch, paths[-1])
        pairs = list(zip(paths, weights))
        prompt_ids = ids[0].tolist()
        for name, path in variants:
            be = LlamaCppBackend(path)

            def lc_tok_s(ads, be=be) -> float:
                be.generate(prompt_ids, 4, set(), adapters=ads)  # warm-up (loads adapters)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    be.generate(prompt_ids, tokens, set(), adapters=ads)
                    times.append(time.perf_counter() - t0)
                return tokens / statistics.median(times)

            out[f"{name}_tok_s"] = lc_tok_s([])
            out[f"{name}_prag_tok_s"] = lc_tok_s(pairs)
            qs = []
            for p in prompts:
                t0 = time.perf_counter()
                generate_text(be, lm, p, 24, pairs)
                qs.append(time.perf_counter() - t0)
            out[f"{name}_prag_question_s"] = statistics.median(qs)
            del be
    out = {k: round(v, 4 if k.endswith("question_s") else 1) for k, v in out.items()}
    out["prag_speedup"] = round(out["llamacpp_prag_tok_s"] / out["transformers_prag_tok_s"], 2)
    out["prag_question_speedup"] = round(out["transformers_prag_question_s"] / out["llamacpp_prag_question_s"], 2)
    out.update(tokens=tokens, prompt_tokens=len(prompt_ids), k=k, model=lm.spec, threads=torch.get_num_threads(),
               llamacpp_weights="dequantized float32 (llamacpp_*) and the shipped GGUF (llamacpp_q_*)"
               if original else "dequantized float32")
    return out


def bench_batch(pipe, questions: list[str], methods=("closed", "rag", "prag", "combine"), rows: int = 96,
                max_rows: int = 16, max_tokens: int | None = None) -> dict:
    """Seconds to answer `rows` planned questions (the questions x methods, cycled), at most `max_rows` at a time:
    static batches of `max_rows` through `model.generate` against the continuous batch, in the same run, with
    the answers compared."""
    if rows < 1 or max_rows < 1 or not questions or not methods:
        raise PragError("rows and max_rows must be at least 1, with at least one question and method")
    if dynamic := [m for m in methods if METHODS.get(m).dynamic is not None]:
        raise PragError(f"{', '.join(dynamic)} retrieve(s) while generating and cannot be batched")
    plans = [pipe.plan(q, m) for q in questions for m in methods]
    work = [plans[i % len(plans)] for i in range(rows)]
    n = max_tokens or max(pipe.new_tokens(m) for m in methods)  # one limit for the batch: the longest method's
    lm, inj = pipe.lm, pipe.injector
    pipe.backend.start()

    def static() -> list[str]:
        out = []
        for s in range(0, rows, max_rows):
            chunk = work[s:s + max_rows]
            with inj.lock:
                inj.apply_rows([(p.adapters, p.weights) for p in chunk])
                try:
                    out += generate_batch(lm, [p.prompt for p in chunk], [n] * len(chunk))
                finally:
                    inj.clear()
        return out

    def continuous() -> list[str]:
        out: dict[int, str] = {}
        queue = [Row(p.prompt, n, p.adapters, p.weights, done=lambda t, u, i=i: out.__setitem__(i, t))
                 for i, p in enumerate(work)]
        generate_continuous(lm, inj, take_from(queue), max_rows)
        return [out[i] for i in range(rows)]

    timed = {}
    for name, fn in (("static", static), ("continuous", continuous)):
        t0 = time.perf_counter()
        timed[name] = (fn(), time.perf_counter() - t0)
    (a, ts), (b, tc) = timed["static"], timed["continuous"]
    tokens = sum(len(lm.tokenizer(x, add_special_tokens=False)["input_ids"]) for x in b)
    return {"rows": rows, "max_rows": max_rows, "methods": list(methods), "max_tokens": n, "device": run_device(pipe),
            "model": pipe.config.model, "static_s": round(ts, 2), "continuous_s": round(tc, 2),
            "speedup": round(ts / tc, 2), "mean_answer_tokens": round(tokens / rows, 1),
            "answers_differ": sum(x != y for x, y in zip(a, b))}


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def bench_serve(pipe, questions: list[str], clients: int = 16, seconds: float = 30.0, max_batch: int = 16,
                max_tokens: int | None = None, seed: int = 0) -> dict:
    """Requests per second of the real server (uvicorn on loopback, `clients` concurrent HTTP clients sending for
    `seconds`), one request at a time (max_batch 1, the baseline) and batched, in the same run. Each request asks
    one of the first 4 questions with an explicit set of 1-3 parameterized documents; every answer is compared
    with the one `Pipeline.ask` gives it alone (mismatches), and every failed request counts as an error."""
    import random
    import threading

    import httpx

    from .serve import create_app, serve_in_thread

    if clients < 1 or seconds <= 0 or max_batch < 1:
        raise PragError("clients and max_batch must be at least 1, seconds above 0")
    ids = [d.id for d in pipe.kb.docs if pipe.kb.is_done(d.id)]
    if len(ids) < 3 or not questions:
        raise PragError("the kb needs at least 3 parameterized documents and some questions")
    rng = random.Random(seed)
    cases = [(q, tuple(sorted(rng.sample(ids, k)))) for q in questions[:4] for k in (1, 2, 3) for _ in range(2)]
    reference = {c: pipe.ask(c[0], "prag", doc_ids=list(c[1]), max_new_tokens=max_tokens).raw.strip() for c in cases}

    def run(batch: int) -> dict:
        app = create_app(pipe, "prag", max_batch=batch)
        server, base = serve_in_thread(app)
        url = f"{base}/v1/chat/completions"
        lat: list[float] = []
        stats = {"requests": 0, "errors": 0, "mismatches": 0}
        lock = threading.Lock()
        deadline = time.perf_counter() + seconds

        def client(i: int) -> None:
            r = random.Random(seed * 1000 + i)
            with httpx.Client(timeout=600) as c:
                while time.perf_counter() < deadline:
                    case = r.choice(cases)
                    t0 = time.perf_counter()
                    try:
                        resp = c.post(url, json={"messages": [{"role": "user", "content": case[0]}],
                                                 "doc_ids": list(case[1]), "max_tokens": max_tokens})  # None: kb's
                        resp.raise_for_status()
                        same = resp.json()["choices"][0]["message"]["content"] == reference[case]
                        with lock:
                            lat.append(time.perf_counter() - t0)
                            stats["requests"] += 1
                            stats["mismatches"] += not same
                    except Exception:  # noqa: BLE001 - counted, the load goes on
                        with lock:
                            stats["errors"] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0  # the sending window and the requests still in flight at its end
        server.should_exit = True
        b = app.state.batcher
        return {**stats, "seconds": round(wall, 1), "rps": round(stats["requests"] / wall, 2),
                "mean_rows_taken": round(b.rows / max(b.takes, 1), 2),  # requests the scheduler took at once
                "p50_ms": round(_percentile(lat, 0.5) * 1000, 1), "p95_ms": round(_percentile(lat, 0.95) * 1000, 1)}

    pipe.backend.start()
    serial, batched = run(1), run(max_batch)
    return {"clients": clients, "seconds": seconds, "max_batch": max_batch,
            "max_tokens": max_tokens or pipe.config.generation.max_new_tokens,
            "device": run_device(pipe), "model": pipe.config.model, "cases": len(cases),
            "distinct_answers": len(set(reference.values())),
            "serial_rps": serial["rps"], "batched_rps": batched["rps"],
            "speedup": round(batched["rps"] / serial["rps"], 2) if serial["rps"] else None,
            "p50_ms": batched["p50_ms"], "p95_ms": batched["p95_ms"],
            "errors": serial["errors"] + batched["errors"],
            "mismatches": {"serial": serial["mismatches"], "batched": batched["mismatches"]},
            "serial": serial, "batched": batched}
