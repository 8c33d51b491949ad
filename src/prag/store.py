"""The knowledge-base directory: config, corpus, BM25 index, one folder per parameterized document, and an
append-only manifest. Writes are atomic (temporary folder, fsync, rename) and every adapter's checksum is in
the manifest, so a crash never leaves a half-written adapter that is later read as valid.

    kb/
      kb.toml              the PragConfig the kb was built with
      corpus.jsonl         the documents
      index/               bm25s files
      docs/<key>/          augmentation.json, adapter_model.safetensors, adapter_config.json, and for GGUF
                           models adapter_model.gguf (the same LoRA for the llama.cpp backend)
      translated/<key>/    adapter_model.safetensors, adapter_config.json: the adapter a translator made
      manifest.jsonl       one line per event {"id", "status", "sha256", ...}; the last line for an id (and
                           kind: trained, or "kind": "translated") wins
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from .atomic import atomic_dir, atomic_file, atomic_write, remove_stale
from .config import PragConfig, recipe_key
from .corpus import Document, load_corpus
from .encode import adapter_config, adapter_tensors, read_adapter
from .errors import Conflict, NotFound, PragError
from .llamacpp import exportable, gguf_architecture, write_adapter_gguf
from .models import resolve_gguf
from .retrieval import RETRIEVERS, Retriever
from .rules import Augmentation
from .update import ADAPTER_CONFIG_FILE, ADAPTER_FILE, Adapter

GGUF_FILE = "adapter_model.gguf"
TRANSLATED = "translated"  # the kind (and folder) of adapters a translator made
AUGMENTATION_FILE = "augmentation.json"
EXAMPLES_FILE = "examples.jsonl"  # the worked examples every prompt shows (prag tune)
TUNING_FILE = "tuning.json"       # the table the kb's generation settings were chosen from


def doc_key(doc_id: str) -> str:
    """A folder name for any document id: readable prefix plus a hash (ids may hold '/', spaces, ...)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id)[:40].strip("._") or "doc"
    return f"{safe}-{hashlib.sha1(doc_id.encode()).hexdigest()[:10]}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1 << 16)  # is_done asks for it on every retrieved hit: hash each text once
def content_hash(doc: Document) -> str:
    """A document's identity for its adapter: the hash of its title and text. An adapter recorded for other
    content is stale (the text changed under the same id), never served."""
    return hashlib.sha256(json.dumps([doc.title, doc.text]).encode("utf-8")).hexdigest()[:16]


class _Superseded(Exception):
    """The document changed or was deleted while its adapter was being made: the adapter is thrown away."""


def _rounded(adapter: Adapter, dtype: torch.dtype) -> Adapter:
    """The adapter as stored in `dtype` (what reading the safetensors back gives), in float32."""
    if dtype == torch.float32:
        return adapter
    return Adapter({n: (a.to(dtype).float(), b.to(dtype).float()) for n, (a, b) in adapter.factors.items()},
                   adapter.r, adapter.alpha)


def _mismatch(folder: Path, rec: dict) -> str | None:
    """The first of an adapter folder's PEFT files whose sha256 differs from its manifest record `rec`, or None."""
    for name, key in ((ADAPTER_FILE, "sha256"), (ADAPTER_CONFIG_FILE, "config_sha256")):
        if key in rec and sha256_file(folder / name) != rec[key]:
            return name
    return None


