#!/usr/bin/env bash
# Issue 26: the methods that reason first (rag-cot, prag-cot, combine-cot) on the test split, beside rag, with each
# model's Table-1 settings (4 dev worked examples; strength 0.25 SmolLM2, 0.5 Gemma; softmax merge). First the
# gold-document oracle (first 20 test questions, oracle.sh), then BM25 top-3 on the first 100 test questions.
# Resumable: rerun after a stop. MODELS and BM25_DATASETS from the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
for MODEL in ${MODELS:-smollm2 gemma3-270m}; do
  SCALE=0.25; [ "$MODEL" = smollm2 ] || SCALE=0.5
  METHODS=rag-cot,prag-cot,combine-cot SPLIT=test MODEL=$MODEL SCALE=$SCALE bash benchmarks/experiments/oracle.sh
  for d in ${BM25_DATASETS:-2wikimultihopqa hotpotqa}; do
    .venv/bin/prag eval --dataset "$d" --model "$MODEL" --split test --limit 100 --top-k 3 \
      --methods rag,rag-cot,prag-cot,combine-cot --few-shot 4 --scale "$SCALE" --merge softmax --batch-size 8 \
      --json "benchmarks/results/oracle/cot/bm25-$d-$MODEL-test100-cot.json" > /dev/null
  done
done
