#!/usr/bin/env bash
# The gold-document oracle (issue 26): rag, prag and combine with each question's gold documents together and,
# for the adapter methods, each alone; Table-1 settings (4 dev worked examples, strength 0.25). Resumable: rerun
# the same command after a stop. LIMIT, SPLIT, MODEL, DATASETS and MERGE from the environment. MERGE=softmax, the
# models' default, gives k documents of equal score 1/k each (the gold documents all score 1); sum gives each its
# full strength, as it has alone. SCALE (default 0.25, SmolLM2's Table-1 strength; Gemma's is 0.5) and CONFIG (a
# kb config for a kb not made yet, e.g. benchmarks/configs/bf16.toml, Table 1's for Gemma) as well. METHODS=rag-cot,
# prag-cot,combine-cot (the methods that reason first) writes to oracle/cot/ with "-cot" in the file names.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-20}; SPLIT=${SPLIT:-dev}; MODEL=${MODEL:-smollm2}; MERGE=${MERGE:-softmax}; SCALE=${SCALE:-0.25}
METHODS=${METHODS:-rag,prag,combine}; OUT=benchmarks/results/oracle; TAG=""
case $METHODS in *-cot*) OUT=$OUT/cot; TAG=-cot;; esac
for d in ${DATASETS:-2wikimultihopqa hotpotqa}; do
  KB=runs/kb-$d-$MODEL  # where `--dataset` keeps its kb
  [ -z "${CONFIG:-}" ] || [ -f "$KB/kb.toml" ] || .venv/bin/prag index --corpus "$(.venv/bin/python -c \
    "from prag.corpus import dataset_dir; print(dataset_dir('$d') / 'corpus.jsonl')")" --kb "$KB" --model "$MODEL" \
    --config "$CONFIG" > /dev/null
  .venv/bin/prag eval --dataset "$d" --model "$MODEL" --split "$SPLIT" --limit "$LIMIT" \
    --methods "$METHODS" --doc-source gold --few-shot 4 --scale "$SCALE" --merge "$MERGE" --batch-size 8 \
    --json "$OUT/oracle-$d-$MODEL-$SPLIT$LIMIT$TAG-$MERGE.json" > /dev/null
done
