#!/usr/bin/env bash
# The gold-document oracle (issue 26): rag, prag and combine with each question's gold documents together and,
# for the adapter methods, each alone; Table-1 settings (4 dev worked examples, strength 0.25). Resumable: rerun
# the same command after a stop. LIMIT, SPLIT, MODEL and DATASETS from the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-20}; SPLIT=${SPLIT:-dev}; MODEL=${MODEL:-smollm2}
for d in ${DATASETS:-2wikimultihopqa hotpotqa}; do
  .venv/bin/prag eval --dataset "$d" --model "$MODEL" --split "$SPLIT" --limit "$LIMIT" \
    --methods rag,prag,combine --doc-source gold --few-shot 4 --scale 0.25 --batch-size 8 \
    --json "benchmarks/results/oracle/oracle-$d-$MODEL-$SPLIT$LIMIT.json" > /dev/null
done
