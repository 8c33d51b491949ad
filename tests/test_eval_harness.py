"""The evaluation harness of the paper's experiments: the DA-RAG baseline, retrieval recall@k, eval over a
dataset folder (JSON + Markdown beside it), and the Table-1 report with plots."""
from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest
import torch

from conftest import FICTIONAL
from prag.corpus import load_questions
from prag.evaluate import doc_recall, run_eval
from prag.pipeline import Pipeline


def test_doc_recall():
    assert doc_recall(["a", "b", "c"], ["a", "d"]) == 0.5
    assert doc_recall(["a"], ["a"]) == 1.0
    assert doc_recall(["x"], ["a", "b"]) == 0.0
    assert doc_recall(["a", "a"], ["a"]) == 1.0
    assert doc_recall(["a"], []) is None


def test_da_rag_puts_the_augmentation_in_context_without_training(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "What was Ostrander Pell's occupation?"
    prompt, hits, adapters, _ = pipe.plan(q, "da-rag")
    rag_prompt, rag_hits, _, _ = pipe.plan(q, "rag")
    assert [h.doc.id for h in hits] == [h.doc.id for h in rag_hits] and not adapters
    aug = pipe._augment(hits[0].doc)
    assert f"Q: {aug.qa[0].question} A: {aug.qa[0].answer}" in prompt
    assert prompt != rag_prompt
    assert not any(tiny_kb.is_done(h.doc.id) for h in hits)  # nothing was trained for it
    ans = pipe.ask(q, method="da-rag")
    assert ans.prompt_tokens > pipe.ask(q, method="closed").prompt_tokens


def test_eval_reports_retrieval_recall_and_per_type_metrics(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    qs = load_questions(FICTIONAL / "questions.jsonl")[:4]
    for i, q in enumerate(qs):
        q.type = "a" if i % 2 else "b"
    res = run_eval(pipe, qs, ["closed", "rag"], 2, progress=False)["methods"]
    expect = sum(doc_recall([h.doc.id for h in tiny_kb.retriever.retrieve(q.question, 2)], q.gold_doc_ids)
                 for q in qs) / len(qs)
    assert res["rag"]["retrieval_recall"] == pytest.approx(expect)
    assert "retrieval_recall" not in res["closed"]  # closed-book retrieves nothing
    assert set(res["rag"]["by_type"]) == {"a", "b"}
    for t in ("a", "b"):
        assert set(res["rag"]["by_type"][t]) >= {"f1", "em", "precision", "recall", "n"}


def test_eval_over_a_dataset_folder_writes_json_and_markdown(tmp_path, tiny_model_dir, monkeypatch):
    from typer.testing import CliRunner

    from prag.cli import app
    from prag.config import default_config
    from prag.store import KnowledgeBase

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
    assert res["dataset"] == "fic" and res["split"] == "test" and res["command"].startswith("prag eval --kb ") and "--dataset fic" in res["command"]
    assert {m: res["methods"][m]["n"] for m in ("closed", "rag", "da-rag")} == {"closed": 2, "rag": 2, "da-rag": 2}
    md = out.with_suffix(".md").read_text()
    assert "| model | method |" in md and "da-rag" in md and "s/question" in md


def _fake(dataset, model, f1s, types=None):
    methods = {}
    for m, f1 in f1s.items():
        s = {"f1": f1, "em": f1 / 2, "precision": f1, "recall": f1, "sec_per_question": 1.0 + f1,
             "update_sec_per_question": 0.01 if m == "prag" else 0.0, "prompt_tokens": 50, "n": 10}
        if types:
            s["by_type"] = {t: {"f1": f1 + i / 10, "em": 0.0, "precision": 0.0, "recall": 0.0, "n": 5}
                            for i, t in enumerate(types)}
        methods[m] = s
    return {"dataset": dataset, "model": model, "methods": methods, "command": f"prag eval --dataset {dataset}"}


def test_report_lays_out_table_one_and_plots(tmp_path):
    from prag.report import markdown_table, write_report

    files = []
    for i, res in enumerate([_fake("2wqa", "smollm2", {"closed": 0.2, "prag": 0.25}, ["comparison", "bridge"]),
                             _fake("popqa", "smollm2", {"closed": 0.1, "rag": 0.3}),
                             _fake("2wqa", "gemma3-270m", {"closed": 0.15})]):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(res))
    out = write_report(files, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    table = markdown_table([json.loads(f.read_text()) for f in files])
    head = table.splitlines()[0]
    assert head == "| model | method | 2wqa bridge | 2wqa comparison | 2wqa total | popqa |"
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in table.splitlines()[2:]}
    assert rows[("SmolLM2-135M-Instruct", "prag")].endswith("| 0.350 | 0.250 | 0.250 | – |")
    assert rows[("SmolLM2-135M-Instruct", "rag")].endswith("| – | – | – | 0.300 |")
    assert rows[("Gemma 3 270M", "closed")].endswith("| 0.150 | – |")
    assert list(rows)[0] == ("SmolLM2-135M-Instruct", "closed")  # methods in the paper's order
    few = _fake("popqa", "smollm2", {"prag": 0.4})
    few["methods"]["prag"]["n"] = 5
    more = markdown_table([json.loads(f.read_text()) for f in files] + [few])
    assert "| 0.400 (n=5) |" in more and "| 0.300 |" in more  # a cell over fewer questions says so
    assert "prag eval --dataset popqa" in md and "Update ms/question" in md
    assert "| retrieval recall | encoding s/doc (adapters) | device |" in md
    assert "| – | – | cpu |" in md  # no retrieval recall, no encoding record, no device: the CPU
    for p in out["plots"]:
        assert (tmp_path / "report" / p.split("/")[-1]).stat().st_size > 5000


# ---------------------------------------------------------------- ablation switches (§5.2–5.4)
def test_select_parts():
    from prag import PragError
    from prag.augment import QA, Augmentation, select_parts
    from prag.corpus import Document

    doc = Document("d", "T", "Body text.")
    aug = Augmentation(["rewrite one"], [QA("q?", "a", "rule")], {})
    assert select_parts(aug, doc, "both").rewrites == ["rewrite one"] and len(select_parts(aug, doc, "both").qa) == 1
    assert select_parts(aug, doc, "rewrite").qa == [] and select_parts(aug, doc, "rewrite").rewrites == ["rewrite one"]
    assert select_parts(aug, doc, "qa").rewrites == ["T: Body text."] and len(select_parts(aug, doc, "qa").qa) == 1
    none = select_parts(aug, doc, "none")
    assert none.rewrites == ["T: Body text."] and none.qa == [] and none.notes["parts"] == "none"
    with pytest.raises(PragError, match="unknown augment.parts"):
        select_parts(aug, doc, "all")


def test_reference_augmenter(tmp_path):
    from prag import PragError
    from prag.augment import ReferenceAugmenter
    from prag.corpus import load_corpus

    docs = load_corpus(FICTIONAL / "corpus.jsonl")
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"doc_id": docs[0].id, "qa": [{"question": "Who is it?", "answer": "Someone"}]}) + "\n")
    aug = ReferenceAugmenter(str(ref))
    a0, a1 = aug.augment_many(docs[:2], 1, 3)
    assert [(q.question, q.answer) for q in a0.qa] == [("Who is it?", "Someone")] and a0.notes["qa_source"] == "reference"
    assert a1.notes["qa_source"] == "rule" and a1.qa  # not covered: rule pairs
    ref.write_text('{"doc_id": "x", "pairs": []}\n')
    with pytest.raises(PragError, match="line 1"):
        ReferenceAugmenter(str(ref))
    with pytest.raises(PragError, match="needs augment.reference"):
        ReferenceAugmenter(None)


