"""Benchmarks run (smoke) on the tiny model and report their baseline in the same JSON."""
from prag.bench import bench_update
from prag.models import load_model


def test_bench_update_reports_ours_and_peft(tiny_model_dir):
    lm = load_model(str(tiny_model_dir))
    res = bench_update(lm, k=3, repeats=3, peft_repeats=1)
    for key in ("ours_ms_p50", "ours_cold_ms_p50", "peft_ms_p50", "speedup"):
        assert res[key] > 0
    assert abs(res["speedup"] - res["peft_ms_p50"] / res["ours_ms_p50"]) / res["speedup"] < 0.05  # rounding


def test_bench_parameterize_reports_both_paths(tiny_model_dir, monkeypatch):
    from conftest import FICTIONAL
    from prag import encode
    from prag.bench import bench_parameterize

    lm = load_model(str(tiny_model_dir))
    calls = {"chunked": 0, "full": 0}
    chunked, full = encode._LinearCrossEntropy.apply, encode.row_losses

    def count(name, fn):
        return lambda *a, **k: calls.__setitem__(name, calls[name] + 1) or fn(*a, **k)

    monkeypatch.setattr(encode._LinearCrossEntropy, "apply", count("chunked", chunked))
    monkeypatch.setattr(encode, "row_losses", count("full", full))
    res = bench_parameterize(lm, FICTIONAL / "corpus.jsonl", docs=4, loop_docs=2, batch_docs=4)
    assert calls["chunked"] > 0 and calls["full"] > 0  # the batched run and its full-logits baseline each ran
    assert res["docs"] == 4 and res["loop_docs"] == 2 and res["docs_per_hour"] > 0 and res["loop_docs_per_hour"] > 0
    assert abs(res["speedup"] - res["docs_per_hour"] / res["loop_docs_per_hour"]) < 0.02 * res["speedup"] + 0.01
    assert res["max_abs_diff_vs_loop"] < 1e-2, "both paths must train the same adapters"
    assert res["max_abs_diff_vs_full_logits"] < 1e-2 and res["full_logits_seconds_per_doc"] > 0  # the loss's baseline
    assert abs(res["fused_loss_speedup"] - res["full_logits_seconds_per_doc"] / res["batched_seconds_per_doc"]) < 0.01
    assert res["device"] == "cpu"


def test_bench_question_times_each_method_and_names_the_device(tiny_kb, tiny_lm):
    from conftest import FICTIONAL
    from prag.bench import bench_question
    from prag.corpus import load_questions
    from prag.pipeline import Pipeline

    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    res = bench_question(Pipeline(tiny_kb, tiny_lm), qs, methods=("closed", "rag", "prag"), top_k=1)
    assert res["n"] == 2 and res["device"] == "cpu"
    assert all(res[m] > 0 for m in ("closed", "rag", "prag"))
    assert res["prag_update_ms_p50"] > 0 and res["prag_prompt_tokens_mean"] < res["rag_prompt_tokens_mean"]
    assert res["prag_over_rag"] == round(res["prag"] / res["rag"], 3)


def test_bench_parameterize_with_a_translator_reports_the_translated_path(tiny_model_dir, tmp_path):
    from conftest import FICTIONAL
    from prag.bench import bench_parameterize
    from prag.translate import TranslatorConfig, new_translator, save_translator
    from prag.update import Injector

    lm = load_model(str(tiny_model_dir))
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    save_translator(new_translator(lm, inj, TranslatorConfig(model=str(tiny_model_dir), read_layer=1)), tmp_path / "t")
    inj.remove()
    res = bench_parameterize(lm, FICTIONAL / "corpus.jsonl", docs=2, loop_docs=2, batch_docs=2,
                             translator=str(tmp_path / "t"), translated_docs=4)
    assert res["translated_docs"] == 4 and res["translated_docs_per_hour"] > 0
    assert abs(res["translated_speedup"] - res["translated_docs_per_hour"] / res["docs_per_hour"]) < 0.05 * res["translated_speedup"] + 0.1
    assert 0 < res["translated_bytes_per_doc"] < res["trained_bytes_per_doc"]  # float16 against float32


def test_bench_serve_runs_the_server_both_ways_and_checks_every_answer(tiny_kb, tiny_lm):
    import pytest

    from conftest import FICTIONAL
    from prag import PragError
    from prag.bench import bench_serve
    from prag.corpus import load_questions
    from prag.pipeline import Pipeline

    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.max_new_tokens = 4
    pipe.parameterize(["fic-01", "fic-02", "fic-03"], progress=False)
    qs = [q.question for q in load_questions(FICTIONAL / "questions.jsonl")]
    res = bench_serve(pipe, qs, clients=4, seconds=1.5, max_batch=4, max_tokens=4)
    assert res["serial"]["requests"] > 0 and res["batched"]["requests"] > 0
    assert res["errors"] == 0 and res["mismatches"] == {"serial": 0, "batched": 0}
    assert res["speedup"] == round(res["batched_rps"] / res["serial_rps"], 2)
    assert 0 < res["p50_ms"] <= res["p95_ms"]
    with pytest.raises(PragError, match="clients"):
        bench_serve(pipe, qs, clients=0)
    pipe.injector.remove()


def test_bench_batch_answers_the_same_queue_both_ways(tiny_kb, tiny_lm):
    import pytest

    from conftest import FICTIONAL
    from prag import PragError
    from prag.bench import bench_batch
    from prag.corpus import load_questions
    from prag.pipeline import Pipeline

    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.parameterize(progress=False)
    qs = [q.question for q in load_questions(FICTIONAL / "questions.jsonl")][:3]
    res = bench_batch(pipe, qs, ("closed", "prag", "combine"), rows=11, max_rows=4, max_tokens=6)
    assert res["rows"] == 11 and res["answers_differ"] == 0, res
    assert res["static_s"] > 0 and res["continuous_s"] > 0
    assert res["speedup"] == pytest.approx(res["static_s"] / res["continuous_s"], rel=0.1)  # from unrounded times
    for bad, match in (({"rows": 0}, "rows"), ({"methods": ("flare",)}, "flare")):
        with pytest.raises(PragError, match=match):
            bench_batch(pipe, qs, **({"methods": ("prag",)} | bad))
    pipe.injector.remove()
