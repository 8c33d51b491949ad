"""benchmarks/experiments/ablation_table.py: ablations that answered different numbers of questions are also
scored on the questions all of them answered, from their logs, under each result's own setting."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "ablation_table.py"
spec = importlib.util.spec_from_file_location("ablation_table", SCRIPT)
ablation_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation_table)

SETTING = {"top_k": 3, "merge": "softmax", "scale": 0.25, "few_shot": ["q?", "q?"]}


def _write(out: Path, name: str, f1s: dict[str, list[float]], extra_rows: list[dict] = ()):
    n = len(f1s["prag"])
    result = {"methods": {m: {"f1": sum(v) / n, "em": 0.0, "n": n} for m, v in f1s.items()},
              "top_k": 3, "merge": "softmax", "scale": 0.25, "few_shot": ["id1", "id2"], "command": f"run {name}"}
    (out / f"ds-m-{name}.json").write_text(json.dumps(result))
    rows = [{"method": m, "id": f"q{i}", "setting": SETTING, "f1": f} for m, v in f1s.items() for i, f in enumerate(v)]
    rows += list(extra_rows)
    (out / f"ds-m-{name}.log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_equal_counts_give_no_shared_columns(tmp_path):
    _write(tmp_path, "a", {"prag": [1, 0], "combine": [0, 0]})
    _write(tmp_path, "b", {"prag": [1, 1], "combine": [1, 0]})
    text = ablation_table.main(tmp_path, "ds-m")
    assert "shared" not in text
    assert "| a | 0.500 / 0.00 | 0.000 / 0.00 | 2 |" in text
    assert (tmp_path / "ds-m.md").read_text() == text


def test_unequal_counts_are_also_scored_on_the_shared_questions(tmp_path):
    other = {**SETTING, "scale": 1.0}  # another strength's answer to q0 in the same log must not count
    _write(tmp_path, "full", {"prag": [1, 0, 1, 1], "combine": [0, 1, 1, 1]},
           extra_rows=[{"method": "prag", "id": "q0", "setting": other, "f1": 0.0},
                       {"method": "closed", "id": "q1", "setting": SETTING, "f1": 1.0}])
    _write(tmp_path, "half", {"prag": [0, 0], "combine": [1, 1]})
    text = ablation_table.main(tmp_path, "ds-m")
    assert "prag F1 (shared 2)" in text
    assert "| full | 0.750 / 0.00 | 0.750 / 0.00 | 0.500 | 0.500 | 4 |" in text
    assert "| half | 0.000 / 0.00 | 1.000 / 0.00 | 0.000 | 1.000 | 2 |" in text


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no ds-m-"):
        ablation_table.main(tmp_path, "ds-m")
