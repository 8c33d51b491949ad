"""The pipeline: offline parameterization (augment -> encode -> store) and online Retrieve-Update-Generate.

`Pipeline` binds a `KnowledgeBase`, the run's config, one base model (loaded on first use) with its LoRA
`Injector`, and the generation backend. `plan` retrieves and builds the prompt and the adapter set a method asks
for (methods.py says which); `ask` runs the Update and Generate steps on the backend.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from tqdm import tqdm

from .atomic import atomic_write
from .augment import Augmenter, build_augmenter, select_parts
from .backends import BACKENDS, Backend
from .config import WARMUP_EPOCHS, WARMUP_LR, PragConfig, recipe_key
from .corpus import Document
from .encode import (
    TORCH_DTYPES,
    loss_starts,
    read_adapter,
    save_adapter,
    train_adapter,
    train_adapters,
    training_sequences,
)
from .errors import NotFound, PragError
from .generate import Row, question_message, reasoning_shots, take_from
from .methods import METHODS
from .models import LoadedModel, load_model
from .retrieval import Hit
from .rules import QA, Augmentation
from .store import KnowledgeBase, sha256_file
from .translate import Translator, load_translator, training_overlap, translator_folder
from .translate import translate as translate_docs
from .update import ADAPTER_FILE, Adapter, Injector, merge_adapters

MAX_DOCS = 20  # documents per question at most (top-k or given ids)
IN_CONTEXT = "in-context"  # the kind of a document with no adapter yet, put in the prompt instead


class Plan(NamedTuple):
    """What `Pipeline.plan` prepares for one question: the prompt, the hits, the adapters and weights the Update
    installs, and each hit's adapter kind ("trained" or "translated"; empty for methods without adapters)."""
    prompt: str
    hits: list[Hit]
    adapters: list[Adapter]
    weights: list[float]
    kinds: list[str] = []


class Job(NamedTuple):
    """One question waiting for `Pipeline.answer_jobs`: the request, its plan if made already, its stream and
    cancel event, and `settle(answer or error)`, called once."""
    request: Request | tuple
    planned: Plan | tuple | None = None
    streamer: object = None
    cancel: threading.Event | None = None
    settle: Callable = lambda result: None


class Request(NamedTuple):
    """One question for `Pipeline.ask_batch`: `ask`'s arguments."""
    question: str
    method: str = "prag"
    top_k: int | None = None
    doc_ids: list[str] | None = None
    max_new_tokens: int | None = None


@dataclass
class Answer:
    question: str
    method: str
    answer: str
    raw: str
    hits: list[Hit] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    update_seconds: float = 0.0
    seconds: float = 0.0
    prompt_tokens: int = 0
    retrieval_rounds: int = 0
    adapter_kinds: list[str] = field(default_factory=list)  # per hit: "trained" or "translated" (adapter methods)

    def per_hit(self) -> list[tuple[Hit, float | None, str | None]]:
        """(hit, merge weight, adapter kind) per retrieved document; the weight is None for a document in the
        prompt instead of the weights, or when a merge rewrote the adapter set."""
        kinds = self.adapter_kinds or [None] * len(self.hits)
        with_adapter = [k != IN_CONTEXT for k in kinds]
        weights = iter(self.weights if len(self.weights) == sum(with_adapter) else [])
        return [(h, next(weights, None) if a else None, k) for h, a, k in zip(self.hits, with_adapter, kinds)]

    def to_dict(self) -> dict:
        return {"question": self.question, "method": self.method, "answer": self.answer, "raw": self.raw,
                "documents": [{"id": h.doc.id, "title": h.doc.title, "score": round(h.score, 4), "weight": w,
                               **({"adapter": k} if k else {})} for h, w, k in self.per_hit()],
                "update_seconds": self.update_seconds, "seconds": self.seconds, "prompt_tokens": self.prompt_tokens,
                "retrieval_rounds": self.retrieval_rounds,
                **({"adapters": self.adapter_kinds} if self.adapter_kinds else {})}


