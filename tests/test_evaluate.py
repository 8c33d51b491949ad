"""evaluate.py: EM/F1 scoring (max over golden answers, exact yes/no), summaries, retrieval recall, eval runs
over the tiny kb, and resuming a run from its log."""
import json

import pytest

import prag.generate as generate_mod
from conftest import FICTIONAL
from prag.config import recipe_key
from prag.corpus import load_questions
from prag.evaluate import doc_recall, empty_warnings, pending, run_eval, score, summarize
from prag.pipeline import Pipeline


# ---------------------------------------------------------------- score
def test_exact_match_after_normalization():
    s = score("The Sallow River.", ["sallow river"])
    assert s == {"em": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}


def test_no_overlap_is_zero():
    assert score("Pellinvar", ["Kessary"]) == {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_partial_overlap_by_hand():
    # pred -> "tidal chime of kessary" (4 tokens), gold -> "tidal chime" (2): 2 common
    s = score("the tidal chime of Kessary", ["a tidal chime"])
    assert s["em"] == 0.0
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 2)
    assert s["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # 2/3


def test_partial_overlap_half():
    s = score("Captain Runa", ["Runa Edevane"])  # 1 common of 2 and 2
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((0.5, 0.5, 0.5))


def test_repeated_tokens_count_once_per_gold_occurrence():
    s = score("cat cat", ["the cat"])  # Counter intersection: min(2, 1) = 1 common
    assert (s["precision"], s["recall"]) == pytest.approx((0.5, 1.0))
    assert s["f1"] == pytest.approx(2 / 3)


def test_max_over_golden_answers():
    assert score("Sallow", ["Sallow River", "Sallow"])["em"] == 1.0
    # "sallow river bank" vs "sallow river": P 2/3, R 1, F1 0.8; vs "river": P 1/3, R 1, F1 0.5
    s = score("the Sallow River bank", ["Sallow River", "river"])
    assert s["em"] == 0.0
    assert s["f1"] == pytest.approx(0.8)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(1.0)
    # order of golden answers does not matter
    assert score("the Sallow River bank", ["river", "Sallow River"]) == s


@pytest.mark.parametrize("pred, golds, em, f1", [
    ("no", ["yes"], 0.0, 0.0),
    ("yes", ["no"], 0.0, 0.0),
    ("yes it is", ["yes"], 0.0, 0.0),      # special answers must match exactly: no partial credit
    ("yes", ["yes it is"], 0.0, 0.0),      # ... in either direction
    ("no answer", ["noanswer"], 0.0, 0.0),
    ("Yes.", ["yes"], 1.0, 1.0),           # after normalization it is the same answer
    ("NO!", ["no"], 1.0, 1.0),
    ("yes", ["no", "yes"], 1.0, 1.0),      # max over golden answers still applies
])
def test_yes_no_must_match_exactly(pred, golds, em, f1):
    s = score(pred, golds)
    assert (s["em"], s["f1"]) == (em, f1)
    if f1 == 0.0:
        assert s["precision"] == s["recall"] == 0.0


def test_empty_prediction_scores_zero():
    assert score("", ["glassblower"]) == {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_em_is_binary_and_f1_bounded():
    for pred, golds in [("a b c", ["b c d"]), ("x", ["x y z"]), ("1912", ["in 1912"])]:
        s = score(pred, golds)
        assert s["em"] in (0.0, 1.0)
        for k in ("f1", "precision", "recall"):
            assert 0.0 <= s[k] <= 1.0


# ---------------------------------------------------------------- summarize
def _row(f1, em, p, r, secs, typ=None, upd=None):
    row = {"f1": f1, "em": em, "precision": p, "recall": r, "seconds": secs}
    if typ is not None:
        row["type"] = typ
    if upd is not None:
        row["update_seconds"] = upd
    return row


def test_summarize_empty():
    assert summarize([]) == {"n": 0}


def test_summarize_means_and_by_type():
    rows = [_row(1.0, 1.0, 1.0, 1.0, 2.0, "bridge", 0.5),
            _row(0.5, 0.0, 0.25, 1.0, 4.0, "comparison", 1.5),
            _row(0.0, 0.0, 0.0, 0.0, 3.0, "bridge")]          # no update_seconds: counts as 0
    s = summarize(rows)
    assert s["n"] == 3
    assert s["f1"] == pytest.approx(0.5)
    assert s["em"] == pytest.approx(1 / 3)
    assert s["precision"] == pytest.approx(1.25 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["sec_per_question"] == pytest.approx(3.0)
    assert s["update_sec_per_question"] == pytest.approx(2 / 3)
    assert set(s["by_type"]) == {"bridge", "comparison"}
    assert s["by_type"]["bridge"]["n"] == 2
    assert s["by_type"]["bridge"]["f1"] == pytest.approx(0.5)
    assert s["by_type"]["comparison"] == {"f1": pytest.approx(0.5), "em": 0.0, "precision": pytest.approx(0.25),
                                          "recall": 1.0, "n": 1}
    assert s["by_type"]["bridge"]["em"] == pytest.approx(0.5) and s["by_type"]["bridge"]["recall"] == pytest.approx(0.5)


def test_summarize_without_types_has_no_by_type():
    s = summarize([_row(1.0, 1.0, 1.0, 1.0, 1.0, ""), _row(0.0, 0.0, 0.0, 0.0, 1.0, "")])
    assert "by_type" not in s
    assert s["n"] == 2 and s["f1"] == pytest.approx(0.5)


def test_summarize_mixed_rows_with_and_without_type_key():
    s = summarize([_row(1.0, 1.0, 1.0, 1.0, 1.0, "bridge"), _row(0.0, 0.0, 0.0, 0.0, 1.0)])
    assert s["by_type"] == {"bridge": {"f1": 1.0, "em": 1.0, "precision": 1.0, "recall": 1.0, "n": 1}}


def test_summary_names_every_device_its_rows_ran_on():
    row = {"f1": 1.0, "em": 1.0, "precision": 1.0, "recall": 1.0, "seconds": 0.5}
    assert summarize([row])["device"] == "cpu"  # rows logged before devices were recorded ran on the CPU
    assert summarize([row | {"device": "cuda:0"}, row | {"device": "cuda:0"}])["device"] == "cuda:0"
    assert summarize([row | {"device": "cuda:0"}, row])["device"] == "cpu,cuda:0"  # a resume on another device


def test_eval_warns_when_a_method_answers_nothing():
    row = {"f1": 0.0, "em": 0.0, "precision": 0.0, "recall": 0.0, "seconds": 0.5}
    broken = [row | {"prediction": ""}] * 3 + [row | {"prediction": "Paris"}]
    fine = [row | {"prediction": "Paris"}] * 3 + [row | {"prediction": " "}]
    assert summarize(broken)["empty_answers"] == 3 and summarize(fine)["empty_answers"] == 1
    res = {"methods": {"prag": summarize(broken), "rag": summarize(fine)}}
    assert empty_warnings(res) == ["warning: prag answered nothing for 3 of 4 questions"]


# ---------------------------------------------------------------- retrieval recall and eval runs
def test_doc_recall():
    assert doc_recall(["a", "b", "c"], ["a", "d"]) == 0.5
    assert doc_recall(["a"], ["a"]) == 1.0
    assert doc_recall(["x"], ["a", "b"]) == 0.0
    assert doc_recall(["a", "a"], ["a"]) == 1.0
    assert doc_recall(["a"], []) is None


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


# ---------------------------------------------------------------- resume
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
    pipe.config.generation.temperature = 4.0  # another softmax temperature: other adapter weights
    assert pending(pipe, qs, ["rag"], 2, log) == qs


def test_a_reasoning_methods_rows_keep_the_reasoning_and_resume_only_at_the_same_length(tiny_kb, tiny_lm, tmp_path,
                                                                                          monkeypatch):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.reasoning_tokens = 6
    qs = load_questions(FICTIONAL / "questions.jsonl")[:1]
    log = tmp_path / "run.log.jsonl"
    run_eval(pipe, qs, ["rag", "rag-cot"], 1, log, progress=False)
    rows = {r["method"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert "raw" in rows["rag-cot"] and "raw" not in rows["rag"]
    assert rows["rag-cot"]["setting"]["reasoning"]["tokens"] == 6 and "reasoning" not in rows["rag"]["setting"]
    assert pending(pipe, qs, ["rag", "rag-cot"], 1, log) == []
    pipe.config.generation.reasoning_tokens = 12  # longer reasoning: those rows are redone, rag's are not
    assert pending(pipe, qs, ["rag-cot"], 1, log) == qs and pending(pipe, qs, ["rag"], 1, log) == []
    pipe.config.generation.reasoning_tokens = 6
    monkeypatch.setattr(generate_mod, "REASONED_RULE", generate_mod.REASONED_RULE + 1)  # answers read another way
    assert pending(pipe, qs, ["rag-cot"], 1, log) == qs and pending(pipe, qs, ["rag"], 1, log) == []


def test_eval_resume_redoes_parametric_rows_when_the_adapters_change(tiny_kb, tiny_lm, tmp_path):
    """prag/combine rows carry a fingerprint of the kb's encoding recipe: rows of other adapters are not reused,
    closed-book rows are; a row logged before the fingerprint existed still resumes."""
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


def test_eval_resume_never_reuses_one_kind_of_adapters_answers_for_another(tiny_kb, tiny_lm, tmp_path):
    """Which adapters answered is part of a prag row's setting: a translated run does not reuse trained rows, nor one
    translator's rows another's; closed-book rows serve every run."""
    from conftest import make_translator

    qs = load_questions(FICTIONAL / "questions.jsonl")[:2]
    log = tmp_path / "run.log.jsonl"
    trained = Pipeline(tiny_kb, tiny_lm)
    run_eval(trained, qs, ["closed", "prag"], 1, log, progress=False)

    def translated(folder, seed):
        tr = make_translator(tiny_kb, tiny_lm, tmp_path / folder, seed=seed)
        return Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.adapters": "translated",
                                                                   "generation.translator": str(tr)}))
    a = translated("a", 1)
    assert pending(a, qs, ["prag"], 1, log) == qs and pending(a, qs, ["closed"], 1, log) == []
    run_eval(a, qs, ["prag"], 1, log, progress=False)
    assert pending(a, qs, ["prag"], 1, log) == []
    assert pending(translated("b", 2), qs, ["prag"], 1, log) == qs
    assert pending(trained, qs, ["prag"], 1, log) == []  # the trained rows still serve trained runs
    default = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.adapters": "trained-else-translated",
                                                                  "generation.translator": str(tmp_path / "a")}))
    assert pending(default, qs, ["prag"], 1, log) == []  # an eval trains every document first: trained answers


