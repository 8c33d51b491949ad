"""tune.py: the adapter strength and worked examples chosen on the user's dev questions, kept with the kb, used by
every command, resumed after a kill; and `prag eval --dataset` tuning a kb that never was, on dev only."""
import json
import shutil

import pytest
from typer.testing import CliRunner

import prag.cli as cli
from conftest import FICTIONAL, make_translator, small_config
from prag.cli import app
from prag.corpus import load_questions, split
from prag.errors import PragError
from prag.evaluate import weak_warnings
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.tune import choose, table, tune


def test_tune_keeps_the_winner_with_the_kb_and_resumes(tiny_kb, tiny_lm):
    qs = load_questions(FICTIONAL / "questions.jsonl")
    pipe = Pipeline(tiny_kb, tiny_lm)
    res = tune(pipe, qs, "fictional dev", budget=2, top_k=1, scales=(0.5, 1.0), shots=(0, 2), progress=False)
    assert [(r["few_shot"], r["scale"]) for r in res["table"]] == [(0, 0.5), (0, 1.0), (2, 0.5), (2, 1.0)]
    assert all(r["n"] == 2 for r in res["table"])
    chosen = res["chosen"]
    assert chosen in res["rule"]["within_one_se"] and chosen["temperature"] == 1.0
    best = next(r for r in res["table"] if (r["few_shot"], r["scale"]) == (chosen["few_shot"], chosen["scale"]))
    dev = {q.id for q in split(qs, "dev")}
    assert set(res["questions"]) <= dev and set(res["examples"]) <= dev  # never a test question
    assert not set(res["questions"]) & set(res["examples"])  # an example is never scored
    kb = KnowledgeBase.open(tiny_kb.root)
    assert (kb.config.generation.scale, kb.config.generation.few_shot) == (best["scale"], best["few_shot"])
    assert kb.tuning() == res and len(kb.examples()) == best["few_shot"]
    fresh = Pipeline(kb, tiny_lm)  # ask and serve build their pipeline like this: the tuned settings apply
    assert fresh.examples == kb.examples() and fresh.config.generation.scale == best["scale"]
    calls = []
    real = fresh.ask
    fresh.ask = lambda *a, **k: calls.append(1) or real(*a, **k)
    assert tune(fresh, qs, "fictional dev", budget=2, top_k=1, scales=(0.5, 1.0), shots=(0, 2),
                progress=False)["table"] == res["table"]
    assert calls == []  # every answer came from the kb's tuning log
    assert "<- chosen" in table(res)


def test_tune_can_choose_the_merge_temperature(tiny_kb, tiny_lm):
    """With --temperatures, the softmax merge's temperature is a third axis: every row is scored, the winner's
    temperature goes to kb.toml, and the table shows it."""
    qs = load_questions(FICTIONAL / "questions.jsonl")
    res = tune(Pipeline(tiny_kb, tiny_lm), qs, "fictional dev", budget=2, top_k=2, scales=(1.0,), shots=(0,),
               temperatures=(1.0, 1000.0), progress=False)
    assert [(r["scale"], r["temperature"]) for r in res["table"]] == [(1.0, 1.0), (1.0, 1000.0)]
    best = next(r for r in res["table"] if r["temperature"] == res["chosen"]["temperature"])
    assert res["chosen"] in res["rule"]["within_one_se"]
    assert KnowledgeBase.open(tiny_kb.root).config.generation.temperature == best["temperature"]
    assert "temperature" in table(res) and "1000.0" in table(res)


@pytest.mark.parametrize("kw, needle", [({"budget": 0}, "--budget"), ({"scales": ()}, "--scales"),
                                        ({"shots": (-1,)}, "--shots"), ({"temperatures": (0.0,)}, "--temperatures"),
                                        ({"temperatures": ()}, "--temperatures")])
def test_tune_bad_options(tiny_kb, tiny_lm, kw, needle):
    with pytest.raises(PragError, match=needle):
        tune(Pipeline(tiny_kb, tiny_lm), load_questions(FICTIONAL / "questions.jsonl"), "x", progress=False, **kw)


