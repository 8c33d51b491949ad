"""Issue 24: a translator whose token memory writes `gain` times less or more (mem_scale times gain), everything
else unchanged; saved as a new translator folder (new checksum, so its adapters have their own recipe). A check of
whether the memory's write size, not what it stores, is what breaks an answer (translator_norm.py).

    .venv/bin/python benchmarks/experiments/translator_memory_gain.py runs/translator-gemma3-270m-cpu 0.015625 \
        runs/translator-gemma3-270m-cpu-gain64
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from prag.translate import SEEN_FILE, SEEN_QUESTIONS_FILE, load_translator, save_translator, translator_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("translator", type=Path)
    ap.add_argument("gain", type=float)
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    if not a.gain >= 0:
        ap.error("gain must be >= 0 (0: the memory writes nothing, the fixed slots alone)")
    tr, sha = load_translator(a.translator)
    if tr.cfg.memory_kind() is None:
        ap.error("this translator has no token memory")
    with torch.no_grad():
        tr.mem_scale.mul_(a.gain)
    meta = {k: v for k, v in translator_info(a.translator).items() if k not in ("config", "sha256")}
    meta.update({"derived_from": sha, "memory_gain": a.gain})
    print(save_translator(tr, a.out, meta))
    for name in (SEEN_FILE, SEEN_QUESTIONS_FILE):  # what it was trained on is unchanged
        if (a.translator / name).is_file():
            shutil.copy(a.translator / name, a.out / name)


if __name__ == "__main__":
    main()
