#!/usr/bin/env bash
# The Table-1 and ablation runs of paper_table.sh and ablations.sh on a CUDA machine: each kb is indexed first
# with an encoding batch sized for a GPU (64 documents, 4096 tokens per forward pass; 16384 ran out of an H100's
# memory; the kb's other lora settings are the defaults, and kb.toml and the results' kb_config record them), then
# the same `prag eval` runs as in those scripts find the kb ready. $PRAG_DEVICE picks the device (default cuda when
# visible). STEPS: dataset names (Table 1 with SmolLM2: METHODS, LIMIT, FEWSHOT, SCALE) and ablation names
# (2WQA-comparison with SmolLM2, as ablations.sh: rewrite qa none warmup aug-self aug-gemma aug-ref). Every step
# is checked before the first runs. No step starts once BUDGET seconds have passed; every finished step runs
# AFTER_STEP (e.g. a tar of the results). A kb or eval already there is resumed, as on the CPU.
#   STEPS="hotpotqa qa aug-ref warmup" bash benchmarks/experiments/on_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-"hotpotqa qa warmup aug-ref"}
METHODS=${METHODS:-closed,rag,da-rag,prag,combine}
FEWSHOT=${FEWSHOT:-4}
BUDGET=${BUDGET:-1000000}
DATA=${PRAG_DATASETS:-../shared/datasets}
ABL=2wikimultihopqa-comparison
GPUCFG=$(mktemp --suffix .toml)
trap 'rm -f "$GPUCFG"' EXIT
printf '[lora]\nbatch_docs = 64\nbatch_tokens = 4096\n' > "$GPUCFG"
prag() { .venv/bin/prag "$@"; }
index() {  # kb corpus [prag index options]: index with the GPU batch unless the kb exists
  local kb=$1 corpus=$2
  shift 2
  [ -f "$kb/kb.toml" ] || prag index --corpus "$corpus" --kb "$kb" --model smollm2 --config "$GPUCFG" "$@" > /dev/null
}
for step in $STEPS; do  # every step known before any runs
  case $step in
    rewrite|qa|none|aug-ref|aug-self|aug-gemma|warmup) ;;
    *) [ -f "$DATA/$step/questions.jsonl" ] || { echo "unknown step $step: not an ablation, no $DATA/$step" >&2; exit 2; } ;;
  esac
done
t0=$SECONDS
for step in $STEPS; do
  if (( SECONDS - t0 >= BUDGET )); then echo "budget spent: $step not started"; continue; fi
  case $step in
    rewrite|qa|none) index "runs/abl-$ABL-smollm2-$step" "$DATA/$ABL/corpus.jsonl" --parts "$step" ;;
    aug-ref) index "runs/abl-$ABL-smollm2-$step" "$DATA/$ABL/corpus.jsonl" --augmenter reference \
               --reference "$DATA/$ABL/augment-reference.jsonl" ;;
    aug-self) index "runs/abl-$ABL-smollm2-$step" "$DATA/$ABL/corpus.jsonl" --augmenter model ;;
    aug-gemma) index "runs/abl-$ABL-smollm2-$step" "$DATA/$ABL/corpus.jsonl" --augmenter model --augment-model gemma3-270m ;;
    warmup) base=runs/abl-$ABL-smollm2-warmup-lora
            index "runs/kb-$ABL-smollm2-v2" "$DATA/$ABL/corpus.jsonl"
            [ -f "runs/abl-$ABL-smollm2-$step/kb.toml" ] ||  # a kb's adapters start from the warm-up it was made with
              prag warmup --kb "runs/kb-$ABL-smollm2-v2" --dataset "$ABL" --out "$base" > /dev/null
            index "runs/abl-$ABL-smollm2-$step" "$DATA/$ABL/corpus.jsonl" --init-from "$base" ;;
    *) index "runs/kb-$step-smollm2-v2" "$DATA/$step/corpus.jsonl" ;;
  esac
  case $step in
    rewrite|qa|none|aug-ref|aug-self|aug-gemma|warmup)
      OUT=benchmarks/results/ablations ABLATIONS=$step FEWSHOT=$FEWSHOT SCALE=0.25 bash benchmarks/experiments/ablations.sh ;;
    *) prag eval --dataset "$step" --model smollm2 --kb "runs/kb-$step-smollm2-v2" --split test --limit "${LIMIT:-100}" \
         --methods "$METHODS" --few-shot "$FEWSHOT" --scale "${SCALE:-0.25}" --json "benchmarks/results/table1/$step-smollm2-v2.json" > /dev/null ;;
  esac
  echo "$step done at $((SECONDS - t0)) s"
  if [ -n "${AFTER_STEP:-}" ]; then eval "$AFTER_STEP"; fi
done