def test_parts_none_trains_on_the_document_only(tiny_kb, tiny_lm):
    tiny_kb.config.augment.parts = "none"
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[0]
    pipe.parameterize([doc.id], progress=False)
    aug = tiny_kb.load_augmentation(doc.id)
    assert aug.rewrites == [doc.as_text()] and aug.qa == []


def test_warmup_adapter_is_every_documents_starting_point(tiny_kb, tiny_lm, tmp_path):
    import torch

    from prag.config import PragConfig
    from prag.corpus import split
    from prag.encode import read_adapter
    from prag.store import KnowledgeBase

    pipe = Pipeline(tiny_kb, tiny_lm)
    dev = split(load_questions(FICTIONAL / "questions.jsonl"), "dev")
    res = pipe.warmup(dev, tmp_path / "warm", lr=1e-3, epochs=2)  # its own recipe, not the kb's
    assert res["questions"] == len(dev) and res["steps"] == len(dev) * 2
    assert tiny_kb.config.lora.epochs != 2 and (res["lr"], res["epochs"]) == (1e-3, 2)
    saved = json.loads((tmp_path / "warm" / "warmup.json").read_text())  # the recipe and losses travel with it
    assert (saved["lr"], saved["epochs"], len(saved["losses"])) == (1e-3, 2, res["steps"])
    assert saved["diverged"] == (saved["final_loss"] >= saved["first_loss"])  # windows of min(10, steps // 2)
    warm = read_adapter(tmp_path / "warm")
    assert any(b.abs().max() > 0 for _, b in warm.factors.values())  # trained: B left zero
    # lr 0: a document's adapter must be exactly the warm-up LoRA (batched path and one-document loop)
    cfg = PragConfig.from_dict(tiny_kb.config.to_dict())
    cfg.lora.init_from, cfg.lora.lr = str(tmp_path / "warm"), 0.0
    for batch in (1, 4):
        cfg.lora.batch_docs = batch
        kb = KnowledgeBase.create(tmp_path / f"kb{batch}", FICTIONAL / "corpus.jsonl", cfg)
        Pipeline(kb, tiny_lm).parameterize([d.id for d in kb.docs[:2]], progress=False)
        for d in kb.docs[:2]:
            ad = kb.load_adapter(d.id)
            for name, (a, b) in warm.factors.items():
                assert torch.equal(ad.factors[name][0], a) and torch.equal(ad.factors[name][1], b)


