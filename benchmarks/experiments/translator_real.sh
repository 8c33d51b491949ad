#!/usr/bin/env bash
# Issue 24's real-data check: translated prag and combine beside rag, test split, first LIMIT questions, the
# Table-1 settings (4 worked examples from dev, strength 0.25, PopQA 0.5; Gemma 0.5; softmax top-3), one run per dataset.
# Trained prag and combine on the same questions come from Table 1 (benchmarks/results/table1/<d>-<model>-v2.json, or
# -parametric.json where there is no v2: Gemma);
# translator_real.py puts them side by side. Resumable: each eval resumes from its .log.jsonl.
#   TR=runs/translator-smollm2-v5 TAG=v5 bash benchmarks/experiments/translator_real.sh
# SCALE sets one strength for every dataset in DATASETS instead (a translated kb's own, chosen on dev); give such a
# run its own TAG. The dev sweep that chooses it (a translated kb's own strength; no summary table):
#   SPLIT=dev LIMIT=30 SCALES="0.0625 0.125 0.25 0.5" METHODS=prag,combine OUT=benchmarks/results/translator/strength \
#     TR=benchmarks/results/translator/v8 TAG=v8 bash benchmarks/experiments/translator_real.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
TR=${TR:?a translator folder}
TAG=${TAG:?a name for this translator in the result files}
MODEL=${MODEL:-smollm2}
LIMIT=${LIMIT:-100}
SPLIT=${SPLIT:-test}
BATCH=${BATCH:-8}
DATASETS=${DATASETS:-"2wikimultihopqa-comparison 2wikimultihopqa hotpotqa popqa"}
PRAG=${PRAG:-.venv/bin/prag}
METHODS=${METHODS:-rag,prag,combine}  # prag,combine with RAG_TAG=<an earlier run's TAG>: rag's F1 from that run
RAG_TAG=${RAG_TAG:-}
SCALES=${SCALES:-}                     # several strengths, one file each (...-scale<s>.json)
OUT=${OUT:-benchmarks/results/translator/real}
mkdir -p "$OUT"
for d in $DATASETS; do
  scale=0.25; [ "$d" = popqa ] && scale=0.5
  [ "$MODEL" = gemma3-270m ] && scale=0.5  # Gemma's Table 1: 0.5 on every dataset
  scale=${SCALE:-$scale}
  KB=runs/kb-$d-$MODEL${KB_SUFFIX:-}  # KB_SUFFIX=-tr: a kb of its own (the same corpus and worked examples)
  for s in ${SCALES:-$scale}; do
    $PRAG eval --dataset "$d" --model "$MODEL" --kb "$KB" --split "$SPLIT" --limit "$LIMIT" --methods "$METHODS" \
      --few-shot 4 --scale "$s" --adapters translated --translator "$TR" --batch-size "$BATCH" \
      --json "$OUT/$d-$MODEL-$TAG-$SPLIT$LIMIT${SCALES:+-scale$s}.json" > /dev/null
  done
done
[ "$SPLIT" = test ] && [ -z "$SCALES" ] || exit 0
.venv/bin/python benchmarks/experiments/translator_real.py --model "$MODEL" --tag "$TAG" --limit "$LIMIT" \
  --datasets $DATASETS ${RAG_TAG:+--rag-tag "$RAG_TAG"} --out "$OUT/summary-$MODEL-$TAG.md"
