"""LLM-written augmentation: few-shot prompts for rewrites and answer-aware questions, sent in bulk to a
"completer" (a local model with batched, left-padded greedy decoding, or any OpenAI-compatible endpoint with
concurrent requests and retries), then filtered by rules.py's grounding checks and completed by its rules.

The answer of every generated pair is chosen first, from the document (rules.answer_spans); the model only
writes the question for it, so a pair is grounded by construction and a bad question falls back to a cloze.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import torch

from .corpus import Document
from .errors import PragError
from .generate import greedy_kwargs
from .rules import QA, Augmentation, answer_spans, cloze, complete, is_grounded, on_topic

REWRITE_PROMPT = (
    "Rewrite the passage in different words. Keep every name, number and fact.\n\n"
    "Passage: Marta Kovel is a painter born in Riga in 1961. She is known for her paintings of harbours.\n"
    "Rewrite: Born in 1961 in Riga, Marta Kovel became a painter famous for pictures of harbours.\n\n"
    "Passage: {text}\nRewrite:"
)
QG_PROMPT = (
    "Write a question about the topic whose answer is the given answer.\n\n"
    "Topic: Marta Kovel\nSentence: She was born in Riga in 1961 and trained as a painter.\nAnswer: Riga\n"
    "Question: In which city was Marta Kovel born?\n\n"
    "Topic: Harlow Bridge\nSentence: The bridge was completed in 1903 by the engineer Tom Vale.\nAnswer: Tom Vale\n"
    "Question: Which engineer completed the Harlow Bridge?\n\n"
    "Topic: Oskel Lake\nSentence: The lake is home to 42 species of fish.\nAnswer: 42\n"
    "Question: How many species of fish live in Oskel Lake?\n\n"
    "Topic: {title}\nSentence: {sentence}\nAnswer: {answer}\nQuestion:"
)


class Completer(Protocol):
    name: str

    def complete_many(self, prompts: list[str], max_new_tokens: int) -> list[str]: ...


class LocalCompleter:
    """Greedy continuations from a local causal LM, `batch_size` prompts per generate call (left padding)."""

    def __init__(self, lm, batch_size: int = 16):
        self.lm, self.batch_size, self.name = lm, max(1, batch_size), f"model:{lm.spec}"

    @torch.inference_mode()
    def complete_many(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        tok = self.lm.tokenizer
        kw = greedy_kwargs(self.lm, stop_at_newline=False)
        pad = kw["pad_token_id"]
        out: dict[int, str] = {}
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
        dev = self.lm.model.device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = [tok(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
            width = max(map(len, enc))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=dev)
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=dev)
            gen = self.lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, **kw)
            for row, i in enumerate(idx):
                out[i] = tok.decode(gen[row, width:], skip_special_tokens=True)
        return [out[i] for i in range(len(prompts))]


class OpenAICompleter:
    """Any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, OpenAI...).

    Requests run `concurrency` at a time; a failed request (connection error, 429 or 5xx) is retried with
    exponential backoff; other HTTP errors and exhausted retries raise a PragError saying what happened."""

    INSTRUCTION = ("Continue the text exactly where it stops, following the pattern of the examples. "
                   "Reply with the continuation only.")

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 8,
                 retries: int = 4, timeout: float = 60.0, backoff: float = 1.0):
        if not base_url or not re.match(r"^https?://", base_url):
            raise PragError(f"--base-url must be an http(s) URL, got {base_url!r}")
        if not model:
            raise PragError("the OpenAI-compatible augmenter needs a model name (--model)")
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1")
                                           else "/v1/chat/completions")
        self.model, self.api_key, self.concurrency = model, api_key, max(1, concurrency)
        self.retries, self.timeout, self.backoff = retries, timeout, backoff
        self.name = f"openai:{model}"

    def _post(self, prompt: str, max_new_tokens: int) -> str:
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": max_new_tokens,
                           "messages": [{"role": "system", "content": self.INSTRUCTION},
                                        {"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = json.loads(r.read())
                return data["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read()[:200].decode('utf-8', 'replace')}"
                if e.code != 429 and e.code < 500:
                    raise PragError(f"{self.url}: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = str(getattr(e, "reason", e))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                last = f"unexpected response ({type(e).__name__}: {e})"
        raise PragError(f"{self.url}: failed after {self.retries + 1} tries: {last}")

    def complete_many(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._post(p, max_new_tokens), prompts))


class ModelAugmenter:
    """Rewrites and questions written by an LLM (`completer`), for many documents per call."""
    needs_model = True  # a local completer runs a model that must see the bare base weights

    def __init__(self, completer: Completer, max_new_tokens: int = 160):
        self.completer, self.max_new_tokens, self.name = completer, max_new_tokens, completer.name

    def augment(self, doc: Document, n: int, m: int) -> Augmentation:
        return self.augment_many([doc], n, m)[0]

    def augment_many(self, docs: list[Document], n: int, m: int) -> list[Augmentation]:
        """Greedy decoding gives one rewrite per document (the rules add the rest); questions are asked for
        the document's first m+2 answer spans and the first m good ones are kept, as cloze questions
        replace the bad ones."""
        spans = [answer_spans(d)[: m + 2] for d in docs]
        rewrites = (self.completer.complete_many([REWRITE_PROMPT.format(text=d.as_text()) for d in docs],
                                                 self.max_new_tokens) if n else [None] * len(docs))
        jobs = [(i, span) for i, sp in enumerate(spans) for span in sp]
        questions = self.completer.complete_many(
            [QG_PROMPT.format(title=docs[i].title or "the passage", sentence=s, answer=ans)
             for i, (s, _, _, ans) in jobs], 40)
        per_doc: list[list] = [[] for _ in docs]
        for (i, span), out in zip(jobs, questions):
            per_doc[i].append((span, out))
        result = []
        for doc, rw, outs in zip(docs, rewrites, per_doc):
            rws = [rw.strip().split("\n\n")[0].split("\nPassage:")[0].strip()] if rw is not None else []
            qa = []
            for (s, match, wh, ans), out in outs:
                if len([q for q in qa if q.source == "model"]) >= m:
                    break
                q = QA(re.sub(r"^\s*Question:\s*", "", out.strip().split("\n")[0]).strip(), ans, "model")
                qa.append(q if is_grounded(q, doc) and on_topic(q, s, doc) else cloze(doc, s, match, wh, ans))
            result.append(complete(doc, rws, qa, n, m, {"augmenter": self.name}))
        return result
