"""The CLI (`python -m prag.cli`) on bad input: exit code 2, exactly one `error:` line on stderr, no traceback,
an existing kb left byte-for-byte unchanged, and no model loaded.

Every subprocess runs with a stub `transformers` package first on PYTHONPATH whose import fails: loading any
model imports transformers, so an error path that tried to load one would crash with a traceback instead of
printing its one-line error."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FICTIONAL, write_jsonl

MAX_SECONDS = 20
GOOD = {"id": "a", "title": "T", "text": "Some text about Zorblax."}


@pytest.fixture(scope="module")
def guard(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    (root / "transformers").mkdir()
    (root / "transformers" / "__init__.py").write_text(
        'raise ImportError("test guard: prag imported transformers (tried to load a model) on an error path")\n')
    env = dict(os.environ, PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, "-c", "import transformers"], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "test guard" in res.stderr, "the guard does not shadow transformers"
    return root


def prag(guard: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(guard)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "prag.cli", *map(str, args)], capture_output=True, text=True,
                         cwd=cwd or guard, env=env, timeout=120)
    secs = time.perf_counter() - t0
    assert secs < MAX_SECONDS, f"prag {' '.join(map(str, args))} took {secs:.1f} s"
    return res


def assert_clean_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.startswith("error: "), res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), f"not exactly one line: {res.stderr!r}"
    line = res.stderr.rstrip("\n")
    for n in needles:
        assert n in line, line
    return line


def snapshot(kb: Path) -> dict:
    files = sorted(p for p in kb.rglob("*"))
    return {"files": [str(p.relative_to(kb)) for p in files],
            "bytes": {str(p.relative_to(kb)): p.read_bytes() for p in files if p.is_file()}}


@pytest.fixture(scope="module")
def kb(tmp_path_factory, tiny_model_dir, guard) -> Path:
    kb = tmp_path_factory.mktemp("cli") / "kb"
    # also the check that `python -m prag.cli` works (cli.py ends with `if __name__ == "__main__": main()`)
    res = prag(guard, "index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", kb, "--model", tiny_model_dir)
    assert res.returncode == 0, res.stderr
    assert "indexed 8 documents" in res.stdout
    assert (kb / "kb.toml").is_file() and (kb / "corpus.jsonl").is_file()
    return kb


@pytest.fixture()
def unchanged(kb):
    """Asserts after the test that the kb's files (names and bytes) are exactly as before it."""
    before = snapshot(kb)
    yield kb
    after = snapshot(kb)
    assert after["files"] == before["files"]
    assert after["bytes"]["kb.toml"] == before["bytes"]["kb.toml"]
    assert after["bytes"]["corpus.jsonl"] == before["bytes"]["corpus.jsonl"]
    assert after == before


# ---------------------------------------------------------------- index with a bad corpus
BAD_CORPORA = {
    "malformed_json": (['{"id": "a", "title": "T", "text": "x"}', '{"id": "b", "text": '],
                       ["line 2", "malformed JSON"]),
    "duplicate_id": ([GOOD, {"id": "b", "text": "y"}, GOOD], ["duplicate id 'a'", "line 3", "first on line 1"]),
    "missing_id": ([GOOD, {"title": "T", "text": "x"}], ["line 2", "field 'id' is missing"]),
    "empty_text": ([{"id": "a", "title": "T", "text": ""}], ["line 1", "field 'text' is empty"]),
}


INDEX_CASES = [(case, False) for case in sorted(BAD_CORPORA)] + [("duplicate_id", True)]


@pytest.mark.parametrize("case, overwrite", INDEX_CASES,
                         ids=[f"{c}-{'overwrite' if o else 'keep'}" for c, o in INDEX_CASES])
def test_index_bad_corpus(guard, unchanged, tiny_model_dir, tmp_path, case, overwrite):
    rows, needles = BAD_CORPORA[case]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    args = ["index", "--corpus", bad, "--kb", unchanged, "--model", tiny_model_dir]
    assert_clean_error(prag(guard, *args, *(["--overwrite"] if overwrite else [])), str(bad), *needles)


def test_index_non_utf8_corpus(guard, unchanged, tiny_model_dir, tmp_path):
    bad = tmp_path / "bytes.jsonl"
    bad.write_bytes(b'\xff\xfe{"id": "a", "title": "T", "text": "x"}\n')
    assert_clean_error(prag(guard, "index", "--corpus", bad, "--kb", unchanged, "--model", tiny_model_dir),
                       str(bad), "not UTF-8")


