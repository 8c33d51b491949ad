"""Pipelines: offline parameterization (augment -> encode -> store) and online Retrieve-Update-Generate.

`Pipeline` binds one loaded base model, its LoRA `Injector` and a `KnowledgeBase`. The methods it answers
with are small functions of the stages: closed (bare question), rag (documents in context), prag (documents'
adapters merged into the FFN, bare question), combine (both) and da-rag (the documents' augmentation, i.e.
rewrites and QA pairs, in context: the paper's §4.2 baseline).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import PragError
from .augment import Augmentation, ReferenceAugmenter, RuleAugmenter, select_parts
from .config import WARMUP_EPOCHS, WARMUP_LR
from .corpus import Document
from .encode import train_adapter, train_adapters
from .generate import extract_answer, generate, question_message
from .models import LoadedModel, load_model, sync
from .retrieval import Hit
from .store import KnowledgeBase, recipe_key
from .update import Injector, merge_weights

METHODS = ("closed", "rag", "da-rag", "prag", "combine", "flare", "dragin")
DYNAMIC = ("flare", "dragin")  # multi-round retrieval during generation (dynamic.py)
BACKENDS = ("transformers", "llamacpp")
AUGMENTERS = ("rule", "model", "openai", "reference")
ADAPTER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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

    def to_dict(self) -> dict:
        return {"question": self.question, "method": self.method, "answer": self.answer, "raw": self.raw,
                "documents": [{"id": h.doc.id, "title": h.doc.title, "score": round(h.score, 4), "weight": w}
                              for h, w in zip(self.hits, self.weights or [None] * len(self.hits))],
                "update_seconds": self.update_seconds, "seconds": self.seconds, "prompt_tokens": self.prompt_tokens,
                "retrieval_rounds": self.retrieval_rounds}


def _training_texts(lm: LoadedModel, aug: Augmentation, layout: str) -> list[tuple[str, str]]:
    """(text, prefix) per training sequence: prefix is the part before the answer ("" for a rewrite alone)."""
    spacer = "" if lm.prompter.chat else " "  # on the answer's side: " Paris" is one token, "Answer: " + "Paris" two
    qa = [(lm.prompter.format(question_message(q.question)), spacer + q.answer + lm.prompter.end_of_answer)
          for q in aug.qa]
    rewrites = [r for r in aug.rewrites if r]
    if layout == "concat":
        return [(r + "\n\n" + p + a, r + "\n\n" + p) for r in rewrites or [""] for p, a in qa] or \
            [(r, "") for r in rewrites]
    if layout == "separate":
        return [(r, "") for r in rewrites] + [(p + a, p) for p, a in qa]
    raise PragError(f"unknown training layout {layout!r}: use separate or concat")


def training_sequences(lm: LoadedModel, aug: Augmentation, layout: str = "separate") -> list[torch.Tensor]:
    """Token sequences for encoding. Questions are asked exactly as at answer time (same prompt layout).

    layout "concat" is the paper's §3.2.2: one sequence per (rewrite, QA pair), rewrite ⊕ question ⊕ answer.
    layout "separate" (our default): each rewrite alone, and each question ⊕ answer alone. With the rewrite in
    the same sequence the answer can be copied from context, so the adapter need not store it; measured on
    SmolLM2 this injects almost nothing (README, "Measured").
    """
    tok = lm.tokenizer
    return [torch.tensor(tok(t, add_special_tokens=False)["input_ids"], dtype=torch.long)
            for t, _ in _training_texts(lm, aug, layout)]


def check_loss(loss: str) -> str:
    """`loss` if it is a known lora.loss setting, else a clear error."""
    if loss not in ("all", "answer"):
        raise PragError(f"unknown lora.loss {loss!r}: use all or answer")
    return loss


def loss_starts(lm: LoadedModel, aug: Augmentation, layout: str, loss: str) -> list[int] | None:
    """Where each of `training_sequences`' sequences starts counting in the loss: None for loss "all" (every
    token, the paper), else for loss "answer" the first answer token of a QA sequence (0 for a rewrite), so
    training spends nothing on reproducing the prompt."""
    if check_loss(loss) == "all":
        return None
    tok = lm.tokenizer
    starts = []
    for text, prefix in _training_texts(lm, aug, layout):
        full, head = (tok(t, add_special_tokens=False)["input_ids"] for t in (text, prefix))
        n = 0  # the tokens the prefix shares with the whole sequence (a merge at the boundary is counted)
        while n < min(len(full), len(head)) and full[n] == head[n]:
            n += 1
        starts.append(n)
    return starts


class Pipeline:
    def __init__(self, kb: KnowledgeBase, lm: LoadedModel | None = None):
        self.kb = kb
        self.config = kb.config
        self._lm = lm
        self._injector = None
        self._augmenter = None
        self._trainer = None
        self._llamacpp = None
        self.examples: list[tuple[str, str]] = []  # worked (question, answer) examples every prompt shows first

    @property
    def lm(self) -> LoadedModel:
        """The base model, loaded on first use (so input errors are reported before a model load)."""
        if self._lm is None:
            self._lm = load_model(self.config.model)
        return self._lm

    def check_generation_config(self, method: str | None = None) -> None:
        """Reject a bad backend (or a method it cannot run) before any model is loaded."""
        gcfg = self.config.generation
        if not (gcfg.scale >= 0 and math.isfinite(gcfg.scale)):
            raise PragError(f"generation.scale must be a finite number >= 0, not {gcfg.scale!r}")
        if gcfg.backend not in BACKENDS:
            raise PragError(f"unknown backend {gcfg.backend!r}: use {' or '.join(BACKENDS)}")
        if gcfg.backend == "llamacpp":
            if gcfg.llamacpp_weights not in ("dequantized", "original"):
                raise PragError(f"unknown llamacpp_weights {gcfg.llamacpp_weights!r}: use dequantized or original")
            if method == "dragin":
                raise PragError("dragin needs attention weights, which llama.cpp does not expose: "
                                "use --backend transformers")
            if self._llamacpp is None:  # before any work: the extra is installed and the model is a GGUF one
                from .llamacpp import require_llama_cpp
                from .models import resolve_gguf

                require_llama_cpp()
                if resolve_gguf(self.config.model) is None:
                    raise PragError(f"model {self.config.model!r} is not a GGUF model: the llamacpp backend needs one")

    @property
    def llamacpp(self):
        """The llama.cpp backend (llamacpp.py), started on first use: the model's GGUF, dequantized to float32
        by default so it computes with the transformers backend's weights."""
        if self._llamacpp is None:
            from .llamacpp import LlamaCppBackend, dequantized_gguf
            from .models import cache_dir, resolve_gguf

            self.check_generation_config()  # llama.cpp installed, a GGUF model
            gguf = resolve_gguf(self.config.model)
            gcfg = self.config.generation
            path = dequantized_gguf(gguf, cache_dir()) if gcfg.llamacpp_weights == "dequantized" else gguf
            self._llamacpp = LlamaCppBackend(path, gcfg.llamacpp_ctx)
        return self._llamacpp

    @property
    def injector(self) -> Injector:
        if self._injector is None:
            self._injector = Injector(self.lm.model, self.config.lora.target_modules)
        return self._injector

    @staticmethod
    def check_settings(cfg) -> None:
        """Reject bad augmentation and warm-up settings of a config (before a kb is made from it)."""
        from .augment import PARTS

        acfg = cfg.augment
        if acfg.augmenter not in AUGMENTERS:
            raise PragError(f"unknown augmenter {acfg.augmenter!r}: use {', '.join(AUGMENTERS)}")
        if acfg.parts not in PARTS:
            raise PragError(f"unknown augment.parts {acfg.parts!r}: use {', '.join(PARTS)}")
        if acfg.augmenter == "reference" and not (acfg.reference and Path(acfg.reference).is_file()):
            raise PragError(f"augmenter 'reference' needs augment.reference, a JSONL file (got {acfg.reference!r})")
        if cfg.lora.init_from and not (Path(cfg.lora.init_from) / "adapter_model.safetensors").is_file():
            raise PragError(f"lora.init_from {cfg.lora.init_from}: no adapter_model.safetensors there "
                            "(make one with `prag warmup`)")

    def check_encoding_config(self) -> None:
        """Reject bad encoding settings before any model is loaded."""
        self.check_settings(self.config)
        lcfg = self.config.lora
        if lcfg.train_dtype not in ("float32", "bfloat16"):
            raise PragError(f"unknown train dtype {lcfg.train_dtype!r}: use float32 or bfloat16")
        if lcfg.adapter_dtype not in ADAPTER_DTYPES:
            raise PragError(f"unknown adapter dtype {lcfg.adapter_dtype!r}: use {', '.join(ADAPTER_DTYPES)}")
        check_loss(lcfg.loss)
        if lcfg.batch_docs < 1 or lcfg.batch_tokens < 1:
            raise PragError("lora.batch_docs and lora.batch_tokens must be at least 1")
        self.init_adapter  # a warm-up adapter of the wrong rank is reported before any work

    @property
    def trainer(self) -> tuple[torch.nn.Module, Injector]:
        """The model and injector that encoding trains through: the base model itself, or (lora.train_dtype
        bfloat16) a bfloat16 copy with eager attention, which this CPU's bf16 matrix units run faster."""
        if self._trainer is None:
            self.check_encoding_config()
            name = self.config.lora.train_dtype
            if ADAPTER_DTYPES[name] == self.injector.dtype:
                self._trainer = (self.lm.model, self.injector)
            else:
                import copy

                model = copy.deepcopy(self.lm.model).to(ADAPTER_DTYPES[name])
                model.set_attn_implementation("eager")
                self._trainer = (model, Injector(model, self.config.lora.target_modules))
        return self._trainer

    @property
    def adapter_dtype(self) -> torch.dtype:
        self.check_encoding_config()
        return ADAPTER_DTYPES[self.config.lora.adapter_dtype]

    @property
    def augmenter(self):
        if self._augmenter is None:
            acfg = self.config.augment
            if acfg.augmenter == "rule":
                self._augmenter = RuleAugmenter()
            elif acfg.augmenter == "reference":
                self._augmenter = ReferenceAugmenter(acfg.reference)
            elif acfg.augmenter == "model":
                from .llm_augment import LocalCompleter, ModelAugmenter

                lm = self.lm if acfg.model in (None, "", self.config.model) else load_model(acfg.model)
                self._augmenter = ModelAugmenter(LocalCompleter(lm, acfg.batch_size), acfg.max_new_tokens)
            elif acfg.augmenter == "openai":
                import os

                from .llm_augment import ModelAugmenter, OpenAICompleter

                completer = OpenAICompleter(acfg.base_url or "", acfg.model or "", os.environ.get(acfg.api_key_env),
                                            acfg.concurrency)
                self._augmenter = ModelAugmenter(completer, acfg.max_new_tokens)
            else:
                raise PragError(f"unknown augmenter {acfg.augmenter!r}: use {', '.join(AUGMENTERS)}")
        return self._augmenter

    # ------------------------------------------------------------------ offline
    def _augment(self, doc: Document) -> Augmentation:
        return self._augment_many([doc])[0]

    def _augment_many(self, docs: list[Document]) -> list[Augmentation]:
        acfg = self.config.augment
        augmenter = self.augmenter
        if acfg.augmenter in ("rule", "reference"):  # no model involved: no lock needed
            augs = augmenter.augment_many(docs, acfg.n_rewrites, acfg.n_qa)
        else:
            with self.injector.lock:  # augmentation must see the bare base model
                augs = augmenter.augment_many(docs, acfg.n_rewrites, acfg.n_qa)
        return augs if acfg.parts == "both" else [select_parts(a, d, acfg.parts) for a, d in zip(augs, docs)]

    @property
    def init_adapter(self):
        """The warm-up LoRA every document starts from (lora.init_from), or None for random init."""
        path = self.config.lora.init_from
        if not path:
            return None
        if getattr(self, "_init", (None, None))[0] != path:
            from .encode import read_adapter

            ad = read_adapter(Path(path))
            if ad.r != self.config.lora.r:
                raise PragError(f"lora.init_from {path}: rank {ad.r}, but this kb trains rank {self.config.lora.r}")
            self._init = (path, ad)
        return self._init[1]

    def parameterize_one(self, doc: Document) -> dict:
        """Augment and encode one document with the one-at-a-time loop, then store it."""
        t0 = time.perf_counter()
        aug = self._augment(doc)
        lcfg = self.config.lora
        seqs = training_sequences(self.lm, aug, lcfg.layout)
        adapter, losses = train_adapter(*self.trainer, seqs, lcfg, init=self.init_adapter,
                                        loss_from=loss_starts(self.lm, aug, lcfg.layout, lcfg.loss))
        secs = time.perf_counter() - t0
        self.kb.save_document(doc.id, adapter, aug, secs, self.adapter_dtype, recipe_key(self.config))
        return {"id": doc.id, "seconds": secs, "final_loss": losses[-1] if losses else None}

    def parameterize_batch(self, docs: list[Document]) -> dict[str, str]:
        """Augment and encode several documents together (`train_adapters`), then store each. Returns the
        failures {id: reason}; a document that fails augmentation does not stop the others."""
        t0 = time.perf_counter()
        failed, ready = {}, []
        try:
            augs = self._augment_many(docs)
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
            self.kb.save_document(doc.id, adapter, aug, secs, self.adapter_dtype, recipe)
        return failed

    def parameterize(self, ids: list[str] | None = None, progress: bool = True, force: bool = False,
                     ray: str | None = None, workers: int | None = None) -> dict:
        """Parameterize the given documents (None: all; an empty list: none), `lora.batch_docs` at a time (1: the one-document
        loop); finished ones are skipped unless `force`. Each document is stored as soon as its batch ends, so
        a killed job loses at most one batch. `ray` ("auto" or a cluster address) runs the batches as Ray tasks
        (distributed.py) on `workers` actors."""
        from tqdm import tqdm

        if ids is not None:  # an empty list is no documents, not all of them
            unknown = [i for i in ids if i not in self.kb.by_id]
            if unknown:
                raise PragError(f"unknown document id(s): {', '.join(unknown[:5])}")
            docs = [self.kb.by_id[i] for i in ids]
        else:
            docs = self.kb.docs
        self.check_encoding_config()
        self.check_recipe()
        self.kb.clean_stale()
        todo = [d for d in docs if force or not self.kb.is_done(d.id)]
        summary = {"done": 0, "skipped": len(docs) - len(todo), "failed": {}, "seconds": 0.0}
        t0 = time.perf_counter()
        size = max(1, self.config.lora.batch_docs)
        if ray and todo:
            from .distributed import parameterize_on_ray

            overrides = {k: v for k, v in self.config.to_dict().items() if k in ("lora", "augment")}
            failed = parameterize_on_ray(self.kb, [d.id for d in todo], ray, overrides, workers, progress)
            summary["failed"].update(failed)
            summary["done"] = len(todo) - len(failed)
            summary["seconds"] = time.perf_counter() - t0
            return summary
        with tqdm(total=len(todo), desc="parameterize", unit="doc", disable=not progress or not todo,
                  smoothing=0.1) as bar:
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                failed = {}
                if size == 1:
                    try:
                        self.parameterize_one(chunk[0])
                    except (RuntimeError, ValueError) as e:  # one bad document must not stop the job
                        failed[chunk[0].id] = f"{type(e).__name__}: {e}"
                else:
                    failed = self.parameterize_batch(chunk)
                for i, why in failed.items():
                    self.kb.mark_failed(i, why)
                summary["failed"].update(failed)
                summary["done"] += len(chunk) - len(failed)
                bar.update(len(chunk))
        summary["seconds"] = time.perf_counter() - t0
        return summary

    def check_recipe(self) -> None:
        """Refuse to encode when the kb holds an adapter made with another `recipe_key`: a kb's adapters are all
        made alike (a warm-up file retrained in place, or kb.toml edited, would otherwise mix them)."""
        if self.kb.recipes() - {recipe_key(self.config)}:
            raise PragError(f"{self.kb.root}: its adapters were made with other encoding settings than these "
                            "(kb.toml, this command's options, or a warm-up file changed since): use a new --kb")

    def retrieved_ids(self, questions, top_k: int) -> list[str]:
        """Ids of every document BM25 retrieves (top-k) for the questions, sorted."""
        return sorted({h.doc.id for q in questions for h in self.kb.retriever.retrieve(q.question, top_k)})

    def parameterize_retrieved(self, questions, top_k: int, progress: bool = True) -> list[str]:
        """Parameterize every document BM25 retrieves (top-k) for the questions, as an eval of prag/combine
        needs (batched, resumable). Returns their ids."""
        need = self.retrieved_ids(questions, top_k)
        if not need:
            return []
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
        from .augment import QA
        from .encode import save_adapter
        from .store import ADAPTER_FILE, sha256_file, write_atomic

        if not questions:
            raise PragError("warm-up needs at least one question")
        if not (lr > 0 and math.isfinite(lr)):
            raise PragError(f"--lr must be a finite number > 0, not {lr}")
        if epochs < 1:
            raise PragError(f"--epochs must be at least 1, not {epochs}")
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
        write_atomic(Path(out) / "warmup.json", json.dumps(res, indent=1).encode())
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

    def prompt(self, question: str, docs: list | None = None) -> str:
        """The prompt every method shares: the worked examples (`examples`, e.g. a dataset's dev few-shot), then
        the question, after the in-context documents `docs` if any."""
        shots = [(question_message(q), a) for q, a in self.examples]
        return self.lm.prompter.format(question_message(question, docs), shots=shots)

    def plan(self, question: str, method: str = "prag", top_k: int | None = None,
             doc_ids: list[str] | None = None) -> tuple[str, list[Hit], list, list[float]]:
        """Retrieve (or take `doc_ids`) and build the prompt and the adapters to apply: (prompt, hits, adapters,
        weights). Validation happens here, before any model work."""
        if method not in METHODS:
            raise PragError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
        self.check_generation_config(method)
        if not question or not question.strip():
            raise PragError("empty question")
        top_k = top_k or self.config.retrieval.top_k
        hits: list[Hit] = []
        if method in DYNAMIC and doc_ids:
            raise PragError(f"{method} retrieves during generation: doc_ids cannot be given")
        if method not in DYNAMIC and method != "closed":
            if doc_ids:
                missing = [i for i in doc_ids if i not in self.kb.by_id]
                if missing:
                    raise PragError(f"unknown document id(s): {', '.join(missing)}")
                hits = [Hit(self.kb.by_id[i], 1.0) for i in doc_ids]
            else:
                hits = self.retrieve(question, top_k)
        in_context = [h.doc for h in hits] if method in ("rag", "combine") else None
        if method == "da-rag":
            in_context = [self.augmented_document(h.doc) for h in hits]
        prompt = self.prompt(question, in_context)
        weights: list[float] = []
        adapters = []
        if method in ("prag", "combine"):
            need = [h.doc.id for h in hits if not self.kb.is_done(h.doc.id)]
            if need:
                self.parameterize(need, progress=False)
            gcfg = self.config.generation
            weights = merge_weights([h.score for h in hits], gcfg.merge, gcfg.temperature, gcfg.scale)
            adapters = [self.kb.load_adapter(h.doc.id) for h in hits]
        return prompt, hits, adapters, weights

    def ask(self, question: str, method: str = "prag", top_k: int | None = None,
            doc_ids: list[str] | None = None, max_new_tokens: int | None = None, streamer=None,
            planned: tuple | None = None) -> Answer:
        """Retrieve, Update, Generate. The Update+Generate section holds the injector's lock, so concurrent
        callers never see each other's adapters; the base weights are untouched before and after.
        `planned` is the result of `plan(...)` for the same arguments, when the caller already made it."""
        t0 = time.perf_counter()
        prompt, hits, adapters, weights = planned or self.plan(question, method, top_k, doc_ids)
        if method in DYNAMIC:
            from . import dynamic

            run = dynamic.flare if method == "flare" else dynamic.dragin
            with self.injector.lock:  # the bare base model
                raw, hits, rounds = run(self, question, top_k or self.config.retrieval.top_k,
                                        max_new_tokens or self.config.generation.max_new_tokens)
            final = self.prompt(question, [h.doc for h in hits] or None)
            n_prompt = len(self.lm.tokenizer(final, add_special_tokens=False)["input_ids"])
            return Answer(question, method, extract_answer(raw), raw, hits, [], 0.0, time.perf_counter() - t0,
                          n_prompt, rounds)
        max_new = max_new_tokens or self.config.generation.max_new_tokens
        if self.config.generation.backend == "llamacpp":
            from .llamacpp import generate_text

            ggufs = [(self.kb.adapter_gguf(h.doc.id), w) for h, w in zip(hits, weights)] if adapters else []
            raw, _, update_s = generate_text(self.llamacpp, self.lm, prompt, max_new, ggufs, streamer=streamer)
        else:
            with self.injector.lock:
                tu = time.perf_counter()
                self.injector.apply(adapters, weights)
                sync(self.injector.device)  # the Update's queued GPU work counts as Update, not generation
                update_s = time.perf_counter() - tu
                try:
                    raw = generate(self.lm, prompt, max_new, streamer=streamer)
                finally:
                    self.injector.clear()
        n_prompt = len(self.lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        return Answer(question, method, extract_answer(raw), raw, hits, weights, update_s, time.perf_counter() - t0,
                      n_prompt)