def test_eval_resume_does_not_reuse_rows_of_other_settings(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    log = tmp_path / "run.log.jsonl"
    run_eval(pipe, qs, ["rag"], 1, log, progress=False)
    assert len(log.read_text().splitlines()) == 2
    run_eval(pipe, qs, ["rag"], 1, log, progress=False)  # same settings: nothing redone
    assert len(log.read_text().splitlines()) == 2
    res = run_eval(pipe, qs, ["rag"], 2, log, progress=False)  # another top-k: redone, not mixed in
    assert len(log.read_text().splitlines()) == 4 and res["methods"]["rag"]["n"] == 2


def test_eval_resume_redoes_parametric_rows_when_the_adapters_change(tiny_kb, tiny_lm, tmp_path):
    """prag/combine rows carry a fingerprint of the kb's encoding recipe: rows of other adapters are not reused,
    closed-book rows are; a row logged before the fingerprint existed still resumes."""
    from prag.evaluate import pending
    from prag.store import recipe_key

    pipe = Pipeline(tiny_kb, tiny_lm)
    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    log = tmp_path / "run.log.jsonl"
    run_eval(pipe, qs, ["closed", "prag"], 1, log, progress=False)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert {r["method"]: "adapters" in r["setting"] for r in rows} == {"closed": False, "prag": True}
    assert pending(pipe, qs, ["closed", "prag"], 1, log) == []
    key = recipe_key(pipe.config)
    pipe.config.lora.batch_docs += 1  # the same adapters: still resumes
    assert recipe_key(pipe.config) == key and pending(pipe, qs, ["prag"], 1, log) == []
    pipe.config.lora.lr *= 2  # other adapters
    assert recipe_key(pipe.config) != key
    assert pending(pipe, qs, ["prag"], 1, log) == qs and pending(pipe, qs, ["closed"], 1, log) == []
    legacy = tmp_path / "legacy.log.jsonl"  # written before the fingerprint existed
    legacy.write_text("".join(json.dumps({**r, "setting": {k: v for k, v in r["setting"].items() if k != "adapters"}})
                              + "\n" for r in rows))
    assert pending(pipe, qs, ["closed", "prag"], 1, legacy) == []


def test_warmup_is_kept_only_when_it_is_the_same_warmup(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    import prag.pipeline as pipeline_mod
    from prag.corpus import split

    calls = []
    real = pipeline_mod.train_adapter
    monkeypatch.setattr(pipeline_mod, "train_adapter", lambda *a, **k: calls.append(1) or real(*a, **k))
    pipe = Pipeline(tiny_kb, tiny_lm)
    dev = split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:4]
    out = tmp_path / "warm"
    assert not pipe.warmup(dev, out, lr=1e-3, epochs=1)["reused"] and len(calls) == 1
    again = pipe.warmup(dev, out, lr=1e-3, epochs=1)
    assert again["reused"] and len(calls) == 1 and again["adapter_sha256"]
    assert not pipe.warmup(dev, out, lr=1e-3, epochs=1, force=True)["reused"] and len(calls) == 2
    assert not pipe.warmup(dev, out, lr=3e-3, epochs=1)["reused"] and len(calls) == 3  # another recipe
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 4  # other questions
    (out / "adapter_model.safetensors").write_bytes(b"damaged")  # a checksum that no longer holds
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 5
    saved = json.loads((out / "warmup.json").read_text())
    saved.pop("key")  # a warm-up written before the key existed (as stop 16's diverged one) is retrained
    (out / "warmup.json").write_text(json.dumps(saved))
    assert not pipe.warmup(dev[:3], out, lr=3e-3, epochs=1)["reused"] and len(calls) == 6


def test_resumed_eval_builds_adapters_only_for_unanswered_questions(tiny_kb, tiny_lm, tmp_path):
    from prag.evaluate import pending

    pipe = Pipeline(tiny_kb, tiny_lm)
    qs = load_questions(FICTIONAL / "questions.jsonl")[:3]
    log = tmp_path / "run.log.jsonl"
    assert pending(pipe, qs, ["prag"], 1, log) == qs  # no log yet: everything
    run_eval(pipe, qs[:2], ["rag"], 1, log, progress=False)
    assert pending(pipe, qs, ["rag"], 1, log) == qs[2:]
    assert pending(pipe, qs, ["rag", "closed"], 1, log) == qs  # closed is unanswered for all three
    assert pending(pipe, qs, ["rag"], 2, log) == qs  # another setting's rows do not count
    # nothing pending -> nothing to build: an empty id list is no documents, not all of them
    pipe.parameterize_retrieved([], 1, progress=False)
    assert not any(tiny_kb.is_done(d.id) for d in tiny_kb.docs)
    pipe.parameterize([], progress=False)
    assert not any(tiny_kb.is_done(d.id) for d in tiny_kb.docs)


def test_finished_eval_rerun_builds_no_adapters(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    """The CLI asks `pending` which questions still need adapters: a re-run of a finished eval needs none."""
    from typer.testing import CliRunner

    import prag.cli as cli
    from prag.cli import app

    built, loaded = [], []
    real = Pipeline.parameterize_retrieved

    def spy(self, questions, top_k, progress=True):
        built.append([q.id for q in questions])
        return real(self, questions, top_k, progress=False)

    def pipeline(kb_dir):
        pipe = Pipeline(tiny_kb, tiny_lm)
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


def test_encoding_cost_reads_the_manifest(tiny_kb, tiny_lm):
    """Median and mean over the finished adapters' recorded seconds; failed, unfinished and untimed documents
    are counted as used but not as timed."""
    from prag.store import KnowledgeBase

    pipe = Pipeline(tiny_kb, tiny_lm)
    ids = [d.id for d in tiny_kb.docs[:4]]
    assert tiny_kb.encoding_cost(ids) == {"adapters": 4, "timed": 0, "seconds": 0.0, "sec_per_doc_mean": None,
                                          "sec_per_doc_median": None}
    pipe.parameterize(ids, progress=False)
    for i, secs in zip(ids, (4.0, 1.0, 2.0, 10.0)):  # known times in place of the measured ones
        tiny_kb._append_manifest({**tiny_kb._manifest[i], "seconds": secs})
    kb = KnowledgeBase.open(tiny_kb.root)  # read back from disk
    assert kb.encoding_cost(ids) == {"adapters": 4, "timed": 4, "seconds": 17.0, "sec_per_doc_mean": 4.25,
                                     "sec_per_doc_median": 3.0}
    assert kb.encoding_cost(ids[:3])["sec_per_doc_median"] == 2.0  # odd count: the middle one
    kb.mark_failed(ids[3], "boom")  # the last manifest line wins
    rec = {k: v for k, v in kb._manifest[ids[2]].items() if k != "seconds"}
    kb._append_manifest(rec)  # a finished adapter without a recorded time
    assert kb.encoding_cost(ids) == {"adapters": 4, "timed": 2, "seconds": 5.0, "sec_per_doc_mean": 2.5,
                                     "sec_per_doc_median": 2.5}


def test_report_shows_the_encoding_cost_of_parametric_rows_only():
    from prag.report import runtime_table

    res = _fake("2wqa", "smollm2", {"closed": 0.2, "prag": 0.3})
    res["encoding"] = {"adapters": 5, "timed": 4, "seconds": 40.0, "sec_per_doc_mean": 10.0, "sec_per_doc_median": 9.5}
    rows = {line.split("|")[3].strip(): line for line in runtime_table([res]).splitlines()[2:]}
    assert rows["prag"].endswith("| – | 9.5 (4/5) | cpu |") and rows["closed"].endswith("| – | – | cpu |")
    res["encoding"]["timed"] = 5
    assert "| 9.5 (5) | cpu |" in runtime_table([res])


def test_report_refuses_two_results_for_the_same_cell(tmp_path):
    from prag import PragError
    from prag.report import write_report

    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(_fake("2wqa", "smollm2", {"closed": 0.2})))
    with pytest.raises(PragError, match="both have closed"):
        write_report([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "r")


def test_report_takes_some_methods_from_each_file(tmp_path):
    """FILE.json:m1,m2 keeps only those methods of FILE, so a newer run's rows replace an older file's."""
    from prag import PragError
    from prag.report import markdown_table, write_report

    (tmp_path / "old.json").write_text(json.dumps(_fake("2wqa", "smollm2", {"closed": 0.2, "prag": 0.13})))
    (tmp_path / "new.json").write_text(json.dumps(_fake("2wqa", "smollm2", {"prag": 0.4, "combine": 0.3})))
    out = write_report([f"{tmp_path}/old.json:closed", tmp_path / "new.json"], tmp_path / "r")
    md = Path(out["markdown"]).read_text()
    assert "| SmolLM2-135M-Instruct | prag | 0.400 |" in md and "0.130" not in md
    assert "old.json (closed)" in md  # the sources list says what was taken
    with pytest.raises(PragError, match="has no 'rag'"):
        write_report([f"{tmp_path}/old.json:closed,rag"], tmp_path / "r")
    with pytest.raises(PragError, match="name at least one method"):
        write_report([f"{tmp_path}/old.json:"], tmp_path / "r")
    with pytest.raises(PragError, match="both have prag"):
        write_report([tmp_path / "old.json", tmp_path / "new.json"], tmp_path / "r")
    with pytest.raises(PragError, match="not a method name"):
        write_report([f"{tmp_path}/old.json:prag combine"], tmp_path / "r")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(PragError, match="is a directory"):
        write_report([tmp_path / "dir.json"], tmp_path / "r")


@pytest.mark.parametrize("spec, path, methods", [
    ("r/a.json", "r/a.json", None),
    ("r/a.json:prag", "r/a.json", ["prag"]),
    ("r/A.JSON:prag", "r/A.JSON", ["prag"]),
    ("/d:x/a.json", "/d:x/a.json", None),
    ("/d:x/a.json: prag , combine", "/d:x/a.json", ["prag", "combine"]),
    ("C:\\r\\a.json:rag", "C:\\r\\a.json", ["rag"]),
    ("r/a.jsonl", "r/a.jsonl", None),
])
def test_report_file_selection_syntax(spec, path, methods):
    from prag.report import _split_selection

    assert _split_selection(spec) == (Path(path), methods)


def _questions(n, types=("a", "b")):
    from prag.corpus import Question

    return [Question(f"q{i}", f"question {i}?", [f"answer {i}"], types[i % len(types)]) for i in range(n)]


def test_few_shot_examples_come_from_the_end_of_dev_one_type_after_another():
    from prag import PragError
    from prag.corpus import few_shot_examples, split

    qs = _questions(20, ("a", "a", "b", "a", "c"))
    dev = {q.id for q in split(qs, "dev")}
    shots = few_shot_examples(qs, 3)
    assert {q.id for q in shots} <= dev and sorted(q.type for q in shots) == ["a", "b", "c"]
    assert [q.id for q in shots] == sorted((q.id for q in shots), key=lambda i: int(i[1:]))  # file order
    assert "q0" not in {q.id for q in few_shot_examples(qs, 6)}  # the first dev questions stay unseen
    assert few_shot_examples(qs, 0) == []
    with pytest.raises(PragError, match="negative"):
        few_shot_examples(qs, -1)
    with pytest.raises(PragError, match="dev split has 10"):
        few_shot_examples(qs, 11)


def test_eval_few_shot_and_scale_reach_the_prompt_and_the_results(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from prag.cli import app
    from prag.config import default_config
    from prag.store import KnowledgeBase

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
    from prag.models import resolve_device

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


def test_pipeline_prompt_shows_the_examples_for_every_method(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "What was Ostrander Pell's occupation?"
    bare = {m: pipe.plan(q, m)[0] for m in ("closed", "rag", "prag")}
    pipe.examples = [("Who wrote Zyx?", "Quentin Marsh")]
    for m in ("closed", "rag", "prag"):
        prompt = pipe.plan(q, m)[0]
        assert "Quentin Marsh" in prompt and prompt.endswith(bare[m][-40:]) and prompt != bare[m]


def test_summary_names_every_device_its_rows_ran_on():
    from prag.evaluate import summarize

    row = {"f1": 1.0, "em": 1.0, "precision": 1.0, "recall": 1.0, "seconds": 0.5}
    assert summarize([row])["device"] == "cpu"  # rows logged before devices were recorded ran on the CPU
    assert summarize([row | {"device": "cuda:0"}, row | {"device": "cuda:0"}])["device"] == "cuda:0"
    assert summarize([row | {"device": "cuda:0"}, row])["device"] == "cpu,cuda:0"  # a resume on another device


def test_eval_warns_when_a_method_answers_nothing():
    from prag.evaluate import empty_warnings, summarize

    row = {"f1": 0.0, "em": 0.0, "precision": 0.0, "recall": 0.0, "seconds": 0.5}
    broken = [row | {"prediction": ""}] * 3 + [row | {"prediction": "Paris"}]
    fine = [row | {"prediction": "Paris"}] * 3 + [row | {"prediction": " "}]
    assert summarize(broken)["empty_answers"] == 3 and summarize(fine)["empty_answers"] == 1
    res = {"methods": {"prag": summarize(broken), "rag": summarize(fine)}}
    assert empty_warnings(res) == ["warning: prag answered nothing for 3 of 4 questions"]


def test_warmup_cli_warns_when_the_loss_rises(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import prag.cli as cli
    import prag.pipeline as pipeline_mod
    from prag.cli import app

    monkeypatch.setattr(cli, "_pipeline", lambda kb_dir: Pipeline(tiny_kb, tiny_lm))
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


def test_eval_cli_prints_the_empty_answer_warning(tiny_kb, tiny_lm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import prag.cli as cli
    import prag.pipeline as pipeline_mod
    from prag.cli import app

    monkeypatch.setattr(cli, "_pipeline", lambda kb_dir: Pipeline(tiny_kb, tiny_lm))
    monkeypatch.setattr(pipeline_mod, "extract_answer", lambda raw: "")  # a model that answers nothing
    r = CliRunner().invoke(app, ["eval", "--kb", str(tiny_kb.root), "--questions", str(FICTIONAL / "questions.jsonl"),
                                 "--limit", "2", "--methods", "closed", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "warning: closed answered nothing for 2 of 2 questions" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["methods"]["closed"]["empty_answers"] == 2
