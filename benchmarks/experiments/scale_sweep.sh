#!/usr/bin/env bash
# Adapter strength on dev: P-RAG and combine with the kb's adapters at each SCALES value, on the first LIMIT dev
# questions with the dev-tuned prompt (4 worked examples), as in dev_compare.sh. Adapters are reused from the kb
# (and built where missing); each eval resumes from its .log.jsonl.
#   DATASET=popqa KB=runs/kb-popqa-v2 SCALES="0.1 0.5" bash benchmarks/experiments/scale_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-2wikimultihopqa-comparison}
KB=${KB:-runs/kb-$DATASET-smollm2}
SCALES=${SCALES:-"0.1 0.25 0.5"}
LIMIT=${LIMIT:-100}
METHODS=${METHODS:-prag,combine}
OUT=${OUT:-benchmarks/results/dev-compare}
mkdir -p "$OUT"
for s in $SCALES; do
  .venv/bin/prag eval --dataset "$DATASET" --kb "$KB" --split dev --limit "$LIMIT" --methods "$METHODS" \
    --few-shot 4 --scale "$s" --json "$OUT/$DATASET-scale$s.json" > /dev/null
  .venv/bin/python -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], {m: round(v['f1'], 3) for m, v in r['methods'].items()})" \
    "$OUT/$DATASET-scale$s.json" "$s"
done
