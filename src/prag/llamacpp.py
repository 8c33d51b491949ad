"""The llama.cpp generation backend (`generation.backend = "llamacpp"`), through llama-cpp-python.

It owns three things:
- **Weights.** llama.cpp runs a GGUF file. `dequantized_gguf` rewrites the model's GGUF with every tensor
  dequantized to float32, so llama.cpp computes with exactly the weights the transformers backend loads
  (`generation.llamacpp_weights = "dequantized"`, the default); "original" runs the shipped quantized file
  (faster, answers may differ slightly).
- **Adapters.** `write_adapter_gguf` stores a document's LoRA in llama.cpp's adapter format: `general.type =
  adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per FFN projection `blk.{i}.ffn_{gate,up,down}
  .weight.lora_a` ([r, in]) and `.lora_b` ([out, r]), i.e. PEFT's lora_A and lora_B. llama.cpp scales an
  adapter by `scale · alpha / r`, so activating document j with scale w_j applies exactly w_j·ΔW_j.
- **Generation.** `LlamaCppBackend.generate` takes the prompt's token ids (from the same Hugging Face tokenizer
  the transformers backend uses), activates the question's adapters with their merge weights, decodes greedily
  and deactivates them, all under one lock: concurrent requests never see each other's documents.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter
from gguf import GGUFValueType as V
from gguf.quants import dequantize

from .atomic import atomic_file
from .errors import PragError
from .update import Adapter

_FFN = {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj)$")


def require_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise PragError("the llamacpp backend needs llama-cpp-python: pip install -e '.[llamacpp]'") from None
    return llama_cpp


def gguf_tensor_name(module: str) -> str:
    """GGUF name of the weight behind a Hugging Face FFN module name ('model.layers.3.mlp.up_proj' ->
    'blk.3.ffn_up.weight')."""
    m = _MODULE.search(module)
    if not m:
        raise PragError(f"cannot export {module!r} to GGUF: only the FFN projections gate/up/down are supported")
    return f"blk.{m.group(1)}.{_FFN[m.group(2)]}.weight"


def exportable(adapter: Adapter) -> bool:
    """Whether every module of the adapter has a llama.cpp tensor name (FFN gate/up/down)."""
    return all(_MODULE.search(m) for m in adapter.factors)


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` of a GGUF file (llama, gemma3, ...)."""
    field = GGUFReader(str(path)).fields.get("general.architecture")
    if field is None:
        raise PragError(f"{path}: GGUF file without general.architecture")
    return field.contents()