class KnowledgeBase:
    def __init__(self, root: Path, config: PragConfig, docs: list[Document]):
        self.root = Path(root)
        self.config = config
        self.docs = docs
        self.by_id = {d.id: d for d in docs}
        self._manifest, self._translated = self._read_manifest()
        self._cache: OrderedDict[str, Adapter] = OrderedDict()  # keys: id (trained), ("translated", id)
        self.cache_bytes = 0
        self._sizes: dict[str, int] = {}
        self.cache_limit = 512 * 2**20
        self._retriever: Retriever | None = None
        self._gguf_ok: set[str] = set()  # documents whose adapter GGUF was checked in this process
        self._arch: str | None | bool = False  # GGUF architecture of the base model (None: not a GGUF model)
        self.lock = threading.RLock()  # guards corpus changes (documents added or removed while serving)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, root: Path, corpus: Path, config: PragConfig, overwrite: bool = False) -> "KnowledgeBase":
        """Validate the corpus and build a new kb (or replace the corpus and index of an existing one)."""
        docs = load_corpus(corpus)  # validates before anything is written
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise Conflict(f"{root}: not a directory")
        is_kb = (root / "kb.toml").is_file()
        if root.is_dir() and not is_kb and any(root.iterdir()):
            raise Conflict(f"{root}: a directory that is not a knowledge base and not empty; prag writes only "
                           "into a new or empty directory (or an existing kb)")
        if is_kb and not overwrite:
            old = PragConfig.load_toml(root / "kb.toml")
            if old.to_dict() != config.to_dict():
                raise Conflict(f"{root}: kb was built with other settings (model {old.model}); use a new --kb")
        try:
            (root / "docs").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PragError(f"{root}: cannot create the knowledge base there ({e.strerror})") from None
        old = load_corpus(root / "corpus.jsonl") if is_kb and (root / "corpus.jsonl").is_file() else []
        kb = cls(root, config, [])
        with kb.lock:
            kb._set_docs(docs)
            kb._forget_removed()
            kb._mark_changed(old)
        kb.save_config()
        return kb

    @classmethod
    def open(cls, root: Path) -> "KnowledgeBase":
        root = Path(root)
        if not (root / "kb.toml").is_file() or not (root / "corpus.jsonl").is_file():
            raise NotFound(f"{root}: no knowledge base here (create one with `prag index --corpus FILE --kb {root}`)")
        return cls(root, PragConfig.load_toml(root / "kb.toml"), load_corpus(root / "corpus.jsonl"))

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            self._retriever = RETRIEVERS.get(self.config.retrieval.backend).load(self.root / "index", self.docs)
        return self._retriever

    # ------------------------------------------------------------------ adding and removing documents
    def _set_docs(self, docs: list[Document]) -> None:
        """Make `docs` the corpus: corpus.jsonl and the retriever's index are rewritten (each atomically)."""
        atomic_write(self.root / "corpus.jsonl", "".join(
            json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs))
        retriever = RETRIEVERS.get(self.config.retrieval.backend)(docs)
        retriever.save(self.root / "index")
        self._retriever = retriever
        self.docs = docs
        self.by_id = {d.id: d for d in docs}

    def _forget_removed(self) -> None:
        """Delete the adapters of documents the corpus no longer has (a re-index dropped them)."""
        for doc_id, rec in list(self._manifest.items()):
            if doc_id not in self.by_id and rec.get("status") != "deleted":
                self._drop(doc_id)

    def _mark_changed(self, old: list[Document]) -> None:
        """Adapters recorded before content hashes were (no text_sha256) whose document's text changed in this
        re-index: marked stale, so they are made again rather than served."""
        for d in old:
            rec = self._manifest.get(d.id)
            new = self.by_id.get(d.id)
            if rec and rec.get("status") == "done" and "text_sha256" not in rec and new is not None and new != d:
                self._append_manifest({"id": d.id, "status": "stale", "error": "text changed since its adapter"})

    def _drop(self, doc_id: str) -> None:
        shutil.rmtree(self.doc_dir(doc_id), ignore_errors=True)
        shutil.rmtree(self.translated_dir(doc_id), ignore_errors=True)
        self._uncache(doc_id)
        self._append_manifest({"id": doc_id, "status": "deleted"})
        if doc_id in self._translated:
            self._append_manifest({"id": doc_id, "kind": TRANSLATED, "status": "deleted"})

    def add_document(self, doc: Document) -> None:
        """Add one document: corpus and index are rewritten at once; parameterize it later."""
        with self.lock:
            if doc.id in self.by_id:
                raise Conflict(f"document {doc.id!r} already exists")
            if not doc.text.strip():
                raise PragError("document text is empty")
            self._set_docs(self.docs + [doc])

    def remove_document(self, doc_id: str) -> None:
        """Remove a document, its adapter and its augmentation."""
        with self.lock:
            if doc_id not in self.by_id:
                raise NotFound(f"unknown document id {doc_id!r}")
            self._set_docs([d for d in self.docs if d.id != doc_id])
            self._drop(doc_id)  # final: a job still making its adapter will not publish it (save_document)

    # ------------------------------------------------------------------ manifest
    def _read_manifest(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """The last record per id of trained adapters, and of translated ones."""
        path = self.root / "manifest.jsonl"
        state: dict[str, dict] = {}
        translated: dict[str, dict] = {}
        if path.exists():
            self._repair_manifest(path)
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    (translated if rec.get("kind") == TRANSLATED else state)[rec["id"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    continue  # a line cut short by a crash: ignored, the document is redone
        return state, translated

    @staticmethod
    def _repair_manifest(path: Path) -> None:
        """Cut a last line left unfinished by a crash, so the next append starts on a line of its own (else it
        would be glued to the fragment and lost). A read-only kb is left as it is: reading skips the fragment."""
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        try:
            with open(path, "rb+") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
                    f.flush()
                    os.fsync(f.fileno())
        except OSError:
            pass

    def _append_manifest(self, rec: dict) -> None:
        """One whole line per event, written under an exclusive lock (several worker processes may share a kb)."""
        path = self.root / "manifest.jsonl"
        with open(path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if f.tell() > 0:
                with open(path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":  # a fragment from a crash: start a new line
                        f.write("\n")
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        (self._translated if rec.get("kind") == TRANSLATED else self._manifest)[rec["id"]] = rec

    def refresh(self) -> None:
        """Re-read the manifest (other processes may have finished documents)."""
        self._manifest, self._translated = self._read_manifest()

    def clean_stale(self) -> None:
        """Remove temporary files and folders that a killed job left behind (never read: only renames publish)."""
        for folder in (self.root, self.root / "docs", self.root / TRANSLATED):
            if folder.is_dir():
                remove_stale(folder)

    def status(self, doc_id: str) -> str:
        """pending | done | stale (an adapter made for another text under this id) | failed | corrupt."""
        rec = self._manifest.get(doc_id)
        if not rec or rec.get("status") == "deleted":
            return "pending"
        if rec.get("status") == "done":
            if not self._same_content(doc_id, rec):
                return "stale"
            return "done" if self.is_done(doc_id) else "pending"  # its file is gone: to be made again
        return rec["status"]

    def _same_content(self, doc_id: str, rec: dict) -> bool:
        """Whether the adapter recorded in `rec` was made from the document's current content (records written
        before content hashes were recorded are trusted)."""
        doc = self.by_id.get(doc_id)
        return doc is not None and rec.get("text_sha256") in (None, content_hash(doc))

    def is_done(self, doc_id: str) -> bool:
        rec = self._manifest.get(doc_id)
        if not rec or rec.get("status") != "done" or not self._same_content(doc_id, rec):
            return False
        path = self.doc_dir(doc_id) / ADAPTER_FILE
        return path.exists() and path.stat().st_size == rec.get("bytes", -1)

    def summary(self) -> dict:
        counts = {"documents": len(self.docs), "parameterized": 0, "pending": 0, "failed": 0, "stale": 0,
                  "translated": sum(self.has_translated(d.id) for d in self.docs)}
        failed = {}
        for d in self.docs:
            s = "parameterized" if self.is_done(d.id) else self.status(d.id)
            if s == "failed":
                failed[d.id] = self._manifest[d.id].get("error", "")
            if s == "corrupt":
                failed[d.id] = "adapter checksum mismatch"
                s = "failed"
            counts[s if s in counts else "pending"] += 1
        counts["failures"] = failed
        return counts

    # ------------------------------------------------------------------ adapters
    def doc_dir(self, doc_id: str) -> Path:
        return self.root / "docs" / doc_key(doc_id)

    def save_document(self, doc: Document, adapter: Adapter, aug: Augmentation, seconds: float,
                      dtype: torch.dtype = torch.float32, recipe: str | None = None) -> bool:
        """Write adapter + augmentation into the document's folder (built aside, swapped in whole), then record
        the checksums of every file, the hash of the content it was made from and `recipe` (the `recipe_key` of the
        settings that made it). Returns False, publishing nothing, when `doc` is no longer the kb's document of that
        id (deleted, or its text changed, while the adapter was made)."""
        blob = st_save(adapter_tensors(adapter, dtype), metadata={"format": "pt", "doc_id": doc.id})
        conf = json.dumps(adapter_config(self.config.lora, self.config.model), indent=2).encode()
        extra = {"config_sha256": hashlib.sha256(conf).hexdigest(), "text_sha256": content_hash(doc)}
        try:
            with self.lock:  # a deletion waits for the swap below, or happens before it and is seen by it
                with atomic_dir(self.doc_dir(doc.id)) as tmp:
                    if self.by_id.get(doc.id) != doc:
                        raise _Superseded
                    (tmp / ADAPTER_FILE).write_bytes(blob)
                    (tmp / ADAPTER_CONFIG_FILE).write_bytes(conf)
                    if self.gguf_arch and exportable(adapter):  # the same (dtype-rounded) factors for llama.cpp
                        write_adapter_gguf(_rounded(adapter, dtype), self.gguf_arch, tmp / GGUF_FILE)
                        extra["gguf_sha256"] = sha256_file(tmp / GGUF_FILE)
                    payload = json.dumps({"doc_id": doc.id, **aug.to_dict()}, indent=2, ensure_ascii=False)
                    (tmp / AUGMENTATION_FILE).write_bytes(payload.encode("utf-8"))
                    extra["augmentation_sha256"] = hashlib.sha256(payload.encode("utf-8")).hexdigest()
                self._append_manifest({"id": doc.id, "status": "done", "sha256": hashlib.sha256(blob).hexdigest(),
                                       "bytes": len(blob), "seconds": round(seconds, 3), **extra,
                                       **({"recipe": recipe} if recipe else {})})
        except _Superseded:
            return False
        finally:
            self._uncache(doc.id)
        return True

    # ------------------------------------------------------------------ translated adapters
    def translated_dir(self, doc_id: str) -> Path:
        return self.root / TRANSLATED / doc_key(doc_id)

    def has_translated(self, doc_id: str, translator_sha: str | None = None) -> bool:
        """Whether the document has a translated adapter made from its current text (by that translator, when
        `translator_sha` is given)."""
        rec = self._translated.get(doc_id)
        if not rec or rec.get("status") != "done" or not self._same_content(doc_id, rec):
            return False
        if translator_sha is not None and rec.get("translator_sha256") != translator_sha:
            return False
        path = self.translated_dir(doc_id) / ADAPTER_FILE
        return path.exists() and path.stat().st_size == rec.get("bytes", -1)

    @contextmanager
    def _translation_lock(self, doc_id: str):
        """An flock across processes around one document's translated adapter (locks/<key>.translated): a swap of
        its folder and the manifest line that records it happen together for anyone else holding it. A kb that
        cannot be written (so nothing can be swapped in) is read without it."""
        try:
            (self.root / "locks").mkdir(exist_ok=True)
            f = open(self.root / "locks" / f"{doc_key(doc_id)}.translated", "a")
        except OSError:
            yield
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def save_translated(self, doc: Document, adapter: Adapter, translator_sha: str, seconds: float,
                        dtype: torch.dtype = torch.float16, replace: bool = False) -> bool:
        """Write a translated adapter (PEFT files, built aside and swapped in whole) and record its checksums,
        the content hash and the translator's sha256 (its recipe). False, publishing nothing, when `doc` is no
        longer the kb's document of that id. When another process sharing the kb has meanwhile stored this
        document's translation by the same translator, that one is kept (unless `replace`), so that a reader who
        holds its record never finds the files swapped under it."""
        blob = st_save(adapter_tensors(adapter, dtype), metadata={"format": "pt", "doc_id": doc.id})
        conf = {**adapter_config(self.config.lora, self.config.model), "r": adapter.r, "lora_alpha": adapter.alpha,
                "prag_translator_sha256": translator_sha}
        wide = {n: int(a.shape[0]) for n, (a, _) in adapter.factors.items() if a.shape[0] != adapter.r}
        if wide:  # a token memory's modules: PEFT's per-module rank, with alpha kept so alpha_m / r_m = alpha / r
            conf["rank_pattern"] = wide
            conf["alpha_pattern"] = {n: adapter.alpha * r_m / adapter.r for n, r_m in wide.items()}
        raw = json.dumps(conf, indent=2).encode()
        with self.lock, self._translation_lock(doc.id):
            if self.by_id.get(doc.id) != doc:
                return False
            folder, rec = self.translated_dir(doc.id), self._translated.get(doc.id)
            if (folder / ADAPTER_FILE).exists() and (rec is None or _mismatch(folder, rec) is not None):
                self.refresh()  # files this process has no record of: another process's, since the manifest was read
            if not replace and self.has_translated(doc.id, translator_sha):
                self._uncache(doc.id)
                return True
            with atomic_dir(folder) as tmp:
                (tmp / ADAPTER_FILE).write_bytes(blob)
                (tmp / ADAPTER_CONFIG_FILE).write_bytes(raw)
            self._append_manifest({"id": doc.id, "kind": TRANSLATED, "status": "done",
                                   "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
                                   "config_sha256": hashlib.sha256(raw).hexdigest(), "text_sha256": content_hash(doc),
                                   "translator_sha256": translator_sha, "recipe": "translator:" + translator_sha[:16],
                                   "seconds": round(seconds, 4)})
            self._uncache(doc.id)
        return True

    def load_translated(self, doc_id: str) -> Adapter:
        """The document's translated adapter, checksum-verified on first read and cached like trained ones."""
        key = (TRANSLATED, doc_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        folder = self.translated_dir(doc_id)
        if (bad := self._translated_mismatch(doc_id)) is not None:
            with self._translation_lock(doc_id):  # another process may have stored its own translation since
                self.refresh()
                bad = self._translated_mismatch(doc_id)
        if bad is not None:
            raise PragError(f"{folder / bad}: checksum mismatch (corrupt translated adapter); run `prag "
                            "parameterize --translator ... --force` to redo it")
        return self._remember(key, read_adapter(folder))

    def _translated_mismatch(self, doc_id: str) -> str | None:
        """The translated adapter's first file whose checksum differs from its record (NotFound when it has none)."""
        if not self.has_translated(doc_id):
            raise NotFound(f"document {doc_id!r} has no translated adapter (run `prag parameterize --translator`)")
        return _mismatch(self.translated_dir(doc_id), self._translated[doc_id])

    def _remember(self, key, ad: Adapter) -> Adapter:
        self._cache[key] = ad
        self._sizes[key] = ad.footprint()  # factors, plus the packed copy the Update makes
        self.cache_bytes += self._sizes[key]
        while self.cache_bytes > self.cache_limit and len(self._cache) > 1:
            old_id, _ = self._cache.popitem(last=False)
            self.cache_bytes -= self._sizes.pop(old_id)
        return ad

    def recipes(self) -> set[str]:
        """The recipe keys recorded for the kb's finished adapters (adapters saved before keys were recorded
        have none)."""
        return {r["recipe"] for r in self._manifest.values() if r.get("status") == "done" and r.get("recipe")}

    def encoding_cost(self, ids: list[str]) -> dict:
        """What these documents' adapters cost to make, from the manifest: augmentation plus training, in seconds
        per document as recorded when each was saved (a batch's time shared evenly by its documents), whichever
        run made them. `timed` counts the adapters with a recorded time."""
        secs = sorted(self._manifest[i]["seconds"] for i in ids
                      if self.is_done(i) and isinstance(self._manifest[i].get("seconds"), (int, float)))
        mid = len(secs) // 2
        median = (secs[mid] if len(secs) % 2 else (secs[mid - 1] + secs[mid]) / 2) if secs else None
        return {"adapters": len(ids), "timed": len(secs), "seconds": round(sum(secs), 1),
                "sec_per_doc_mean": round(sum(secs) / len(secs), 2) if secs else None,
                "sec_per_doc_median": round(median, 2) if secs else None}

    def save_config(self) -> None:
        """Write kb.toml from `config` (atomically)."""
        atomic_write(self.root / "kb.toml", self.config.to_toml())

    def adopt(self, config: PragConfig) -> None:
        """Make `config` the kb's settings when it changes how adapters are made (--train-dtype, --augmenter...),
        so kb.toml keeps describing its adapters (an eval's resume key and later encodings rely on it). A kb that
        already holds adapters made otherwise refuses it."""
        if recipe_key(config) == recipe_key(self.config):
            return
        done = sum(self.is_done(d.id) for d in self.docs)
        if done:
            raise Conflict(f"{self.root} holds {done} adapters made with its kb.toml settings: options that change "
                           "how adapters are made (--train-dtype, --adapter-dtype, --augmenter, --model, --base-url) "
                           "need a new --kb")
        self.config = config
        self.save_config()

    def check_recipe(self, config: PragConfig) -> None:
        """Refuse to encode with `config` when the kb holds an adapter made with another `recipe_key`: a kb's
        adapters are all made alike (a warm-up file retrained in place, or kb.toml edited, would otherwise mix them)."""
        if self.recipes() - {recipe_key(config)}:
            raise Conflict(f"{self.root}: its adapters were made with other encoding settings than these "
                           "(kb.toml, this command's options, or a warm-up file changed since): use a new --kb")

    @contextmanager
    def claim(self, ids: list[str], wait: bool = False):
        """Exclusive locks on these documents across processes and threads (an flock on locks/<key> each): yields
        the set of ids this caller holds until the block ends. Without `wait`, ids another job holds are left out
        at once; with it, the caller waits for them (call it holding no other claim)."""
        folder = self.root / "locks"
        held, files = set(), []
        try:
            try:
                folder.mkdir(exist_ok=True)
            except OSError as e:
                raise PragError(f"{self.root}: cannot write to this kb ({e.strerror}), so it cannot make adapters; "
                                "parameterize it where it is writable") from None
            for doc_id in ids:
                f = open(folder / doc_key(doc_id), "a")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    f.close()
                    continue
                files.append(f)
                held.add(doc_id)
            yield held
        finally:
            for f in files:
                f.close()

    # ------------------------------------------------------------------ tuned generation settings (tune.py)
    def examples(self) -> list[tuple[str, str]]:
        """The kb's worked examples, (question, answer), written by `prag tune`; none when it was never tuned."""
        path = self.root / EXAMPLES_FILE
        if not path.is_file():
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["question"], r["answer"]) for r in rows]

    def tuning(self) -> dict | None:
        """How the kb's generation settings were chosen (`prag tune`: its table and choice), or None."""
        path = self.root / TUNING_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def save_tuning(self, result: dict, examples: list[tuple[str, str]]) -> None:
        """Keep a tuning's choice: its settings in kb.toml, its worked examples, and the table it chose from."""
        chosen = result["chosen"]
        atomic_write(self.root / EXAMPLES_FILE, "".join(json.dumps({"question": q, "answer": a}) + "\n"
                                                        for q, a in examples))
        self.config = self.config.override({"generation.scale": chosen["scale"],
                                            "generation.few_shot": chosen["few_shot"],
                                            "generation.temperature": chosen.get("temperature", 1.0)})
        self.save_config()
        atomic_write(self.root / TUNING_FILE, json.dumps(result, indent=1))

    def mark_failed(self, doc_id: str, error: str) -> None:
        self._append_manifest({"id": doc_id, "status": "failed", "error": error})

    def _uncache(self, doc_id: str) -> None:
        self._gguf_ok.discard(doc_id)
        for key in (doc_id, (TRANSLATED, doc_id)):
            if self._cache.pop(key, None) is not None:
                self.cache_bytes -= self._sizes.pop(key)

    def load_adapter(self, doc_id: str) -> Adapter:
        """The document's adapter, checksum-verified on first read and kept in a byte-bounded LRU cache."""
        if doc_id in self._cache:
            self._cache.move_to_end(doc_id)
            return self._cache[doc_id]
        if not self.is_done(doc_id):
            raise NotFound(f"document {doc_id!r} has no adapter yet (run `prag parameterize`)")
        folder = self.doc_dir(doc_id)
        if (bad := _mismatch(folder, self._manifest[doc_id])) is not None:
            try:
                self._append_manifest({"id": doc_id, "status": "corrupt", "error": f"{bad} checksum mismatch"})
            except OSError:  # a read-only kb: reported, not recorded
                pass
            raise PragError(f"{folder / bad}: checksum mismatch (corrupt adapter); run `prag parameterize` to redo it")
        return self._remember(doc_id, read_adapter(folder))

    @property
    def gguf_arch(self) -> str | None:
        """The base model's GGUF architecture (llama, gemma3...), or None when it is not a GGUF model."""
        if self._arch is False:
            gguf = resolve_gguf(self.config.model)
            self._arch = gguf_architecture(gguf) if gguf else None
        return self._arch

    def adapter_gguf(self, doc_id: str) -> Path:
        """The document's adapter as a llama.cpp GGUF. Written by parameterize; (re)exported here from the
        checksum-verified safetensors when missing or not matching its recorded checksum (older kbs)."""
        path = self.doc_dir(doc_id) / GGUF_FILE
        if doc_id in self._gguf_ok:
            return path
        with self.lock:
            adapter = self.load_adapter(doc_id)  # verifies the PEFT file's checksum (factors as stored)
            rec = self._manifest[doc_id]
            expected = rec.get("gguf_sha256")
            if not (expected and path.exists() and sha256_file(path) == expected):
                if not self.gguf_arch:
                    raise PragError(f"model {self.config.model!r} is not a GGUF model: the llamacpp backend needs one")
                if not exportable(adapter):
                    raise PragError("the llamacpp backend supports adapters on the FFN projections only "
                                    f"(this kb targets {', '.join(self.config.lora.target_modules)})")
                with atomic_file(path) as tmp:
                    write_adapter_gguf(adapter, self.gguf_arch, tmp)
                self._append_manifest({**rec, "gguf_sha256": sha256_file(path)})  # not redone next time
            self._gguf_ok.add(doc_id)
        return path

    def load_augmentation(self, doc_id: str) -> Augmentation:
        """The stored augmentation of a document, checksum-verified (kbs from before checksums: as found)."""
        path = self.doc_dir(doc_id) / AUGMENTATION_FILE
        raw = path.read_bytes()
        expected = self._manifest.get(doc_id, {}).get("augmentation_sha256")
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise PragError(f"{path}: checksum mismatch (corrupt augmentation); run `prag parameterize` to redo it")
        return Augmentation.from_dict(json.loads(raw.decode("utf-8")))