class Pipeline:
    def __init__(self, kb: KnowledgeBase, lm: LoadedModel | None = None, config: PragConfig | None = None):
        """`config` is the run's settings (the kb's, with this command's flags); by default the kb's own."""
        self.kb = kb
        self.config = config if config is not None else kb.config
        self._lm = lm
        self._injector: Injector | None = None
        self._augmenter: Augmenter | None = None
        self._trainer: tuple[torch.nn.Module, Injector] | None = None
        self._backends: dict[str, Backend] = {}
        self._init: tuple[str | None, Adapter | None] = (None, None)
        self._translator: tuple[str | None, tuple | None] = (None, None)
        # worked (question, answer) examples every prompt shows first: the kb's tuned ones, as many as configured
        self.examples: list[tuple[str, str]] = kb.examples()[: self.config.generation.few_shot]

    # ------------------------------------------------------------------ parts, made on first use
    @property
    def lm(self) -> LoadedModel:
        """The base model, loaded on first use (so input errors are reported before a model load)."""
        if self._lm is None:
            self._lm = load_model(self.config.model)
        return self._lm

    @property
    def injector(self) -> Injector:
        if self._injector is None:
            self._injector = Injector(self.lm.model, self.config.lora.target_modules)
        return self._injector

    @property
    def backend(self) -> Backend:
        """The generation backend `generation.backend` names, made on first use."""
        name = self.config.generation.backend
        if name not in self._backends:
            self._backends[name] = BACKENDS.get(name)(self)
        return self._backends[name]

    def check_generation_config(self, method: str | None = None) -> None:
        """Reject bad generation settings, or a method the backend cannot run, before any model is loaded."""
        self.config.generation.validate()
        backend = BACKENDS.get(self.config.generation.backend)
        backend.check(self.config)
        if method is not None and METHODS.get(method).needs_attention and not backend.attention:
            raise PragError(f"{method} needs attention weights, which the {self.config.generation.backend} backend "
                            "does not expose: use --backend transformers")

    def check_encoding_config(self) -> None:
        """Reject bad encoding settings before any model is loaded."""
        self.config.lora.validate()
        self.config.lora.validate_files()
        self.config.augment.validate()
        self.config.augment.validate_files()
        self.init_adapter  # a warm-up adapter of the wrong rank is reported before any work

    @property
    def trainer(self) -> tuple[torch.nn.Module, Injector]:
        """The model and injector that encoding trains through: the base model itself, or (lora.train_dtype
        bfloat16) a bfloat16 copy with eager attention, which this CPU's bf16 matrix units run faster."""
        if self._trainer is None:
            self.check_encoding_config()
            dtype = TORCH_DTYPES[self.config.lora.train_dtype]
            if dtype == self.injector.dtype:
                self._trainer = (self.lm.model, self.injector)
            else:
                model = copy.deepcopy(self.lm.model).to(dtype)
                model.set_attn_implementation("eager")
                self._trainer = (model, Injector(model, self.config.lora.target_modules))
        return self._trainer

    @property
    def adapter_dtype(self) -> torch.dtype:
        self.check_encoding_config()
        return TORCH_DTYPES[self.config.lora.adapter_dtype]

    @property
    def augmenter(self) -> Augmenter:
        if self._augmenter is None:
            self._augmenter = build_augmenter(self.config, lambda: self.lm)
        return self._augmenter

    @property
    def init_adapter(self) -> Adapter | None:
        """The warm-up LoRA every document starts from (lora.init_from), or None for random init."""
        path = self.config.lora.init_from
        if not path:
            return None
        if self._init[0] != path:
            ad = read_adapter(Path(path))
            if ad.r != self.config.lora.r:
                raise PragError(f"lora.init_from {path}: rank {ad.r}, but this kb trains rank {self.config.lora.r}")
            self._init = (path, ad)
        return self._init[1]

    @property
    def translator(self) -> tuple[Translator, str]:
        """(the translator `generation.translator` names, its sha256), loaded and checksum-verified on first use."""
        name = self.config.generation.translator
        if not name:
            raise PragError("no translator configured: pass --translator DIR (or default)")
        if self._translator[0] != name:
            tr, sha = load_translator(translator_folder(name, self.config.model),
                                      model=self.config.model)
            self._translator = (name, (tr.to(self.injector.device), sha))
        return self._translator[1]

    def translator_saw(self, doc_ids, questions=()) -> dict | None:
        """How many of these documents, and of these questions, the translator trained on (matched by text; see
        translate.training_overlap), when translated adapters answer (`generation.adapters` "translated"; in
        "trained-else-translated", eval and tune train every document they use first); else None, as when the
        translator does not list its training documents."""
        gcfg = self.config.generation
        if gcfg.adapters != "translated" or not gcfg.translator:
            return None
        return training_overlap(translator_folder(gcfg.translator, self.config.model),
                                [self.kb.by_id[i].as_text() for i in sorted(set(doc_ids))],
                                [q.question for q in questions])

    # ------------------------------------------------------------------ offline
    def translate(self, docs: list[Document], force: bool = False, progress: bool = False, batch: int = 16) -> dict:
        """Translated adapters for these documents (those without one from this translator, or all with
        `force`), stored in the kb; one partial forward pass per batch, under the Update lock so the base model is
        bare. Returns {done, skipped, seconds}."""
        if not docs:
            return {"done": 0, "skipped": 0, "seconds": 0.0}
        tr, sha = self.translator
        todo = [d for d in docs if force or not self.kb.has_translated(d.id, sha)]
        todo.sort(key=lambda d: len(d.text))  # batches of similar length waste little on padding
        t0 = time.perf_counter()
        with tqdm(total=len(todo), desc="translate", unit="doc", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                t1 = time.perf_counter()
                with self.injector.lock:
                    adapters = translate_docs(self.lm, self.injector, tr, [d.as_text() for d in chunk])
                secs = (time.perf_counter() - t1) / len(chunk)
                for doc, ad in zip(chunk, adapters):
                    self.kb.save_translated(doc, ad, sha, secs, replace=force)
                bar.update(len(chunk))
        return {"done": len(todo), "skipped": len(docs) - len(todo), "seconds": time.perf_counter() - t0}

    def _augment(self, doc: Document) -> Augmentation:
        return self.augment_many([doc])[0]

    def augment_many(self, docs: list[Document]) -> list[Augmentation]:
        acfg = self.config.augment
        augmenter = self.augmenter
        if augmenter.needs_model:
            with self.injector.lock:  # augmentation must see the bare base model
                augs = augmenter.augment_many(docs, acfg.n_rewrites, acfg.n_qa)
        else:
            augs = augmenter.augment_many(docs, acfg.n_rewrites, acfg.n_qa)
        return augs if acfg.parts == "both" else [select_parts(a, d, acfg.parts) for a, d in zip(augs, docs)]

    def parameterize_one(self, doc: Document) -> dict:
        """Augment and encode one document with the one-at-a-time loop, then store it."""
        t0 = time.perf_counter()
        aug = self._augment(doc)
        lcfg = self.config.lora
        seqs = training_sequences(self.lm, aug, lcfg.layout)
        adapter, losses = train_adapter(*self.trainer, seqs, lcfg, init=self.init_adapter,
                                        loss_from=loss_starts(self.lm, aug, lcfg.layout, lcfg.loss))
        secs = time.perf_counter() - t0
        self.kb.save_document(doc, adapter, aug, secs, self.adapter_dtype, recipe_key(self.config))
        return {"id": doc.id, "seconds": secs, "final_loss": losses[-1] if losses else None}

    def parameterize_batch(self, docs: list[Document]) -> dict[str, str]:
        """Augment and encode several documents together (`train_adapters`), then store each. Returns the
        failures {id: reason}; a document that fails augmentation does not stop the others."""
        t0 = time.perf_counter()
        failed, ready = {}, []
        try:
            augs = self.augment_many(docs)
        except (RuntimeError, ValueError):  # find the documents at fault: one at a time
            augs = []
            for doc in docs:
                try:
                    augs.append(self._augment(doc))
                except (RuntimeError, ValueError) as e:
                    augs.append(None)
                    failed[doc.id] = f"{type(e).__name__}: {e}"
        for doc, aug in zip(docs, augs):
            if aug is not None:
                ready.append((doc, aug, training_sequences(self.lm, aug, self.config.lora.layout)))
        try:
            lcfg = self.config.lora
            trained = train_adapters(*self.trainer, [s for _, _, s in ready], lcfg, self.lm.pad_id,
                                     inits=[self.init_adapter] * len(ready),
                                     loss_from=[loss_starts(self.lm, aug, lcfg.layout, lcfg.loss) for _, aug, _ in ready])
        except (RuntimeError, ValueError) as e:
            return failed | {doc.id: f"{type(e).__name__}: {e}" for doc, _, _ in ready}
        secs = (time.perf_counter() - t0) / max(1, len(ready))  # the batch's cost, per adapter it made
        recipe = recipe_key(self.config)  # hashes the warm-up file: once per batch
        for (doc, aug, _), (adapter, _) in zip(ready, trained):
            self.kb.save_document(doc, adapter, aug, secs, self.adapter_dtype, recipe)
        return failed

    def encode(self, docs: list[Document], force: bool = False) -> dict[str, str]:
        """Augment, encode and store these documents (one batch: `parameterize_batch`, or the one-document loop
        when lora.batch_docs is 1); returns the failures {id: reason}, also recorded in the manifest.

        Each document is claimed first (a lock file per document, kb.claim), so concurrent jobs on one kb never
        make the same adapter twice: what another job holds is waited for, then taken as done. A document deleted
        or changed while it was trained is not published (KnowledgeBase.save_document) and is not a failure."""
        failed: dict[str, str] = {}
        remaining = list(docs)
        while remaining:
            with self.kb.claim([d.id for d in remaining]) as mine:
                self.kb.refresh()  # another job may have finished some
                todo = [d for d in remaining if d.id in mine and (force or not self.kb.is_done(d.id))]
                if len(todo) == 1 and self.config.lora.batch_docs == 1:
                    try:
                        self.parameterize_one(todo[0])
                        result = {}
                    except (RuntimeError, ValueError) as e:  # one bad document must not stop the job
                        result = {todo[0].id: f"{type(e).__name__}: {e}"}
                else:
                    result = self.parameterize_batch(todo) if todo else {}
                for doc in todo:
                    if doc.id in result and self.kb.by_id.get(doc.id) == doc:
                        self.kb.mark_failed(doc.id, result[doc.id])
                        failed[doc.id] = result[doc.id]
            remaining = [d for d in remaining if d.id not in mine]
            if remaining:  # held by another job: wait for it (holding nothing, so two jobs never deadlock)
                with self.kb.claim([remaining[0].id], wait=True):
                    pass
                self.kb.refresh()
                remaining = [d for d in remaining if not self.kb.is_done(d.id)]
        return failed

    def parameterize(self, ids: list[str] | None = None, progress: bool = True, force: bool = False) -> dict:
        """Parameterize the given documents (None: all; an empty list: none), `lora.batch_docs` at a time (1: the
        one-document loop); finished ones are skipped unless `force`. Each document is stored as soon as its batch
        ends, so a killed job loses at most one batch. (distributed.py runs the same batches on Ray.)"""
        docs, todo = self.to_parameterize(ids, force)
        summary = {"done": 0, "skipped": len(docs) - len(todo), "failed": {}, "seconds": 0.0}
        t0 = time.perf_counter()
        size = max(1, self.config.lora.batch_docs)
        with tqdm(total=len(todo), desc="parameterize", unit="doc", disable=not progress or not todo,
                  smoothing=0.1) as bar:
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                summary["failed"].update(self.encode(chunk, force))
                summary["done"] += sum(self.kb.is_done(d.id) for d in chunk)
                bar.update(len(chunk))
        summary["seconds"] = time.perf_counter() - t0
        return summary

    def to_parameterize(self, ids: list[str] | None, force: bool = False) -> tuple[list[Document], list[Document]]:
        """(the documents asked for, those of them still to do), after the checks every encoding job makes: valid
        encoding settings, the kb's adapters all made with this recipe, no temporary files left by a killed job."""
        docs = self.documents(ids)
        self.check_encoding_config()
        self.kb.check_recipe(self.config)
        self.kb.clean_stale()
        return docs, [d for d in docs if force or not self.kb.is_done(d.id)]

    def documents(self, ids: list[str] | None) -> list[Document]:
        """The kb's documents with these ids (None: all of them; an empty list: none)."""
        if ids is None:
            return self.kb.docs
        unknown = [i for i in ids if i not in self.kb.by_id]
        if unknown:
            raise NotFound(f"unknown document id(s): {', '.join(unknown[:5])}")
        return [self.kb.by_id[i] for i in ids]

    def retrieved_ids(self, questions, top_k: int) -> list[str]:
        """Ids of every document BM25 retrieves (top-k) for the questions, sorted."""
        return sorted({h.doc.id for q in questions for h in self.kb.retriever.retrieve(q.question, top_k)})

    def parameterize_retrieved(self, questions, top_k: int, progress: bool = True) -> list[str]:
        """Parameterize every document BM25 retrieves (top-k) for the questions, as an eval of prag/combine
        needs (batched, resumable): trained, or translated as `generation.adapters` says. Returns their ids."""
        need = self.retrieved_ids(questions, top_k)
        if not need:
            return []
        if self.config.generation.adapters == "translated":
            self.translate([self.kb.by_id[i] for i in need], progress=progress)
            return need
        s = self.parameterize(need, progress=progress)
        if s["failed"]:
            raise PragError(f"{len(s['failed'])} documents failed to parameterize; see `prag status --kb {self.kb.root}`")
        return need

    def warmup(self, questions, out: Path, lr: float = WARMUP_LR, epochs: int = WARMUP_EPOCHS,
               force: bool = False) -> dict:
        """The paper's §5.2 warm-up: one LoRA trained on (question, golden answer) pairs of development questions,
        saved in PEFT's layout at `out`; `lora.init_from = out` then starts every document's LoRA from it.

        It has its own `lr` and `epochs`: the kb's per-document recipe (tuned for a few dozen steps on one
        document) run over a whole dev split takes hundreds of steps and can diverge (it did on 2WQA-comparison's
        150 dev questions). The recipe and losses are saved beside the LoRA as warmup.json; `diverged` is true when
        the mean loss of the last 10 steps is not below that of the first 10 (fewer when there are under 20).

        A LoRA already at `out` is kept (returned with `reused: true`) only when its warmup.json was written for the
        same model, LoRA shape, recipe and question-answer pairs and its adapter file still has the checksum saved
        there; anything else at `out` (an older or diverged warm-up, another recipe) is trained anew. `force`
        always retrains."""
        if not questions:
            raise PragError("warm-up needs at least one question")
        if not (lr > 0 and math.isfinite(lr)):  # the CLI's flags, hence their names
            raise PragError(f"--lr must be a finite number > 0, not {lr}")
        if epochs < 1:
            raise PragError(f"--epochs must be at least 1, not {epochs}")
        out = Path(out)
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / ADAPTER_FILE).is_file())):
            raise PragError(f"--out {out}: exists and is not a warm-up folder; it would be replaced whole: "
                            "give a new folder")
        pairs = [(q.question, q.golden_answers[0]) for q in questions]
        lcfg = self.config.lora
        key = {"model": self.config.model, "lr": lr, "epochs": epochs, "r": lcfg.r, "alpha": lcfg.alpha,
               "target_modules": list(lcfg.target_modules), "seed": lcfg.seed, "init_std": lcfg.init_std, "weight_decay": lcfg.weight_decay,
               "max_seq_len": lcfg.max_seq_len, "train_dtype": lcfg.train_dtype,
               "pairs_sha256": hashlib.sha256(json.dumps(pairs).encode()).hexdigest()}
        out = Path(out)
        if not force and (out / "warmup.json").is_file() and (out / ADAPTER_FILE).is_file():
            try:
                saved = json.loads((out / "warmup.json").read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                saved = {}
            if isinstance(saved, dict) and saved.get("key") == key and saved.get("adapter_sha256") == sha256_file(out / ADAPTER_FILE):
                return {**saved, "reused": True}
        aug = Augmentation([], [QA(q, a, "dev") for q, a in pairs], {})
        seqs = training_sequences(self.lm, aug, "separate")
        recipe = dataclasses.replace(lcfg, lr=lr, epochs=epochs)
        t0 = time.perf_counter()
        adapter, losses = train_adapter(*self.trainer, seqs, recipe)
        save_adapter(adapter, out, lcfg, self.config.model)
        w = max(1, min(10, len(losses) // 2))  # two windows that do not overlap
        first, last = (sum(xs) / len(xs) for xs in (losses[:w], losses[-w:]))
        res = {"out": str(out), "questions": len(questions), "lr": lr, "epochs": epochs, "steps": len(losses),
               "seconds": time.perf_counter() - t0, "first_loss": first, "final_loss": last,
               "diverged": len(losses) > 1 and last >= first, "reused": False, "key": key,
               "adapter_sha256": sha256_file(out / ADAPTER_FILE), "losses": losses}
        atomic_write(out / "warmup.json", json.dumps(res, indent=1))
        return res

    # ------------------------------------------------------------------ online
    def augmented_document(self, doc: Document) -> Document:
        """The document as DA-RAG puts it in context: its rewrites and QA pairs (the stored augmentation when
        the document is parameterized, else augmented now without training)."""
        aug = self.kb.load_augmentation(doc.id) if self.kb.is_done(doc.id) else self._augment(doc)
        parts = [r for r in aug.rewrites if r] + [f"Q: {qa.question} A: {qa.answer}" for qa in aug.qa]
        return Document(doc.id, doc.title, "\n".join(parts) or doc.text)

    def retrieve(self, question: str, top_k: int) -> list[Hit]:
        hits = self.kb.retriever.retrieve(question, top_k)
        if not hits:
            raise PragError("the question retrieves no document (none of its words occur in the corpus)")
        return hits

    def prompt(self, question: str, docs: list | None = None, reasoning: bool = False) -> str:
        """The prompt every method shares: the worked examples (`examples`, e.g. a dataset's dev few-shot; for a
        method that reasons, the built-in reasoning ones instead), then the question, after the in-context
        documents `docs` if any."""
        shots = (reasoning_shots(with_documents=bool(docs)) if reasoning
                 else [(question_message(q), a) for q, a in self.examples])
        return self.lm.prompter.format(question_message(question, docs), shots=shots)

    def plan(self, question: str, method: str = "prag", top_k: int | None = None,
             doc_ids: list[str] | None = None, max_new_tokens: int | None = None
             ) -> Plan:
        """Retrieve (or take `doc_ids`) and build the prompt and the adapters to apply (a `Plan`). Validation
        happens here, before any model work: a prompt that does not fit the model's context with `max_new_tokens`
        to generate is refused."""
        m = METHODS.get(method)
        self.check_generation_config(method)
        if not question or not question.strip():
            raise PragError("empty question")
        if m.dynamic and doc_ids:
            raise PragError(f"{method} retrieves during generation: doc_ids cannot be given")
        if doc_ids and len(set(doc_ids)) != len(doc_ids):
            raise PragError("doc_ids names a document more than once")
        if doc_ids and len(doc_ids) > MAX_DOCS:
            raise PragError(f"doc_ids names {len(doc_ids)} documents; at most {MAX_DOCS}")
        hits: list[Hit] = []
        if m.retrieves:
            hits = ([Hit(d, 1.0) for d in self.documents(doc_ids)] if doc_ids
                    else self.retrieve(question, top_k or self.config.retrieval.top_k))
        kinds = self.adapter_kinds([h.doc for h in hits]) if m.adapters else []
        if "translated" in kinds and self.config.generation.backend == "llamacpp":
            raise PragError("the llamacpp backend serves trained adapters only: use --backend transformers for "
                            "translated ones")
        room = self.backend.context_tokens() - self.new_tokens(method, max_new_tokens)
        if len(question) > 32 * room:  # far more characters than fit at any plausible length of token: no count needed
            raise PragError(f"the question has {len(question)} characters; the model reads {room} tokens at most")
        in_context = {"none": lambda: [h.doc for h, k in zip(hits, kinds) if k == IN_CONTEXT] or None,
                      "documents": lambda: [h.doc for h in hits],
                      "augmented": lambda: [self.augmented_document(h.doc) for h in hits]}[m.context]()
        prompt = self.prompt(question, in_context, reasoning=m.reasoning)
        if not m.dynamic and (n := self.count_tokens(prompt)) > room:
            raise PragError(f"the prompt has {n} tokens with {len(hits)} documents; the model reads {room} "
                            "at most (its context, less the tokens to generate): ask a shorter question or use "
                            "fewer documents")
        adapters: list[Adapter] = []
        weights: list[float] = []
        if m.adapters:
            gcfg = self.config.generation
            with_adapter = [(h, k) for h, k in zip(hits, kinds) if k != IN_CONTEXT]
            found = self.load_adapters([h.doc for h, _ in with_adapter], [k for _, k in with_adapter])
            adapters, weights = merge_adapters(found, [h.score for h, _ in with_adapter], gcfg.merge,
                                               gcfg.temperature, gcfg.scale)
        return Plan(prompt, hits, adapters, weights, kinds)

    def new_tokens(self, method: str, given: int | None = None) -> int:
        """Tokens an answer may have: `given` (the request's), else generation.max_new_tokens, or
        generation.reasoning_tokens for a method that reasons first."""
        g = self.config.generation
        return given or (g.reasoning_tokens if METHODS.get(method).reasoning else g.max_new_tokens)

    def adapter_kinds(self, docs: list[Document]) -> list[str]:
        """Where each document's knowledge comes from, as `generation.adapters` says. "trained": its trained
        adapter, made now if missing (the question waits). "translated": its translated adapter, translated now
        if missing (one forward pass). "trained-else-translated": the trained adapter where there is one, else a
        translated one, or, with no translator configured, the document in the prompt ("in-context"): no
        question waits for training."""
        mode = self.config.generation.adapters
        if mode == "trained":
            return ["trained"] * len(docs)
        if mode == "translated":
            return ["translated"] * len(docs)
        fallback = "translated" if self.config.generation.translator else IN_CONTEXT
        return ["trained" if self.kb.is_done(d.id) else fallback for d in docs]

    def load_adapters(self, docs: list[Document], kinds: list[str]) -> list[Adapter]:
        """The documents' adapters of these kinds, made first where missing (trained or translated)."""
        need = [d.id for d, k in zip(docs, kinds) if k == "trained" and not self.kb.is_done(d.id)]
        if need:
            self.parameterize(need, progress=False)
        self.translate([d for d, k in zip(docs, kinds) if k == "translated"])
        return [self.kb.load_adapter(d.id) if k == "trained" else self.kb.load_translated(d.id)
                for d, k in zip(docs, kinds)]

    def ask(self, question: str, method: str = "prag", top_k: int | None = None,
            doc_ids: list[str] | None = None, max_new_tokens: int | None = None, streamer=None,
            planned: tuple | None = None, cancel: threading.Event | None = None) -> Answer:
        """Retrieve, Update, Generate. The backend holds its lock over Update+Generate, so concurrent callers never
        see each other's adapters; the base weights are untouched before and after. `planned` is the result of
        `plan(...)` for the same arguments, when the caller already made it. Generation stops early once `cancel`
        is set (the caller's client went away)."""
        req = Request(question, method, top_k, doc_ids, max_new_tokens)
        dynamic = METHODS.get(method).dynamic
        if dynamic is not None:
            t0 = time.perf_counter()
            planned or self.plan(*req)  # validation: the same errors as every method
            max_new = self.new_tokens(method, max_new_tokens)
            with self.injector.lock:  # the bare base model, for every round
                raw, hits, rounds = dynamic(self, question, top_k or self.config.retrieval.top_k, max_new)
            final = self.prompt(question, [h.doc for h in hits] or None)
            return Answer(question, method, METHODS.get(method).extract(raw), raw, hits, [], 0.0, time.perf_counter() - t0,
                          self.count_tokens(final), rounds)
        (ans,) = self.ask_batch([req], [planned], [streamer], [cancel])
        if isinstance(ans, Exception):
            raise ans
        return ans

    def ask_batch(self, requests: list[Request | tuple], planned: list | None = None, streamers: list | None = None,
                  cancels: list | None = None, max_rows: int | None = None) -> list[Answer | PragError]:
        """Answer several questions together (`answer_jobs`), each row with its own method, documents and adapters,
        as `ask` would answer it alone, at most `max_rows` generating at once (default: all): a row that ends makes
        room for the next. A request that cannot be answered (bad input, a document deleted meanwhile) gets its
        `PragError` in its place; the others are answered. Every answer's `seconds` and `update_seconds` are the
        whole call's (a share each: divide by the rows). Methods that retrieve while generating run one by one."""
        n = len(requests)
        planned, streamers, cancels = planned or [None] * n, streamers or [None] * n, cancels or [None] * n
        out: list = [None] * n
        jobs = [Job(req, planned[i], streamers[i], cancels[i], partial(out.__setitem__, i))
                for i, req in enumerate(requests)]
        t0 = time.perf_counter()
        self.answer_jobs(take_from(jobs), max_rows or max(n, 1))
        seconds = time.perf_counter() - t0
        update_s = sum(res.update_seconds for res in out if isinstance(res, Answer))
        for res in out:
            if isinstance(res, Answer):
                res.seconds, res.update_seconds = seconds, update_s
            elif isinstance(res, Exception) and not isinstance(res, PragError):
                raise res
        return out

    def answer_jobs(self, take: Callable[[int, bool], list[Job]], max_rows: int, min_join: int = 1) -> None:
        """Answer questions as they come, at most `max_rows` generating at once, until `take` has no more.
        `take(n, idle)` gives up to n waiting jobs (`idle`: nothing is being generated, so it may wait for one);
        each job's `settle` receives its `Answer` or its error. On a backend with `answer_rows` (transformers) the
        rows form a continuous batch: they join and leave between decode steps, each with its own adapters.
        Otherwise (llamacpp) they are answered one at a time. While rows run, new ones join once `min_join` places
        are free (`generate_continuous`). Methods that retrieve while generating are answered alone as they are
        taken."""
        def rows(k: int, idle: bool) -> list[Row]:
            out: list[Row] = []
            while len(out) < k:
                jobs = take(k - len(out), idle and not out)
                if not jobs:
                    break
                out += [r for r in map(self._row, jobs) if r is not None]
            return out

        be = self.backend
        if hasattr(be, "answer_rows"):
            return be.answer_rows(rows, max_rows, min_join)
        while got := rows(1, True):
            for r in got:
                with self.injector.lock:  # a deletion comes before the check or after the answer
                    if (err := r.admit()) is not None:
                        r.done(err, 0.0)
                        continue
                    try:
                        raw, update_s = be.answer(r.prompt, r.meta.hits, r.adapters, r.weights, r.max_new_tokens,
                                                  r.streamer, r.cancel)
                    except Exception as e:
                        r.done(e, 0.0)
                        raise
                r.done(raw, update_s)

    def _row(self, job: Job) -> Row | None:
        """The generation row of one job (planned now if it was not), or None when the job is settled already:
        its error, or the answer of a method that retrieves while generating."""
        t0 = time.perf_counter()
        try:
            req = Request(*job.request)
            if METHODS.get(req.method).dynamic is not None:
                job.settle(self.ask(*req, streamer=job.streamer, cancel=job.cancel))
                return None
            plan = Plan(*(job.planned or self.plan(*req)))
        except Exception as e:  # noqa: BLE001 - this job's error, not the batch's
            job.settle(e)
            return None

        def admit() -> PragError | None:  # under the Injector's lock, before the row joins and before each step
            gone = [h.doc.id for h in plan.hits if self.kb.by_id.get(h.doc.id) != h.doc]
            return NotFound(f"document(s) {', '.join(gone)} deleted or changed while this question was "
                            "planned") if gone else None

        def done(raw, update_s: float) -> None:
            job.settle(raw if isinstance(raw, Exception) else
                       Answer(req.question, req.method, METHODS.get(req.method).extract(raw), raw, plan.hits, plan.weights, update_s,
                              time.perf_counter() - t0, self.count_tokens(plan.prompt), adapter_kinds=plan.kinds))

        return Row(plan.prompt, self.new_tokens(req.method, req.max_new_tokens), plan.adapters,
                   plan.weights, job.streamer, job.cancel, done, admit, meta=plan)

    def count_tokens(self, text: str) -> int:
        return len(self.lm.tokenizer(text, add_special_tokens=False)["input_ids"])
