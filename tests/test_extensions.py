"""Every extension point, used by a toy implementation registered through its registry: a retriever, an augmenter,
a model, a weighting merge and a factor-changing merge, a method and a generation backend; and a plugin module
loaded by the CLI from $PRAG_PLUGINS."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import FICTIONAL, small_config
from prag.augment import AUGMENTERS
from prag.backends import BACKENDS
from prag.config import default_config
from prag.methods import METHODS, Method
from prag.models import MODELS, ModelEntry, display_name, load_model
from prag.pipeline import Pipeline
from prag.retrieval import RETRIEVERS, Hit
from prag.rules import QA, Augmentation
from prag.store import KnowledgeBase
from prag.update import MERGES, Adapter, Merge


@pytest.fixture()
def registered():
    """Registers (registry, name, item) triples for one test and removes them after it."""
    added = []

    def add(registry, name, item):
        registry.register(name, item)
        added.append((registry, name))
        return item

    yield add
    for registry, name in added:
        registry.unregister(name)


class KeywordRetriever:
    """Scores a document by how many of the query's words occur in it."""

    def __init__(self, docs):
        self.docs = docs

    def retrieve(self, query, k=3):
        words = set(query.lower().strip("?").split())
        scored = [(len(words & set(d.as_text().lower().split())), i) for i, d in enumerate(self.docs)]
        return [Hit(self.docs[i], float(s)) for s, i in sorted(scored, key=lambda x: (-x[0], x[1]))[:k] if s > 0]

    def save(self, folder):
        folder.mkdir(exist_ok=True)
        (folder / "keyword.txt").write_text(str(len(self.docs)))

    @classmethod
    def load(cls, folder, docs):
        assert int((folder / "keyword.txt").read_text()) == len(docs)
        return cls(docs)


def test_a_retriever(registered, tmp_path, tiny_model_dir, tiny_lm):
    registered(RETRIEVERS, "keyword", KeywordRetriever)
    cfg = small_config(tiny_model_dir).override({"retrieval.backend": "keyword"})
    kb = KnowledgeBase.create(tmp_path / "kb", FICTIONAL / "corpus.jsonl", cfg)
    assert (tmp_path / "kb" / "index" / "keyword.txt").is_file()
    reopened = KnowledgeBase.open(tmp_path / "kb")
    assert isinstance(reopened.retriever, KeywordRetriever)
    _, hits, _, _, _ = Pipeline(reopened, tiny_lm).plan("Who commands the Halvard Sorrel?", "rag", top_k=2)
    assert hits == KeywordRetriever(kb.docs).retrieve("Who commands the Halvard Sorrel?", 2) and hits


class FixedAugmenter:
    name, needs_model = "fixed", False

    def augment_many(self, docs, n, m):
        return [Augmentation([d.text] * n, [QA(f"What is {d.title}?", d.title, "toy")] * m, {}) for d in docs]


def test_an_augmenter(registered, tiny_kb, tiny_lm):
    registered(AUGMENTERS, "fixed", lambda cfg, base_model: FixedAugmenter())
    cfg = tiny_kb.config.override({"augment.augmenter": "fixed", "lora.batch_docs": 1})
    doc = tiny_kb.docs[0]
    Pipeline(tiny_kb, tiny_lm, cfg).parameterize([doc.id], progress=False)
    aug = tiny_kb.load_augmentation(doc.id)
    assert aug.rewrites == [doc.text] and [(q.question, q.source) for q in aug.qa] == [(f"What is {doc.title}?", "toy")] * 6


def test_a_model(registered, tiny_model_dir):
    registered(MODELS, "tiny", ModelEntry("Tiny Llama", lambda: tiny_model_dir, gguf=False, chat=False,
                                          defaults={"lora": {"r": 4}, "generation": {"merge": "top1"}}))
    cfg = default_config("tiny")
    assert (cfg.model, cfg.lora.r, cfg.generation.merge) == ("tiny", 4, "top1")
    lm = load_model("tiny")
    assert lm.tokenizer.chat_template and not lm.prompter.chat  # the entry's prompt format wins
    assert lm.prompter.format("Question: x?").endswith("\nAnswer:") and display_name("tiny") == "Tiny Llama"


def _fold(adapters, weights):
    """A factor-changing merge: the weighted adapters as ONE adapter of rank Σr (weights folded into B)."""
    names = adapters[0].factors
    a = {n: torch.cat([ad.factors[n][0] for ad in adapters]) for n in names}
    b = {n: torch.cat([ad.factors[n][1] * (w * ad.scaling) for ad, w in zip(adapters, weights)], dim=1) for n in names}
    rank = sum(ad.r for ad in adapters)
    return [Adapter({n: (a[n], b[n]) for n in names}, rank, float(rank))], [1.0]


