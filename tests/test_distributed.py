"""distributed.py: parameterizing on a local Ray instance gives what a local job gives."""
from conftest import check_consistent as _check_consistent
from conftest import max_diff as _max_diff
from conftest import synthetic_corpus as _synthetic_corpus
from prag.config import default_config
from prag.distributed import parameterize_on_ray
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase


def test_parameterize_on_a_local_ray_instance(tmp_path, tiny_model_dir, tiny_lm):
    corpus = _synthetic_corpus(tmp_path / "corpus.jsonl", 10)
    cfg = default_config(str(tiny_model_dir))
    cfg.lora.epochs, cfg.lora.batch_docs, cfg.lora.max_seq_len = 2, 3, 160
    kb = KnowledgeBase.create(tmp_path / "kb", corpus, cfg)
    s = parameterize_on_ray(Pipeline(kb), None, "auto", workers=2, progress=False)  # the driver loads no model
    assert s["done"] == 10 and not s["failed"], s
    assert kb.summary()["parameterized"] == 10, "the driver's kb must see what the workers wrote"
    done = _check_consistent(kb.root)
    assert sorted(done) == [f"doc-{i:02d}" for i in range(10)] and set(done.values()) == {1}
    # Ray workers compute what a local job computes.
    local = KnowledgeBase.create(tmp_path / "local", corpus, cfg)
    Pipeline(local, tiny_lm).parameterize(progress=False)
    for d in kb.docs:
        assert _max_diff(kb.load_adapter(d.id), local.load_adapter(d.id)) < 1e-4
