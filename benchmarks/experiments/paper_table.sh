#!/usr/bin/env bash
# The paper's Table 1 on our data: every dataset's TEST split (first LIMIT questions) x both bundled models x
# METHODS, one `prag eval` each, with FEWSHOT worked examples from the dev split in every method's prompt and
# adapter strength SCALE (both chosen on dev: benchmarks/experiments/tune_dev.sh). Every eval resumes from its .log.jsonl and adapters are kept in
# runs/kb-<dataset>-<model>, so an interrupted run picks up where it stopped: run it again.
#   LIMIT=100 METHODS=closed,rag,da-rag,prag,combine bash benchmarks/experiments/paper_table.sh
#   LIMIT=100 METHODS=prag,combine SUFFIX=-parametric KBTAG=-bf16 CONFIG=benchmarks/configs/bf16.toml SCALE=0.5 \
#     MODELS=gemma3-270m bash benchmarks/experiments/paper_table.sh      (Gemma's parametric rows)
#   .venv/bin/prag report benchmarks/results/table1/*.json --out benchmarks/results/table1 --title "Table 1 (test)"
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-100}
METHODS=${METHODS:-closed,rag,da-rag,prag,combine}
DATASETS=${DATASETS:-"2wikimultihopqa-comparison 2wikimultihopqa hotpotqa popqa"}
MODELS=${MODELS:-"smollm2 gemma3-270m"}
FEWSHOT=${FEWSHOT:-4}
SCALE=${SCALE:-0.25}
SUFFIX=${SUFFIX:-}
KBTAG=${KBTAG:-}  # kb runs/kb-<dataset>-<model>$KBTAG: a new tag gives a kb made with today's defaults
CONFIG=${CONFIG:-}  # a TOML of encoding settings a missing kb is made with (e.g. benchmarks/configs/bf16.toml)
DATA=${PRAG_DATASETS:-../shared/datasets}
for model in $MODELS; do
  for ds in $DATASETS; do
    out=benchmarks/results/table1/$ds-$model$SUFFIX.json
    kb=runs/kb-$ds-$model$KBTAG
    if [ -n "$CONFIG" ] && [ ! -f "$kb/kb.toml" ]; then
      .venv/bin/prag index --corpus "$DATA/$ds/corpus.jsonl" --kb "$kb" --model "$model" --config "$CONFIG" > /dev/null
    fi
    .venv/bin/prag eval --dataset "$ds" --model "$model" --kb "$kb" --split test --limit "$LIMIT" --methods "$METHODS" \
      --few-shot "$FEWSHOT" --scale "$SCALE" --json "$out" > /dev/null 2>&1
    echo "$out"
  done
done