def test_eval_on_a_dataset_tunes_a_kb_never_tuned_then_uses_it(tmp_path, tiny_model_dir, tiny_lm, monkeypatch):
    ds = tmp_path / "datasets" / "fic"
    ds.mkdir(parents=True)
    shutil.copy(FICTIONAL / "corpus.jsonl", ds / "corpus.jsonl")
    shutil.copy(FICTIONAL / "questions.jsonl", ds / "questions.jsonl")
    monkeypatch.setenv("PRAG_DATASETS", str(tmp_path / "datasets"))
    KnowledgeBase.create(tmp_path / "kb", ds / "corpus.jsonl", small_config(tiny_model_dir, max_seq_len=96,
                                                                             max_new_tokens=4))
    real = cli._pipeline
    monkeypatch.setattr(cli, "_pipeline", lambda kb_dir, flags=None: Pipeline(
        KnowledgeBase.open(kb_dir), tiny_lm, KnowledgeBase.open(kb_dir).config.override(flags or {})))
    args = ["eval", "--dataset", "fic", "--kb", str(tmp_path / "kb"), "--split", "test", "--limit", "2",
            "--methods", "closed,prag", "--tune-budget", "2", "--top-k", "1"]
    r = CliRunner().invoke(app, args + ["--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "a.json").read_text())
    tuned = KnowledgeBase.open(tmp_path / "kb").tuning()
    assert tuned and a["settings"]["source"].startswith("tuned on fic dev")
    assert a["settings"]["scale"] == tuned["chosen"]["scale"] and a["settings"]["few_shot"] == tuned["chosen"]["few_shot"]
    r = CliRunner().invoke(app, args + ["--scale", "0.125", "--json", str(tmp_path / "b.json")])  # flags override
    b = json.loads((tmp_path / "b.json").read_text())
    assert r.exit_code == 0 and b["settings"] == {**b["settings"], "scale": 0.125, "source": "flags"}
    assert KnowledgeBase.open(tmp_path / "kb").tuning() == tuned  # tuned once
    assert tuned["adapters"] == "trained"
    assert "tuned with" not in r.stderr
    tr = make_translator(KnowledgeBase.open(tmp_path / "kb"), tiny_lm, tmp_path / "translator")
    r = CliRunner().invoke(app, args + ["--adapters", "translated", "--translator", str(tr)])
    assert r.exit_code == 0 and "tuned with trained adapters, and this run answers with translated:" in r.stderr
    assert f"--adapters translated --translator {tr}` re-tunes" in r.stderr
    r = CliRunner().invoke(app, args + ["--adapters", "trained-else-translated", "--translator", str(tr)])
    assert r.exit_code == 0 and "tuned with" not in r.stderr  # eval trains every document it uses: trained answers
    path = tmp_path / "kb" / "tuning.json"
    path.write_text(json.dumps({k: v for k, v in tuned.items() if k != "adapters"}))  # a tuning from before the key
    r = CliRunner().invoke(app, args + ["--adapters", "translated", "--translator", str(tr)])
    assert r.exit_code == 0 and "tuned with" not in r.stderr  # not known: no guess
    r = CliRunner().invoke(app, ["tune", "--kb", str(tmp_path / "kb"), "--dataset", "fic", "--budget", "1",
                                 "--scales", "1.0", "--shots", "0", "--top-k", "1", "--adapters", "translated",
                                 "--translator", str(tr)])
    assert r.exit_code == 0, r.output
    assert "translated:" in r.stdout and KnowledgeBase.open(tmp_path / "kb").tuning()["adapters"].startswith("translated:")
    monkeypatch.setattr(cli, "_pipeline", real)
    s = CliRunner().invoke(app, ["status", "--kb", str(tmp_path / "kb")])
    now = KnowledgeBase.open(tmp_path / "kb").tuning()  # the translated tuning just above
    assert "<- chosen" in s.output and f"scale {now['chosen']['scale']}" in s.output and "translated:" in s.output


def test_a_tuning_records_which_adapters_it_was_chosen_with(tiny_kb, tiny_lm, translator_dir):
    """Translated adapters may want another strength than trained ones: the table says which answered."""
    qs = load_questions(FICTIONAL / "questions.jsonl")
    pipe = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.adapters": "translated",
                                                               "generation.translator": str(translator_dir)}))
    res = tune(pipe, qs, "fictional dev", budget=2, top_k=1, scales=(1.0,), shots=(0,), progress=False)
    assert res["adapters"] == f"translated:{pipe.translator[1][:16]}"
    assert f"prag F1, translated:{pipe.translator[1][:16]} adapters" in table(res)
    assert res["translator_saw"] is None and "warning" not in table(res)  # it does not list its training data
    from prag.translate import write_seen
    write_seen(translator_dir, [q.question for q in qs[:1]], "questions.sha256")
    write_seen(translator_dir, [d.as_text() for d in tiny_kb.docs])
    again = tune(pipe, qs, "fictional dev", budget=2, top_k=1, scales=(1.0,), shots=(0,), progress=False)
    n = len(pipe.retrieved_ids([q for q in qs if q.id in again["questions"]], 1))
    assert again["translator_saw"] == {"seen": n, "of": n, "questions_seen": 1, "questions_of": 2}
    assert (f"warning: {n} of the {n} documents these dev questions retrieve and 1 of the 2 questions were in the "
            "translator's training data") in table(again)
    trained = tune(Pipeline(tiny_kb, tiny_lm), qs, "fictional dev", budget=2, top_k=1, scales=(1.0,), shots=(0,),
                   progress=False)
    assert trained["adapters"] == "trained" and "trained adapters" in table(trained)
    assert trained["translator_saw"] is None