def test_resumed_eval_builds_adapters_only_for_unanswered_questions(tiny_kb, tiny_lm, tmp_path):
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


# ---------------------------------------------------------------- the gold-document oracle (composition)
def _two_hop(tmp_path):
    from conftest import write_jsonl

    rows = [{"id": "h1", "question": "Was Ostrander Pell born before the Halvard Sorrel was built?",
             "golden_answers": ["yes"], "gold_doc_ids": ["fic-01", "fic-05"], "type": "comparison"},
            {"id": "h2", "question": "Which river flows through Wrenmoor Gate?", "golden_answers": ["Sallow"],
             "gold_doc_ids": ["fic-02"], "type": "bridge"},
            {"id": "h3", "question": "Who commands the ship, and where is Tessaly & Vorn based?",
             "golden_answers": ["Pellinvar"], "gold_doc_ids": ["fic-05", "fic-03", "fic-02"], "type": "bridge"}]
    return load_questions(write_jsonl(tmp_path / "q.jsonl", rows))


def test_gold_jobs_answer_with_all_gold_documents_and_each_alone(tmp_path):
    from prag.evaluate import jobs

    qs = _two_hop(tmp_path)
    got = [(label, m, q.id, ids) for label, m, q, ids in jobs(["rag", "prag"], qs, "gold")]
    assert ("rag@gold", "rag", "h1", ["fic-01", "fic-05"]) in got and not any(g[0].startswith("rag@gold-") for g in got)
    assert ("prag@gold", "prag", "h3", ["fic-05", "fic-03", "fic-02"]) in got
    assert [g for g in got if g[0].startswith("prag@gold-") and g[2] == "h3"] == [
        ("prag@gold-1", "prag", "h3", ["fic-05"]), ("prag@gold-2", "prag", "h3", ["fic-03"]),
        ("prag@gold-3", "prag", "h3", ["fic-02"])]
    assert not any(g[2] == "h2" and g[0].startswith("prag@gold-") for g in got), "one gold document: nothing to compose"
    assert [(label, q.id, ids) for label, _, q, ids in jobs(["closed"], qs[:1])] == [("closed", "h1", None)]


