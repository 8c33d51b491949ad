"""report.py: the Table-1 report with plots, the runtime table's encoding cost, and choosing some methods of
each results file."""
import json
from pathlib import Path

import pytest

from prag import PragError
from prag.report import _split_selection, markdown_table, runtime_table, write_report


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


def test_report_shows_the_encoding_cost_of_parametric_rows_only():
    res = _fake("2wqa", "smollm2", {"closed": 0.2, "prag": 0.3})
    res["encoding"] = {"adapters": 5, "timed": 4, "seconds": 40.0, "sec_per_doc_mean": 10.0, "sec_per_doc_median": 9.5}
    rows = {line.split("|")[3].strip(): line for line in runtime_table([res]).splitlines()[2:]}
    assert rows["prag"].endswith("| – | 9.5 (4/5) | cpu |") and rows["closed"].endswith("| – | – | cpu |")
    res["encoding"]["timed"] = 5
    assert "| 9.5 (5) | cpu |" in runtime_table([res])


def test_report_refuses_two_results_for_the_same_cell(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(_fake("2wqa", "smollm2", {"closed": 0.2})))
    with pytest.raises(PragError, match="both have closed"):
        write_report([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "r")


def test_report_takes_some_methods_from_each_file(tmp_path):
    """FILE.json:m1,m2 keeps only those methods of FILE, so a newer run's rows replace an older file's."""
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
    assert _split_selection(spec) == (Path(path), methods)
