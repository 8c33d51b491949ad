"""The llama.cpp backend: adapter export to llama.cpp's LoRA GGUF, a tiny GGUF model whose llama.cpp logits
(with and without adapters) must match the transformers backend's, and the pipeline on either backend.

The tiny model is written here: SmolLM2's tokenizer metadata (from the bundled package) with 2 random layers of
width 64, so both backends run it in well under a second."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from conftest import FICTIONAL, small_config

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the [llamacpp] extra) is not installed")

DIMS = {"llama.block_count": 2, "llama.embedding_length": 64, "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16,
        "llama.context_length": 2048, "general.file_type": 0}


def make_tiny_gguf(path, seed: int = 0):
    from gguf import GGUFReader, GGUFWriter
    from gguf import GGUFValueType as V

    from prag.models import resolve_gguf

    src = GGUFReader(str(resolve_gguf("smollm2")))
    w = GGUFWriter(str(path), "llama")
    for name, f in src.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = DIMS.get(name, f.contents())
        w.add_key_value(name, value, f.types[0], sub_type=f.types[-1] if f.types[0] == V.ARRAY else None)
    rng = np.random.default_rng(seed)
    d, ff, vocab, kv = 64, 128, 49152, 32

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.15).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(vocab, d) * 4)
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    for i in range(2):
        for name, arr in (("attn_norm", 1 + rand(d)), ("ffn_norm", 1 + rand(d)), ("attn_q", rand(d, d)),
                          ("attn_k", rand(kv, d)), ("attn_v", rand(kv, d)), ("attn_output", rand(d, d)),
                          ("ffn_gate", rand(ff, d)), ("ffn_up", rand(ff, d)), ("ffn_down", rand(d, ff))):
            w.add_tensor(f"blk.{i}.{name}.weight", arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny_gguf_lm(tiny_gguf, tmp_path_factory):
    from prag.models import load_model

    with pytest.MonkeyPatch.context() as mp:  # the dequantized caches of this module stay in a temporary folder
        mp.setenv("PRAG_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_model(str(tiny_gguf))


def random_adapter(inj, seed: int, scale: float = 0.3):
    from prag.update import Adapter

    g = torch.Generator().manual_seed(seed)
    return Adapter({n: (torch.randn(2, i, generator=g) * scale, torch.randn(o, 2, generator=g) * scale)
                    for n, (i, o) in inj.shapes().items()}, 2, 32.0)


def test_gguf_tensor_names():
    from prag import PragError
    from prag.llamacpp import gguf_tensor_name

    assert gguf_tensor_name("model.layers.3.mlp.up_proj") == "blk.3.ffn_up.weight"
    assert gguf_tensor_name("model.layers.12.mlp.down_proj") == "blk.12.ffn_down.weight"
    assert gguf_tensor_name("model.layers.0.mlp.gate_proj") == "blk.0.ffn_gate.weight"
    with pytest.raises(PragError, match="only the FFN"):
        gguf_tensor_name("model.layers.0.self_attn.q_proj")


def test_adapter_gguf_has_llama_cpp_layout(tmp_path, tiny_gguf_lm):
    from gguf import GGUFReader

    from prag.llamacpp import write_adapter_gguf
    from prag.update import Injector

    inj = Injector(tiny_gguf_lm.model, ["gate_proj", "up_proj", "down_proj"])
    ad = random_adapter(inj, 0)
    inj.remove()
    write_adapter_gguf(ad, "llama", tmp_path / "a.gguf")
    r = GGUFReader(str(tmp_path / "a.gguf"))
    assert r.fields["general.type"].contents() == "adapter"
    assert r.fields["adapter.type"].contents() == "lora"
    assert r.fields["adapter.lora.alpha"].contents() == pytest.approx(32.0)
    tensors = {t.name: t for t in r.tensors}
    assert len(tensors) == 2 * len(ad.factors)
    a, b = ad.factors["model.layers.1.mlp.down_proj"]
    ta, tb = tensors["blk.1.ffn_down.weight.lora_a"], tensors["blk.1.ffn_down.weight.lora_b"]
    assert ta.shape.tolist() == [128, 2] and tb.shape.tolist() == [2, 64]  # ggml order: ne0 = row length
    np.testing.assert_array_equal(np.asarray(ta.data).reshape(2, 128), a.numpy())
    np.testing.assert_array_equal(np.asarray(tb.data).reshape(64, 2), b.numpy())


def test_llama_cpp_logits_match_transformers_with_adapters(tiny_gguf, tiny_gguf_lm, tmp_path):
    from prag.llamacpp import LlamaCppBackend, write_adapter_gguf
    from prag.update import Injector

    lm = tiny_gguf_lm
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    ads = [random_adapter(inj, s) for s in (1, 2, 3)]
    paths = []
    for j, ad in enumerate(ads):
        paths.append(tmp_path / f"d{j}.gguf")
        write_adapter_gguf(ad, "llama", paths[-1])
    be = LlamaCppBackend(tiny_gguf, n_ctx=256)
    ids = lm.tokenizer("Who wrote the Zorblat Codex? It was", add_special_tokens=False)["input_ids"]
    weights = [0.5, 0.3, 0.2]
    results = {}
    for name, k in (("base", 0), ("one", 1), ("three", 3)):
        with inj.applied(ads[:k], weights[:k]), torch.no_grad():
            ref = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        got = be.logits(ids, list(zip(paths[:k], weights[:k])))
        results[name] = (ref, got)
        tol = 1e-3 * np.abs(ref).max()
        assert np.abs(ref - got).max() < tol, (name, np.abs(ref - got).max(), tol)
    inj.remove()
    base = results["base"][1]
    for name in ("one", "three"):  # the adapters really act in llama.cpp
        assert np.abs(results[name][1] - base).max() > 50 * 1e-3 * np.abs(base).max(), name
    # deactivated afterwards: the bare model again
    np.testing.assert_allclose(be.logits(ids), base, atol=1e-5)


def _gguf_kb(tmp_path, tiny_gguf):
    from prag.store import KnowledgeBase

    cfg = small_config(tiny_gguf, max_seq_len=128, max_new_tokens=8)
    return KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", cfg)


def test_pipeline_same_answers_on_both_backends_and_isolated_requests(tiny_gguf, tiny_gguf_lm, tmp_path):
    from prag.pipeline import Pipeline
    from prag.store import GGUF_FILE

    kb = _gguf_kb(tmp_path, tiny_gguf)
    pipe = Pipeline(kb, tiny_gguf_lm)
    pipe.parameterize(progress=False)
    rec = kb._manifest[kb.docs[0].id]
    assert (kb.doc_dir(kb.docs[0].id) / GGUF_FILE).exists() and "gguf_sha256" in rec  # produced by parameterize
    questions = ["What was Ostrander Pell's occupation?", "Which river flows through the town of Wrenmoor Gate?",
                 "What is the population of Wrenmoor Gate?"]
    answers = {}
    for backend in ("transformers", "llamacpp"):
        pipe.config.generation.backend = backend
        for q in questions:
            for m in ("closed", "prag", "combine"):
                answers[backend, q, m] = pipe.ask(q, method=m).raw
    for q in questions:
        for m in ("closed", "prag", "combine"):
            assert answers["transformers", q, m] == answers["llamacpp", q, m], (q, m)
    assert any(answers["llamacpp", q, "prag"] != answers["llamacpp", q, "closed"] for q in questions)
    # concurrent requests on the llamacpp backend: each sees only its own documents
    pipe.config.generation.backend = "llamacpp"
    got, errors = {}, []

    def worker(q):
        try:
            for _ in range(3):
                got.setdefault(q, set()).add(pipe.ask(q, method="prag").raw)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(got[q] == {answers["llamacpp", q, "prag"]} for q in questions)
    assert len({answers["llamacpp", q, "prag"] for q in questions}) > 1  # the requests really differ


def test_llamacpp_backend_flare_runs_and_dragin_is_refused(tiny_gguf, tiny_gguf_lm, tmp_path):
    from prag import PragError
    from prag.pipeline import Pipeline

    kb = _gguf_kb(tmp_path, tiny_gguf)
    pipe = Pipeline(kb, tiny_gguf_lm)
    pipe.config.generation.backend = "llamacpp"
    pipe.config.dynamic.flare_threshold = 1.1  # every token is below it: retrieval must fire
    a = pipe.ask("What was Ostrander Pell's occupation?", method="flare")
    assert a.retrieval_rounds >= 1 and a.hits
    with pytest.raises(PragError, match="attention"):
        pipe.ask("What was Ostrander Pell's occupation?", method="dragin")
    pipe.config.generation.backend = "vllm"
    with pytest.raises(PragError, match="unknown backend"):
        pipe.ask("What was Ostrander Pell's occupation?", method="closed")


def test_adapter_gguf_is_reexported_when_missing_or_corrupt(tiny_gguf, tiny_gguf_lm, tmp_path):
    from prag.pipeline import Pipeline
    from prag.store import GGUF_FILE, KnowledgeBase

    kb = _gguf_kb(tmp_path, tiny_gguf)
    doc = kb.docs[0].id
    Pipeline(kb, tiny_gguf_lm).parameterize([doc], progress=False)
    path = kb.doc_dir(doc) / GGUF_FILE
    good = path.read_bytes()
    path.write_bytes(good[:100])  # torn file
    kb2 = KnowledgeBase.open(kb.root)
    assert kb2.adapter_gguf(doc) == path and path.read_bytes() == good
    path.unlink()  # a kb from before the llama.cpp backend
    assert KnowledgeBase.open(kb.root).adapter_gguf(doc).read_bytes() == good


def test_bench_generate_reports_both_backends(tiny_gguf_lm):
    from prag.bench import bench_generate

    # a smoke test: the benchmark runs both backends on a GGUF model and reports every figure
    res = bench_generate(tiny_gguf_lm, tokens=4, repeats=1, k=3, original=True)
    keys = ("transformers_tok_s", "transformers_prag_tok_s", "llamacpp_tok_s", "llamacpp_prag_tok_s",
            "llamacpp_q_tok_s", "llamacpp_q_prag_tok_s", "llamacpp_prag_question_s", "transformers_prag_question_s")
    assert set(keys) <= set(res) and res["tokens"] == 4 and res["k"] == 3 and res["prompt_tokens"] > 5


def test_api_streams_on_the_llamacpp_backend(tiny_gguf, tiny_gguf_lm, tmp_path):
    from fastapi.testclient import TestClient

    from prag.pipeline import Pipeline
    from prag.serve import create_app

    kb = _gguf_kb(tmp_path, tiny_gguf)
    pipe = Pipeline(kb, tiny_gguf_lm)
    pipe.config.generation.backend = "llamacpp"
    client = TestClient(create_app(pipe, "prag-tiny"))
    body = {"model": "prag-tiny", "messages": [{"role": "user", "content": "What was Ostrander Pell's occupation?"}],
            "max_tokens": 8, "method": "prag", "top_k": 2}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    s = client.post("/v1/chat/completions", json=body | {"stream": True})
    assert s.status_code == 200
    pieces = []
    for line in s.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[len("data: "):])
            if chunk.get("choices"):
                pieces.append(chunk["choices"][0]["delta"].get("content") or "")
    assert "".join(pieces).strip() == text.strip() and text.strip()


def test_an_adapter_with_per_module_ranks_is_refused_for_llama_cpp(tmp_path, tiny_gguf_lm):
    from prag.errors import PragError
    from prag.llamacpp import write_adapter_gguf
    from prag.update import Adapter, Injector

    inj = Injector(tiny_gguf_lm.model, ["gate_proj", "up_proj", "down_proj"])
    ad = random_adapter(inj, 0)
    inj.remove()
    name = next(iter(ad.factors))
    a, b = ad.factors[name]
    wide = Adapter({**ad.factors, name: (torch.cat([a, a]), torch.cat([b, b], 1))}, ad.r, ad.alpha)
    with pytest.raises(PragError, match="one rank in every module"):
        write_adapter_gguf(wide, "llama", tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()
