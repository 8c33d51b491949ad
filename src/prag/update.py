"""The Update step: applying a weighted set of document LoRAs to the FFN for one question, then removing it.

ΔW = Σ_j w_j · (alpha/r) · B_j A_j is never materialised. Each target projection carries a forward hook that
adds x·Aᵀ·Bᵀ, where A stacks the k documents' A factors (rank k·r) and B their B factors with w_j·alpha/r folded
in. Update is therefore a few small concatenations and a pointer swap, and removing it restores the model
exactly: base weights are never written. The same hooks carry trainable LoRA terms during encoding.

How the k documents' adapters combine is a `Merge` in the `MERGES` registry (`generation.merge`): a weighting of
the retrieval scores, and optionally a function that rewrites the factors themselves.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import PragError
from .registry import Registry

ADAPTER_FILE = "adapter_model.safetensors"    # an adapter's files, in PEFT's layout (written by encode.py)
ADAPTER_CONFIG_FILE = "adapter_config.json"


@dataclass
class Adapter:
    """One document's LoRA: module name -> (A [r_m, in], B [out, r_m]); the scaling is alpha / r. A module's
    rank r_m is r, or more where an adapter needs it (a translator's token memory): packing stacks each module
    group at the rank all its layers share and keeps the wider layers' extra columns apart, so a few wide layers
    do not pad all the others."""
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    r: int
    alpha: float

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def packed(self, injector: "Injector") -> dict[tuple, tuple[torch.Tensor, torch.Tensor, dict]]:
        """Factors stacked per module group: key -> (A [L, r0, in], B [L, out, r0], {layer: (A_x [e, in],
        B_x [out, e])}), r0 the rank every layer of the group has and A_x, B_x a wider layer's columns past r0
        (a translator's token memory). Cached on the adapter.

        Stacking once per adapter lets one Update do a handful of concatenations per group instead of two per
        module (6 instead of 180 for a 30-layer model); keeping the extra columns apart keeps the copy the size
        of the factors (a 10x zero padding otherwise, for a memory in 3 of 30 layers)."""
        cache = self.__dict__.setdefault("_packed", {})
        if injector.signature not in cache:
            out = {}
            for key, names in injector.groups.items():
                _, d_in, d_out = key
                r0 = min(self.factors[n][0].shape[0] if n in self.factors else self.r for n in names)
                a = torch.zeros(len(names), r0, d_in, dtype=injector.dtype)
                b = torch.zeros(len(names), d_out, r0, dtype=injector.dtype)
                extra = {}
                for i, n in enumerate(names):
                    if n in self.factors:
                        fa, fb = self.factors[n]
                        a[i], b[i] = fa[:r0], fb[:, :r0]
                        if fa.shape[0] > r0:
                            extra[i] = (fa[r0:].to(injector.dtype), fb[:, r0:].to(injector.dtype))
                out[key] = (a, b, extra)
            cache[injector.signature] = out
        return cache[injector.signature]

    def nbytes(self) -> int:
        """Bytes held: the factors plus any packed copies (what an adapter cache must budget for); the extra
        columns are views of the factors where the dtypes agree, and count once."""
        tensors = [t for ab in self.factors.values() for t in ab]
        own = {t.untyped_storage().data_ptr() for t in tensors}
        for packs in self.__dict__.get("_packed", {}).values():
            for a, b, extra in packs.values():
                tensors += [a, b] + [t for ab in extra.values() for t in ab if t.untyped_storage().data_ptr() not in own]
        return sum(t.numel() * t.element_size() for t in tensors)

    def footprint(self, dtype: torch.dtype = torch.float32) -> int:
        """What the adapter will hold once an Update on a `dtype` model has used it: its factors and, per module
        kind, the packed copy (every layer at the kind's smallest rank; the wider layers' extra columns, which are
        views of the factors when the dtypes agree), for a cache to budget before that happens."""
        kinds: dict[tuple, list[int]] = {}
        for name, (a, b) in self.factors.items():
            kinds.setdefault((name.rsplit(".", 1)[-1], a.shape[1], b.shape[0]), []).append(a.shape[0])
        shared = all(a.dtype == dtype and b.dtype == dtype for a, b in self.factors.values())
        size = torch.empty((), dtype=dtype).element_size()
        packed = sum((len(rs) * min(rs) + (0 if shared else sum(rs) - len(rs) * min(rs))) * (d_in + d_out) * size
                     for (_, d_in, d_out), rs in kinds.items())
        return sum(t.numel() * t.element_size() for ab in self.factors.values() for t in ab) + packed


@dataclass(frozen=True)
class Merge:
    """How the retrieved documents' adapters combine for one question. `weights(scores, temperature)` gives each
    document's weight w_j from its retrieval score (before `generation.scale`). `factors`, when set, then rewrites
    the weighted adapters themselves (TIES, DARE, an SVD to a lower rank...): it returns the adapters and weights
    the Update installs, Σ w_j·(alpha_j/r_j)·B_j A_j."""
    weights: Callable[[list[float], float], list[float]]
    factors: Callable[[list[Adapter], list[float]], tuple[list[Adapter], list[float]]] | None = None


def _softmax(scores: list[float], temperature: float) -> list[float]:
    return torch.softmax(torch.tensor(scores, dtype=torch.float64) / max(temperature, 1e-6), dim=0).tolist()


def _top1(scores: list[float], temperature: float) -> list[float]:
    best = max(range(len(scores)), key=lambda i: scores[i])
    return [1.0 if i == best else 0.0 for i in range(len(scores))]


MERGES: Registry[Merge] = Registry("merge")
MERGES.register("sum", Merge(lambda s, t: [1.0] * len(s)))        # the paper: every adapter at full strength
MERGES.register("mean", Merge(lambda s, t: [1.0 / len(s)] * len(s)))
MERGES.register("softmax", Merge(_softmax))                       # softmax(score / temperature): weights sum to 1
MERGES.register("top1", Merge(_top1))                             # only the best-scored document


def merge_weights(scores: list[float], mode: str = "sum", temperature: float = 1.0, scale: float = 1.0) -> list[float]:
    """Weights w_j for the retrieved documents' adapters from their retrieval scores by the merge `mode`, each
    times `scale` (< 1 weakens the injected update as a whole)."""
    merge = MERGES.get(mode)
    return [x * scale for x in merge.weights(scores, temperature)] if scores else []


def merge_adapters(adapters: list[Adapter], scores: list[float], mode: str = "sum", temperature: float = 1.0,
                   scale: float = 1.0) -> tuple[list[Adapter], list[float]]:
    """The adapters and weights the Update installs: `merge_weights`, then the merge's `factors` step if it has
    one."""
    weights = merge_weights(scores, mode, temperature, scale)
    step = MERGES.get(mode).factors
    return step(adapters, weights) if step and adapters else (adapters, weights)


def _stack(a_buf: torch.Tensor, b_buf: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor, float]]) -> None:
    """Write `parts` ((A [..., r, in], B [..., out, r], weight·scaling) each) side by side into a_buf [..., R, in]
    and b_buf [..., out, R], from the adapters' (CPU) tensors to the model's device: a group's shared rank for all
    its layers at once ([L, ...]), or one layer's extra columns. Views cut to exactly these columns are what the
    hooks read, so columns left from an earlier Update do not matter."""
    off = 0
    for a, b, c in parts:
        r = a.shape[-2]
        a_buf[..., off:off + r, :].copy_(a)
        b_buf[..., off:off + r].copy_(b).mul_(c)
        off += r


def _shared(pairs: list, key: tuple) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """The group stacks of `pairs` ((packed adapter, weight·scaling) each): every layer at the shared rank."""
    return [(p[key][0], p[key][1], c) for p, c in pairs]


def _extras(pairs: list, key: tuple) -> dict[int, list[tuple[torch.Tensor, torch.Tensor, float]]]:
    """The wider layers' extra columns of `pairs`: layer -> [(A_x, B_x, weight·scaling)], one per adapter that has
    them there."""
    out: dict[int, list] = {}
    for p, c in pairs:
        for layer, (a, b) in p[key][2].items():
            out.setdefault(layer, []).append((a, b, c))
    return out


class Injector:
    """Owns the LoRA hooks on a model's target projections and the lock around Update+Generate.

    Two kinds of terms feed the hooks: `active` (the Update: per module group, the k documents' stacked factors,
    indexed by layer) and `terms` (explicit per-module terms, used while training an adapter).
    """

    def __init__(self, model: torch.nn.Module, target_modules: list[str]):
        self.model = model
        self.modules: dict[str, torch.nn.Linear] = {
            name: mod for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
        }
        if not self.modules:
            raise PragError(f"no Linear modules named {target_modules} in the model")
        self.dtype = next(iter(self.modules.values())).weight.dtype
        self.device = next(iter(self.modules.values())).weight.device
        self.groups: dict[tuple, list[str]] = {}
        self.slot: dict[str, tuple[tuple, int]] = {}
        for name, mod in self.modules.items():
            key = (name.rsplit(".", 1)[-1], mod.in_features, mod.out_features)
            self.slot[name] = (key, len(self.groups.setdefault(key, [])))
            self.groups[key].append(name)
        self.signature = tuple((k, tuple(v)) for k, v in self.groups.items())
        self.terms: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {n: [] for n in self.modules}
        self.active: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.lock = threading.RLock()
        self.version = 0  # counts installs (apply, apply_rows): a caller can tell whether its factors are current
        self._handles = [mod.register_forward_hook(self._hook(name)) for name, mod in self.modules.items()]

    def _hook(self, name: str):
        key, idx = self.slot[name]

        def hook(module, args, output):
            act = self.active.get(key)
            terms = self.terms[name]
            if act is None and not terms:
                return output
            x = args[0]
            if act is not None:  # A [L, R, in] shared by all rows, or [L, rows, R, in]: each row its own documents
                a, b, extra = act
                if a.shape[-2]:
                    output = output + (x @ a[idx].mT) @ b[idx].mT
                if idx in extra:  # this layer's columns past the shared rank: [E, in], or [rows, E, in]
                    ax, bx = extra[idx]
                    output = output + (x @ ax.mT) @ bx.mT
            for a, b, s in terms:  # a [r, in] shared by all rows, or [rows, r, in]: one adapter per batch row
                delta = (x @ a.mT) @ b.mT
                output = output + (delta if s == 1.0 else s * delta)
            return output
        return hook

    def shapes(self) -> dict[str, tuple[int, int]]:
        return {n: (m.in_features, m.out_features) for n, m in self.modules.items()}

    def set_terms(self, terms: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]]) -> None:
        for n in self.modules:
            self.terms[n] = terms.get(n, [])

    def clear(self) -> None:
        self.active = {}
        for n, t in self.terms.items():
            if t:
                self.terms[n] = []

    def apply(self, adapters: list[Adapter], weights: list[float] | None = None) -> None:
        """Install Σ w_j·(alpha_j/r_j)·B_j A_j: per module group, the factors stacked to rank Σ r_j."""
        self.version += 1
        if weights is None:
            weights = [1.0] * len(adapters)
        if len(weights) != len(adapters):
            raise ValueError(f"{len(adapters)} adapters but {len(weights)} weights")
        pairs = [(ad.packed(self), w * ad.scaling) for ad, w in zip(adapters, weights, strict=True) if w != 0.0]
        active = {}
        if pairs:
            for key in self.groups:
                # Reused buffers: fresh megabyte-sized tensors cost page faults on every question.
                a_buf, b_buf = self._buffer(key, sum(p[key][0].shape[1] for p, _ in pairs))
                _stack(a_buf, b_buf, _shared(pairs, key))
                extra = {}
                for layer, parts in _extras(pairs, key).items():
                    ax, bx = self._buffer((key, layer), sum(a.shape[0] for a, _, _ in parts))
                    _stack(ax, bx, parts)
                    extra[layer] = (ax, bx)
                active[key] = (a_buf, b_buf, extra)
        self.active = active

    def apply_rows(self, rows: list[tuple[list[Adapter], list[float]]]) -> None:
        """Install a different adapter set per batch row: row i gets Σ_j w_ij·(alpha/r)·B_ij A_ij and nothing of
        any other row's. Each row's factors are stacked as in `apply`, then zero-padded to the batch's largest
        rank (a zero factor adds exactly nothing); a row with no adapters gets the base model."""
        if len(rows) == 1:
            return self.apply(*rows[0])
        self.version += 1
        packs = [[(ad.packed(self), w * ad.scaling) for ad, w in zip(ads, ws, strict=True) if w != 0.0]
                 for ads, ws in rows]
        if not any(packs):
            self.active = {}
            return
        active = {}
        for key in self.groups:
            _, d_in, d_out = key
            n = len(self.groups[key])
            rank = max(sum(p[key][0].shape[1] for p, _ in row) for row in packs)
            a_all = torch.zeros(n, len(rows), rank, d_in, dtype=self.dtype, device=self.device)
            b_all = torch.zeros(n, len(rows), d_out, rank, dtype=self.dtype, device=self.device)
            for i, row in enumerate(packs):  # zeros past a row's own columns add nothing
                _stack(a_all[:, i], b_all[:, i], _shared(row, key))
            per_row = [_extras(row, key) for row in packs]
            extra = {}
            for layer in sorted({layer for ex in per_row for layer in ex}):
                width = max(sum(a.shape[0] for a, _, _ in ex.get(layer, [])) for ex in per_row)
                ax = torch.zeros(len(rows), width, d_in, dtype=self.dtype, device=self.device)
                bx = torch.zeros(len(rows), d_out, width, dtype=self.dtype, device=self.device)
                for i, ex in enumerate(per_row):
                    _stack(ax[i], bx[i], ex.get(layer, []))
                extra[layer] = (ax, bx)
            active[key] = (a_all, b_all, extra)
        self.active = active

    def _buffer(self, slot: tuple, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Update buffers viewed at `rank` columns: a group's [L, R, in] and [L, out, R] (slot: the group's key),
        or one layer's extra columns, [R, in] and [out, R] (slot: (key, layer)). One pair per slot, grown (never
        one per rank seen: token-memory adapters make a different rank for nearly every question)."""
        buf = self._buffers.get(slot)
        if buf is None or buf[0].shape[-2] < rank:
            key, lead = (slot, (len(self.groups[slot]),)) if slot in self.groups else (slot[0], ())
            _, d_in, d_out = key
            buf = (torch.empty(*lead, rank, d_in, dtype=self.dtype, device=self.device),
                   torch.empty(*lead, d_out, rank, dtype=self.dtype, device=self.device))
            self._buffers[slot] = buf
        return buf[0][..., :rank, :], buf[1][..., :rank]

    @contextmanager
    def applied(self, adapters: list[Adapter], weights: list[float] | None = None):
        """Update for the duration of the block, holding the lock so no other request sees these documents."""
        with self.lock:
            self.apply(adapters, weights)
            try:
                yield
            finally:
                self.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
