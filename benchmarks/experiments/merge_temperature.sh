#!/usr/bin/env bash
# Issue 26/28: does spreading the softmax merge's weight over the top-3 (a higher temperature; `mean` is the limit)
# let two documents' adapters both count? Dev questions only, on kbs whose adapters exist (resumable).
#   TEMPS="4 16" bash benchmarks/experiments/merge_temperature.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=benchmarks/results/merge-temperature
TEMPS=${TEMPS:-"4 16"}
mkdir -p "$OUT"
run() {  # name, then prag eval arguments
  local name=$1; shift
  .venv/bin/prag eval "$@" --batch-size 8 --json "$OUT/$name.json" > /dev/null
}
for t in $TEMPS mean; do
  m=(--merge softmax --temperature "$t"); [ "$t" = mean ] && m=(--merge mean)
  run "2wikimultihopqa-smollm2-dev20-t$t" --dataset 2wikimultihopqa --split dev --limit 20 --methods prag,combine \
    --few-shot 4 --scale 0.25 "${m[@]}"
  run "fictional-twohop-smollm2-t$t" --kb runs/kb-fictional-twohop-smollm2 \
    --questions benchmarks/data/fictional-twohop/questions.jsonl --methods prag,combine --few-shot 0 --scale 1 "${m[@]}"
done
