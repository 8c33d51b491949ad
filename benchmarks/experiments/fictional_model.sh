#!/usr/bin/env bash
# Issue 3's fictional-document check for one base model, one command: for fictional30 (the tuning set) and
# fictional-heldout (written after the rules were tuned), index a kb with today's defaults for MODEL, encode
# every document, then closed-book and P-RAG at top-1, top-3 softmax(BM25) and the paper's plain sum of the top 3.
# Everything resumes (kb manifest, eval logs): run it again after an interruption.
#   MODEL=gemma3-270m bash benchmarks/experiments/fictional_model.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-gemma3-270m}
TAG=${TAG:-$MODEL}
OUT=${OUT:-benchmarks/results/fictional/$TAG}
mkdir -p "$OUT" runs
for set in fictional30 fictional-heldout; do
  kb=runs/kb-$set-$TAG
  [ -f "$kb/kb.toml" ] || .venv/bin/prag index --corpus benchmarks/data/$set/corpus.jsonl --kb "$kb" --model "$MODEL" > /dev/null
  .venv/bin/prag parameterize --kb "$kb" > "$OUT/$set-parameterize.log" 2>&1
  q=benchmarks/data/$set/questions.jsonl
  common=(--kb "$kb" --questions "$q" --split all --few-shot 0)
  .venv/bin/prag eval "${common[@]}" --methods closed --json "$OUT/$set-closed.json" > /dev/null 2>&1
  .venv/bin/prag eval "${common[@]}" --methods prag --top-k 1 --merge softmax --json "$OUT/$set-top1.json" > /dev/null 2>&1
  .venv/bin/prag eval "${common[@]}" --methods prag --top-k 3 --merge softmax --json "$OUT/$set-top3-softmax.json" > /dev/null 2>&1
  .venv/bin/prag eval "${common[@]}" --methods prag --top-k 3 --merge sum --json "$OUT/$set-top3-sum.json" > /dev/null 2>&1
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| set | closed | top-1 | top-3 softmax | top-3 plain sum (paper) |", "| --- | --- | --- | --- | --- |"]
for s in ("fictional30", "fictional-heldout"):
    cell = lambda name, m: "%.3f" % json.loads((out / f"{s}-{name}.json").read_text())["methods"][m]["f1"]
    rows.append(f"| {s} | {cell('closed', 'closed')} | {cell('top1', 'prag')} | {cell('top3-softmax', 'prag')} | {cell('top3-sum', 'prag')} |")
(out / "table.md").write_text("F1, every question of each set:\n\n" + "\n".join(rows) + "\n")
print("\n".join(rows))
PY
