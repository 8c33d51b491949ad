"""benchmarks/experiments/translator_soup.py (how the shipped SmolLM2 translator was made): the weights are
(1 - t) a + t b, the folder lists what either parent saw, and translators of different configs are refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prag.translate import (
    SEEN_QUESTIONS_FILE,
    TranslatorConfig,
    load_translator,
    new_translator,
    save_translator,
    seen_fingerprints,
    write_seen,
)
from prag.update import Injector

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "translator_soup.py"


def _saved(lm, folder: Path, seed: int, docs: list[str], r: int = 2) -> Path:
    inj = Injector(lm.model, ["gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(seed)
    tr = new_translator(lm, inj, TranslatorConfig(model="tiny", read_layer=1, r=r))
    with torch.no_grad():
        for p in tr.parameters():
            p.normal_(0, 0.5)
    for h in inj._handles:
        h.remove()
    save_translator(tr, folder)
    write_seen(folder, docs)
    write_seen(folder, [d + "?" for d in docs], SEEN_QUESTIONS_FILE)
    return folder


def _soup(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("t", [0.0, 0.25, 1.0])
def test_the_soup_is_the_weighted_mean_and_lists_what_either_parent_saw(tiny_lm, tmp_path, t):
    a = _saved(tiny_lm, tmp_path / "a", 0, ["doc one", "doc two"])
    b = _saved(tiny_lm, tmp_path / "b", 1, ["doc two", "doc three"])
    out = _soup(a, b, "--t", t, "--out", tmp_path / "s")
    assert out.returncode == 0, out.stderr
    (ta, _), (tb, _), (ts, sha) = (load_translator(p) for p in (a, b, tmp_path / "s"))
    sa, sb = ta.state_dict(), tb.state_dict()
    for k, v in ts.state_dict().items():  # float16 files: compare at their precision
        assert torch.allclose(v, (1 - t) * sa[k] + t * sb[k], atol=2e-3, rtol=2e-3), k
    assert out.stdout.strip() == sha
    assert seen_fingerprints(tmp_path / "s") == seen_fingerprints(a) | seen_fingerprints(b)
    assert len(seen_fingerprints(tmp_path / "s", SEEN_QUESTIONS_FILE)) == 3


@pytest.mark.parametrize("t", ["-0.1", "1.5"])
def test_a_weight_outside_0_1_is_refused(tiny_lm, tmp_path, t):
    a = _saved(tiny_lm, tmp_path / "a", 0, ["x"])
    out = _soup(a, a, "--t", t, "--out", tmp_path / "s")
    assert out.returncode != 0 and "--t must be in [0, 1]" in out.stderr
    assert not (tmp_path / "s").exists()


def test_translators_of_different_configs_are_refused(tiny_lm, tmp_path):
    a = _saved(tiny_lm, tmp_path / "a", 0, ["x"])
    b = _saved(tiny_lm, tmp_path / "b", 1, ["x"], r=4)
    out = _soup(a, b, "--out", tmp_path / "s")
    assert out.returncode != 0 and "differ in config" in out.stderr
    assert not (tmp_path / "s").exists()


def test_a_folder_without_a_translator_is_a_clear_error(tiny_lm, tmp_path):
    a = _saved(tiny_lm, tmp_path / "a", 0, ["x"])
    out = _soup(a, tmp_path, "--out", tmp_path / "s")
    assert out.returncode != 0 and "not a translator" in out.stderr and "Traceback" not in out.stderr
