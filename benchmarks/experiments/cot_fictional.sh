#!/usr/bin/env bash
# Issue 26: the methods that reason first on the invented two-hop set (benchmarks/data/fictional-twohop), with the
# gold pair and with BM25 top-3, beside the methods without reasoning; the fictional settings (strength 1, no
# worked examples, softmax). The kb is the one the oracle section made (`prag index`), rebuilt here when missing:
# 48 adapters. Resumable. MODELS from the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
SET=benchmarks/data/fictional-twohop
for MODEL in ${MODELS:-smollm2 gemma3-270m}; do
  KB=runs/kb-fictional-twohop-$MODEL
  [ -f "$KB/kb.toml" ] || .venv/bin/prag index --corpus $SET/corpus.jsonl --kb "$KB" --model "$MODEL" > /dev/null
  .venv/bin/prag eval --kb "$KB" --questions $SET/questions.jsonl --methods rag,rag-cot,prag-cot,combine-cot \
    --doc-source gold --few-shot 0 --scale 1 --merge softmax --batch-size 8 \
    --json "benchmarks/results/oracle/cot/oracle-fictional-twohop-$MODEL-all-cot-softmax.json" > /dev/null
  .venv/bin/prag eval --kb "$KB" --questions $SET/questions.jsonl --methods closed,rag,rag-cot,prag-cot,combine-cot \
    --top-k 3 --few-shot 0 --scale 1 --merge softmax --batch-size 8 \
    --json "benchmarks/results/oracle/cot/bm25-fictional-twohop-$MODEL-all-cot.json" > /dev/null
done