def test_index_missing_corpus_file(guard, unchanged, tiny_model_dir, tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert_clean_error(prag(guard, "index", "--corpus", missing, "--kb", unchanged, "--model", tiny_model_dir),
                       str(missing), "file not found")


def test_index_bad_corpus_into_new_kb_creates_nothing(guard, tiny_model_dir, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD])
    new_kb = tmp_path / "newkb"
    assert_clean_error(prag(guard, "index", "--corpus", bad, "--kb", new_kb, "--model", tiny_model_dir),
                       "duplicate id 'a'")
    assert not new_kb.exists()


# ---------------------------------------------------------------- ask / eval
def test_ask_missing_kb(guard, tmp_path):
    missing = tmp_path / "nokb"
    assert_clean_error(prag(guard, "ask", "--kb", missing, "Who commands the Halvard Sorrel?"),
                       str(missing), "no knowledge base")
    assert not missing.exists()


def test_ask_unknown_method(guard, unchanged):
    assert_clean_error(prag(guard, "ask", "--kb", unchanged, "--method", "bogus", "Who commands the Halvard Sorrel?"),
                       "unknown method 'bogus'", "closed, rag, da-rag, flare, dragin, prag, combine")


def test_ask_question_that_retrieves_nothing(guard, unchanged):
    assert_clean_error(prag(guard, "ask", "--kb", unchanged, "--method", "prag", "Xyzzy qwertz?"),
                       "retrieves no document")


def test_eval_unknown_method(guard, unchanged):
    assert_clean_error(prag(guard, "eval", "--kb", unchanged, "--questions", FICTIONAL / "questions.jsonl",
                            "--methods", "bogus"), "unknown method 'bogus'")
    assert not list(unchanged.parent.glob("*.log.jsonl"))


@pytest.mark.parametrize("args, needle", [
    (("--batch-docs", "0"), "--batch-docs must be at least 1"),
    (("--train-dtype", "int8"), "unknown train dtype 'int8'"),
    (("--adapter-dtype", "float64"), "unknown adapter dtype 'float64'"),
    (("--ids", " , "), "--ids names no document"),
])
def test_parameterize_bad_options(guard, unchanged, args, needle):
    assert_clean_error(prag(guard, "parameterize", "--kb", unchanged, *args), needle)


def test_bench_parameterize_bad_dataset(guard):
    assert_clean_error(prag(guard, "bench", "parameterize", "--dataset", "no-such-dataset"), "no-such-dataset")


@pytest.mark.parametrize("args, needle", [
    (("--questions", FICTIONAL / "questions.jsonl", "--dataset", FICTIONAL), "exactly one of --questions"),
    ((), "exactly one of --questions"),
    (("--questions", FICTIONAL / "questions.jsonl", "--split", "train"), "unknown split 'train'"),
    (("--dataset", "no-such-dataset"), "no-such-dataset"),
])
def test_eval_bad_question_source(guard, unchanged, args, needle):
    assert_clean_error(prag(guard, "eval", "--kb", unchanged, *args), needle)


@pytest.mark.parametrize("args, needle", [
    (("--max-batch", "4", "--min-join", "5"), "--min-join 5 is more than --max-batch 4"),
    (("--temperature", "0"), "generation.temperature"),
])
def test_serve_and_ask_bad_batching_and_merge_settings(guard, unchanged, args, needle):
    cmd = ("ask", "--kb", unchanged, "Who?") if args[0] == "--temperature" else ("serve", "--kb", unchanged)
    assert_clean_error(prag(guard, *cmd, *args), needle)


def test_ask_unknown_backend(guard, unchanged):
    assert_clean_error(prag(guard, "ask", "--kb", unchanged, "--backend", "vllm", "Who?"), "unknown backend 'vllm'")


def test_report_bad_files(guard, tmp_path):
    assert_clean_error(prag(guard, "report", tmp_path / "missing.json", "--out", tmp_path / "r"), "file not found")
    (tmp_path / "x.json").write_text('{"not": "results"}')
    assert_clean_error(prag(guard, "report", tmp_path / "x.json", "--out", tmp_path / "r"), "not a `prag eval` results")


