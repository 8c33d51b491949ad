#!/usr/bin/env bash
# The paper's ablations (§5.2-5.4) on the TEST split (first LIMIT questions) of one dataset with one model: P-RAG
# and combine from a kb of its own per ablation, so every adapter of an ablation is made alike. Prompt and
# strength as in Table 1 (FEWSHOT dev worked examples, SCALE), chosen on dev. Each kb and eval resumes: run it again.
#   default    our defaults (the Table-1 kb, runs/kb-<dataset>-<model>$KBTAG; reuses Table 1's answers when they exist)
#   warmup     §5.2: every document's LoRA starts from a LoRA trained on the DEV questions' (question, answer) pairs
#   rewrite    §5.3: trained on rewrites only      qa: QA pairs only      none: the document itself only
#   aug-self   §5.4: augmentation written by the base model itself
#   aug-gemma  §5.4: augmentation written by the other bundled model (Gemma 3 270M)
#   aug-ref    §5.4: QA pairs a much larger model wrote for the gold paragraphs (augment-reference.jsonl; rules elsewhere)
#   LIMIT=100 ABLATIONS="default warmup rewrite qa none" bash benchmarks/experiments/ablations.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-2wikimultihopqa-comparison}
MODEL=${MODEL:-smollm2}
LIMIT=${LIMIT:-100}
FEWSHOT=${FEWSHOT:-4}
SCALE=${SCALE:-0.25}
KBTAG=${KBTAG:--v2}
ABLATIONS=${ABLATIONS:-"default warmup rewrite qa none aug-self aug-gemma aug-ref"}
OUT=${OUT:-benchmarks/results/ablations}
DATA=${PRAG_DATASETS:-../shared/datasets}
CORPUS=$DATA/$DATASET/corpus.jsonl
mkdir -p "$OUT"
prag() { .venv/bin/prag "$@"; }
kb_for() {  # ablation -> kb folder, made on first use
  local name=$1 kb=runs/abl-$DATASET-$MODEL-$1
  case $name in
    default) kb=runs/kb-$DATASET-$MODEL$KBTAG ;;
  esac
  if [ ! -f "$kb/kb.toml" ]; then
    case $name in
      default)   prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" ;;
      warmup)    local base=runs/abl-$DATASET-$MODEL-warmup-lora
                 prag warmup --kb "$(kb_for default)" --dataset "$DATASET" --out "$base"
                 prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" --init-from "$base" ;;
      rewrite|qa|none) prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" --parts "$name" ;;
      aug-self)  prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" --augmenter model ;;
      aug-gemma) prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" --augmenter model --augment-model gemma3-270m ;;
      aug-ref)   prag index --corpus "$CORPUS" --kb "$kb" --model "$MODEL" --augmenter reference \
                   --reference "$DATA/$DATASET/augment-reference.jsonl" ;;
      *) echo "unknown ablation $name" >&2; exit 2 ;;
    esac
  fi > /dev/null
  echo "$kb"
}
for name in $ABLATIONS; do
  kb=$(kb_for "$name")
  # default: Table 1's answers are this row's when Table 1 used the same kb (its JSON records it); the eval then
  # reuses the rows of the same setting (top-k, merge, strength, examples) and redoes the rest
  t1=benchmarks/results/table1/$DATASET-$MODEL$KBTAG.json
  if [ "$name" = default ] && [ -f "${t1%.json}.log.jsonl" ] && [ ! -f "$OUT/$DATASET-$MODEL-default.log.jsonl" ] &&
     [ "$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("kb", ""))' "$t1")" = "$kb" ]; then
    cp "${t1%.json}.log.jsonl" "$OUT/$DATASET-$MODEL-default.log.jsonl"
  fi
  prag eval --dataset "$DATASET" --kb "$kb" --split test --limit "$LIMIT" --methods prag,combine \
    --few-shot "$FEWSHOT" --scale "$SCALE" --json "$OUT/$DATASET-$MODEL-$name.json" > /dev/null
  echo "$OUT/$DATASET-$MODEL-$name.json"
done
.venv/bin/python benchmarks/experiments/ablation_table.py "$OUT" "$DATASET-$MODEL"