@pytest.mark.parametrize("methods, source, error", [
    (["prag"], "bm25", "unknown doc source"),
    (["closed"], "gold", "closed cannot take them"),
    (["flare"], "gold", "flare cannot take them"),
])
def test_bad_oracle_settings_are_refused(tmp_path, methods, source, error):
    from prag import PragError
    from prag.evaluate import jobs

    with pytest.raises(PragError, match=error):
        jobs(methods, _two_hop(tmp_path), source)


def test_questions_without_gold_documents_are_refused_by_the_oracle():
    from prag import PragError
    from prag.evaluate import jobs

    with pytest.raises(PragError, match="gold_doc_ids"):
        jobs(["prag"], [type(load_questions(FICTIONAL / "questions.jsonl")[0])("x", "q?", ["a"])], "gold")


def test_composition_gain_is_together_minus_the_best_single_document():
    from prag.evaluate import composition

    rows = {"prag@gold": [{"id": "a", "f1": 0.5, "type": "t1"}, {"id": "b", "f1": 1.0, "type": "t2"},
                          {"id": "c", "f1": 0.3, "type": "t2"}],  # c has one gold document: not counted
            "prag@gold-1": [{"id": "a", "f1": 0.2}, {"id": "b", "f1": 0.0}],
            "prag@gold-2": [{"id": "a", "f1": 0.7}, {"id": "b", "f1": 0.4}]}
    c = composition(rows, "prag")
    assert c["n"] == 2 and c["together"] == pytest.approx(0.75) and c["best_single"] == pytest.approx(0.55)
    assert c["gain"] == pytest.approx(0.2) and c["mean_single"] == pytest.approx((0.45 + 0.2) / 2)
    assert c["by_type"]["t1"]["gain"] == pytest.approx(-0.2) and c["by_type"]["t2"]["gain"] == pytest.approx(0.6)
    assert composition({}, "prag") == {"n": 0}