@pytest.mark.parametrize("args, needle", [
    (("--parts", "all"), "unknown augment.parts 'all'"),
    (("--augmenter", "reference"), "augmenter 'reference' needs augment.reference"),
    (("--augmenter", "magic"), "unknown augmenter 'magic'"),
    (("--init-from", "/no/such/warmup"), "no adapter_model.safetensors"),
])
def test_index_bad_ablation_settings(guard, tiny_model_dir, tmp_path, args, needle):
    assert_clean_error(prag(guard, "index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", tmp_path / "kb",
                            "--model", tiny_model_dir, *args), needle)
    assert not (tmp_path / "kb").exists()


def test_warmup_needs_one_question_source(guard, unchanged, tmp_path):
    assert_clean_error(prag(guard, "warmup", "--kb", unchanged, "--out", tmp_path / "w"), "exactly one of --questions")


@pytest.mark.parametrize("args, needle", [(("--lr", "0"), "--lr must be a finite number > 0, not 0.0"),
                                          (("--lr", "inf"), "--lr must be a finite number > 0, not inf"),
                                          (("--epochs", "0"), "--epochs must be at least 1, not 0")])
def test_warmup_bad_recipe(guard, unchanged, tmp_path, args, needle):
    assert_clean_error(prag(guard, "warmup", "--kb", unchanged, "--out", tmp_path / "w", "--dataset", FICTIONAL,
                            *args), needle)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("args, needle", [
    (("--minutes", "0"), "--minutes must be a number > 0, not 0.0"),
    (("--minutes", "nan"), "--minutes must be a number > 0"),
    (("--init-from", "/no/such/translator"), "not a translator"),
    (("--init-from", "default"), "no translator ships for model"),
    (("--memory-layers", "8"), "translator.memory_layers must be distinct layer indices in [0, read_layer 8)"),
    (("--memory-layers", "5,x"), "--memory-layers must be comma-separated integers, not '5,x'"),
    (("--in-context", "2"), "in_context must be a share in [0, 1], not 2.0"),
    (("--memory-push", "0"), "memory_push must be a finite number > 0, not 0.0"),
    (("--epochs", "0"), "epochs must be a finite number > 0, not 0.0"),
])
def test_translator_train_bad_settings(guard, unchanged, tmp_path, args, needle):
    assert_clean_error(prag(guard, "translator", "train", "--kb", unchanged, "--out", tmp_path / "t", *args), needle)
    assert not (tmp_path / "t").exists()


def test_translator_train_init_from_a_translator_of_other_settings(guard, unchanged, tiny_lm, tiny_model_dir, tmp_path):
    from prag.translate import TranslatorConfig, new_translator, save_translator
    from prag.update import Injector

    inj = Injector(tiny_lm.model, ["gate_proj", "up_proj", "down_proj"])
    try:
        tr = new_translator(tiny_lm, inj, TranslatorConfig(model=str(tiny_model_dir), read_layer=1, r=2))
    finally:
        for h in inj._handles:
            h.remove()
    save_translator(tr, tmp_path / "init")
    assert_clean_error(prag(guard, "translator", "train", "--kb", unchanged, "--out", tmp_path / "t",
                            "--init-from", tmp_path / "init", "--read-layer", "1", "--rank", "3"),
                       "that translator has r 2 (asked 3)")
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------- usage errors and odd paths (issue 27)
@pytest.mark.parametrize("args, needle", [
    (("index", "--bogus"), "No such option: --bogus"),
    (("index",), "Missing option '--corpus'"),
    (("ask", "--kb", "x"), "Missing argument 'question'"),
    (("bogus",), "No such command 'bogus'"),
    (("eval", "--top-k", "three"), "Invalid value for '--top-k'"),
])
def test_usage_errors_are_one_line(guard, args, needle):
    assert_clean_error(prag(guard, *args), needle, "--help")


def test_kb_paths_that_are_not_kbs(guard, tmp_path):
    (tmp_path / "plain").write_text("x")
    assert_clean_error(prag(guard, "ask", "--kb", tmp_path / "plain", "Who?"), "no knowledge base")
    assert_clean_error(prag(guard, "status", "--kb", tmp_path / "plain"), "no knowledge base")
    assert_clean_error(prag(guard, "index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", tmp_path / "plain"),
                       "not a directory")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_clean_error(prag(guard, "index", "--corpus", FICTIONAL / "corpus.jsonl", "--kb", tmp_path / "mine"),
                       "not a knowledge base and not empty")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
