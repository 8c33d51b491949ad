"""Reading and validating corpora and question sets: every bad file is a PragError naming the file and line."""
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FICTIONAL, write_jsonl
from prag import PragError
from prag.corpus import Document, Question, few_shot_examples, load_corpus, load_questions, read_jsonl, split

DOC = {"id": "a", "title": "T", "text": "Some text."}
Q = {"id": "q1", "question": "Who?", "golden_answers": ["x"]}


def raises(fn, path, *needles):
    with pytest.raises(PragError) as ei:
        fn(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, msg
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- good files
def test_fictional_corpus_loads():
    docs = load_corpus(FICTIONAL / "corpus.jsonl")
    assert len(docs) == 8
    assert all(isinstance(d, Document) for d in docs)
    assert docs[0].id == "fic-01" and docs[0].title == "Ostrander Pell"
    assert docs[0].text.startswith("Ostrander Pell was a glassblower")
    assert docs[0].as_text() == f"Ostrander Pell: {docs[0].text}"
    assert len({d.id for d in docs}) == 8


def test_fictional_questions_load():
    qs = load_questions(FICTIONAL / "questions.jsonl")
    assert len(qs) == 12 and all(isinstance(q, Question) for q in qs)
    assert qs[2].golden_answers == ["Sallow River", "Sallow"]
    assert qs[0].gold_doc_ids == ["fic-01"]


def test_good_corpus_fields_and_blank_lines(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "  x1 ", "title": " Title ", "text": " Body text. "},
        "",
        "   ",
        {"id": "x2", "text": "No title here."},                 # title optional
        {"id": "x3", "title": None, "text": "Null title."},
    ])
    docs = load_corpus(p)
    assert docs == [Document("x1", "Title", "Body text."), Document("x2", "", "No title here."),
                    Document("x3", "", "Null title.")]
    assert docs[1].as_text() == "No title here."


def test_numeric_ids_become_strings(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": 7, "text": "seven"}, {"id": 8.5, "text": "eight"}])
    assert [d.id for d in load_corpus(p)] == ["7", "8.5"]
    q = write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "question": "Who?", "golden_answers": ["x"],
                                            "gold_doc_ids": [7, "b"], "type": "bridge"}])
    (qq,) = load_questions(q)
    assert qq.id == "1" and qq.gold_doc_ids == ["7", "b"] and qq.type == "bridge"


def test_read_jsonl_returns_line_numbers(tmp_path):
    p = write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, "", {"b": 2}])
    assert read_jsonl(p) == [(1, {"a": 1}), (3, {"b": 2})]


def test_crlf_line_endings(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "a", "text": "one"}\r\n{"id": "b", "text": "two"}\r\n')
    assert [d.id for d in load_corpus(p)] == ["a", "b"]


def test_golden_answers_aliases(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [{"id": "1", "question": "Who?", "answers": ["A", "B"]},
                                           {"id": "2", "question": "Who?", "golden_answers": "single"}])
    qs = load_questions(p)
    assert qs[0].golden_answers == ["A", "B"]
    assert qs[1].golden_answers == ["single"]   # a lone string is one answer
    assert qs[0].type == "" and qs[0].gold_doc_ids == []


# ---------------------------------------------------------------- bad files (read_jsonl level)
@pytest.mark.parametrize("loader", [load_corpus, load_questions, read_jsonl])
def test_malformed_json_line(tmp_path, loader):
    p = write_jsonl(tmp_path / "bad.jsonl", [DOC | Q, '{"id": "b", "text": '])
    raises(loader, p, "line 2", "malformed JSON")