def write_adapter_gguf(adapter: Adapter, arch: str, path: Path) -> None:
    """Write `adapter` as a llama.cpp LoRA adapter GGUF at `path` (float32 factors)."""
    if any(a.shape[0] != adapter.r for a, _ in adapter.factors.values()):
        # llama.cpp scales each module by alpha / its own rank; ours is alpha / r for every module
        raise PragError("llama.cpp takes adapters of one rank in every module; this one has per-module ranks "
                        "(a translator's token memory)")
    w = GGUFWriter(str(path), arch)
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(adapter.alpha))
    for module, (a, b) in sorted(adapter.factors.items()):
        name = gguf_tensor_name(module)
        w.add_tensor(name + ".lora_a", a.detach().float().cpu().numpy())
        w.add_tensor(name + ".lora_b", b.detach().float().cpu().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dequantized_gguf(src: Path, cache: Path) -> Path:
    """A float32 copy of the GGUF file `src` (same metadata, every tensor dequantized), cached under `cache`
    keyed by the source's path, size and mtime; written to a temporary name and renamed (crash-safe)."""
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache / "gguf-f32" / f"{src.stem}-{key}.f32.gguf"
    if target.exists():
        return target
    reader = GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        _write_f32_copy(reader, arch, tmp)
    return target


def _write_f32_copy(reader, arch: str, tmp: Path) -> None:
    w = GGUFWriter(str(tmp), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if name == "general.file_type":
            value = 0  # LLAMA_FTYPE_ALL_F32
        sub = field.types[-1] if field.types[0] == V.ARRAY else None
        w.add_key_value(name, value, field.types[0], sub_type=sub)
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        if t.tensor_type == Q.F32:
            arr = np.asarray(t.data, dtype=np.float32)
        elif t.tensor_type == Q.F16:
            arr = np.asarray(t.data).astype(np.float32)
        else:
            arr = dequantize(t.data, t.tensor_type)
        w.add_tensor(t.name, np.ascontiguousarray(arr.reshape(shape), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class LlamaCppBackend:
    """One llama.cpp model and context, a cache of loaded adapters, and the lock around adapter-set + decode."""

    def __init__(self, model_path: Path, n_ctx: int = 4096, n_threads: int | None = None, max_adapters: int = 512):
        llama_cpp = require_llama_cpp()
        self._lc = llama_cpp
        self.model_path = Path(model_path)
        threads = n_threads or len(os.sched_getaffinity(0))
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, n_batch=512, verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.lock = threading.RLock()
        self._adapters: OrderedDict[str, object] = OrderedDict()
        self.max_adapters = max_adapters

    # ------------------------------------------------------------------ adapters
    def adapter(self, path: Path):
        """The llama.cpp handle of an adapter GGUF, loaded once and kept in an LRU cache."""
        try:
            key = f"{path}|{Path(path).stat().st_mtime_ns}"  # a re-parameterized document gets a new handle
        except OSError as e:  # e.g. the document was deleted meanwhile
            raise PragError(f"{path}: adapter file unavailable ({e.strerror})") from None
        with self.lock:
            if key in self._adapters:
                self._adapters.move_to_end(key)
                return self._adapters[key]
            handle = self._lc.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not handle:
                raise PragError(f"{path}: llama.cpp could not load this LoRA adapter")
            self._adapters[key] = handle
            return handle

    def _evict(self) -> None:
        """Free the least recently used handles beyond `max_adapters` (only while none is active)."""
        while len(self._adapters) > self.max_adapters:
            _, old = self._adapters.popitem(last=False)
            self._lc.llama_adapter_lora_free(old)

    def _activate(self, adapters: list[tuple[Path, float]]) -> None:
        """Make exactly these adapters, with these scales, the context's active set (one call replaces it)."""
        lc = self._lc
        pairs = [(self.adapter(p), float(s)) for p, s in adapters if s != 0.0]
        handles = (lc.llama_adapter_lora_p_ctypes * max(1, len(pairs)))(*[h for h, _ in pairs])
        scales = (ctypes.c_float * max(1, len(pairs)))(*[s for _, s in pairs])
        lc.llama_set_adapters_lora(self.llm.ctx, handles, len(pairs), scales)

    def _deactivate(self) -> None:
        self._lc.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
        self._evict()

    # ------------------------------------------------------------------ decoding
    def _last_logits(self) -> np.ndarray:
        """The logits after the last evaluated token (a view into llama.cpp's buffer: copy to keep it)."""
        ptr = self._lc.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def logits(self, ids: list[int], adapters: list[tuple[Path, float]] = ()) -> np.ndarray:
        """Next-token logits after `ids` with `adapters` active ([n_vocab] float32)."""
        with self.lock:
            self._activate(list(adapters))
            try:
                self.llm.reset()
                self.llm.eval(ids)
                return self._last_logits().copy()
            finally:
                self._deactivate()

    def generate(self, ids: list[int], max_new_tokens: int, stop_ids: set[int], stop=None,
                 adapters: list[tuple[Path, float]] = (), scores: list | None = None,
                 on_token=None) -> tuple[list[int], float]:
        """Greedy continuation of the token ids `ids` with `adapters` ([(gguf path, scale)]) active.

        Stops at a token in `stop_ids` (not returned) or when `stop(generated_ids)` is true (returned). When
        `scores` is a list, the logits row of every generated token is appended to it; `on_token(id)` is called
        for every token kept (streaming). Returns the generated
        ids and the seconds spent activating adapters (the Update)."""
        if len(ids) + max_new_tokens > self.llm.n_ctx():
            raise PragError(f"prompt of {len(ids)} tokens + {max_new_tokens} new exceeds llama.cpp's context "
                            f"({self.llm.n_ctx()})")
        with self.lock:
            t0 = time.perf_counter()
            self._activate(list(adapters))
            update_s = time.perf_counter() - t0
            try:
                self.llm.reset()  # a fresh KV cache: nothing computed under other adapters is reused
                self.llm.eval(ids)
                out: list[int] = []
                for _ in range(max_new_tokens):
                    row = self._last_logits()
                    tok = int(np.argmax(row))
                    if scores is not None:
                        scores.append(row.copy())
                    if tok in stop_ids:
                        break
                    out.append(tok)
                    if on_token is not None:
                        on_token(tok)
                    if stop is not None and stop(out):
                        break
                    self.llm.eval([tok])
                return out, update_s
            finally:
                self._deactivate()


def generate_text(backend: LlamaCppBackend, lm, prompt: str, max_new_tokens: int,
                  adapters: list[tuple[Path, float]] = (), scores: list | None = None,
                  streamer=None, cancel: threading.Event | None = None) -> tuple[str, list[int], float]:
    """The llama.cpp counterpart of `generate.generate`: same tokenizer, same stop rules (`LoadedModel.end_ids`; for
    base models the first line break; `cancel` set). Returns (text, generated ids, Update seconds)."""
    tok = lm.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    stop_ids = set(lm.end_ids)
    newline = not lm.prompter.chat

    def stop(out: list[int]) -> bool:
        return (cancel is not None and cancel.is_set()) or (newline and "\n" in tok.decode(out, skip_special_tokens=True))

    on_token = None
    if streamer is not None:
        streamer.put(torch.tensor([ids]))  # the prompt, which a skip_prompt streamer drops
        on_token = lambda t: streamer.put(torch.tensor([t]))  # noqa: E731
    try:
        out, update_s = backend.generate(ids, max_new_tokens, stop_ids, stop, adapters, scores, on_token)
    finally:
        if streamer is not None:
            streamer.end()
    return tok.decode(out, skip_special_tokens=True), out, update_s
