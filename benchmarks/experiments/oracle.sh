#!/usr/bin/env bash
# The gold-document oracle (issue 26): rag, prag and combine with each question's gold documents together and,
# for the adapter methods, each alone; Table-1 settings (4 dev worked examples, strength 0.25). Resumable: rerun
# the same command after a stop. LIMIT, SPLIT, MODEL, DATASETS and MERGE from the environment. MERGE=softmax, the
# models' default, gives k documents of equal score 1/k each (the gold documents all score 1); sum gives each its
# full strength, as it has alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-20}; SPLIT=${SPLIT:-dev}; MODEL=${MODEL:-smollm2}; MERGE=${MERGE:-softmax}
for d in ${DATASETS:-2wikimultihopqa hotpotqa}; do
  .venv/bin/prag eval --dataset "$d" --model "$MODEL" --split "$SPLIT" --limit "$LIMIT" \
    --methods rag,prag,combine --doc-source gold --few-shot 4 --scale 0.25 --merge "$MERGE" --batch-size 8 \
    --json "benchmarks/results/oracle/oracle-$d-$MODEL-$SPLIT$LIMIT-$MERGE.json" > /dev/null
done