def test_merges_weighting_and_factor_changing(registered, tiny_kb, tiny_lm):
    registered(MERGES, "last-only", Merge(lambda scores, t: [0.0] * (len(scores) - 1) + [1.0]))
    registered(MERGES, "folded-sum", Merge(lambda scores, t: [1.0] * len(scores), factors=_fold))
    q = "Who commands the Halvard Sorrel?"
    pipe = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.merge": "last-only", "generation.scale": 1.0}))
    _, hits, adapters, weights, _ = pipe.plan(q, "prag", top_k=3)
    assert weights == [0.0, 0.0, 1.0] and len(adapters) == 3
    summed = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.merge": "sum"}))
    folded = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.merge": "folded-sum"}))
    _, _, one, w, _ = folded.plan(q, "prag", top_k=3)
    assert len(one) == 1 and one[0].r == 3 * adapters[0].r and w == [1.0]
    assert folded.ask(q, "prag", top_k=3).raw == summed.ask(q, "prag", top_k=3).raw  # the same ΔW
    ids = torch.tensor([[5, 6, 7, 8]])
    outs = []
    for p in (summed, folded):
        _, _, ads, ws, _ = p.plan(q, "prag", top_k=3)
        with p.injector.applied(ads, ws), torch.no_grad():
            outs.append(tiny_lm.model(input_ids=ids).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_a_method(registered, tiny_kb, tiny_lm):
    registered(METHODS, "rag-and-adapters-off", Method(context="documents"))
    pipe = Pipeline(tiny_kb, tiny_lm)
    q = "Who commands the Halvard Sorrel?"
    mine, rag = pipe.plan(q, "rag-and-adapters-off"), pipe.plan(q, "rag")
    assert mine[0] == rag[0] and mine[2] == [] and [h.doc.id for h in mine[1]] == [h.doc.id for h in rag[1]]
    assert pipe.ask(q, "rag-and-adapters-off").answer == pipe.ask(q, "rag").answer


class EchoBackend:
    """Answers with how many adapters it was given, without running a model."""
    attention = False

    def __init__(self, pipe):
        self.pipe = pipe

    @classmethod
    def check(cls, config):
        pass

    def start(self):
        pass

    def device(self):
        return "echo"

    def context_tokens(self):
        return 4096

    def answer(self, prompt, hits, adapters, weights, max_new_tokens, streamer=None, cancel=None):
        return f"{len(adapters)} adapters for {len(hits)} documents", 0.0

    def scored(self, prompt, max_new_tokens):
        return [], []


def test_a_generation_backend(registered, tiny_kb, tiny_lm):
    registered(BACKENDS, "echo", EchoBackend)
    pipe = Pipeline(tiny_kb, tiny_lm, tiny_kb.config.override({"generation.backend": "echo"}))
    assert pipe.ask("Who commands the Halvard Sorrel?", "prag", top_k=2).answer == "2 adapters for 2 documents"
    assert pipe.ask("Who commands the Halvard Sorrel?", "rag", top_k=2).answer == "0 adapters for 2 documents"
    assert pipe.backend.device() == "echo"
    with pytest.raises(Exception, match="attention"):
        pipe.ask("Who commands the Halvard Sorrel?", "dragin")


def test_the_cli_loads_plugins_from_prag_plugins(tmp_path, tiny_model_dir):
    (tmp_path / "my_plugin.py").write_text(
        "from prag.retrieval import RETRIEVERS, BM25Retriever\n"
        "RETRIEVERS.register('bm25-copy', BM25Retriever)\n")
    (tmp_path / "c.toml").write_text('[retrieval]\nbackend = "bm25-copy"\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PRAG_PLUGINS="my_plugin")
    cmd = [sys.executable, "-m", "prag.cli", "index", "--corpus", str(FICTIONAL / "corpus.jsonl"), "--kb",
           str(tmp_path / "kb"), "--model", str(tiny_model_dir), "--config", str(tmp_path / "c.toml")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'backend = "bm25-copy"' in (tmp_path / "kb" / "kb.toml").read_text()
    res = subprocess.run(cmd[:-2], env=dict(env, PRAG_PLUGINS="no_such_plugin"), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: $PRAG_PLUGINS: cannot import 'no_such_plugin'")


def test_the_llamacpp_backend_refuses_a_factor_changing_merge(registered, tiny_kb):
    from prag.backends import LlamaCppGeneration
    from prag.errors import PragError

    registered(MERGES, "folded-sum", Merge(lambda scores, t: [1.0] * len(scores), factors=_fold))
    with pytest.raises(PragError, match="rewrites the adapters' factors"):
        LlamaCppGeneration.check(tiny_kb.config.override({"generation.merge": "folded-sum"}))