def test_malformed_json_names_the_right_line_after_blank_lines(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", [DOC, "", "", "{not json}"])
    raises(load_corpus, p, "bad.jsonl, line 4", "malformed JSON")


@pytest.mark.parametrize("line, kind", [('["a", "b"]', "list"), ('"just a string"', "str"), ("42", "int"),
                                        ("null", "NoneType")])
def test_non_object_line(tmp_path, line, kind):
    p = write_jsonl(tmp_path / "bad.jsonl", [DOC, line])
    raises(load_corpus, p, "line 2", "expected a JSON object", kind)


def test_non_utf8_bytes(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'\xff\xfe{"id": "a", "text": "x"}\n')
    raises(load_corpus, p, "not UTF-8", "byte 0")
    p2 = tmp_path / "latin1b.jsonl"
    p2.write_bytes('{"id": "a", "title": "Caf\xe9", "text": "x"}\n'.encode("latin-1"))
    raises(load_questions, p2, "not UTF-8")


@pytest.mark.parametrize("content", ["", "\n\n", "   \n\t\n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.jsonl"
    p.write_text(content, encoding="utf-8")
    raises(load_corpus, p, "no records")


@pytest.mark.parametrize("loader", [load_corpus, load_questions, read_jsonl])
def test_missing_file(tmp_path, loader):
    raises(loader, tmp_path / "nope.jsonl", "file not found")


def test_directory_instead_of_file(tmp_path):
    raises(load_corpus, tmp_path, "file not found")


# ---------------------------------------------------------------- bad corpus records
def test_duplicate_id_names_id_and_both_lines(tmp_path):
    p = write_jsonl(tmp_path / "dup.jsonl", [DOC, {"id": "b", "text": "y"}, "", dict(DOC, text="other")])
    msg = raises(load_corpus, p, "duplicate id 'a'", "line 4", "first on line 1")
    assert msg.startswith(f"{p}, line 4")


def test_duplicate_id_after_normalization(tmp_path):
    p = write_jsonl(tmp_path / "dup.jsonl", [{"id": 3, "text": "x"}, {"id": " 3 ", "text": "y"}])
    raises(load_corpus, p, "duplicate id '3'", "line 2", "first on line 1")


@pytest.mark.parametrize("row, needle", [
    ({"title": "T", "text": "x"}, "field 'id' is missing"),
    ({"id": None, "text": "x"}, "field 'id' is missing"),
    ({"id": "", "text": "x"}, "field 'id' is empty"),
    ({"id": "   ", "text": "x"}, "field 'id' is empty"),
    ({"id": ["a"], "text": "x"}, "field 'id' is not a string (list)"),
    ({"id": True, "text": "x"}, "field 'id' is not a string (bool)"),
    ({"id": "a", "title": "T"}, "field 'text' is missing"),
    ({"id": "a", "text": ""}, "field 'text' is empty"),
    ({"id": "a", "text": " \t "}, "field 'text' is empty"),
    ({"id": "a", "text": 5}, "field 'text' is not a string (int)"),
    ({"id": "a", "title": 3, "text": "x"}, "field 'title' is not a string (int)"),
])
def test_bad_corpus_fields(tmp_path, row, needle):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": "ok", "text": "fine"}, row])
    raises(load_corpus, p, "line 2", needle)


# ---------------------------------------------------------------- bad question records
@pytest.mark.parametrize("answers", [None, 5, {"a": 1}, [], [1, 2], ["ok", None]])
def test_golden_answers_must_be_non_empty_list_of_strings(tmp_path, answers):
    row = {"id": "1", "question": "Who?"}
    if answers is not None:
        row["golden_answers"] = answers
    p = write_jsonl(tmp_path / "q.jsonl", [Q, row])
    raises(load_questions, p, "line 2", "golden_answers", "non-empty list of strings")


@pytest.mark.parametrize("row, needle", [
    ({"id": "1", "golden_answers": ["x"]}, "field 'question' is missing"),
    ({"id": "1", "question": "  ", "golden_answers": ["x"]}, "field 'question' is empty"),
    ({"question": "Who?", "golden_answers": ["x"]}, "field 'id' is missing"),
])
def test_bad_question_fields(tmp_path, row, needle):
    p = write_jsonl(tmp_path / "q.jsonl", [Q, row])
    raises(load_questions, p, "line 2", needle)


def test_duplicate_question_id(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [Q, dict(Q, question="Where?")])
    raises(load_questions, p, "line 2", "duplicate id 'q1'", "first on line 1")


@pytest.mark.parametrize("answers", ["", [""], ["  "]])
def test_empty_golden_answer_string_is_rejected(tmp_path, answers):
    p = write_jsonl(tmp_path / "q.jsonl", [{"id": "1", "question": "Who?", "golden_answers": answers}])
    raises(load_questions, p, "line 1", "golden_answers")


def test_gold_doc_ids_string_is_not_split_into_characters(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", [dict(Q, gold_doc_ids="fic-01")])
    try:
        (q,) = load_questions(p)
    except PragError:
        return  # rejecting it is fine too
    assert q.gold_doc_ids == ["fic-01"]


# ---------------------------------------------------------------- Unicode line separators
@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_unescaped_unicode_line_separator_inside_a_string(tmp_path, sep):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"id": "a", "text": f"one{sep}two"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_corpus(p) == [Document("a", "", f"one{sep}two")]


# ---------------------------------------------------------------- split
def _qs(n):
    return [Question(str(i), f"Q{i}?", ["a"]) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 12])
def test_split_halves_in_line_order(n):
    qs = _qs(n)
    dev, test = split(qs, "dev"), split(qs, "test")
    assert len(dev) == n // 2 and len(test) == n - n // 2
    assert dev + test == qs                      # disjoint, in order, nothing lost
    assert split(qs, "all") == qs


def test_split_fictional_questions():
    qs = load_questions(FICTIONAL / "questions.jsonl")
    assert [q.id for q in split(qs, "dev")] == [f"fic-q{i:02d}" for i in range(1, 7)]
    assert [q.id for q in split(qs, "test")] == [f"fic-q{i:02d}" for i in range(7, 13)]


@pytest.mark.parametrize("which", ["train", "", "DEV", "validation"])
def test_unknown_split(which):
    with pytest.raises(PragError, match=re.escape(f"unknown split {which!r}: use dev, test or all")):
        split(_qs(4), which)


# ---------------------------------------------------------------- few-shot examples
def _questions(n, types=("a", "b")):
    return [Question(f"q{i}", f"question {i}?", [f"answer {i}"], types[i % len(types)]) for i in range(n)]


def test_few_shot_examples_come_from_the_end_of_dev_one_type_after_another():
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


# ---------------------------------------------------------------- property-based: any file (issue 27)

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_FIELDS = st.fixed_dictionaries({}, optional={
    "id": _JSON | st.text(), "title": _JSON | st.text(), "text": _JSON | st.text(), "question": _JSON | st.text(),
    "golden_answers": _JSON | st.lists(st.text()), "gold_doc_ids": _JSON | st.lists(st.text()), "type": _JSON})
_LINES = st.lists(_FIELDS.map(json.dumps) | _JSON.map(json.dumps) | st.text(max_size=30), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | _LINES.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")))
def test_any_bytes_give_records_or_one_clear_error(tmp_path, raw):
    from prag.corpus import load_corpus, load_questions

    path = tmp_path / "f.jsonl"
    path.write_bytes(raw)
    for loader in (load_corpus, load_questions):
        try:
            rows = loader(path)
        except PragError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            continue
        assert rows and len({r.id for r in rows}) == len(rows)  # a correct result: unique ids
        assert all(isinstance(getattr(r, "text", getattr(r, "question", "")), str) for r in rows)
