"""End to end on the real bundled SmolLM2-135M-Instruct: fictional documents (not the demo's) are
parameterized with the default settings, and P-RAG with the document's own adapter (top-1) must answer
clearly better than closed-book. Thresholds come from measured runs (README, "Measured"), with margin."""
import json
import subprocess
import sys

import pytest

from conftest import FICTIONAL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_kb(tmp_path_factory):
    kb = tmp_path_factory.mktemp("real") / "kb"
    prag = [sys.executable, "-m", "prag.cli"]
    subprocess.run(prag + ["index", "--corpus", str(FICTIONAL / "corpus.jsonl"), "--kb", str(kb)], check=True)
    subprocess.run(prag + ["parameterize", "--kb", str(kb)], check=True)
    return kb


def _eval(kb, tmp_path, methods, top_k, merge=None):
    out = tmp_path / f"{methods}-{top_k}-{merge}.json"
    cmd = [sys.executable, "-m", "prag.cli", "eval", "--kb", str(kb), "--questions",
           str(FICTIONAL / "questions.jsonl"), "--methods", methods, "--top-k", str(top_k), "--json", str(out)]
    if merge:
        cmd += ["--merge", merge]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["methods"]


def test_prag_top1_beats_closed_book(real_kb, tmp_path):
    r = _eval(real_kb, tmp_path, "closed,prag", 1)
    print(json.dumps(r))
    assert r["closed"]["f1"] <= 0.15
    assert r["prag"]["f1"] >= r["closed"]["f1"] + 0.08, r


def test_status_reports_all_parameterized(real_kb):
    out = subprocess.run([sys.executable, "-m", "prag.cli", "status", "--kb", str(real_kb), "--json"],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)
    assert s["parameterized"] == s["documents"] == 8 and s["failed"] == 0
