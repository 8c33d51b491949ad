#!/usr/bin/env bash
# Issue 24: a translated kb's own strength. Translated adapters are not trained adapters, and the Table-1 strength
# (0.25, PopQA 0.5) was chosen on dev for trained ones. This scores translated prag and combine on the first LIMIT
# dev questions at each strength in SCALES (4 worked examples, softmax top-3), per dataset; translator_real.py
# --dev picks each dataset's best dev strength per method, and TAG's test run at that strength follows
# (translator_real.sh with SCALE set). Resumable: each eval resumes from its .log.jsonl.
#   TR=benchmarks/results/translator/v8 TAG=v8 bash benchmarks/experiments/translator_strength.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
TR=${TR:?a translator folder}
TAG=${TAG:?a name for this translator in the result files}
MODEL=${MODEL:-smollm2}
LIMIT=${LIMIT:-30}
BATCH=${BATCH:-8}
SCALES=${SCALES:-"0.125 0.25 0.5"}
DATASETS=${DATASETS:-"2wikimultihopqa-comparison 2wikimultihopqa hotpotqa popqa"}
PRAG=${PRAG:-.venv/bin/prag}
KB_SUFFIX=${KB_SUFFIX:-}   # e.g. -tr: a kb of its own (the same corpus and worked examples) while another job uses runs/kb-D-MODEL
OUT=benchmarks/results/translator/strength
mkdir -p "$OUT"
for d in $DATASETS; do
  for s in $SCALES; do
    $PRAG eval --dataset "$d" --model "$MODEL" --kb "runs/kb-$d-$MODEL$KB_SUFFIX" --split dev --limit "$LIMIT" \
      --methods prag,combine --few-shot 4 --scale "$s" --adapters translated --translator "$TR" --batch-size "$BATCH" \
      --json "$OUT/$d-$MODEL-$TAG-dev$LIMIT-scale$s.json" > /dev/null
  done
done
