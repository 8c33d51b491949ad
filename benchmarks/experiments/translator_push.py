"""Issue 24: how hard a translator's token memory writes on each base model, by prag's own measure
(`prag.translate.memory_push`: ||memory write|| / ||module output|| on the documents' own tokens, per memory layer;
the first 16 fictional30 documents). A new translator (what training starts from) against the trained one.

    .venv/bin/python benchmarks/experiments/translator_push.py --out benchmarks/results/translator/push.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from prag.config import default_config
from prag.corpus import read_jsonl
from prag.models import load_model
from prag.translate import TranslatorConfig, load_translator, memory_push, new_translator
from prag.update import Injector

ROOT = Path(__file__).resolve().parents[2]
TRAINED = {"smollm2": ROOT / "src/prag/translators/smollm2", "gemma3-270m": ROOT / "runs/translator-gemma3-270m-cpu"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    texts = [row["text"] for _, row in list(read_jsonl(ROOT / "benchmarks/data/fictional30/corpus.jsonl"))[:16]]
    res = {}
    for model, folder in TRAINED.items():
        lm = load_model(model)
        inj = Injector(lm.model, default_config(model).lora.target_modules)
        fresh = new_translator(lm, inj, TranslatorConfig(model=model, memory_layers=[5, 6, 7]))
        trained, sha = load_translator(folder, model)
        res[model] = {"fresh": [round(x, 3) for x in memory_push(lm, inj, fresh, texts).tolist()],
                      "trained": [round(x, 3) for x in memory_push(lm, inj, trained, texts).tolist()],
                      "trained_translator": str(folder.relative_to(ROOT)), "sha256": sha}
        print(model, res[model], flush=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
