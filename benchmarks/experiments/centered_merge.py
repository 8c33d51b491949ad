"""Issue 26: a centred sum, so that two documents' adapters add their facts without adding their shared part twice.

Every trained adapter carries two things: what is specific to its document, and what all adapters learn alike (the
answer format, a shift toward short answers). A plain sum of k adapters counts that shared part k times, which is
one reading of why the sum wrecks answers (docs/results.md, "Composition with gold documents"). The centred sum
installs

    s · M  +  Σ_j s · (ΔW_j − M)        (s: the strength; M: the mean of the kb's adapters, low-rank)

that is, each document at full strength with the shared part counted once. It is an exact concatenation: the k
adapters at weight s each and M, truncated to rank --rank by an SVD of the mean ΔW per module, at weight
s − k·s. With one document it equals that document alone.

M is a kb-level statistic, like BM25's document frequencies: no labels, no training. --mean-kb takes it from
another kb (the same model and recipe), so that it never includes the evaluated documents; --exclude takes the
given questions' gold documents out of it.

    .venv/bin/python benchmarks/experiments/centered_merge.py --mean-kb runs/kb-fictional30-smollm2 -- \
        eval --kb runs/kb-fictional-twohop-smollm2 ... --merge centered

Everything after `--` is a prag command line; the merge is registered as `centered` for it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from prag import cli
from prag.store import KnowledgeBase
from prag.update import MERGES, Adapter, Merge


def mean_adapter(adapters: list[Adapter], rank: int) -> tuple[Adapter, float]:
    """The mean of the adapters' ΔW = (alpha/r)·B·A per module, truncated to `rank` by an SVD (scaling 1), and the
    share of the adapters' ||ΔW||² it accounts for, 1 − Σ_j ||ΔW_j − M||² / Σ_j ||ΔW_j||², from the same pass:
    Σ_j ||ΔW_j − M||² = Σ_j ||ΔW_j||² − 2n⟨mean, M⟩ + n||M||²."""
    if not adapters:
        raise SystemExit("no adapters to average")
    n = len(adapters)
    total: dict[str, torch.Tensor] = {}
    energy = 0.0
    for ad in adapters:
        for name, (a, b) in ad.factors.items():
            dw = ad.scaling * (b.float() @ a.float())
            energy += float(dw.pow(2).sum())
            total[name] = total[name].add_(dw) if name in total else dw
    factors, residual = {}, energy
    for name, dw in total.items():
        mean = dw / n
        u, s, vh = torch.linalg.svd(mean, full_matrices=False)
        factors[name] = (vh[:rank].contiguous(), (u[:, :rank] * s[:rank]).contiguous())
        m = factors[name][1] @ factors[name][0]
        residual += n * float(m.pow(2).sum() - 2 * (mean * m).sum())
    return Adapter(factors=factors, r=rank, alpha=float(rank)), 1.0 - residual / energy


def centred(mean: Adapter):
    def factors(adapters: list[Adapter], weights: list[float]) -> tuple[list[Adapter], list[float]]:
        if len(adapters) < 2:
            return adapters, weights
        s = max(weights)
        return adapters + [mean], weights + [s - sum(weights)]
    return factors


def gold_ids(dataset: str, split: str, limit: int) -> set[str]:
    from prag.corpus import dataset_dir, load_questions
    from prag.corpus import split as halves
    qs = halves(load_questions(dataset_dir(dataset) / "questions.jsonl"), split)[:limit]
    return {d for q in qs for d in q.gold_doc_ids}


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit("usage: centered_merge.py [options] -- <prag command line>")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mean-kb", type=Path, required=True, help="kb whose trained adapters are averaged")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--exclude", nargs=3, metavar=("DATASET", "SPLIT", "LIMIT"), action="append", default=[],
                    help="leave out these questions' gold documents")
    ap.add_argument("--info", type=Path, help="write the mean's size and explained share here (JSON)")
    a = ap.parse_args(argv[:cut])
    kb = KnowledgeBase.open(a.mean_kb)
    skip = set().union(*(gold_ids(d, s, int(n)) for d, s, n in a.exclude)) if a.exclude else set()
    ids = [d.id for d in kb.docs if d.id not in skip and kb.is_done(d.id)]
    adapters = [kb.load_adapter(i) for i in ids]
    mean, explained = mean_adapter(adapters, a.rank)
    info = {"mean_kb": str(a.mean_kb), "adapters": len(ids), "excluded": len(skip), "rank": a.rank,
            "explained": round(explained, 4)}
    print(json.dumps(info), file=sys.stderr)
    if a.info:
        a.info.parent.mkdir(parents=True, exist_ok=True)
        a.info.write_text(json.dumps(info, indent=1) + "\n")
    del adapters
    MERGES.register("centered", Merge(lambda scores, t: [1.0] * len(scores), factors=centred(mean)))
    sys.argv = ["prag"] + argv[cut + 1:]
    cli.main()


if __name__ == "__main__":
    main()
