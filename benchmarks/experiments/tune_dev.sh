#!/usr/bin/env bash
# Tuning on DEV only (first LIMIT dev questions; worked examples come from the end of dev and are never scored):
# the number of worked examples in the prompt (FEWSHOTS) for every method, and the adapter strength (SCALES,
# generation.scale) for prag and combine. One `prag eval` per setting; each resumes from its .log.jsonl.
#   KB=runs/kb-2wqa-dtype DATASET=2wikimultihopqa-comparison bash benchmarks/experiments/tune_dev.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-2wikimultihopqa-comparison}
KB=${KB:-runs/kb-$DATASET-smollm2}
LIMIT=${LIMIT:-50}
FEWSHOTS=${FEWSHOTS:-"0 4"}
SCALES=${SCALES:-"1 0.5 0.25"}
OUT=${OUT:-benchmarks/results/tuning/$DATASET-$(basename "$KB")}
mkdir -p "$OUT"
for fs in $FEWSHOTS; do
  .venv/bin/prag eval --dataset "$DATASET" --kb "$KB" --split dev --limit "$LIMIT" --methods closed,rag \
    --few-shot "$fs" --json "$OUT/fs$fs-incontext.json" > /dev/null
  for sc in $SCALES; do
    .venv/bin/prag eval --dataset "$DATASET" --kb "$KB" --split dev --limit "$LIMIT" --methods prag,combine \
      --few-shot "$fs" --scale "$sc" --json "$OUT/fs$fs-scale$sc.json" > /dev/null
  done
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys, pathlib
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("fs*.json")):
    r = json.loads(p.read_text())
    for m, s in r["methods"].items():
        rows.append((len(r.get("few_shot", [])), r.get("scale", 1.0), m, s["f1"], s["em"], s["n"]))
lines = ["| few-shot | scale | method | F1 | EM | n |", "| --- | --- | --- | --- | --- | --- |"]
lines += [f"| {a} | {b} | {m} | {f:.3f} | {e:.3f} | {n} |" for a, b, m, f, e, n in sorted(rows)]
(pathlib.Path(sys.argv[1]) / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
