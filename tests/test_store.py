"""store.py: the knowledge base's manifest surviving a torn write, checksummed adapters, storage dtypes, stale
temporary folders, failures and encoding cost in the manifest, one encoding recipe per kb, and a real
`prag parameterize` job killed with SIGKILL again and again."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FICTIONAL, write_jsonl
from conftest import check_consistent as _check_consistent
from conftest import synthetic_corpus as _synthetic_corpus
from prag import PragError
from prag.config import default_config
from prag.corpus import load_corpus, load_questions, split
from prag.pipeline import Pipeline
from prag.store import KnowledgeBase
from prag.update import ADAPTER_FILE


# ---------------------------------------------------------------- the manifest
def test_manifest_survives_a_torn_last_line(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.parameterize([tiny_kb.docs[0].id], progress=False)
    with open(tiny_kb.root / "manifest.jsonl", "a") as f:
        f.write('{"id": "fic-02", "status": "do')  # a crash in the middle of an append
    kb2 = KnowledgeBase.open(tiny_kb.root)
    assert kb2.is_done(tiny_kb.docs[0].id) and not kb2.is_done("fic-02")
    assert kb2.summary()["pending"] == len(tiny_kb.docs) - 1
    pipe.injector.remove()


def test_manifest_survives_a_torn_last_line_and_resumes(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    a, b = tiny_kb.docs[0].id, tiny_kb.docs[1].id
    pipe.parameterize([a], progress=False)
    with open(tiny_kb.root / "manifest.jsonl", "a") as f:
        f.write('{"id": "' + b + '", "status": "do')  # the process died mid-write
    kb2 = KnowledgeBase.open(tiny_kb.root)
    assert kb2.is_done(a) and kb2.status(b) == "pending"
    Pipeline(kb2, tiny_lm).parameterize([b], progress=False)
    kb3 = KnowledgeBase.open(tiny_kb.root)
    assert kb3.is_done(a) and kb3.is_done(b)
    assert all(json.loads(line) for line in (tiny_kb.root / "manifest.jsonl").read_text().splitlines())


def test_status_reports_failures_with_reasons(tiny_kb, tiny_lm, monkeypatch):
    pipe = Pipeline(tiny_kb, tiny_lm)
    bad = tiny_kb.docs[1].id
    real = pipe.augment_many

    def augment_many(docs):
        if any(d.id == bad for d in docs):
            raise ValueError("no usable sentence")
        return real(docs)

    monkeypatch.setattr(pipe, "augment_many", augment_many)
    s = pipe.parameterize([d.id for d in tiny_kb.docs[:3]], progress=False)
    assert s["done"] == 2 and list(s["failed"]) == [bad]
    st = KnowledgeBase.open(tiny_kb.root).summary()
    assert (st["parameterized"], st["failed"], st["pending"]) == (2, 1, len(tiny_kb.docs) - 3)
    assert "no usable sentence" in st["failures"][bad]


def test_encoding_cost_reads_the_manifest(tiny_kb, tiny_lm):
    """Median and mean over the finished adapters' recorded seconds; failed, unfinished and untimed documents
    are counted as used but not as timed."""
    pipe = Pipeline(tiny_kb, tiny_lm)
    ids = [d.id for d in tiny_kb.docs[:4]]
    assert tiny_kb.encoding_cost(ids) == {"adapters": 4, "timed": 0, "seconds": 0.0, "sec_per_doc_mean": None,
                                          "sec_per_doc_median": None}
    pipe.parameterize(ids, progress=False)
    for i, secs in zip(ids, (4.0, 1.0, 2.0, 10.0)):  # known times in place of the measured ones
        tiny_kb._append_manifest({**tiny_kb._manifest[i], "seconds": secs})
    kb = KnowledgeBase.open(tiny_kb.root)  # read back from disk
    assert kb.encoding_cost(ids) == {"adapters": 4, "timed": 4, "seconds": 17.0, "sec_per_doc_mean": 4.25,
                                     "sec_per_doc_median": 3.0}
    assert kb.encoding_cost(ids[:3])["sec_per_doc_median"] == 2.0  # odd count: the middle one
    kb.mark_failed(ids[3], "boom")  # the last manifest line wins
    rec = {k: v for k, v in kb._manifest[ids[2]].items() if k != "seconds"}
    kb._append_manifest(rec)  # a finished adapter without a recorded time
    assert kb.encoding_cost(ids) == {"adapters": 4, "timed": 2, "seconds": 5.0, "sec_per_doc_mean": 2.5,
                                     "sec_per_doc_median": 2.5}


def test_kb_refuses_adapters_of_another_recipe(tiny_kb, tiny_lm, tmp_path):
    """Adapters record their recipe; a kb never mixes them: a warm-up retrained in place, or kb.toml changed,
    makes further encoding an error."""
    pipe = Pipeline(tiny_kb, tiny_lm)
    warm = tmp_path / "warm"
    pipe.warmup(split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:3], warm, lr=1e-3, epochs=1)
    tiny_kb.config.lora.init_from = str(warm)
    pipe.parameterize([tiny_kb.docs[0].id], progress=False)
    assert len(tiny_kb.recipes()) == 1
    pipe.parameterize([tiny_kb.docs[1].id], progress=False)  # the same recipe: fine
    pipe.warmup(split(load_questions(FICTIONAL / "questions.jsonl"), "dev")[:3], warm, lr=3e-3, epochs=1)
    with pytest.raises(PragError, match="other encoding settings"):
        pipe.parameterize([tiny_kb.docs[2].id], progress=False)
    assert not tiny_kb.is_done(tiny_kb.docs[2].id)


# ---------------------------------------------------------------- adapters and documents on disk
def test_corrupt_adapter_is_detected_and_redone(tiny_kb, tiny_lm):
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[1]
    pipe.parameterize([doc.id], progress=False)
    path = tiny_kb.doc_dir(doc.id) / ADAPTER_FILE
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    kb2 = KnowledgeBase.open(tiny_kb.root)
    with pytest.raises(PragError, match="checksum"):
        kb2.load_adapter(doc.id)
    assert not kb2.is_done(doc.id)
    Pipeline(kb2, tiny_lm).parameterize([doc.id], progress=False)
    kb2.load_adapter(doc.id)  # verified again
    pipe.injector.remove()


@pytest.mark.parametrize("dtype, itemsize", [("float16", 2), ("bfloat16", 2), ("float32", 4)])
def test_adapter_dtype_on_disk(tiny_kb, tiny_lm, dtype, itemsize):
    tiny_kb.config.lora.adapter_dtype = dtype
    pipe = Pipeline(tiny_kb, tiny_lm)
    doc = tiny_kb.docs[0]
    pipe.parameterize([doc.id], progress=False)
    raw = (tiny_kb.doc_dir(doc.id) / ADAPTER_FILE).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes == {{"float16": "F16", "bfloat16": "BF16", "float32": "F32"}[dtype]}
    ad = tiny_kb.load_adapter(doc.id)
    n_params = sum(a.numel() + b.numel() for a, b in ad.factors.values())
    assert len(raw) < n_params * itemsize + 20_000
    assert all(a.dtype == torch.float32 for a, _ in ad.factors.values()), "loaded factors are float32"


def test_stale_temporary_folders_are_removed(tiny_kb, tiny_lm):
    dead = tiny_kb.root / "docs" / ".x-123.tmp999999999"
    live = tiny_kb.root / "docs" / f".y-456.tmp{os.getpid()}"
    dead.mkdir()
    live.mkdir()
    Pipeline(tiny_kb, tiny_lm).parameterize([tiny_kb.docs[0].id], progress=False)
    assert not dead.exists() and live.exists(), "only a dead process's leftovers may go"


def test_kb_with_u2028_in_a_document_can_be_reopened(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "title": "T", "text": "one\u2028two"}])
    assert load_corpus(corpus)[0].text == "one\u2028two"   # the user's file itself is fine (escaped)
    KnowledgeBase.create(tmp_path / "kb", corpus, default_config("smollm2"))
    assert KnowledgeBase.open(tmp_path / "kb").docs[0].text == "one\u2028two"


# ---------------------------------------------------------------- a real job, killed with SIGKILL
def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "prag.cli", *map(str, args)]


def _manifest_lines(kb_dir: Path) -> int:
    path = kb_dir / "manifest.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_and_resume_leaves_every_document_done_once(tmp_path, tiny_model_dir):
    n = 60  # enough that a quiet machine does not finish before five kills
    corpus = _synthetic_corpus(tmp_path / "corpus.jsonl", n)
    conf = tmp_path / "conf.toml"
    conf.write_text("[lora]\nepochs = 6\nbatch_docs = 2\nmax_seq_len = 160\n")  # ~0.4 s per document
    kb = tmp_path / "kb"
    subprocess.run(_cli("index", "--corpus", corpus, "--kb", kb, "--model", tiny_model_dir, "--config", conf),
                   check=True, capture_output=True)
    rng = random.Random(1234)
    kills, progress = 0, []
    for _ in range(8):
        before = _manifest_lines(kb)
        proc = subprocess.Popen(_cli("parameterize", "--kb", kb), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60  # wait for the job to finish something (start-up speed varies), then kill it
        while _manifest_lines(kb) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))  # at a random point of the next batch: training, writing or appending
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        done = _check_consistent(kb)
        assert all(c == 1 for c in done.values()), done
        progress.append(len(done))
        if len(done) == n:
            break
    assert kills >= 5, f"only {kills} kills happened before the job finished: make the job longer"
    res = subprocess.run(_cli("parameterize", "--kb", kb), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    done = _check_consistent(kb)
    assert sorted(done) == [f"doc-{i:02d}" for i in range(n)] and set(done.values()) == {1}, done
    status = json.loads(subprocess.run(_cli("status", "--kb", kb, "--json"), capture_output=True, text=True,
                                       check=True).stdout)
    assert (status["parameterized"], status["pending"], status["failed"]) == (n, 0, 0)
    assert not [p for p in (kb / "docs").iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert progress == sorted(progress) and progress[-1] > 0, f"documents done after each kill: {progress}"


# ---------------------------------------------------------------- nothing stale, nothing resurrected (issue 27)
def _fake_adapter(kb: KnowledgeBase, seed: int = 0):
    """A random adapter of the kb's shape, and an augmentation naming `seed`: enough to publish without training."""
    from prag.rules import QA, Augmentation
    from prag.update import Adapter

    g = torch.Generator().manual_seed(seed)
    names = [f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")]
    dims = {"gate_proj": (32, 64), "up_proj": (32, 64), "down_proj": (64, 32)}
    factors = {n: (torch.randn(2, dims[n.rsplit(".", 1)[1]][0], generator=g),
                   torch.randn(dims[n.rsplit(".", 1)[1]][1], 2, generator=g)) for n in names}
    return Adapter(factors, 2, 32.0), Augmentation([f"rewrite {seed}"], [QA("Q?", f"A{seed}", "rule")], {})


def _records(kb: KnowledgeBase, doc_id: str) -> list[str]:
    return [json.loads(line)["status"] for line in (kb.root / "manifest.jsonl").read_text().splitlines()
            if json.loads(line)["id"] == doc_id]


def test_a_deleted_document_is_never_resurrected_by_a_job_still_making_it(tiny_kb):
    from prag.corpus import Document

    old = tiny_kb.docs[0]
    adapter, aug = _fake_adapter(tiny_kb)
    tiny_kb.remove_document(old.id)  # deleted while its adapter was being made ...
    assert tiny_kb.save_document(old, adapter, aug, 1.0) is False  # ... which is then thrown away
    assert _records(tiny_kb, old.id) == ["deleted"] and not tiny_kb.doc_dir(old.id).exists()
    new = Document(old.id, old.title, "A different text about something else entirely.")
    tiny_kb.add_document(new)  # re-posted with new text: pending, and the old job still cannot publish
    assert tiny_kb.save_document(old, adapter, aug, 1.0) is False
    assert tiny_kb.status(old.id) == "pending" and not tiny_kb.is_done(old.id)
    assert tiny_kb.save_document(new, adapter, aug, 1.0) is True and tiny_kb.is_done(new.id)


def test_a_changed_text_makes_its_adapter_stale_and_a_removed_document_goes(tiny_kb, tmp_path):
    a, b = tiny_kb.docs[0], tiny_kb.docs[1]
    for i, d in enumerate((a, b)):
        assert tiny_kb.save_document(d, *_fake_adapter(tiny_kb, i), 1.0)
    rows = [{"id": d.id, "title": d.title, "text": d.text} for d in tiny_kb.docs if d.id != b.id]
    rows[0]["text"] = "The text of this document was rewritten since it was parameterized."
    kb = KnowledgeBase.create(tiny_kb.root, write_jsonl(tmp_path / "c.jsonl", rows), tiny_kb.config)  # re-index
    assert kb.status(a.id) == "stale" and not kb.is_done(a.id) and kb.summary()["stale"] == 1
    assert not kb.doc_dir(b.id).exists() and _records(kb, b.id)[-1] == "deleted"
    with pytest.raises(PragError, match="no adapter yet"):
        kb.load_adapter(a.id)


def test_index_refuses_a_directory_that_is_not_a_kb(tmp_path):
    users = tmp_path / "mine"
    (users / "index").mkdir(parents=True)
    (users / "index" / "notes.txt").write_text("my notes")
    (users / "corpus.jsonl").write_text("not prag's")
    cfg = default_config("smollm2")
    with pytest.raises(PragError, match="not a knowledge base and not empty"):
        KnowledgeBase.create(users, FICTIONAL / "corpus.jsonl", cfg)
    assert (users / "index" / "notes.txt").read_text() == "my notes"
    assert (users / "corpus.jsonl").read_text() == "not prag's"
    (tmp_path / "file").write_text("x")
    with pytest.raises(PragError, match="not a directory"):
        KnowledgeBase.create(tmp_path / "file", FICTIONAL / "corpus.jsonl", cfg)


def test_reindex_with_leftovers_of_a_killed_writer(tiny_kb):
    (tiny_kb.root / "index.old").mkdir()  # left by the old fixed-name writer
    (tiny_kb.root / "index.old" / "x").write_text("x")
    (tiny_kb.root / ".index.tmp999999-1").mkdir()  # left by a killed one
    kb = KnowledgeBase.create(tiny_kb.root, tiny_kb.root / "corpus.jsonl", tiny_kb.config)
    assert kb.retriever.retrieve("Halvard Sorrel", 1)


def test_adapter_config_is_covered_by_the_checksum(tiny_kb, tiny_lm):
    doc = tiny_kb.docs[0].id
    Pipeline(tiny_kb, tiny_lm).parameterize([doc], progress=False)
    conf = tiny_kb.doc_dir(doc) / "adapter_config.json"
    conf.write_text(conf.read_text().replace('"lora_alpha": 32.0', '"lora_alpha": 320.0'))
    kb = KnowledgeBase.open(tiny_kb.root)
    with pytest.raises(PragError, match="adapter_config.json: checksum mismatch"):
        kb.load_adapter(doc)
    assert KnowledgeBase.open(tiny_kb.root).summary()["failed"] == 1


@pytest.fixture()
def immutable():
    """Makes paths immutable (chattr +i: not even root can write them) for one test."""
    paths = []

    def freeze(*ps):
        res = subprocess.run(["chattr", "+i", *map(str, ps)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {res.stderr.decode().strip()}")
        paths.extend(ps)

    yield freeze
    if paths:
        subprocess.run(["chattr", "-i", *map(str, paths)])


def test_a_read_only_kb_can_be_queried(tiny_kb, tiny_lm, immutable):
    pipe = Pipeline(tiny_kb, tiny_lm)
    pipe.parameterize([tiny_kb.docs[0].id], progress=False)
    with open(tiny_kb.root / "manifest.jsonl", "a") as f:
        f.write('{"id": "torn')  # a torn last line, which a writable kb would cut off
    immutable(*tiny_kb.root.rglob("*"), tiny_kb.root)
    kb = KnowledgeBase.open(tiny_kb.root)
    assert kb.is_done(tiny_kb.docs[0].id)
    ans = Pipeline(kb, tiny_lm).ask("Who commands the Halvard Sorrel?", "prag", doc_ids=[tiny_kb.docs[0].id])
    assert isinstance(ans.answer, str)


def test_concurrent_parameterize_jobs_make_each_adapter_once(tmp_path, tiny_model_dir):
    corpus = _synthetic_corpus(tmp_path / "corpus.jsonl", 8)
    cfg = default_config(str(tiny_model_dir))
    cfg.lora.epochs, cfg.lora.batch_docs, cfg.lora.max_seq_len = 1, 2, 96
    KnowledgeBase.create(tmp_path / "kb", corpus, cfg)
    cmd = [sys.executable, "-m", "prag.cli", "parameterize", "--kb", str(tmp_path / "kb")]
    jobs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for j in jobs:
        assert j.wait(300) == 0, j.stderr.read()
    done = _check_consistent(tmp_path / "kb")
    assert len(done) == 8 and set(done.values()) == {1}, done  # one `done` line per document


def test_every_file_of_an_adapter_is_checksummed(tiny_kb):
    doc = tiny_kb.docs[0]
    assert tiny_kb.save_document(doc, *_fake_adapter(tiny_kb), 1.0)
    rec = tiny_kb._manifest[doc.id]
    assert {"sha256", "config_sha256", "augmentation_sha256", "text_sha256"} <= set(rec), rec
    aug = tiny_kb.doc_dir(doc.id) / "augmentation.json"
    aug.write_text(aug.read_text().replace("rewrite 0", "rewrite 9"))
    with pytest.raises(PragError, match="augmentation.json: checksum mismatch"):
        KnowledgeBase.open(tiny_kb.root).load_augmentation(doc.id)


def test_a_kb_from_before_content_hashes_marks_changed_texts_stale(tiny_kb, tmp_path):
    a = tiny_kb.docs[0]
    assert tiny_kb.save_document(a, *_fake_adapter(tiny_kb), 1.0)
    lines = (tiny_kb.root / "manifest.jsonl").read_text().splitlines()
    old = [json.dumps({k: v for k, v in json.loads(line).items() if k != "text_sha256"}) for line in lines]
    (tiny_kb.root / "manifest.jsonl").write_text("\n".join(old) + "\n")  # as an older prag wrote it
    assert KnowledgeBase.open(tiny_kb.root).is_done(a.id)  # trusted while the text is the same
    rows = [{"id": d.id, "title": d.title, "text": d.text} for d in tiny_kb.docs]
    rows[0]["text"] = "Rewritten since."
    kb = KnowledgeBase.create(tiny_kb.root, write_jsonl(tmp_path / "c.jsonl", rows), tiny_kb.config)
    assert kb.status(a.id) == "stale" and not kb.is_done(a.id)


def test_a_read_only_kb_says_it_cannot_make_an_adapter(tiny_kb, tiny_lm, immutable):
    immutable(*tiny_kb.root.rglob("*"), tiny_kb.root)
    pipe = Pipeline(KnowledgeBase.open(tiny_kb.root), tiny_lm)
    with pytest.raises(PragError, match="cannot write to this kb"):
        pipe.ask("Who commands the Halvard Sorrel?", "prag", top_k=1)  # its adapter would have to be made


# ---------------------------------------------------------------- translated adapters shared by processes
def _fake_translation(value: float):
    from prag.update import Adapter

    return Adapter({"model.layers.0.mlp.down_proj": (torch.full((2, 4), value), torch.full((3, 2), value))}, 2, 4.0)


def test_two_processes_translating_one_document_never_see_a_checksum_mismatch(tiny_kb):
    """Two jobs on one kb (a dev and a test eval) both translate a document they share. Each opened the kb before
    the other wrote, as separate processes do. The second keeps the first's translation instead of swapping its
    files under the first's record; a forced re-translation is picked up by a reader holding the old record."""
    doc = tiny_kb.docs[0]
    first, second = KnowledgeBase.open(tiny_kb.root), KnowledgeBase.open(tiny_kb.root)
    assert first.save_translated(doc, _fake_translation(1.0), "s1", 0.1)
    assert second.save_translated(doc, _fake_translation(2.0), "s1", 0.1)   # same translator: kept, not swapped
    for kb in (first, second):
        assert float(kb.load_translated(doc.id).factors["model.layers.0.mlp.down_proj"][0][0, 0]) == 1.0
    reader = KnowledgeBase.open(tiny_kb.root)        # holds the record of 1.0, has not read the files yet
    assert second.save_translated(doc, _fake_translation(3.0), "s1", 0.1, replace=True)  # `--force` swaps
    assert float(reader.load_translated(doc.id).factors["model.layers.0.mlp.down_proj"][0][0, 0]) == 3.0
    lines = [json.loads(x) for x in (tiny_kb.root / "manifest.jsonl").read_text().splitlines()]
    assert sum(r.get("kind") == "translated" for r in lines) == 2     # the kept one wrote no line


def test_a_translated_adapter_really_corrupted_is_still_refused(tiny_kb):
    doc = tiny_kb.docs[0]
    kb = KnowledgeBase.open(tiny_kb.root)
    kb.save_translated(doc, _fake_translation(1.0), "s1", 0.1)
    path = KnowledgeBase.open(tiny_kb.root).translated_dir(doc.id) / ADAPTER_FILE
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(PragError, match="checksum mismatch"):
        KnowledgeBase.open(tiny_kb.root).load_translated(doc.id)
