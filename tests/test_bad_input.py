"""Bad input through the CLI: one clear `error:` line, a non-zero exit, no traceback, the kb unchanged.
None of these paths may load a model."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FICTIONAL, write_jsonl

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