def test_an_oracle_eval_runs_every_condition_and_resumes(tiny_kb, tiny_lm, tmp_path):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config.generation.max_new_tokens = 4
    qs = _two_hop(tmp_path)
    log = tmp_path / "log.jsonl"
    res = run_eval(pipe, qs, ["rag", "prag"], 3, log, progress=False, batch_size=2, doc_source="gold")
    assert set(res["methods"]) == {"rag@gold", "prag@gold", "prag@gold-1", "prag@gold-2", "prag@gold-3"}
    assert res["methods"]["prag@gold"]["n"] == 3 and res["methods"]["prag@gold-3"]["n"] == 1
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert {tuple(r["doc_ids"]) for r in rows if r["method"] == "prag@gold" and r["id"] == "h3"} == \
        {("fic-05", "fic-03", "fic-02")}
    assert all(r["setting"]["doc_source"] == "gold" for r in rows)
    assert res["composition"]["prag"]["n"] == 2 and "rag" not in res["composition"]
    n = len(rows)
    again = run_eval(pipe, qs, ["rag", "prag"], 3, log, progress=False, doc_source="gold")
    assert len(log.read_text().splitlines()) == n and again["composition"] == res["composition"]
    plain = run_eval(pipe, qs, ["prag"], 3, log, progress=False)  # BM25 rows are another setting
    assert plain["methods"]["prag"]["n"] == 3 and len(log.read_text().splitlines()) == n + 3
    pipe.injector.remove()


def test_batched_eval_lets_answered_questions_plans_go():
    """_batches plans every question of a method first (to sort by prompt length); a plan holds its adapters, and
    an adapter the Update used holds its packed copy, so answered chunks' plans must not stay alive to the end."""
    import gc
    import weakref
    from types import SimpleNamespace

    from prag.evaluate import ROWS_PER_CHUNK, _batches

    class Plan:
        def __init__(self, q):
            self.prompt = q

    made = []

    def plan(question, method, top_k, ids):
        p = Plan(question)
        made.append(weakref.ref(p))
        return p

    pipe = SimpleNamespace(plan=plan)
    todo = [("prag", "prag", SimpleNamespace(question="q" * (i + 1)), None) for i in range(3 * 2 * ROWS_PER_CHUNK)]
    chunks = _batches(pipe, todo, 3, 2)
    first = next(chunks)
    answered = {id(r[4]) for r in first}
    del first
    second = next(chunks)
    gc.collect()
    alive = [r() for r in made if r() is not None]
    assert len(alive) == len(made) - len(answered)  # the first chunk's plans are gone, the rest are kept
    assert {id(p) for p in alive} >= {id(r[4]) for r in second}
