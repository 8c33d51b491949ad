#!/usr/bin/env bash
# Issue 26: the gold oracle with one adapter per question, trained on both gold paragraphs together
# (pair_adapter.py). SmolLM2, Table-1 settings (4 dev worked examples, strength 0.25), the same questions and
# worked examples as oracle.sh's run. Resumable: rerun after a stop.
#   SPLIT=dev LIMIT=20 DATASETS="2wikimultihopqa hotpotqa" bash benchmarks/experiments/pair_adapter.sh
# SOURCE=bm25: the deployable form (stored neighbour pairs among BM25's top-3; Table 1's answers elsewhere):
#   SOURCE=bm25 SPLIT=test LIMIT=100 DATASETS=hotpotqa bash benchmarks/experiments/pair_adapter.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-20}; SPLIT=${SPLIT:-dev}; SOURCE=${SOURCE:-gold}
TAG=$([ "$SOURCE" = gold ] || echo "$SOURCE-")
for d in ${DATASETS:-2wikimultihopqa hotpotqa}; do
  P=runs/pairs-$TAG$d-$SPLIT$LIMIT; KB=runs/kb-pairs-$TAG$d-$SPLIT$LIMIT-smollm2
  .venv/bin/python benchmarks/experiments/pair_adapter.py build --dataset "$d" --split "$SPLIT" --limit "$LIMIT" \
    --source "$SOURCE"
  [ -f "$KB/kb.toml" ] || .venv/bin/prag index --corpus "$P/corpus.jsonl" --kb "$KB" --model smollm2 \
    --config benchmarks/configs/pairs.toml > /dev/null
  N=$LIMIT  # bm25: only the paired questions, which build put first in their split
  [ "$SOURCE" = gold ] || N=$(.venv/bin/python -c "import json,sys; print(sum(1 for l in open('$P/questions.jsonl') \
    if json.loads(l)['gold_doc_ids'][0].startswith('pair-')))")
  .venv/bin/prag eval --kb "$KB" --questions "$P/questions.jsonl" --split "$SPLIT" --limit "$N" \
    --methods rag,prag,combine --doc-source gold --few-shot 4 --scale 0.25 --batch-size 8 \
    --json "benchmarks/results/oracle/pair-$TAG$d-smollm2-$SPLIT$LIMIT.json" > /dev/null
  .venv/bin/python benchmarks/experiments/pair_adapter.py table --dataset "$d" --split "$SPLIT" --limit "$LIMIT" \
    --source "$SOURCE" > /dev/null
done
