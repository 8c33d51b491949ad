#!/usr/bin/env bash
# Translator training on the GPU machine, in one short call: MINUTES of `prag translator train` on the training
# documents (.gpu/data, from gpu_pack.sh), trained adapters for the 68 fictional evaluation documents (seconds on a
# GPU), then translator_eval.py's checks. What comes back in $OUT: the translator (float16, ~13 MB), its config,
# loss curve and training log (copied as soon as training stops), and the evaluation. A later run starts from that
# translator with INIT=DIR (the folder its files were put in).
#   on the device: MINUTES=5 OUT=$OUT bash benchmarks/experiments/translator_gpu.sh
#   here, to try it on the CPU: TRAINED=0 SETUP=0 PY=.venv/bin/python MINUTES=1 OUT=/tmp/tg bash benchmarks/experiments/translator_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-5}        # of training; the model's load, the data's QA pairs and the eval come on top
EPOCHS=${EPOCHS:-}           # the cosine schedule's length; empty: sized to end within MINUTES (a 30 s trial first)
BATCH=${BATCH:-32}
LR=${LR:-1e-3}
INIT=${INIT:-}               # a translator to go on from (gpu_pack.sh INIT=... packs one into .gpu/init)
ARGS=${ARGS:-}               # more `prag translator train` options, e.g. --memory-layers 5,6,7 for an init that has them
EVAL=${EVAL:-1}              # 0: no trained adapters and no evaluation there (evaluate here on the CPU instead)
SETUP=${SETUP:-1}
TRAINED=${TRAINED:-1}        # 0: no trained adapters for the comparison (16 CPU minutes)
PY=${PY:-python3}
MODEL=${MODEL:-$(cat .gpu/m*/model 2>/dev/null || echo smollm2)}  # the model gpu_pack.sh packed
OUT=${OUT:-/tmp/translator-gpu}
mkdir -p "$OUT"
[ "$SETUP" = 1 ] && source benchmarks/experiments/gpu_env.sh  # wheels, the model from its parts, PYTHONPATH
export PYTHONUNBUFFERED=1
prag() { $PY -m prag.cli "$@"; }
DATA=$(cat .gpu/data/corpus.jsonl .gpu/data/qa.jsonl | sha256sum | cut -c1-8)  # a kb and a run per data version
KB=runs/kb-translator-$MODEL-$DATA
TR=runs/translator-$MODEL-gpu-$DATA
[ -f $KB/kb.toml ] || prag index --corpus .gpu/data/corpus.jsonl --kb $KB --model "$MODEL" > /dev/null
t0=$SECONDS
if [ -z "$EPOCHS" ] && [ -f $TR/translator.json ]; then  # a run to go on with (a warm machine): its schedule
  EPOCHS=$($PY -c "import json; print(json.load(open('$TR/translator.json'))['train']['epochs'])")
fi
if [ -z "$EPOCHS" ]; then  # time a few steps, then size the schedule so the learning rate anneals within MINUTES
  prag translator train --kb $KB --qa .gpu/data/qa.jsonl --out $TR-trial --epochs 1 --batch-docs "$BATCH" \
    --lr "$LR" --contrast 1.0 --minutes 0.5 $ARGS > "$OUT/trial.log" 2>&1 || { tail -5 "$OUT/trial.log"; exit 1; }
  EPOCHS=$($PY -c "
import json, sys
c = [json.loads(x) for x in open('$TR-trial/loss.jsonl')]
h = len(c) // 2  # the trial's second half: on the H200 its first steps ran slower, and the whole trial 2x slower than training
per_step = (c[-1]['seconds'] - c[h]['seconds']) / (len(c) - 1 - h) if len(c) > 2 else c[-1]['seconds'] / len(c)
docs = json.load(open('$TR-trial/translator.json'))['documents']
print(round(0.95 * $MINUTES * 60 / per_step * $BATCH / docs, 4))")
  echo "schedule: $EPOCHS epochs"
  rm -rf $TR-trial
fi
prag translator train --kb $KB --qa .gpu/data/qa.jsonl --out $TR --epochs "$EPOCHS" --batch-docs "$BATCH" \
  --lr "$LR" --contrast 1.0 --minutes "$MINUTES" ${INIT:+--init-from "$INIT"} $ARGS 2>&1 | tr '\r' '\n' \
  | sed '/^translator: /d' > "$OUT/train.log"
tail -2 "$OUT/train.log"
cp $TR/translator.safetensors $TR/translator.json $TR/loss.jsonl "$OUT/"  # back even if what follows runs out of time
echo "trained in $((SECONDS - t0)) s"
[ "$EVAL" = 1 ] || exit 0
for set in fictional30 fictional-heldout; do  # trained adapters for the same-run comparison
  K=runs/kb-$set-$MODEL
  [ -f $K/kb.toml ] || prag index --corpus benchmarks/data/$set/corpus.jsonl --kb $K --model "$MODEL" > /dev/null
  [ "$TRAINED" = 0 ] || prag parameterize --kb $K >> "$OUT/prep.log" 2>&1 || { tail -5 "$OUT/prep.log"; exit 1; }
done
$PY benchmarks/experiments/translator_eval.py --translator $TR --model "$MODEL" --out "$OUT/eval.json"
echo "done in $((SECONDS - t0)) s"
