"""benchmarks/experiments/translator_data.py: the invented training documents of the parameter translator stay
apart from the evaluation documents it is measured on, and every QA pair is answerable from its document."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "translator_data.py"
spec = importlib.util.spec_from_file_location("translator_data", SCRIPT)
translator_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(translator_data)

N = 450  # every kind 50 times


def test_no_name_shares_a_word_and_no_answer_is_an_evaluation_answer():
    docs, qa = translator_data.fictional(N, 0)
    held_words, held_answers = translator_data._held_out_words(), translator_data._held_out_answers()
    assert held_words and held_answers  # the evaluation sets were found
    for q in qa:
        assert q["answer"].lower() not in held_answers, q
    # names: the title's invented words (capitalised words not in the templates' fixed vocabulary)
    fixed = {"Works", "Brothers", "Manufactory", "Trading", "Company", "Festival", "Tower", "Bridge", "Library",
             "Observatory", "Hall", "Star", "Gull", "Wren", "Heron", "The", "Letters", "Road", "Winter", "Garden"}
    for d in docs:
        for w in re.findall(r"[A-Za-z]+", d["title"]):
            if w not in fixed and w.lower() not in {"vole", "newt", "hare", "beetle", "flute", "drum", "fiddle", "horn", "the"}:
                assert w.lower() not in held_words, (w, d["title"])


def test_every_answer_is_a_whole_word_of_its_document_and_the_distractor_is_never_asked():
    docs, qa = translator_data.fictional(N, 0)
    by_id = {d["id"]: d for d in docs}
    asked: dict[str, list[str]] = {}
    for q in qa:
        assert re.search(r"\b" + re.escape(q["answer"]) + r"\b", by_id[q["doc_id"]]["text"]), q
        asked.setdefault(q["doc_id"], []).append(q["answer"])
    for d in docs:  # four facts asked and one distractor: five sentences, one value more than the asked ones
        assert len(asked[d["id"]]) == 4
        assert len(re.findall(r"[.!?](?:\s|$)", d["text"])) == 5, d["text"]


def test_prose_documents_keep_the_rules_every_answer_in_its_document_and_no_evaluation_word_or_answer():
    docs, qa = translator_data.fictional(N, 0, prose=True)
    plain, _ = translator_data.fictional(N, 0)
    by_id = {d["id"]: d for d in docs}
    held_words, held_answers = translator_data._held_out_words(), translator_data._held_out_answers()
    fixed = {w.lower() for w in ("Works Brothers Manufactory Trading Company Festival Tower Bridge Library "
                                 "Observatory Hall Star Gull Wren Heron The Letters Road Winter Garden vole newt "
                                 "hare beetle flute drum fiddle horn").split()} | {f.lower() for f in translator_data.FIRST}
    for q in qa:
        assert q["answer"].lower() not in held_answers, q
        assert re.search(r"\b" + re.escape(q["answer"]) + r"\b", by_id[q["doc_id"]]["text"]), q
    for d in docs:
        for w in re.findall(r"[A-Za-z]+", d["title"]):
            assert w.lower() in fixed or w.lower() not in held_words, (w, d["title"])
    assert len(qa) == 4 * N
    # the style differs from version 2: joined sentences, fillers, names like English ones
    assert sum(len(d["text"]) for d in docs) > 1.1 * sum(len(d["text"]) for d in plain)
    assert sum(", and " in d["text"] or "; " in d["text"] for d in docs) > N // 10
    names = [w.lower() for d in docs for w in re.findall(r"[A-Za-z]+", d["title"]) if w.lower() not in fixed]
    assert sum(w.endswith(tuple(translator_data.NAME_TAILS)) for w in names) > len(names) // 2
    assert translator_data.fictional(60, 3, prose=True) == translator_data.fictional(60, 3, prose=True)


def test_open_answers_leaves_out_the_questions_about_values_from_a_short_list_and_keeps_the_documents():
    docs, qa = translator_data.fictional(N, 0, prose=True)
    docs_open, qa_open = translator_data.fictional(N, 0, prose=True, open_only=True)
    assert docs_open == docs  # the same text: only the questions change
    closed = {v.lower() for v in translator_data.OCCUPATIONS + translator_data.COLOURS + translator_data.FOODS
              + translator_data.PRODUCTS + translator_data.SEASONS + translator_data.MATERIALS + translator_data.GENRES}
    assert not [q for q in qa_open if q["answer"].lower() in closed]
    assert [q for q in qa if q["answer"].lower() in closed]
    assert {q["doc_id"] for q in qa_open} == {d["id"] for d in docs}  # every document keeps a question
    assert set(map(str, qa_open)) <= set(map(str, qa))


def test_open_values_draw_from_hundreds_of_values_and_keep_the_rules():
    docs, qa = translator_data.fictional(N, 0, prose=True, open_only=True, open_values=True)
    by_id = {d["id"]: d for d in docs}
    held_answers = translator_data._held_out_answers()
    for q in qa:
        assert q["answer"].lower() not in held_answers, q
        assert re.search(r"\b" + re.escape(q["answer"]) + r"\b", by_id[q["doc_id"]]["text"]), q
    firsts = {q["answer"].split()[0] for q in qa if q["question"].startswith("Who ")}
    assert len(firsts) > 100 and len(firsts & set(translator_data.FIRST)) <= 2  # not version 2's 25 (Ul+ric: Ulric)
    foods = {q["answer"] for q in qa if q["question"].startswith(("What is ", "What food is "))
             and q["question"].endswith((" known for?", " famous for?"))}
    assert len(foods) > 30
    seasons = set(translator_data.SEASONS)
    assert not [q for q in qa if q["answer"] in seasons]  # the season, a list of four, is not asked
    assert len(qa) > 3.5 * N  # the other facts are
    fillers = [f.split("{t_first}")[1] for f in translator_data.FILLERS if f.startswith("{t_first}")]
    for d in docs:  # a filler's subject is the whole title, never a bare "The" (version 4's flaw)
        for tail in fillers:
            assert not re.search(r"(?:^|\. )\w+" + re.escape(tail), d["text"]) or d["title"] + tail in d["text"], d


def test_the_same_seed_gives_the_same_documents_whatever_else_used_random():
    import random

    first = translator_data.fictional(60, 3)
    random.seed(123)
    random.random()
    assert translator_data.fictional(60, 3) == first
    assert translator_data.fictional(60, 4) != first


def _dataset(root: Path, name: str, questions: list[dict]) -> None:
    import json
    (root / name).mkdir(parents=True)
    docs = [{"id": "a", "title": "Ambry", "text": "Ambry was built in Tessik by Quorvel Hane."},
            {"id": "b", "title": "Bell", "text": "The Bell was cast in 1802."}]
    (root / name / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / name / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))


def test_dev_qa_takes_dev_questions_about_kept_paragraphs_that_contain_the_answer(tmp_path):
    def q(i, answers, gold, type_=""):
        return {"id": str(i), "question": f"question {i}?", "golden_answers": answers, "gold_doc_ids": gold,
                "type": type_}
    dev = [q(0, ["nowhere", "tessik"], ["a"]),          # the second answer is in the paragraph: kept, as written
           q(1, ["1802"], ["b"]),                        # its paragraph was not kept (a test question retrieves it)
           q(2, ["Ambry"], ["a"], "comparison"),         # needs the other paragraph too: left out
           q(3, ["Quorvel"], ["a"]),                     # a word inside "Quorvel Hane": a whole word, kept
           q(8, ["Tess"], ["a"])]                        # only part of a word ("Tessik"): left out
    test = [q(4, ["Tessik"], ["a"]), q(5, ["Hane"], ["a"]), q(6, ["1802"], ["b"]), q(7, ["Ambry"], ["a"]),
            q(9, ["Tessik"], ["a"])]
    for name in translator_data.DATASETS:
        _dataset(tmp_path, name, dev + test)
    kept = [{"id": f"{n}--a", "title": "Ambry", "text": "Ambry was built in Tessik by Quorvel Hane."}
            for n in translator_data.DATASETS]
    qa, per = translator_data.dev_qa(tmp_path, kept)
    for name in translator_data.DATASETS:
        got = [(r["question"], r["answer"]) for r in qa if r["doc_id"] == f"{name}--a"]
        assert got == [("question 0?", "Tessik"), ("question 3?", "Quorvel")]  # never a test question (4-9)
        assert per[name] == {"dev_questions": 5, "dev_qa": 2}
    assert {r["doc_id"] for r in qa} == {k["id"] for k in kept}
