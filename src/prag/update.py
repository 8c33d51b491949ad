"""The Update step: applying a weighted set of document LoRAs to the FFN for one question, then removing it.

ΔW = Σ_j w_j · (alpha/r) · B_j A_j is never materialised. Each target projection carries a forward hook that
adds x·Aᵀ·Bᵀ, where A stacks the k documents' A factors (rank k·r) and B their B factors with w_j·alpha/r folded
in. Update is therefore a few small concatenations and a pointer swap, and removing it restores the model
exactly: base weights are never written. The same hooks carry trainable LoRA terms during encoding.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Adapter:
    """One document's LoRA: module name -> (A [r, in], B [out, r]); the scaling is alpha / r."""
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    r: int
    alpha: float

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.factors.values())


def merge_weights(scores: list[float], mode: str = "sum", temperature: float = 1.0) -> list[float]:
    """Weights w_j for the retrieved documents' adapters from their retrieval scores.

    sum: 1 each (the paper); mean: 1/k each; softmax: softmax(score/temperature) (weights sum to 1);
    top1: only the best document.
    """
    k = len(scores)
    if k == 0:
        return []
    if mode == "sum":
        return [1.0] * k
    if mode == "mean":
        return [1.0 / k] * k
    if mode == "softmax":
        t = torch.tensor(scores, dtype=torch.float64) / max(temperature, 1e-6)
        return torch.softmax(t, dim=0).tolist()
    if mode == "top1":
        best = max(range(k), key=lambda i: scores[i])
        return [1.0 if i == best else 0.0 for i in range(k)]
    from . import PragError

    raise PragError(f"unknown merge mode {mode!r}: use sum, mean, softmax or top1")


class Injector:
    """Owns the LoRA hooks on a model's target projections and the lock around Update+Generate."""

    def __init__(self, model: torch.nn.Module, target_modules: list[str]):
        self.model = model
        self.modules: dict[str, torch.nn.Linear] = {
            name: mod for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
        }
        if not self.modules:
            from . import PragError

            raise PragError(f"no Linear modules named {target_modules} in the model")
        self.terms: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {n: [] for n in self.modules}
        self.lock = threading.RLock()
        self._handles = [mod.register_forward_hook(self._hook(name)) for name, mod in self.modules.items()]

    def _hook(self, name: str):
        def hook(module, args, output):
            terms = self.terms[name]
            if not terms:
                return output
            x = args[0]
            for a, b, s in terms:
                delta = (x @ a.t()) @ b.t()
                output = output + (delta if s == 1.0 else s * delta)
            return output
        return hook

    def shapes(self) -> dict[str, tuple[int, int]]:
        return {n: (m.in_features, m.out_features) for n, m in self.modules.items()}

    def set_terms(self, terms: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]]) -> None:
        for n in self.modules:
            self.terms[n] = terms.get(n, [])

    def clear(self) -> None:
        for n in self.terms:
            self.terms[n] = []

    def apply(self, adapters: list[Adapter], weights: list[float] | None = None) -> None:
        """Install Σ w_j·(alpha_j/r_j)·B_j A_j as one stacked low-rank term per module."""
        if weights is None:
            weights = [1.0] * len(adapters)
        pairs = [(ad, w) for ad, w in zip(adapters, weights) if w != 0.0]
        if not pairs:
            self.clear()
            return
        dtype = next(iter(self.modules.values())).weight.dtype
        for name in self.modules:
            present = [(ad.factors[name], w * ad.scaling) for ad, w in pairs if name in ad.factors]
            if not present:
                self.terms[name] = []
                continue
            a = torch.cat([f[0] for f, _ in present], dim=0).to(dtype)
            b = torch.cat([f[1] * s for f, s in present], dim=1).to(dtype)
            self.terms[name] = [(a, b, 1.0)]

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