def test_weak_warnings_point_to_tune():
    res = {"methods": {"closed": {"f1": 0.4, "n": 20}, "rag": {"f1": 0.3, "n": 20}, "prag": {"f1": 0.05, "n": 20},
                       "combine": {"f1": 0.35, "n": 20}}}
    lines = weak_warnings(res)
    assert len(lines) == 1 and lines[0].startswith("warning: prag F1 0.050 is far below closed's 0.400")
    assert "prag tune" in lines[0]
    assert weak_warnings({"methods": {"closed": {"f1": 0.4, "n": 5}, "prag": {"f1": 0.0, "n": 5}}}) == []


def test_tune_temperatures_need_the_softmax_merge(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.config = pipe.config.override({"generation.merge": "sum"})
    with pytest.raises(PragError, match="softmax"):
        tune(pipe, load_questions(FICTIONAL / "questions.jsonl"), "x", temperatures=(1.0, 4.0), progress=False)


def _rows(f1s: dict[tuple, list[float]]):
    rows = [{"few_shot": k[0], "scale": k[1], "temperature": 1.0, "f1": sum(v) / len(v), "em": 0.0, "n": len(v)}
            for k, v in f1s.items()]
    return rows, [{f"q{i}": x for i, x in enumerate(v)} for v in f1s.values()]


UNTUNED = {"few_shot": 0, "scale": 0.25, "temperature": 1.0}


@pytest.mark.parametrize("f1s, chosen", [
    # a clear winner (every question better): chosen, far from the untuned settings or not
    ({(0, 0.25): [0.0] * 10, (4, 0.25): [1.0] * 9 + [0.0]}, (4, 0.25)),
    # one question's difference out of 30: within the noise, the untuned settings stay
    ({(0, 0.25): [0.0] * 29 + [0.0], (0, 0.5): [0.0] * 29 + [1.0]}, (0, 0.25)),
    # nothing scores: the untuned settings
    ({(0, 1.0): [0.0] * 5, (0, 0.25): [0.0] * 5, (4, 0.5): [0.0] * 5}, (0, 0.25)),
    # the untuned row is not in the grid: the nearest of the equals (fewest examples, then strength)
    ({(4, 1.0): [0.5] * 4, (0, 1.0): [0.5] * 4, (0, 0.5): [0.5] * 4}, (0, 0.5)),
    # a noisy but large gain: a half of the questions right against none is beyond one standard error
    ({(0, 0.25): [0.0] * 20, (4, 0.5): [1.0, 0.0] * 10}, (4, 0.5)),
])
def test_the_one_standard_error_rule(f1s, chosen):
    rows, scores = _rows(f1s)
    row, rule = choose(rows, scores, UNTUNED)
    assert (row["few_shot"], row["scale"]) == chosen
    best = max(rows, key=lambda r: r["f1"])
    assert rule["best"] == {"few_shot": best["few_shot"], "scale": best["scale"], "temperature": 1.0}
    assert {"few_shot": row["few_shot"], "scale": row["scale"], "temperature": 1.0} in rule["within_one_se"]


def test_the_table_says_when_the_best_f1_was_not_chosen():
    rows, scores = _rows({(0, 0.25): [0.0] * 30, (0, 0.5): [0.0] * 29 + [1.0]})
    row, rule = choose(rows, scores, UNTUNED)
    text = table({"source": "x", "method": "prag", "questions": ["q"] * 30, "table": rows, "rule": rule,
                  "chosen": {k: row[k] for k in ("few_shot", "scale", "temperature")}})
    assert "<- chosen" in text and "<- best F1" in text
