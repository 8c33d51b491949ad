"""Where the model runs: $PRAG_DEVICE, else CUDA when visible, else CPU. On a machine with CUDA, a whole tiny
pipeline (adapters trained, merged, answers generated) runs on the GPU and agrees with the CPU."""
import pytest
import torch

from conftest import FICTIONAL, small_config


def test_resolve_device(monkeypatch):
    from prag import PragError
    from prag.models import resolve_device

    monkeypatch.delenv("PRAG_DEVICE", raising=False)
    assert resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("PRAG_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("meta") == torch.device("meta")  # the argument wins over the variable
    with pytest.raises(PragError, match="not a torch device"):
        resolve_device("gpu0")


def test_model_loads_on_the_chosen_device(tiny_model_dir, monkeypatch):
    from prag.models import load_model

    monkeypatch.setenv("PRAG_DEVICE", "meta")  # a device every machine has that is not the CPU
    assert load_model(str(tiny_model_dir)).model.device.type == "meta"
    monkeypatch.setenv("PRAG_DEVICE", "cpu")
    assert load_model(str(tiny_model_dir)).model.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_on_cuda_agrees_with_cpu(tmp_path, tiny_model_dir, monkeypatch):
    from prag.corpus import load_questions
    from prag.pipeline import Pipeline
    from prag.store import KnowledgeBase

    qs = load_questions(FICTIONAL / "questions.jsonl")[:4]
    runs = {}
    for dev in ("cpu", "cuda"):
        monkeypatch.setenv("PRAG_DEVICE", dev)
        kb = KnowledgeBase.create(tmp_path / dev, FICTIONAL / "corpus.jsonl", small_config(tiny_model_dir))
        pipe = Pipeline(kb)
        assert pipe.lm.model.device.type == dev
        ids = pipe.parameterize_retrieved(qs, 3, progress=False)
        answers = [pipe.ask(q.question, method=m).answer for q in qs for m in ("closed", "rag", "prag", "combine")]
        runs[dev] = (answers, {i: kb.load_adapter(i) for i in ids})
    same = sum(x == y for x, y in zip(runs["cuda"][0], runs["cpu"][0]))
    assert same >= len(runs["cpu"][0]) - 2, (runs["cpu"][0], runs["cuda"][0])  # float order may flip a near-tie
    for i, ad in runs["cpu"][1].items():
        for n, (a, b) in ad.factors.items():
            a2, b2 = runs["cuda"][1][i].factors[n]
            assert a2.device.type == "cpu"  # adapters are stored and loaded on the CPU whatever trained them
            torch.testing.assert_close(a2, a, atol=1e-3, rtol=1e-2)
            torch.testing.assert_close(b2, b, atol=1e-3, rtol=1e-2)
