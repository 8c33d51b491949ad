"""The CLI: bad input through `python -m prag.cli` (one clear `error:` line, a non-zero exit, no traceback, the
kb unchanged; none of these paths may load a model), and the commands' behaviour in process: eval over a dataset
folder, few-shot and scale, resuming a finished eval, warnings, and parameterize options. The guarded error paths
(exit code 2, transformers shadowed) are in test_cli_errors.py."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import prag.cli as cli
import prag.methods as methods_mod
import prag.pipeline as pipeline_mod
from conftest import FICTIONAL, write_jsonl
from prag.cli import app
from prag.config import PragConfig, default_config
from prag.corpus import load_questions
from prag.models import resolve_device
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase

GOOD = {"id": "a", "title": "T", "text": "Some text about Zorblax."}


def prag(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "prag.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def assert_clean_error(res, *needles):
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    for n in needles:
        assert n in lines[0], lines[0]


def snapshot(kb: Path) -> dict:
    return {p.relative_to(kb): p.read_bytes() for p in sorted(kb.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def kb(tmp_path_factory, tiny_model_dir):
    kb = tmp_path_factory.mktemp("cli") / "kb"
    res = prag("index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", kb, "--model", tiny_model_dir)
    assert res.returncode == 0, res.stderr
    return kb


BAD_CORPORA = {
    "malformed": (['{"id": "a", "title": "T", "text": "x"}', '{"id": "b", "text": '], ["line 2", "malformed JSON"]),
    "duplicate": ([GOOD, GOOD], ["duplicate id 'a'", "line 1"]),
    "missing_id": ([{"title": "T", "text": "x"}], ["'id' is missing"]),
    "empty_text": ([{"id": "a", "title": "T", "text": "   "}], ["'text' is empty"]),
    "not_object": (['["a", "b"]'], ["expected a JSON object"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CORPORA))
def test_index_rejects_bad_corpus_and_leaves_kb_unchanged(kb, tmp_path, case):
    rows, needles = BAD_CORPORA[case]
    before = snapshot(kb)
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert_clean_error(prag("index", "--corpus", bad, "--kb", kb, "--overwrite"), *needles)
    assert snapshot(kb) == before


def test_non_utf8_and_missing_files(kb, tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"id": "a", "title": "Caf\xe9", "text": "x"}\n'.encode("latin-1"))
    before = snapshot(kb)
    assert_clean_error(prag("index", "--corpus", bad, "--kb", kb, "--overwrite"), "not UTF-8")
    assert_clean_error(prag("index", "--corpus", tmp_path / "nope.jsonl", "--kb", kb), "file not found")
    assert snapshot(kb) == before


def test_missing_kb(tmp_path):
    assert_clean_error(prag("ask", "--kb", tmp_path / "nokb", "hello?"), "no knowledge base")
    assert_clean_error(prag("status", "--kb", tmp_path / "nokb"), "no knowledge base")


def test_unknown_method(kb):
    before = snapshot(kb)
    assert_clean_error(prag("ask", "--kb", kb, "--method", "bogus", "Who commands the Halvard Sorrel?"),
                       "unknown method 'bogus'")
    assert_clean_error(prag("eval", "--kb", kb, "--questions", FICTIONAL / "questions.jsonl", "--methods",
                            "closed,bogus"), "unknown method 'bogus'")
    assert snapshot(kb) == before


def test_question_that_retrieves_nothing(kb):
    before = snapshot(kb)
    assert_clean_error(prag("ask", "--kb", kb, "--method", "prag", "Xyzzy qwertz?"), "retrieves no document")
    assert snapshot(kb) == before


def test_bad_questions_file(kb, tmp_path):
    bad = write_jsonl(tmp_path / "q.jsonl", [{"id": "1", "question": "Who?", "golden_answers": "x"},
                                             {"id": "1", "question": "Who?", "golden_answers": ["x"]}])
    assert_clean_error(prag("eval", "--kb", kb, "--questions", bad), "duplicate id '1'")
    bad2 = write_jsonl(tmp_path / "q2.jsonl", [{"id": "1", "question": "Who?", "golden_answers": []}])
    assert_clean_error(prag("eval", "--kb", kb, "--questions", bad2), "golden_answers")


def test_kb_refuses_other_settings(kb):
    res = prag("index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", kb, "--preset", "paper")
    assert_clean_error(res, "other settings")


def test_unknown_document_ids(kb):
    assert_clean_error(prag("parameterize", "--kb", kb, "--ids", "fic-01,nope"), "unknown document id")


@pytest.mark.parametrize("device, needle", [("gpu0", "is not a torch device"), ("cuda:7", "CUDA device")])
def test_bad_device(kb, device, needle):
    import os

    before = snapshot(kb)
    res = subprocess.run([sys.executable, "-m", "prag.cli", "ask", "--kb", str(kb), "--method", "closed", "Who?"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PRAG_DEVICE": device})
    assert_clean_error(res, needle)
    assert snapshot(kb) == before


# ---------------------------------------------------------------- eval
def test_eval_over_a_dataset_folder_writes_json_and_markdown(tmp_path, tiny_model_dir, monkeypatch):
    ds = tmp_path / "datasets" / "fic"
    ds.mkdir(parents=True)
    shutil.copy(FICTIONAL / "corpus.jsonl", ds / "corpus.jsonl")
    shutil.copy(FICTIONAL / "questions.jsonl", ds / "questions.jsonl")
    monkeypatch.setenv("PRAG_DATASETS", str(tmp_path / "datasets"))
    cfg = default_config("smollm2")
    cfg.model = str(tiny_model_dir)
    KnowledgeBase.create(tmp_path / "kb", ds / "corpus.jsonl", cfg)
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["eval", "--dataset", "fic", "--kb", str(tmp_path / "kb"), "--split", "test",
                                 "--limit", "2", "--methods", "closed,rag,da-rag", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["dataset"] == "fic" and res["split"] == "test"
    assert res["command"].startswith("prag eval --kb ") and "--dataset fic" in res["command"]
    assert {m: res["methods"][m]["n"] for m in ("closed", "rag", "da-rag")} == {"closed": 2, "rag": 2, "da-rag": 2}
    md = out.with_suffix(".md").read_text()
    assert "| model | method |" in md and "da-rag" in md and "s/question" in md


def test_eval_few_shot_and_scale_reach_the_prompt_and_the_results(tmp_path, tiny_model_dir):
    cfg = default_config("smollm2")
    cfg.model = str(tiny_model_dir)
    cfg.lora.r = 3  # not the default: the results must record the kb's own settings
    KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", cfg)
    out = tmp_path / "res.json"
    args = ["eval", "--questions", str(FICTIONAL / "questions.jsonl"), "--kb", str(tmp_path / "kb"), "--split",
            "dev", "--methods", "closed", "--few-shot", "2", "--scale", "0.5", "--json", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    n_dev = len(load_questions(FICTIONAL / "questions.jsonl")) // 2
    assert len(res["few_shot"]) == 2 and res["scale"] == 0.5
    assert res["kb_config"]["lora"]["r"] == 3 and res["kb_config"]["augment"]["augmenter"] == "rule"

    expected = str(torch.empty(0, device=resolve_device()).device)  # "cpu", or "cuda:0" for "cuda"
    assert res["device"] == expected and res["methods"]["closed"]["device"] == expected
    assert res["methods"]["closed"]["n"] == n_dev - 2  # the examples are not scored
    rows = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert all(r["device"] == expected for r in rows)
    assert not {r["id"] for r in rows} & set(res["few_shot"])
    assert rows[0]["setting"]["scale"] == 0.5 and len(rows[0]["setting"]["few_shot"]) == 2
    assert rows[0]["prompt_tokens"] > 40  # the examples are in the prompt
    bad = CliRunner().invoke(app, args[:-2] + ["--scale", "-1"])
    assert bad.exit_code != 0 and "generation.scale" in str(bad.exception)


def test_finished_eval_rerun_builds_no_adapters(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    """The CLI asks `pending` which questions still need adapters: a re-run of a finished eval needs none."""
    built, loaded = [], []
    real = Pipeline.parameterize_retrieved

    def spy(self, questions, top_k, progress=True):
        built.append([q.id for q in questions])
        return real(self, questions, top_k, progress=False)

    def pipeline(kb_dir, flags=None):
        pipe = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override(flags or {}))
        loaded.append(pipe)
        return pipe

    monkeypatch.setattr(Pipeline, "parameterize_retrieved", spy)
    monkeypatch.setattr(cli, "_pipeline", pipeline)
    out = tmp_path / "r.json"
    args = ["eval", "--kb", str(tiny_kb.root), "--questions", str(FICTIONAL / "questions.jsonl"), "--limit", "2",
            "--methods", "closed,prag", "--top-k", "1", "--json", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert len(built) == 1 and len(built[0]) == 2  # first run: both questions' documents
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert built[1] == []  # second run: every answer is in the log
    res = json.loads(out.read_text())
    assert res["methods"]["prag"]["n"] == 2
    # the adapters' offline cost is reported from the kb's manifest, so the re-run (which built none) still has it
    used = loaded[-1].retrieved_ids(load_questions(FICTIONAL / "questions.jsonl")[:2], 1)
    enc = res["encoding"]
    assert enc["adapters"] == enc["timed"] == len(used) >= 1 and enc["sec_per_doc_median"] is not None
    assert f"{enc['sec_per_doc_median']:.1f} ({len(used)})" in out.with_suffix(".md").read_text()


def test_eval_cli_prints_the_empty_answer_warning(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_pipeline",
                        lambda kb_dir, flags=None: Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override(flags or {})))
    monkeypatch.setattr(methods_mod, "extract_answer", lambda raw: "")  # a model that answers nothing
    r = CliRunner().invoke(app, ["eval", "--kb", str(tiny_kb.root), "--questions", str(FICTIONAL / "questions.jsonl"),
                                 "--limit", "2", "--methods", "closed", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "warning: closed answered nothing for 2 of 2 questions" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["methods"]["closed"]["empty_answers"] == 2


def test_eval_json_into_a_folder_that_does_not_exist_yet(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_pipeline",
                        lambda kb_dir, flags=None: Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override(flags or {})))
    out = tmp_path / "new" / "deeper" / "r.json"
    r = CliRunner().invoke(app, ["eval", "--kb", str(tiny_kb.root), "--questions", str(FICTIONAL / "questions.jsonl"),
                                 "--limit", "1", "--methods", "closed", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["methods"]["closed"]["n"] == 1 and out.with_suffix(".log.jsonl").exists()


# ---------------------------------------------------------------- warmup and parameterize
def test_warmup_cli_warns_when_the_loss_rises(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_pipeline", lambda kb_dir, flags=None: Pipeline(tiny_kb, tiny_lm))
    args = ["warmup", "--kb", str(tiny_kb.root), "--questions", str(FICTIONAL / "questions.jsonl"), "--out"]
    r = CliRunner().invoke(app, args + [str(tmp_path / "a"), "--lr", "1e-3", "--epochs", "10"])
    assert r.exit_code == 0 and "warning" not in r.output, r.output  # a gentle recipe on the tiny model
    r = CliRunner().invoke(app, args + [str(tmp_path / "a"), "--lr", "1e-3", "--epochs", "10"])
    assert r.exit_code == 0 and "kept the warm-up already in" in r.output, r.output  # the same warm-up: not redone
    real = pipeline_mod.train_adapter

    def rising(*a, **k):  # a run whose loss climbs, as the per-document recipe's did over a whole dev split
        adapter, losses = real(*a, **k)
        return adapter, [4.0 + 0.1 * i for i in range(len(losses))]

    monkeypatch.setattr(pipeline_mod, "train_adapter", rising)
    r = CliRunner().invoke(app, args + [str(tmp_path / "b")])
    saved = json.loads((tmp_path / "b" / "warmup.json").read_text())
    assert saved["diverged"] and "warning: the warm-up diverged" in r.output, r.output


def test_parameterize_options_become_the_kbs_settings(tiny_kb, tiny_lm, monkeypatch):
    """--train-dtype on a kb without adapters rewrites kb.toml (so it keeps describing the adapters); on a kb
    that holds adapters made otherwise it is refused."""
    def pipeline(kb_dir, flags=None):
        kb = KnowledgeBase.open(kb_dir)
        return Pipeline(kb, tiny_lm, kb.config.override(flags or {}))

    monkeypatch.setattr(cli, "_pipeline", pipeline)
    first = tiny_kb.docs[0].id
    r = CliRunner().invoke(app, ["parameterize", "--kb", str(tiny_kb.root), "--ids", first, "--train-dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert PragConfig.load_toml(tiny_kb.root / "kb.toml").lora.train_dtype == "bfloat16"
    r = CliRunner().invoke(app, ["parameterize", "--kb", str(tiny_kb.root), "--ids", tiny_kb.docs[1].id,
                                 "--train-dtype", "float32"])
    assert r.exit_code != 0 and "need a new --kb" in str(r.exception or r.output)
    assert PragConfig.load_toml(tiny_kb.root / "kb.toml").lora.train_dtype == "bfloat16"


def test_eval_with_gold_documents_trains_them_and_reports_the_composition_gain(tmp_path, tiny_model_dir):
    from conftest import small_config, write_jsonl

    KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", small_config(tiny_model_dir, 128, 4))
    qs = write_jsonl(tmp_path / "q.jsonl", [
        {"id": f"q{i}", "question": "Is Ostrander Pell older than the Halvard Sorrel?", "golden_answers": ["yes"],
         "gold_doc_ids": ["fic-01", "fic-05"], "type": "comparison"} for i in range(2)])
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, ["eval", "--kb", str(tmp_path / "kb"), "--questions", str(qs), "--methods",
                                 "rag,prag", "--doc-source", "gold", "--batch-size", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["doc_source"] == "gold" and res["composition"]["prag"]["n"] == 2
    assert set(res["methods"]) == {"rag@gold", "prag@gold", "prag@gold-1", "prag@gold-2"}
    kb = KnowledgeBase.open(tmp_path / "kb")
    assert kb.is_done("fic-01") and kb.is_done("fic-05") and not kb.is_done("fic-02"), "only the gold documents"


def test_translator_train_records_the_documents_and_questions_it_trained_on(tiny_kb, tmp_path):
    """So that an eval or a tuning on them is flagged (Pipeline.translator_saw): every training document's text
    and every QA pair's question, given (--qa) or from the augmenter."""
    from prag.translate import SEEN_QUESTIONS_FILE, seen_fingerprints, text_fingerprint

    docs = tiny_kb.docs[:2]
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"doc_id": docs[0].id, "question": "Who keeps the lamp?",
                                              "answer": "Orla"}])
    sub = tmp_path / "kb2"
    corpus = write_jsonl(tmp_path / "two.jsonl", [{"id": d.id, "title": d.title, "text": d.text} for d in docs])
    KnowledgeBase.create(sub, corpus, tiny_kb.config)
    out = tmp_path / "t"
    r = CliRunner().invoke(app, ["translator", "train", "--kb", str(sub), "--out", str(out), "--qa", str(qa),
                                 "--read-layer", "1", "--epochs", "1", "--batch-docs", "2", "--no-bf16"])
    assert r.exit_code == 0, r.output
    assert seen_fingerprints(out) == {text_fingerprint(d.as_text()) for d in docs}
    asked = seen_fingerprints(out, SEEN_QUESTIONS_FILE)
    assert text_fingerprint("Who keeps the lamp?") in asked and len(asked) > 1  # the augmenter's for the other
