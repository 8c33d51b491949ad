#!/usr/bin/env bash
# Packs what a run on the GPU machine (the `device` tool) needs and its image lacks, into .gpu/ (git-ignored):
#   .gpu/whl/    wheels of prag's dependencies missing there (gguf, bm25s, PyStemmer, tomli-w; Python 3.12)
#   .gpu/m1..mN/ MODEL's GGUF (smollm2, the default: 94 MiB; gemma3-270m: 241 MiB, PARTS=5) cut in PARTS
#                (default 3): a call carries at most 64 MiB with the working tree; mN/model names the model
#   .gpu/data/   the translator's training documents (DATA, default runs/translator-data: translator_data.py)
#   .gpu/init/   the translator a run goes on from (INIT, optional)
#   .gpu/datasets/ the shared datasets (../shared does not travel; 8 MB)
# Each call of `run` carries one part; the machine keeps ignored paths between calls while it is warm (30 s), so
# the calls go back to back; gpu_env.sh, sourced there, sets up. benchmarks/README.md, "On the GPU
# machine", has the calls.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
PARTS=${PARTS:-3}
MODEL=${MODEL:-smollm2}
DATA=${DATA:-runs/translator-data}
rm -rf $G/whl  # one version of each wheel (two stop the whole install there): the local venv's
rm -rf $G/m? $G/init
mkdir -p $G/whl $G/data
for i in $(seq 1 "$PARTS"); do mkdir -p $G/m$i; done
PINS=$(.venv/bin/python -c "from importlib.metadata import version as v; print(' '.join(f'{p}=={v(p)}' for p in ('gguf', 'bm25s', 'PyStemmer', 'tomli-w')))")
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d $G/whl $PINS
GGUF=$(.venv/bin/python -c "from prag.models import MODELS; print(MODELS.get('$MODEL').locate())")
echo "$MODEL" > $G/m$PARTS/model  # travels with the last part (.gpu/ is carried part by part)
split -n "$PARTS" -d "$GGUF" $G/part-
for i in $(seq 1 "$PARTS"); do mv $G/part-$(printf %02d $((i - 1))) $G/m$i/; done
sha256sum "$GGUF" | cut -d' ' -f1 > $G/m$PARTS/sha256
if [ "$DATA" = runs/translator-data ] && ! grep -q '"generator": 2' $DATA/sources.json 2>/dev/null; then
  .venv/bin/python benchmarks/experiments/translator_data.py --out $DATA > /dev/null  # the default, by this generator
fi
[ -f $DATA/sources.json ] || { echo "no translator data in $DATA (benchmarks/experiments/translator_data.py)" >&2; exit 2; }
cp $DATA/{corpus.jsonl,qa.jsonl,sources.json} $G/data/
[ -z "${INIT:-}" ] || { mkdir -p $G/init && cp "$INIT"/translator.{json,safetensors} $G/init/; }
rm -rf $G/datasets && cp -r ../shared/datasets $G/datasets
du -sh $G/*
