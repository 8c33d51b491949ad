#!/usr/bin/env bash
# Issue 28's evidence, resumable (every eval resumes from its .log.jsonl, adapters are kept in the kbs):
# 1. the no-dev defaults: P-RAG at each strength, no worked examples, on the fictional sets (68 documents);
#    the four datasets' dev points come from the tuning tables that step 2 writes;
# 2. `prag eval --dataset D --split test` with no other flags (it tunes a new kb on dev first) per dataset.
#   LIMIT=100 DATASETS="popqa hotpotqa" MODEL=smollm2 BATCH=8 FICTIONAL=0 bash benchmarks/experiments/auto_eval.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-20}
MODEL=${MODEL:-smollm2}
DATASETS=${DATASETS:-"popqa hotpotqa 2wikimultihopqa"}
SCALES=${SCALES:-"0.25 0.5 1.0"}
BATCH=${BATCH:-1}          # questions answered per batch (same answers, up to float rounding)
FICTIONAL=${FICTIONAL:-1}  # 0: skip step 1
PRAG=${PRAG:-.venv/bin/prag}  # on the GPU machine: PRAG="python3 -m prag.cli" after gpu_env.sh
OUT=benchmarks/results/tuning-auto
mkdir -p "$OUT/fictional"
for set in $([ "$FICTIONAL" = 1 ] && echo fictional30 fictional-heldout); do
  KB=runs/kb-$set-$MODEL
  [ -d "$KB" ] || $PRAG index --corpus benchmarks/data/$set/corpus.jsonl --kb "$KB" --model "$MODEL"
  for s in $SCALES; do
    $PRAG eval --kb "$KB" --questions benchmarks/data/$set/questions.jsonl --methods closed,prag \
      --few-shot 0 --scale "$s" --json "$OUT/fictional/$set-$MODEL-scale$s.json" > /dev/null
  done
done
for d in $DATASETS; do
  $PRAG eval --dataset "$d" --model "$MODEL" --split test --limit "$LIMIT" \
    --methods closed,rag,prag,combine --batch-size "$BATCH" --json "$OUT/$d-$MODEL-test$LIMIT.json" > /dev/null
  cp "runs/kb-$d-$MODEL/tuning.json" "$OUT/$d-$MODEL-tuning.json"
done
