"""End to end on the real bundled SmolLM2-135M-Instruct: fictional documents (not the demo's) are
parameterized with the default settings, and P-RAG with the document's own adapter (top-1) must answer
clearly better than closed-book. Thresholds come from measured runs (docs/results.md), with margin."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import FICTIONAL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_kb(tmp_path_factory):
    kb = tmp_path_factory.mktemp("real") / "kb"
    prag = [sys.executable, "-m", "prag.cli"]
    subprocess.run(prag + ["index", "--corpus", str(FICTIONAL / "corpus.jsonl"), "--kb", str(kb)], check=True)
    subprocess.run(prag + ["parameterize", "--kb", str(kb)], check=True)
    return kb


def _eval(kb, tmp_path, methods, top_k, merge=None, scale=None):
    out = tmp_path / f"{methods}-{top_k}-{merge}-{scale}.json"
    cmd = [sys.executable, "-m", "prag.cli", "eval", "--kb", str(kb), "--questions",
           str(FICTIONAL / "questions.jsonl"), "--methods", methods, "--top-k", str(top_k), "--json", str(out)]
    if merge:
        cmd += ["--merge", merge]
    if scale is not None:
        cmd += ["--scale", str(scale)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["methods"]


def test_prag_beats_closed_book_top1_and_top3(real_kb, tmp_path):
    # Measured (docs/results.md): closed 0.03, prag top-1 0.51, top-3 softmax 0.51, top-3 plain sum 0.22, at full
    # strength (what invented facts need; `prag tune` picks it on dev questions). The untuned default 0.25 (chosen
    # for real datasets, docs/results.md "Defaults without dev questions") gave top-1 0.26.
    default = _eval(real_kb, tmp_path, "prag", 1)
    assert default["prag"]["f1"] >= 0.15, default
    top1 = _eval(real_kb, tmp_path, "closed,prag", 1, scale=1.0)
    top3 = _eval(real_kb, tmp_path, "prag", 3, scale=1.0)
    print(json.dumps({"top1": top1, "top3": top3}))
    assert top1["closed"]["f1"] <= 0.15
    assert top1["prag"]["f1"] >= 0.3 and top1["prag"]["f1"] >= top1["closed"]["f1"] + 0.2, top1
    # Composition: the default top-3 merge must keep what top-1 answers.
    assert top3["prag"]["f1"] >= top1["prag"]["f1"] - 0.1, (top1, top3)


def test_status_reports_all_parameterized(real_kb):
    out = subprocess.run([sys.executable, "-m", "prag.cli", "status", "--kb", str(real_kb), "--json"],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)
    assert s["parameterized"] == s["documents"] == 8 and s["failed"] == 0


def test_the_shipped_translator_parameterizes_with_translator_default(real_kb, tmp_path):
    """`--translator default` on a fresh clone: the shipped SmolLM2 translator stores a translated adapter per
    document (checksummed, its sha256 as their recipe) and ask answers with them; different documents give
    different adapters."""
    prag = [sys.executable, "-m", "prag.cli"]
    out = subprocess.run(prag + ["parameterize", "--kb", str(real_kb), "--translator", "default"],
                         check=True, capture_output=True, text=True).stdout
    assert "translated 8" in out, out
    from prag.store import KnowledgeBase
    kb = KnowledgeBase.open(real_kb)
    a, b = (kb.load_translated(d.id) for d in kb.docs[:2])
    name = sorted(a.factors)[0]
    assert not torch.equal(a.factors[name][1], b.factors[name][1])
    ans = subprocess.run(prag + ["ask", "--kb", str(real_kb), "--method", "prag", "--adapters", "translated",
                                 "--translator", "default", "--json", "Who founded the company?"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(ans)["adapters"] == ["translated"] * 3, ans
